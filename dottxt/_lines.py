"""Lines: response bytes cut at each `\\n` the moment it arrives, and each line decoded as JSON.

The cut is made on bytes, so a UTF-8 sequence split across reads or a raw
U+2028 inside a JSON string is harmless; lines longer than the limit are
refused while they are still arriving.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.exceptions

from ._errors import APIConnectionError, APITimeoutError, StreamDecodeError
from ._transport import CLOSED_BY_CLIENT

__all__ = ["DEFAULT_MAX_LINE_BYTES", "LineReader", "iter_lines", "read_chunks", "read_error", "decode_line", "shorten"]

#: The longest line a stream accepts; a longer one is refused while it is still arriving.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024
_SHOWN_LINE = 200


class LineReader:
    """Cuts a byte stream into lines as each `\\n` arrives; refuses lines over `max_line_bytes`.

    Lines come out as bytes without the `\\n` (a trailing `\\r` is left for the
    JSON decoder, which treats it as whitespace); `finish()` returns a final
    line that had no `\\n`.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data`. Raises StreamDecodeError for an over-long line."""
        lines: list[bytes] = []
        start = 0
        newline = data.find(b"\n")
        while newline >= 0:
            if self._partial:
                self._partial += data[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:newline]
            if len(line) > self.max_line_bytes:
                self._too_long(line)
            lines.append(line)
            start = newline + 1
            newline = data.find(b"\n", start)
        if start < len(data):
            self._partial += data[start:]
            if len(self._partial) > self.max_line_bytes:
                self._too_long(self._partial)
        return lines

    def finish(self) -> bytes | None:
        """The last line, when the body ended without a final `\\n`."""
        if not self._partial:
            return None
        line = bytes(self._partial)
        self._partial.clear()
        return line

    def _too_long(self, line: bytes | bytearray) -> None:
        raise StreamDecodeError(
            f"line longer than the limit of {self.max_line_bytes} bytes",
            line=shorten(bytes(line[:_SHOWN_LINE])),
        )


def iter_lines(response: requests.Response, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[bytes]:
    """Yield the body's lines as each one completes (a last line without `\\n` included)."""
    reader = LineReader(max_line_bytes)
    for chunk in read_chunks(response):
        yield from reader.feed(chunk)
    last = reader.finish()
    if last is not None:
        yield last


def read_chunks(response: requests.Response, size: int = _READ_SIZE) -> Iterator[bytes]:
    """Yield body bytes as soon as any arrive (read1: one chunk, never waiting to fill a buffer).

    A response that `client.close()` cut short raises urllib3's ProtocolError,
    like any dropped connection: its read may end as if the body were complete,
    or fail inside http.client (ValueError, AttributeError) as the other thread
    closes it.
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    while True:
        try:
            data = read1(size) if read1 is not None else raw.read(size)
        except (ValueError, AttributeError) as exc:
            raise urllib3.exceptions.ProtocolError(f"the response was closed while being read ({exc})") from exc
        if not data:
            if getattr(response, CLOSED_BY_CLIENT, False):
                raise urllib3.exceptions.ProtocolError("the client was closed while the response was being read")
            return
        yield data


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def decode_line(line: bytes) -> Any:
    """Decode one JSON line: the C scanner directly, `json.loads` only to word an error."""
    text = line.decode("utf-8")
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # leading whitespace, or invalid: let json say which
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)  # raises "Extra data"
    return value


def shorten(line: bytes | str) -> str:
    """A line for an error message: decoded leniently, cut to a readable length."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, (bytes, bytearray)) else line
    return text if len(text) <= _SHOWN_LINE else text[: _SHOWN_LINE - 3] + "..."


def read_error(exc: Exception, progress: str = "", document: Any = None) -> Exception:
    """The SDK error for a failure while reading a streamed body; other exceptions come back unchanged.

    `progress` (say, " after 12 ops") is added to the message; `document` is what had arrived.
    """
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        return APITimeoutError(f"the stream went silent for longer than the read timeout{progress}", document=document)
    if isinstance(exc, (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError)):
        return APIConnectionError(f"the connection dropped mid-stream{progress} ({exc})", document=document)
    return exc
