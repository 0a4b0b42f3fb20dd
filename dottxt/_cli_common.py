"""What every `dottxt` command shares: exit codes, output on stdout/stderr, errors in one line, the client.

Standard library only at import time, so `dottxt --version` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from ._logging import enable, redactor

__all__ = [
    "PROG",
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "FAKE_GATEWAY_MODELS",
    "MODEL_HINT",
    "CLIError",
    "one_line",
    "ascii_only",
    "dumps",
    "emit",
    "emit_json",
    "stderr_note",
    "redact_secrets",
    "report_error",
    "silence_stdout",
    "secret_filter",
    "cli_log",
    "enable_verbose",
    "ms_since",
    "key_and_source",
    "make_client",
    "model_arg",
    "read_schema",
    "prompt_arg",
    "chat_input",
    "isatty",
    "generation_options",
    "explain",
]

if TYPE_CHECKING:
    from ._client import DotTxt


PROG = "dottxt"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report after Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `git log | head -1` reports under `set -o pipefail`

#: What a bare `dottxt fake-gateway` serves: the fake's own model, and the one the docs' snippets use.
FAKE_GATEWAY_MODELS = ("dottxt/fake-model", "openai/gpt-oss-20b")
MODEL_HINT = "run `dottxt models` to list the models your key can use, then set DOTTXT_MODEL or pass --model"


class CLIError(Exception):
    """A failure reported as one line on stderr (`dottxt: error: ...`), exit status 1."""


# --------------------------------------------------------------------------- output


def one_line(text: str) -> str:
    """Collapse a message to one line: an error is always exactly one line on stderr."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def ascii_only(stream: TextIO) -> bool:
    """True when `stream` cannot take raw UTF-8, so JSON must escape non-ASCII characters."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return encoding != "utf8"


def dumps(value: Any, stream: TextIO, *, pretty: bool = False) -> str:
    """JSON text for `stream`: one line, or indented when `pretty`.

    Text UTF-8 cannot encode (a lone surrogate escape a model produced) stays escaped, as it came.
    """
    text = json.dumps(value, indent=2 if pretty else None, ensure_ascii=ascii_only(stream))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, indent=2 if pretty else None, ensure_ascii=True)
    return text


def emit(text: str) -> None:
    """Write one line to stdout and flush it at once (stdout is block-buffered when piped)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_json(value: Any, *, pretty: bool = False) -> None:
    """Write one JSON value to stdout, flushed."""
    emit(dumps(value, sys.stdout, pretty=pretty))


def stderr_note(args: argparse.Namespace, text: str) -> None:
    """An informational line on stderr, left out in --json mode so stderr stays machine-readable."""
    if not getattr(args, "json", False):
        sys.stderr.write(f"{PROG}: {text}\n")
        sys.stderr.flush()


#: Secrets at least this long are blanked out of error messages; a shorter one would garble ordinary words.
_MIN_REDACTED_LENGTH = 8


def redact_secrets(text: str) -> str:
    """`text` with the API key (registered, or in DOTTXT_API_KEY) replaced by `***`.

    A server may echo the key it rejected ("Incorrect API key provided: sk-..."); the
    CLI never prints it.
    """
    secrets = {*secret_filter.secrets, os.environ.get("DOTTXT_API_KEY", "").strip()}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_REDACTED_LENGTH:
            text = text.replace(secret, "***")
    return text


def report_error(message: str, *, json_mode: bool) -> None:
    """Print an error on stderr: `dottxt: error: ...`, or `{"error": {"message": ...}}` with --json.

    The message is one line, and holds no API key even when the server echoed it.
    """
    message = redact_secrets(one_line(message))
    stderr = sys.stderr
    if stderr is None:
        return
    try:
        if json_mode:
            stderr.write(dumps({"error": {"message": message}}, stderr) + "\n")
        else:
            stderr.write(f"{PROG}: error: {message}\n")
        stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit status is all that is left


def silence_stdout() -> None:
    """After EPIPE, point stdout at devnull so the interpreter's final flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# --------------------------------------------------------------------------- verbose diagnostics


secret_filter = redactor  # the SDK's one key-redacting log filter (dottxt._logging)


def cli_log() -> logging.Logger:
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


def enable_verbose(origin: float) -> None:
    """Send the SDK's ("dottxt") and urllib3's diagnostics to stderr, key redacted, timed from `origin`."""
    import logging

    enable(
        logging.DEBUG, stream=sys.stderr, fmt=f"{PROG}: [%(since_start)5.0f ms] %(message)s", stamp=_SinceStart(origin)
    )


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


# --------------------------------------------------------------------------- shared command helpers


def key_and_source() -> tuple[str | None, str]:
    """The API key the client would use, and where it comes from (for --verbose)."""
    key = os.environ.get("DOTTXT_API_KEY", "").strip()  # blank counts as unset
    if key:
        return key, "DOTTXT_API_KEY"
    from ._credentials import credentials_path, load_api_key

    stored = load_api_key()
    return (stored, f"{credentials_path()}") if stored else (None, "nowhere")


def make_client(api_key: str | None = None, source: str | None = None) -> DotTxt:
    """A DotTxt client from the environment (or for `api_key`); the key is registered for redaction."""
    if api_key is None:
        api_key, source = key_and_source()
    if not api_key:
        from ._credentials import credentials_path

        raise CLIError(f"no API key: set DOTTXT_API_KEY, or run `dottxt login` to store one in {credentials_path()}")
    secret_filter.secrets.add(api_key)
    from ._client import DotTxt

    client = DotTxt(api_key=api_key)
    log = cli_log()
    log.debug("base URL: %s", client.base_url)
    log.debug("API key: from %s (value redacted)", source)
    return client


def model_arg(args: argparse.Namespace) -> str:
    """-m/--model, else DOTTXT_MODEL; neither is a usage error (exit 2)."""
    model: str | None = args.model or os.environ.get("DOTTXT_MODEL")
    if not model:
        parser: argparse.ArgumentParser = args.subparser
        parser.error("the following arguments are required: -m/--model (or set DOTTXT_MODEL)")
    cli_log().debug("model: %s", model)
    return model


def read_schema(spec: str) -> dict[str, Any]:
    """The checked JSON Schema `-s SPEC` means (file, inline JSON or concise fields); a CLIError otherwise."""
    from ._cli_schema import load_schema

    return load_schema(spec)


def prompt_arg(args: argparse.Namespace) -> str:
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


def chat_input(args: argparse.Namespace, prompt: str) -> str | list[dict[str, str]]:
    """The request's input: the prompt, after the --system message when one is given."""
    if args.system is None:
        return prompt
    return [{"role": "system", "content": args.system}, {"role": "user", "content": prompt}]


def isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
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


def explain(exc: BaseException, *, model: str | None = None, base_url: str | None = None) -> str:
    """One line telling the user what went wrong and, where there is one, what to do."""
    from . import _errors as errors
    from ._cli_compat import server_detail

    detail = server_detail(exc)  # the server's own words, its body when error.message is blank or missing
    if isinstance(exc, (errors.NotFoundError, errors.PermissionDeniedError)) and model:
        return f"model {model!r} is not available with this API key ({detail}); {MODEL_HINT}"
    for name, text in _EXPLANATIONS:
        if isinstance(exc, getattr(errors, name)):
            message = getattr(exc, "message", str(exc))
            return text.format(detail=detail, message=message, model=model, base_url=base_url)
    return str(exc) or type(exc).__name__
