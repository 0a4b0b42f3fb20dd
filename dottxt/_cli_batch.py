"""`dottxt batch`: one schema over every line of a JSONL file; one output line per finished input; resumable.

INPUT lines are JSON strings (the prompt) or objects with `input` (a prompt or a
list of messages) and an optional `id` (default: the line number). Each finished
input appends `{"id", "result"}` or `{"id", "error": {"type", "message"}}` to
OUTPUT, flushed at once, so a crash or Ctrl-C loses no finished work and a rerun
skips the ids already there. Failures that are not about one input (the key is
refused, the model does not exist, the server cannot be reached) stop the run
instead of being written once per input, so that a rerun sends those inputs again.

Imported by `dottxt._cli` when it builds its parser: standard library only at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ._cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    emit_json,
    explain,
    make_client,
    model_arg,
    one_line,
    read_schema,
    redact_secrets,
    report_error,
    stderr_note,
)
from ._cli_schema import SCHEMA_HELP

__all__ = ["add_batch_arguments", "cmd_batch", "read_inputs", "read_finished", "BadInputLine", "Record"]

DEFAULT_CONCURRENCY = 8
#: Seconds between two redraws of the progress bar.
_REDRAW_EVERY = 0.1


class BadInputLine(Exception):
    """A line of the input file that is not a prompt: reported in one line naming it, exit status 2."""


@dataclass(frozen=True)
class Record:
    """One input line: its id (given, or the line number), what to send, and where it was."""

    id: str | int
    input: str | list[dict[str, Any]]
    line: int


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The `dottxt batch` options and arguments."""
    parser.add_argument("-m", "--model", help="model id (default: $DOTTXT_MODEL)")
    parser.add_argument("-s", "--schema", required=True, metavar="SCHEMA", help=SCHEMA_HELP)
    parser.add_argument("input", metavar="INPUT.jsonl", help="one prompt per line: a JSON string or {id, input}")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT.jsonl", help="appended to; ids already in it are skipped"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests at once at most (default {DEFAULT_CONCURRENCY}; fewer for a while after a 429)",
    )
    parser.add_argument("--system", metavar="TEXT", help="a system message sent before every input")


# --------------------------------------------------------------------------- the files


def _id_key(value: Any) -> str:
    """Ids compare as JSON values: 1 and "1" are different ids."""
    return json.dumps(value, sort_keys=True)


def _record(data: Any, line: int) -> Record:
    """One parsed input line as a Record; BadInputLine saying what is wrong with it."""
    if isinstance(data, str):
        data = {"input": data}
    if not isinstance(data, dict):
        kind = {list: "an array", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise BadInputLine(f"is {kind}, not a prompt string or an object with 'input'")
    if "input" not in data:
        raise BadInputLine("has no 'input'")
    prompt = data["input"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise BadInputLine("has an empty prompt")
    elif not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt)):
        raise BadInputLine("has an 'input' that is neither a string nor a non-empty list of message objects")
    record_id = data.get("id", line)
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise BadInputLine(f"has an 'id' that is neither a string nor an integer: {json.dumps(record_id)[:60]}")
    return Record(record_id, prompt, line)


def read_inputs(path: str) -> list[Record]:
    """Every input of the file, checked before anything is sent; blank lines are skipped.

    CLIError when the file cannot be read; BadInputLine naming the first bad line.
    """
    try:
        with open(path, "rb") as handle:
            raw_lines = handle.read().split(b"\n")
    except OSError as exc:  # missing, a directory, unreadable: the system's words say which
        raise CLIError(f"cannot read input file {path}: {exc.strerror or exc}") from None
    records: list[Record] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadInputLine(f"is not JSON ({exc.msg}, column {exc.colno})") from None
            record = _record(data, number)
            key = _id_key(record.id)
            if key in seen:
                raise BadInputLine(f"repeats the id {key} of line {seen[key]}")
        except UnicodeDecodeError:
            raise BadInputLine(f"{path}, line {number}: is not UTF-8 text") from None
        except BadInputLine as exc:
            raise BadInputLine(f"{path}, line {number}: {exc}") from None
        seen[key] = number
        records.append(record)
    return records


def read_finished(path: str) -> tuple[dict[str, bool], bool]:
    """The ids OUTPUT already holds (id key -> succeeded), and whether an incomplete last line was cut off.

    A run stopped mid-write (a crash, not Ctrl-C) can leave a last line without
    its newline: it is no finished input, so it is removed, and the rerun sends it again.
    """
    try:
        with open(path, "r+b") as handle:
            data = handle.read()
            cut = bool(data) and not data.endswith(b"\n")
            if cut:
                data = data[: data.rfind(b"\n") + 1]
                handle.truncate(len(data))
    except FileNotFoundError:
        return {}, False
    except OSError as exc:
        raise CLIError(f"cannot read output file {path}: {exc.strerror or exc}") from None
    finished: dict[str, bool] = {}
    for raw in data.split(b"\n"):
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # blank, or not ours: it names no finished input
        if isinstance(line, dict) and "id" in line and ("result" in line or "error" in line):
            finished[_id_key(line["id"])] = "result" in line
    return finished, cut


# --------------------------------------------------------------------------- progress


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A one-line progress bar on a terminal: done/total, errors, rate, ETA; redrawn at most 10 times a second."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.start = time.monotonic()
        self._drawn_at = -1.0

    def update(self, done: int, errors: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn_at < _REDRAW_EVERY:
            return
        self._drawn_at = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        eta = _clock((self.total - done) / rate) if rate > 0 else "?"
        width = 24
        filled = width * done // self.total if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r[{bar}] {done}/{self.total}  {errors} error{'' if errors == 1 else 's'}  {rate:.1f}/s  ETA {eta} "
        )
        self.stream.flush()

    def close(self, done: int, errors: int) -> None:
        self.update(done, errors, force=True)
        self.stream.write("\n")
        self.stream.flush()


# --------------------------------------------------------------------------- the command


def _stops_the_run(exc: BaseException) -> bool:
    """A failure about the whole run, not one input: every other input would end the same way."""
    from . import _errors as errors

    if isinstance(exc, errors.APITimeoutError):
        return False  # a long generation can time out where others do not
    return isinstance(
        exc,
        (errors.AuthenticationError, errors.PermissionDeniedError, errors.NotFoundError, errors.APIConnectionError),
    )


def _output_line(record: Record, value: Any, error: BaseException | None) -> dict[str, Any]:
    if error is None:
        return {"id": record.id, "result": value}
    message = redact_secrets(one_line(str(error) or type(error).__name__))
    return {"id": record.id, "error": {"type": type(error).__name__, "message": message}}


def cmd_batch(args: argparse.Namespace) -> int:
    """Run every input of INPUT not yet in OUTPUT; exit 0 all succeeded, 1 some failed, 2 a bad input line."""
    model = model_arg(args)
    schema = read_schema(args.schema)
    try:
        records = read_inputs(args.input)
    except BadInputLine as exc:
        report_error(str(exc), json_mode=args.json)
        return EXIT_USAGE
    finished, cut = read_finished(args.output)
    if cut:
        stderr_note(args, f"removed an incomplete last line from {args.output}; that input is sent again")
    todo = [record for record in records if _id_key(record.id) not in finished]
    earlier_failures = sum(1 for r in records if finished.get(_id_key(r.id)) is False)
    if len(todo) < len(records):
        stderr_note(args, f"resuming: {len(records) - len(todo)} of {len(records)} inputs are already in {args.output}")
    stderr = sys.stderr
    progress = Progress(len(todo), stderr) if todo and stderr is not None and stderr.isatty() else None
    succeeded = failed = 0
    with make_client() as client, open(args.output, "a", encoding="utf-8") as out:
        items = client.generate_many(
            [record.input for record in todo],
            model=model,
            response_format=schema,
            concurrency=args.concurrency,
            system=args.system,
        )
        try:
            for item in items:
                if item.error is not None and _stops_the_run(item.error):
                    raise CLIError(explain(item.error, model=model, base_url=client.base_url))
                out.write(json.dumps(_output_line(todo[item.index], item.value, item.error), ensure_ascii=False) + "\n")
                out.flush()
                succeeded, failed = (succeeded + 1, failed) if item.ok else (succeeded, failed + 1)
                if progress is not None:
                    progress.update(succeeded + failed, failed)
        finally:
            items.close()  # also after Ctrl-C: no request left running, every thread ended
            if progress is not None:
                progress.close(succeeded + failed, failed)
    total_failed = failed + earlier_failures
    summary = {
        "status": "ok" if not total_failed else "failed",
        "output": os.fspath(args.output),
        "inputs": len(records),
        "succeeded": succeeded,
        "failed": failed,
        "skipped": len(records) - len(todo),
        "failed_earlier": earlier_failures,
    }
    if args.json:
        emit_json(summary)
    else:
        earlier = f" ({earlier_failures} more failed in an earlier run)" if earlier_failures else ""
        stderr_note(
            args,
            f"{succeeded} succeeded, {failed} failed{earlier}, {summary['skipped']} skipped; results in {args.output}",
        )
    return EXIT_ERROR if total_failed else EXIT_OK
