"""What `dottxt stream` and `dottxt generate` show a person at a terminal, and `stream --record`.

- `Ticker`: one status line (`waiting 1.4 s`) redrawn by a thread that waits on an
  Event with a timeout (never a busy loop) and ends when the `with` block does; lines
  printed through it appear above the status line.
- `LiveView`: each field of a patch stream on its own line the moment it arrives, with
  its time since the request, then the validated result.
- `OpRecorder`: `{"ms": <since the request>, "op": {...}}` per op, for `FakeGateway.replay`.

Plain ANSI escapes (erase line, bold, dim): no terminal library, so nothing is added
to startup or to install_requires. `NO_COLOR` turns the styling off.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from types import TracebackType
from typing import IO, Any, TextIO

__all__ = ["Ticker", "LiveView", "OpRecorder", "shorten_value"]

_ERASE_LINE = "\r\x1b[2K"
_TICK_SECONDS = 0.1
_NAME_WIDTH = 12
_TIME_WIDTH = 9  # "  12345 ms"


def _style(code: str, text: str) -> str:
    """`text` in an SGR style (1 bold, 2 dim), or bare when NO_COLOR is set."""
    return text if os.environ.get("NO_COLOR") else f"\x1b[{code}m{text}\x1b[0m"


class Ticker:
    """A status line at the bottom of a terminal stream: `label 1.4 s`, redrawn every tenth of a second.

    `with Ticker(sys.stderr, "generating", start):` draws it until the block ends, then
    erases it; `print(line)` writes a line above it. All writes to `stream` go through one lock.
    """

    def __init__(self, stream: TextIO, label: str, start: float) -> None:
        self._stream = stream
        self.label = label
        self._start = start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dottxt-ticker", daemon=True)

    def __enter__(self) -> Ticker:
        self._draw()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop redrawing and erase the status line (idempotent); later `print`s are plain lines."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self._write(_ERASE_LINE)

    def print(self, line: str) -> None:
        """Write `line` above the status line, which is redrawn under it (while the ticker runs)."""
        with self._lock:
            self._write(f"{_ERASE_LINE}{line}\n")
        if not self._stopped:
            self._draw()

    def _status(self) -> str:
        return _style("2", f"{self.label} {time.perf_counter() - self._start:.1f} s")

    def _draw(self) -> None:
        with self._lock:
            self._write(_ERASE_LINE + self._status())

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            self._stop.set()  # the terminal is gone: nothing left to draw on

    def _run(self) -> None:
        while not self._stop.wait(_TICK_SECONDS):
            self._draw()


def shorten_value(value: Any, width: int) -> str:
    """A field's value on one line of at most `width` characters: short strings bare, the rest as JSON."""
    text = value if isinstance(value, str) and value and "\n" not in value and len(value) <= 24 else None
    if text is None:
        text = json.dumps(value, ensure_ascii=False)
    if len(text) > width:
        text = text[: max(width - 3, 1)] + "..."
    return text


class LiveView:
    """The terminal view of a patch stream: fields as they arrive (name, value, ms), then the result."""

    def __init__(self, stream: TextIO, start: float) -> None:
        self._stream = stream
        self._start = start
        self._fields = 0
        self._ticker = Ticker(stream, "waiting for the first field", start)

    def __enter__(self) -> LiveView:
        self._ticker.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._ticker.__exit__(exc_type, exc, tb)

    def field(self, name: str, value: Any, ms: float) -> None:
        """One leaf of the document arrived: print it on its own line."""
        self._fields += 1
        self._ticker.label = f"{self._fields} field{'' if self._fields == 1 else 's'}, writing"
        width = shutil.get_terminal_size().columns
        shown = shorten_value(value, max(width - _NAME_WIDTH - _TIME_WIDTH - 4, 10))
        label = name if len(name) <= _NAME_WIDTH else name[: _NAME_WIDTH - 1] + "~"
        room = max(width - _NAME_WIDTH - _TIME_WIDTH - 4, len(shown))
        self._ticker.print(f"  {_style('1', f'{label:<{_NAME_WIDTH}}')} {shown:<{room}} {_style('2', f'{ms:6.0f} ms')}")

    def result(self, document: Any, ms: float, *, ascii_only: bool) -> None:
        """The stream ended and the document matched the schema: print it whole."""
        fields = f"{self._fields} field{'' if self._fields == 1 else 's'}"
        self._ticker.stop()
        self._ticker.print(_style("2", f"-- {fields} in {ms:.0f} ms; the result matches the schema:"))
        for line in json.dumps(document, indent=2, ensure_ascii=ascii_only).splitlines():
            self._ticker.print(line)


class OpRecorder:
    """Writes each op to a file as `{"ms": <since the request>, "op": {...}}`, one line each, flushed.

    A context manager: the file is closed however the stream ends, keeping the ops that arrived.
    """

    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by __exit__)

    def __enter__(self) -> OpRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()

    def write(self, op: dict[str, Any], ms: float) -> None:
        self._file.write(json.dumps({"ms": round(ms, 1), "op": op}, ensure_ascii=False) + "\n")
        self._file.flush()
