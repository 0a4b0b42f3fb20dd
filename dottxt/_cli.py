"""The `dottxt` command line: the parser and the entry point.

What each command does is in `_cli_commands.py` (and `_cli_batch.py`), what they share in
`_cli_common.py`. Top-level imports are the standard library and those light modules only, so
`dottxt --version` and `dottxt --help` start fast; each command imports the client lazily.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from ._cli_commands import (
    cmd_demo,
    cmd_fake_gateway,
    cmd_generate,
    cmd_login,
    cmd_logout,
    cmd_models,
    cmd_schema_check,
    cmd_schema_show,
    cmd_stream,
)
from ._cli_common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    FAKE_GATEWAY_MODELS,
    PROG,
    CLIError,
    cli_log,
    enable_verbose,
    explain,
    report_error,
    silence_stdout,
)
from ._version import __version__

__all__ = ["main", "build_parser"]


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
            report_error(f"{message} (see `{self.prog} --help`)", json_mode=True)
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
    sub.set_defaults(handler=cmd_login)

    sub = command("logout", "delete the stored API key")
    sub.set_defaults(handler=cmd_logout)

    sub = command("models", "list the models your key can use")
    sub.add_argument(
        "--author",
        metavar="NAME",
        help="only models by NAME (their author field, else the part before '/' or owned_by)",
    )
    sub.set_defaults(handler=cmd_models)

    sub = command(
        "generate",
        "generate one JSON document matching a schema",
        "Generate one JSON document matching SCHEMA and print it (indented; one line with --json). "
        "On a terminal, the time waited so far is shown on stderr.",
    )
    _add_generation_args(sub)
    sub.set_defaults(handler=cmd_generate)

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
    sub.set_defaults(handler=cmd_stream)

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
            cmd_schema_check,
        ),
        (
            "show",
            "print the JSON Schema a -s argument makes",
            "Print the JSON Schema that SCHEMA (a file, inline JSON, or fields like 'name, age int, "
            "bio: one sentence') makes, indented (one line with --json). No key, no network.",
            ("schema", "SCHEMA", "a JSON Schema file, inline JSON, or concise fields"),
            cmd_schema_show,
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
    sub.set_defaults(handler=cmd_demo)

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
    sub.set_defaults(handler=cmd_fake_gateway)
    return parser


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
            enable_verbose(started)
        status: int = args.handler(args)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except (CLIError, ValueError) as exc:  # ValueError: configuration (a malformed DOTTXT_BASE_URL, ...)
        report_error(str(exc), json_mode=json_mode)
        return EXIT_ERROR
    except OSError as exc:  # the file system: e.g. the credentials directory is not writable
        where = f": {exc.filename}" if exc.filename else ""
        report_error(f"{exc.strerror or exc}{where}", json_mode=json_mode)
        return EXIT_ERROR
    except Exception as exc:
        from ._errors import DotTxtError

        if isinstance(exc, DotTxtError):
            report_error(explain(exc), json_mode=json_mode)
        else:
            cli_log().debug("unexpected error", exc_info=True)
            report_error(
                f"unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", json_mode=json_mode
            )
        return EXIT_ERROR
