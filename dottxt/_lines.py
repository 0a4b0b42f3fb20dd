"""Lines and JSON: response bytes cut at each `\\n` the moment it arrives, and strict JSON decoding.

No I/O here. The cut is made on bytes, so a UTF-8 sequence split across reads
or a raw U+2028 inside a JSON string is harmless; lines longer than the limit
are refused while they are still arriving.
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any, NoReturn

from ._errors import StreamDecodeError, shorten

__all__ = ["DEFAULT_MAX_LINE_BYTES", "LineReader", "loads"]

#: The longest line a stream accepts; a longer one is refused while it is still arriving.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


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

    def _too_long(self, line: bytes | bytearray) -> NoReturn:
        raise StreamDecodeError(
            f"line longer than the limit of {self.max_line_bytes} bytes", line=shorten(bytes(line[:800]))
        )


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_not_json)
_scan_once = json.scanner.make_scanner(_decoder)  # type: ignore[arg-type]


def loads(text: str | bytes) -> Any:
    """Strict JSON, as every path decodes what a server sends.

    ValueError (never RecursionError or UnicodeError) for anything that is not
    JSON: `NaN`/`Infinity`, nesting deeper than the parser's limit, bytes that
    are not UTF-8. The C scanner is called directly; `json` words the errors.
    """
    try:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            return _decoder.decode(text)  # leading whitespace, or invalid: let json say which
        if end != len(text) and not text[end:].isspace():
            return _decoder.decode(text)  # raises "Extra data"
        return value
    except RecursionError:
        raise ValueError("JSON nested deeper than the parser's limit") from None
