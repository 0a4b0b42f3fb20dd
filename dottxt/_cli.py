"""The `dottxt` command line: login, logout, models, generate, stream, batch, schema check, demo, fake-gateway.

Top-level imports are the standard library, `dottxt._version` and `dottxt._logging` only, so that
`dottxt --version` and `dottxt --help` start fast; each command imports the client lazily.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from ._logging import enable, redactor
from ._version import __version__

if TYPE_CHECKING:
    import logging

    from ._client import DotTxt

__all__ = ["main", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE"]

PROG = "dottxt"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report after Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `git log | head -1` reports under `set -o pipefail`

#: What a bare `dottxt fake-gateway` serves: the fake's own model, and the one the docs' snippets use.
FAKE_GATEWAY_MODELS = ("dottxt/fake-model", "openai/gpt-oss-20b")
_MODEL_HINT = "run `dottxt models` to list the models your key can use, then set DOTTXT_MODEL or pass --model"


class CLIError(Exception):
    """A failure reported as one line on stderr (`dottxt: error: ...`), exit status 1."""


# --------------------------------------------------------------------------- output


def _one_line(text: str) -> str:
    """Collapse a message to one line: an error is always exactly one line on stderr."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def _ascii_only(stream: TextIO) -> bool:
    """True when `stream` cannot take raw UTF-8, so JSON must escape non-ASCII characters."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return encoding != "utf8"


def _dumps(value: Any, stream: TextIO, *, pretty: bool = False) -> str:
    """JSON text for `stream`: one line, or indented when `pretty`.

    Text UTF-8 cannot encode (a lone surrogate escape a model produced) stays escaped, as it came.
    """
    text = json.dumps(value, indent=2 if pretty else None, ensure_ascii=_ascii_only(stream))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, indent=2 if pretty else None, ensure_ascii=True)
    return text


def _emit(text: str) -> None:
    """Write one line to stdout and flush it at once (stdout is block-buffered when piped)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _emit_json(value: Any, *, pretty: bool = False) -> None:
    """Write one JSON value to stdout, flushed."""
    _emit(_dumps(value, sys.stdout, pretty=pretty))


def _note(args: argparse.Namespace, text: str) -> None:
    """An informational line on stderr, left out in --json mode so stderr stays machine-readable."""
    if not getattr(args, "json", False):
        sys.stderr.write(f"{PROG}: {text}\n")
        sys.stderr.flush()


#: Secrets at least this long are blanked out of error messages; a shorter one would garble ordinary words.
_MIN_REDACTED_LENGTH = 8


def _redact_secrets(text: str) -> str:
    """`text` with the API key (registered, or in DOTTXT_API_KEY) replaced by `***`.

    A server may echo the key it rejected ("Incorrect API key provided: sk-..."); the
    CLI never prints it.
    """
    secrets = {*_redactor.secrets, os.environ.get("DOTTXT_API_KEY", "").strip()}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_REDACTED_LENGTH:
            text = text.replace(secret, "***")
    return text


def _report_error(message: str, *, json_mode: bool) -> None:
    """Print an error on stderr: `dottxt: error: ...`, or `{"error": {"message": ...}}` with --json.

    The message is one line, and holds no API key even when the server echoed it.
    """
    message = _redact_secrets(_one_line(message))
    stderr = sys.stderr
    if stderr is None:
        return
    try:
        if json_mode:
            stderr.write(_dumps({"error": {"message": message}}, stderr) + "\n")
        else:
            stderr.write(f"{PROG}: error: {message}\n")
        stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit status is all that is left


def _silence_stdout() -> None:
    """After EPIPE, point stdout at devnull so the interpreter's final flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# --------------------------------------------------------------------------- verbose diagnostics


_redactor = redactor  # the SDK's one key-redacting log filter (dottxt._logging)


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("dottxt.cli")


class _SinceStart(logging.Filter):
    """Log filter stamping each record with `since_start`: ms since the command started (the `[... ms]` column).

    The same clock as the durations in the messages, so `[664 ms] generated in 374 ms` follows a
    `[290 ms] sending the request` line instead of contradicting it.
    """

    def __init__(self, origin: float) -> None:
        super().__init__()
        self.origin = origin

    def filter(self, record: logging.LogRecord) -> bool:
        record.since_start = (record.created - self.origin) * 1000.0
        return True


def _enable_verbose(origin: float) -> None:
    """Send the SDK's ("dottxt") and urllib3's diagnostics to stderr, key redacted, timed from `origin`."""
    import logging

    enable(
        logging.DEBUG, stream=sys.stderr, fmt=f"{PROG}: [%(since_start)5.0f ms] %(message)s", stamp=_SinceStart(origin)
    )


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors follow the --json error envelope when --json was given."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        from ._cli_compat import did_you_mean

        message = did_you_mean(message)
        if self.json_errors:
            _report_error(f"{message} (see `{self.prog} --help`)", json_mode=True)
            self.exit(EXIT_USAGE)
        super().error(message)


def _json_requested(argv: Sequence[str]) -> bool:
    """Whether --json is among the options (before any `--`), known before argparse runs."""
    for token in argv:
        if token == "--":
            return False
        if token == "--json":
            return True
    return False


_EPILOG = """\
environment:
  DOTTXT_API_KEY    API key (else the key stored by `dottxt login`)
  DOTTXT_BASE_URL   API base URL (default https://api.dottxt.ai/v1)
  DOTTXT_MODEL      default model for generate and stream
  XDG_CONFIG_HOME   where `dottxt login` stores the key (default ~/.config)

exit status: 0 success, 1 error, 2 usage error, 130 interrupted (Ctrl-C),
141 stdout closed early (e.g. `dottxt stream ... | head -1`).

Try it with no key and no network: `dottxt demo`.
"""


def _add_global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--json and --verbose: documented before the command, also accepted after it."""
    default: Any = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--json",
        action="store_true",
        default=default,
        help='machine-readable JSON on stdout; errors as {"error": {"message": ...}} on stderr',
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="diagnostics on stderr (base URL, model, timing, retries); the key is never shown",
    )


def _add_generation_args(parser: argparse.ArgumentParser) -> None:
    from ._cli_schema import SCHEMA_HELP

    parser.add_argument("-m", "--model", help="model id (default: $DOTTXT_MODEL)")
    parser.add_argument("-s", "--schema", required=True, metavar="SCHEMA", help=SCHEMA_HELP)
    parser.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt (default: read from stdin)")
    parser.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    parser.add_argument("--temperature", type=float, help="sampling temperature")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="stop after N tokens")
    parser.add_argument("--seed", type=int, help="sampling seed")


def _non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (0 included, so not "positive"; NaN and inf refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    """The `dottxt` argument parser (usage errors in the --json envelope when `json_errors`)."""
    parser = _Parser(
        prog=PROG,
        description="Structured generation with the .txt API from the command line.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        json_errors=json_errors,
    )
    version = json.dumps(__version__) if json_errors else __version__  # alone, as upstream prints it
    parser.add_argument("--version", action="version", version=version, help="print the version and exit")
    _add_global_flags(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")  # none: the help, exit 0

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description or help, json_errors=json_errors)
        _add_global_flags(sub, top=False)
        sub.set_defaults(subparser=sub)
        return sub

    sub = command(
        "login",
        "check an API key and store it for later commands",
        "Check an API key by listing models, then store it (mode 0600) in "
        "$XDG_CONFIG_HOME/dottxt/credentials.json. The key comes from DOTTXT_API_KEY, "
        "else stdin when it is not a terminal, else a hidden prompt.",
    )
    sub.set_defaults(handler=_cmd_login)

    sub = command("logout", "delete the stored API key")
    sub.set_defaults(handler=_cmd_logout)

    sub = command("models", "list the models your key can use")
    sub.add_argument(
        "--author",
        metavar="NAME",
        help="only models by NAME (their author field, else the part before '/' or owned_by)",
    )
    sub.set_defaults(handler=_cmd_models)

    sub = command(
        "generate",
        "generate one JSON document matching a schema",
        "Generate one JSON document matching SCHEMA and print it (indented; one line with --json). "
        "On a terminal, the time waited so far is shown on stderr.",
    )
    _add_generation_args(sub)
    sub.set_defaults(handler=_cmd_generate)

    sub = command(
        "stream",
        "stream a generation as JSON Patch ops, one per line",
        "Stream a generation. On a terminal: each field on its own line the moment it arrives, with its time "
        "since the request, then the result. Piped, or with --ndjson: RFC 6902 JSON Patch ops, one JSON object "
        "per line, each printed the moment it arrives.",
    )
    _add_generation_args(sub)
    sub.add_argument("--ndjson", action="store_true", help="print the ops as NDJSON even on a terminal")
    sub.add_argument(
        "--record",
        metavar="FILE",
        help='also write each op to FILE as {"ms": <since the request>, "op": {...}} (FakeGateway.replay plays it)',
    )
    sub.set_defaults(handler=_cmd_stream)

    from ._cli_batch import add_batch_arguments, cmd_batch

    sub = command(
        "batch",
        "run one schema over every line of a JSONL file (resumable)",
        "Generate one JSON document per line of INPUT.jsonl, appending each to OUTPUT.jsonl the moment it is done.",
    )
    add_batch_arguments(sub)
    sub.set_defaults(handler=cmd_batch)

    sub = command("schema", "check a schema, or show the JSON Schema that -s makes")
    schema_commands = sub.add_subparsers(dest="schema_command", metavar="SUBCOMMAND", required=True)
    for name, help, description, argument, handler in (
        (
            "check",
            "validate a JSON Schema file (no key, no network)",
            "Validate a JSON Schema (a file, or any form -s takes) against the Draft 2020-12 metaschema, offline.",
            ("file", "FILE", "the JSON Schema file (or any form -s takes)"),
            _cmd_schema_check,
        ),
        (
            "show",
            "print the JSON Schema a -s argument makes",
            "Print the JSON Schema that SCHEMA (a file, inline JSON, or fields like 'name, age int, "
            "bio: one sentence') makes, indented (one line with --json). No key, no network.",
            ("schema", "SCHEMA", "a JSON Schema file, inline JSON, or concise fields"),
            _cmd_schema_show,
        ),
    ):
        schema_command = schema_commands.add_parser(name, help=help, description=description, json_errors=json_errors)
        _add_global_flags(schema_command, top=False)
        schema_command.add_argument(argument[0], metavar=argument[1], help=argument[2])
        schema_command.set_defaults(handler=handler)

    sub = command(
        "demo",
        "watch fields arrive one by one (offline, no key)",
        "Stream a support-ticket triage from an in-process fake gateway and print each "
        "field the moment it arrives. Needs no key and no network.",
    )
    sub.add_argument(
        "--op-delay",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help="pause before each op; longer strings take proportionally longer (default 0.04; 0.15 with --web)",
    )
    sub.add_argument("--web", action="store_true", help="serve the demo as a web page on 127.0.0.1 until Ctrl-C")
    sub.add_argument("--port", type=_port, default=0, help="with --web: the port to serve on (default: a free one)")
    sub.set_defaults(handler=_cmd_demo)

    sub = command(
        "fake-gateway",
        "serve a fake .txt gateway on loopback until Ctrl-C",
        "Serve a fake .txt gateway (models, chat completions, patch streams) until "
        "interrupted, for trying the SDK and CLI offline.",
    )
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sub.add_argument("--port", type=_port, default=0, help="port to listen on (default: a free one)")
    sub.add_argument(
        "--op-delay", type=_non_negative_float, default=0.0, metavar="SECONDS", help="pause before each streamed op"
    )
    sub.add_argument("--api-key", metavar="KEY", help="accept only this key (default: any key)")
    sub.add_argument(
        "--model",
        action="append",
        metavar="ID",
        help=f"a model to serve (repeatable; default {' and '.join(FAKE_GATEWAY_MODELS)})",
    )
    sub.set_defaults(handler=_cmd_fake_gateway)
    return parser


# --------------------------------------------------------------------------- shared command helpers


def _key_and_source() -> tuple[str | None, str]:
    """The API key the client would use, and where it comes from (for --verbose)."""
    key = os.environ.get("DOTTXT_API_KEY", "").strip()  # blank counts as unset
    if key:
        return key, "DOTTXT_API_KEY"
    from ._credentials import credentials_path, load_api_key

    stored = load_api_key()
    return (stored, f"{credentials_path()}") if stored else (None, "nowhere")


def _client(api_key: str | None = None, source: str | None = None) -> DotTxt:
    """A DotTxt client from the environment (or for `api_key`); the key is registered for redaction."""
    if api_key is None:
        api_key, source = _key_and_source()
    if not api_key:
        from ._credentials import credentials_path

        raise CLIError(f"no API key: set DOTTXT_API_KEY, or run `dottxt login` to store one in {credentials_path()}")
    _redactor.secrets.add(api_key)
    from ._client import DotTxt

    client = DotTxt(api_key=api_key)
    log = _log()
    log.debug("base URL: %s", client.base_url)
    log.debug("API key: from %s (value redacted)", source)
    return client


def _model(args: argparse.Namespace) -> str:
    """-m/--model, else DOTTXT_MODEL; neither is a usage error (exit 2)."""
    model: str | None = args.model or os.environ.get("DOTTXT_MODEL")
    if not model:
        parser: argparse.ArgumentParser = args.subparser
        parser.error("the following arguments are required: -m/--model (or set DOTTXT_MODEL)")
    _log().debug("model: %s", model)
    return model


def _read_schema(spec: str) -> dict[str, Any]:
    """The checked JSON Schema `-s SPEC` means (file, inline JSON or concise fields); a CLIError otherwise."""
    from ._cli_schema import load_schema

    return load_schema(spec)


def _prompt(args: argparse.Namespace) -> str:
    """The PROMPT argument, else stdin when it is not a terminal; an empty prompt is an error."""
    if args.prompt is not None:
        prompt: str = args.prompt
        source = "the PROMPT argument"
    else:
        stdin = sys.stdin
        if stdin is None or stdin.isatty():
            raise CLIError("no prompt: pass it as the PROMPT argument or pipe it on stdin")
        prompt = stdin.read().strip()
        source = "stdin"
    if not prompt.strip():
        raise CLIError(f"the prompt from {source} is empty")
    return prompt


def _input(args: argparse.Namespace, prompt: str) -> str | list[dict[str, str]]:
    """The request's input: the prompt, after the --system message when one is given."""
    if args.system is None:
        return prompt
    return [{"role": "system", "content": args.system}, {"role": "user", "content": prompt}]


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _generation_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name) for name in ("temperature", "max_tokens", "seed") if getattr(args, name) is not None
    }


# What each kind of failure tells the user, first match wins: {detail} is the server's own words,
# {message} the SDK's, {model} and {base_url} what the command used.
_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    ("AuthenticationError", "the API key was rejected ({detail}); run `dottxt login` or set DOTTXT_API_KEY"),
    ("RateLimitError", "rate limited by the API ({detail}), still after retrying; wait a moment and try again"),
    ("InternalServerError", "the API failed ({detail}); try again later"),
    ("NotFoundError", "the API answered not found ({detail}); is DOTTXT_BASE_URL right? it is {base_url}"),
    ("APIStatusError", "the API refused the request ({detail})"),
    ("APITimeoutError", "timed out: {message}"),
    ("APIConnectionError", "cannot reach the API: {message}; check DOTTXT_BASE_URL and your network"),
    ("InvalidOutputError", "the model's output is not usable: {message}"),
    ("StreamDecodeError", "the stream sent something unreadable: {message}"),
)


def _explain(exc: BaseException, *, model: str | None = None, base_url: str | None = None) -> str:
    """One line telling the user what went wrong and, where there is one, what to do."""
    from . import _errors as errors
    from ._cli_compat import server_detail

    detail = server_detail(exc)  # the server's own words, its body when error.message is blank or missing
    if isinstance(exc, (errors.NotFoundError, errors.PermissionDeniedError)) and model:
        return f"model {model!r} is not available with this API key ({detail}); {_MODEL_HINT}"
    for name, text in _EXPLANATIONS:
        if isinstance(exc, getattr(errors, name)):
            message = getattr(exc, "message", str(exc))
            return text.format(detail=detail, message=message, model=model, base_url=base_url)
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- commands


def _cmd_login(args: argparse.Namespace) -> int:
    """Check the key by listing models; store it only when the API accepts it."""
    key = os.environ.get("DOTTXT_API_KEY", "").strip()
    source = "DOTTXT_API_KEY"
    if not key:
        stdin = sys.stdin
        if stdin is not None and not stdin.isatty():
            lines = stdin.read().strip().splitlines()
            key, source = (lines[0].strip() if lines else ""), "stdin"
        elif stdin is not None:
            import getpass

            try:
                key, source = getpass.getpass("dottxt API key: ").strip(), "the prompt"
            except EOFError:
                key = ""
    if not key:
        raise CLIError("no API key given: set DOTTXT_API_KEY, pipe the key on stdin, or type it at the prompt")
    from ._cli_compat import login_payload, model_records, server_detail
    from ._credentials import save_api_key
    from ._errors import AuthenticationError, DotTxtError

    start = time.perf_counter()
    with _client(key, source) as client:
        try:
            records, note = model_records(client)
        except AuthenticationError as exc:
            detail = server_detail(exc)
            raise CLIError(f"the API key from {source} was rejected ({detail}); nothing was stored") from None
        except DotTxtError as exc:
            raise CLIError(f"could not check the API key, nothing was stored: {_explain(exc)}") from None
    count = len(records)
    _log().debug("key checked in %.0f ms (%d models)", _ms_since(start), count)
    if note:
        _note(args, note)
    path = save_api_key(key)
    if args.json:
        _emit_json(login_payload(path, source, count))
    else:
        models = f"{count} model{'' if count == 1 else 's'}"
        _emit(f"Logged in: the key from {source} works ({models} available) and is stored in {path}")
    return EXIT_OK


def _cmd_logout(args: argparse.Namespace) -> int:
    """Delete the stored key; not having one is fine too."""
    from ._cli_compat import logout_payload
    from ._credentials import credentials_path, delete_api_key

    path = credentials_path()
    deleted = delete_api_key()
    if args.json:
        _emit_json(logout_payload(path, deleted))
    elif deleted:
        _emit(f"Logged out: deleted the key stored in {path}")
    else:
        _emit(f"Not logged in: no key was stored in {path}")
    if os.environ.get("DOTTXT_API_KEY"):
        _note(args, "note: DOTTXT_API_KEY is still set, so commands keep using that key")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    """One id per line, the DOTTXT_MODEL one marked; --json: the records as the server sent them."""
    from ._cli_compat import author_matches, model_records

    start = time.perf_counter()
    with _client() as client:
        try:
            records, note = model_records(client)
        except Exception as exc:
            raise CLIError(_explain(exc, base_url=client.base_url)) from exc
    _log().debug("listed %d models in %.0f ms", len(records), _ms_since(start))
    if note:
        _note(args, note)
    if args.author:
        records = [record for record in records if author_matches(record, args.author)]
    if args.json:
        _emit_json(records)
        return EXIT_OK
    default = os.environ.get("DOTTXT_MODEL")
    for record in records:
        model_id = str(record.get("id"))
        _emit(f"{model_id} * (default)" if default and model_id == default else model_id)
    if default and not args.author and all(record.get("id") != default for record in records):
        _note(args, f"note: DOTTXT_MODEL={default} is not among the models this key can use")
    return EXIT_OK


def _cmd_generate(args: argparse.Namespace) -> int:
    """Print the generated document: indented JSON, or one line with --json."""
    model = _model(args)
    schema = _read_schema(args.schema)
    prompt = _prompt(args)
    from contextlib import nullcontext

    from ._cli_live import Ticker

    with _client() as client:
        _log().debug("sending the request")
        start = time.perf_counter()
        show_time = _isatty(sys.stderr) and not args.json and not args.verbose  # --verbose logs there instead
        try:
            with Ticker(sys.stderr, "generating", start) if show_time else nullcontext():
                result = client.generate(
                    model=model, response_format=schema, input=_input(args, prompt), **_generation_options(args)
                )
        except Exception as exc:
            raise CLIError(_explain(exc, model=model, base_url=client.base_url)) from exc
    _log().debug("generated in %.0f ms", _ms_since(start))
    if args.json:  # upstream's keys: {"model", "prompt", "schema_summary", "result"}
        from ._cli_compat import generate_payload

        _emit_json(generate_payload(model, prompt, schema, result))
    else:
        _emit_json(result, pretty=True)
    return EXIT_OK


def _cmd_stream(args: argparse.Namespace) -> int:
    """Stream ops: the live view on a terminal, else one JSON line per op; check the final document."""
    model = _model(args)
    schema = _read_schema(args.schema)
    prompt = _prompt(args)
    from contextlib import ExitStack

    from ._cli_live import LiveView, OpRecorder

    log = _log()
    count = 0
    with _client() as client, ExitStack() as stack:
        from ._errors import APIConnectionError

        recorder = stack.enter_context(OpRecorder(args.record)) if args.record else None
        log.debug("sending the request")
        start = time.perf_counter()
        live = _isatty(sys.stdout) and not (args.ndjson or args.json)
        view = stack.enter_context(LiveView(sys.stdout, start)) if live else None
        try:
            with client.stream(
                model=model, response_format=schema, input=_input(args, prompt), **_generation_options(args)
            ) as stream:
                for event in stream:
                    ms = _ms_since(start)
                    if count == 0:
                        log.debug("first op after %.0f ms", ms)
                    count += 1
                    if recorder is not None:
                        recorder.write(event.op, ms)
                    if view is None:
                        _emit(_dumps(event.op, sys.stdout))
                    elif event.is_leaf:
                        view.field(event.field, event.value, ms)
                result = stream.result()  # the final document must match the schema
            if view is not None:
                view.result(result, _ms_since(start), ascii_only=_ascii_only(sys.stdout))
        except BrokenPipeError:
            raise  # stdout was closed: main() exits 141
        except Exception as exc:
            if count and isinstance(exc, APIConnectionError):
                raise CLIError(f"the stream broke after {count} ops: {exc.message}") from exc
            raise CLIError(_explain(exc, model=model, base_url=client.base_url)) from exc
    log.debug("%d ops in %.0f ms", count, _ms_since(start))
    return EXIT_OK


def _cmd_schema_check(args: argparse.Namespace) -> int:
    """Validate a schema file offline: `ok: FILE`, or an error saying where it fails."""
    _read_schema(args.file)
    if args.json:
        _emit_json({"status": "ok", "schema_file": args.file})
    else:
        _emit(f"ok: {args.file}")
    return EXIT_OK


def _cmd_schema_show(args: argparse.Namespace) -> int:
    """Print the JSON Schema a -s argument makes: indented, or one line with --json."""
    _emit_json(_read_schema(args.schema), pretty=not args.json)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    """The ticket-triage stream against an in-process fake gateway, each field timed."""
    from . import _demo as demo

    if args.web:
        from .web._demo_server import serve

        serve(port=args.port, op_delay=args.op_delay, emit=_emit)
        return EXIT_OK
    op_delay = demo.DEFAULT_OP_DELAY if args.op_delay is None else args.op_delay
    if args.json:
        arrivals = demo.run_demo(op_delay=op_delay, on_field=lambda a: _emit_json(a.as_dict()))
        _emit_json(demo.summary_dict(arrivals))
        return EXIT_OK
    for line in demo.intro(op_delay):
        _emit(line)
    arrivals = demo.run_demo(op_delay=op_delay, on_field=lambda a: _emit(demo.format_arrival(a)))
    for line in demo.outro(arrivals):
        _emit(line)
    return EXIT_OK


def _cmd_fake_gateway(args: argparse.Namespace) -> int:
    """Serve a FakeGateway until Ctrl-C, after printing how to point the SDK and CLI at it."""
    from .testing import FakeGateway

    options: dict[str, Any] = {"host": args.host, "port": args.port, "op_delay": args.op_delay}
    if args.api_key:
        options["api_key"] = args.api_key
        _redactor.secrets.add(args.api_key)
    options["models"] = tuple(args.model or FAKE_GATEWAY_MODELS)
    try:
        gateway = FakeGateway(**options)
    except OSError as exc:
        raise CLIError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    with gateway:
        if args.json:
            _emit_json(
                {"base_url": gateway.base_url, "models": list(gateway.models), "api_key_required": bool(args.api_key)}
            )
        else:
            key_hint = (
                "export DOTTXT_API_KEY=...        # the key given with --api-key"
                if args.api_key
                else "export DOTTXT_API_KEY=anything   # any key is accepted"
            )
            for line in (
                f"Fake .txt gateway serving at {gateway.base_url} (Ctrl-C to stop)",
                "",
                f"  export DOTTXT_BASE_URL={gateway.base_url}",
                f"  {key_hint}",
                f"  export DOTTXT_MODEL={gateway.models[0]}",
            ):
                _emit(line)
        _log().debug("op delay %.3f s, models %s", args.op_delay, ", ".join(gateway.models))
        while True:  # until Ctrl-C; sleep is interruptible on every platform
            time.sleep(3600)


# --------------------------------------------------------------------------- entry point


def _take_back_ctrl_c() -> Any:
    """Make Ctrl-C (SIGINT) interrupt this process even if it was started with SIGINT ignored.

    A script's background job (`dottxt fake-gateway &` in a non-interactive shell)
    inherits SIGINT as ignored, and Python then never raises KeyboardInterrupt: `kill
    -INT` would not stop the server, and no command would exit 130. Returns the handler
    to put back when `main()` returns, or None when nothing was changed.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set signal handlers
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return None
    return signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dottxt` command; returns the exit status (argparse exits 0/2 itself for help and usage)."""
    previous_sigint = _take_back_ctrl_c()
    try:
        return _main(argv)
    finally:
        if previous_sigint is not None:
            import signal

            signal.signal(signal.SIGINT, previous_sigint)


def _main(argv: Sequence[str] | None) -> int:
    started = time.time()
    arguments = list(sys.argv[1:] if argv is None else argv)
    json_mode = _json_requested(arguments)
    try:
        parser = build_parser(json_errors=json_mode)
        args = parser.parse_args(arguments)
        json_mode = bool(args.json)
        if args.command is None:  # as upstream: the help, exit 0
            parser.print_help()
            return EXIT_OK
        if args.verbose:
            _enable_verbose(started)
        status: int = args.handler(args)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (CLIError, ValueError) as exc:  # ValueError: configuration (a malformed DOTTXT_BASE_URL, ...)
        _report_error(str(exc), json_mode=json_mode)
        return EXIT_ERROR
    except OSError as exc:  # the file system: e.g. the credentials directory is not writable
        where = f": {exc.filename}" if exc.filename else ""
        _report_error(f"{exc.strerror or exc}{where}", json_mode=json_mode)
        return EXIT_ERROR
    except Exception as exc:
        from ._errors import DotTxtError

        if isinstance(exc, DotTxtError):
            _report_error(_explain(exc), json_mode=json_mode)
        else:
            _log().debug("unexpected error", exc_info=True)
            _report_error(
                f"unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", json_mode=json_mode
            )
        return EXIT_ERROR
