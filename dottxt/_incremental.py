"""Incremental JSON parser: model text pieces in, the gateway's patch ops out (SPEC section 10).

With `patch_source="sse"` the document arrives as token deltas of any size.
`IncrementalJSONParser` turns them into exactly the `add` ops the gateway would
have sent for the same document (`dottxt.patch.ops_from_document`), each op the
moment its value is complete, in linear time overall.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

from ._errors import StreamDecodeError
from ._patch import escape_segment

__all__ = ["IncrementalJSONParser"]

# Parser states: what the next significant character may be.
_VALUE = 0  # a value (document start, after ':' or after ',' in an array)
_VALUE_OR_END = 1  # a value or ']' (just after '[')
_KEY = 2  # a string key (after ',' in an object)
_KEY_OR_END = 3  # a string key or '}' (just after '{')
_COLON = 4  # ':' after a key
_AFTER_VALUE = 5  # ',' or the closing bracket of the innermost container
_DONE = 6  # the root value is complete: only whitespace may follow
_STRING = 7  # inside a string (a key or a value)
_NUMBER = 8  # inside a number
_LITERAL = 9  # inside true / false / null

#: The deepest nesting accepted: each level's pointer is as long as its depth, so deeper input
#: would cost memory quadratic in its size (20 KB of `[` would take 400 MB of pointers).
MAX_DEPTH = 2000

_WHITESPACE = " \t\n\r"  # exactly what json.loads skips
_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')  # end of string, escape, or a forbidden raw control char
_NUMBER_CHARS = re.compile(r"[0-9eE.+-]*")
_NUMBER_SYNTAX = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ESCAPABLE = frozenset('"\\/bfnrtu')
_LITERALS: dict[str, tuple[str, Any]] = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}

# The C string decoder behind json.loads (not in typeshed): decodes escapes exactly as json.loads does.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class IncrementalJSONParser:
    """Parses one JSON document fed in pieces of any size and emits the gateway's `add` ops.

    `feed(text)` returns the ops completed by that piece; `close()` ends the
    input. The op sequence equals `ops_from_document(json.loads(full_text))`:
    containers are seeded (`{}` / `[]`) when they open, strings are emitted at
    their closing quote, `true`/`false`/`null` at their last letter, numbers at
    the character after them (a number at the root only at `close()`). Array
    items get explicit indices (`/xs/0`), keys are escaped per RFC 6901. Each
    op is a fresh dict; container values are fresh empty `{}` / `[]`.

    Accepts exactly what `json.loads` accepts (strict: raw control characters
    in strings are errors), with these documented differences:

    - `NaN`, `Infinity` and `-Infinity` are rejected: they are not JSON, and
      ops carrying them could not be serialised as JSON. (A finite-syntax
      number too large for a float, e.g. `1e400`, is valid JSON and becomes
      `inf`, as with `json.loads`.)
    - Duplicate keys: one op per occurrence, so `{"a": 1, "a": 2}` gives
      `add /a 1` then `add /a 2`; folded, that is `json.loads`'s result (last wins).
    - Nesting is limited to MAX_DEPTH levels (2,000; `json.loads` stops near 1,000).

    Errors raise `StreamDecodeError` whose message gives the character position
    (offset in the whole text fed so far) and what was expected. When a piece
    completes some ops before its error, `feed` returns those ops and the
    error is raised by the next `feed()` / `close()`, so no parsed value is
    lost; once failed, every later call raises again.

    The parser does not keep the document: fold the ops with
    `dottxt.patch.apply_op` (as the gateway path does) to get it.
    Work is linear in the input: only the current token's text is kept.
    """

    def __init__(self) -> None:
        self._state = _VALUE
        self._offset = 0  # characters consumed before the current piece
        self._paths: list[str] = []  # pointer of each open container, innermost last
        self._counters: list[int] = []  # next index for arrays, -1 for objects
        self._key = ""  # escaped key of the member being parsed in the innermost object
        self._path = ""  # pointer of the string / number / literal being parsed
        self._chunks: list[str] = []  # text of the current string or number so far
        self._token_start = 0  # position of the current token's first character
        self._is_key = False
        self._escaped = False  # the current string contains a backslash escape
        self._escape_pending = False  # the previous piece ended just after a backslash
        self._literal = ""
        self._literal_value: Any = None
        self._matched = 0  # characters of the literal seen so far
        self._failure: str | None = None
        self._closed = False
        self._out: list[dict[str, Any]] = []

    @property
    def complete(self) -> bool:
        """True once the root value is whole (a number at the root only becomes whole at close())."""
        return self._state == _DONE

    def feed(self, text: str) -> list[dict[str, Any]]:
        """Consume the next piece of text; return the ops whose values it completed, in order."""
        if self._failure is not None:
            raise StreamDecodeError(self._failure)
        if self._closed:
            raise StreamDecodeError("cannot feed an IncrementalJSONParser after close()")
        start = 0
        if self._state == _STRING and not self._escape_pending:  # the fast path for most deltas of long text
            stop = _STRING_STOP.search(text)
            if stop is None:  # wholly inside the string: nothing completes
                self._chunks.append(text)
                self._offset += len(text)
                return []
            start = stop.start()  # the string's text up to here is kept; the parse goes on from the stop
            self._chunks.append(text[:start])
        out: list[dict[str, Any]] = []
        self._out = out
        try:
            self._parse(text, start)
        except StreamDecodeError as exc:
            self._failure = exc.message
            if not out:
                raise
        self._offset += len(text)
        return out

    def close(self) -> list[dict[str, Any]]:
        """End the input: return the ops it completes (a trailing root number); raise if incomplete."""
        self._check_usable()
        if self._closed:
            return []
        self._closed = True
        out: list[dict[str, Any]] = []
        self._out = out
        try:
            if self._state == _NUMBER and not self._paths:
                self._end_number()
            elif self._state != _DONE:
                self._fail(self._offset, f"unexpected end of input: expected {self._expected()}")
        except StreamDecodeError as exc:
            self._failure = exc.message
            raise
        return out

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise StreamDecodeError(self._failure)

    def _fail(self, position: int, reason: str) -> NoReturn:
        raise StreamDecodeError(f"invalid JSON at position {position}: {reason}")

    def _expected(self) -> str:
        state = self._state
        if state == _STRING:
            return f"the closing '\"' of the string that starts at position {self._token_start}"
        if state == _LITERAL:
            return f"the rest of {self._literal!r}"
        if state in (_AFTER_VALUE, _NUMBER):
            closer = "]" if self._counters[-1] >= 0 else "}"
            return f"',' or {closer!r}"
        if state == _VALUE and self._offset == 0:
            return "a JSON value (the input is empty)"
        names = {_VALUE: "a value", _VALUE_OR_END: "a value or ']'", _KEY: "a string key"}
        names.update({_KEY_OR_END: "a string key or '}'", _COLON: "':'", _DONE: "the end of the input"})
        return names[state]

    def _parse(self, text: str, i: int = 0) -> None:
        n = len(text)
        while i < n:
            state = self._state
            if state == _STRING:
                i = self._scan_string(text, i)
                continue
            if state == _NUMBER:
                i = self._scan_number(text, i)
                continue
            if state == _LITERAL:
                i = self._scan_literal(text, i)
                continue
            c = text[i]
            if c in _WHITESPACE:
                i += 1
                if i < n and text[i] in _WHITESPACE:  # a run (indentation): skip it in one search
                    match = _NOT_WHITESPACE.search(text, i)
                    i = match.start() if match else n
                continue
            if state == _AFTER_VALUE:
                in_array = self._counters[-1] >= 0
                if c == ",":
                    self._state = _VALUE if in_array else _KEY
                elif c == ("]" if in_array else "}"):
                    self._end_container()
                else:
                    expected = "',' or ']' after an array item" if in_array else "',' or '}' after a member"
                    self._fail(self._offset + i, f"expected {expected}, got {c!r}")
            elif state in (_VALUE, _VALUE_OR_END):
                if c == "]" and state == _VALUE_OR_END:
                    self._end_container()
                else:
                    i = self._start_value(text, i)
                    continue
            elif state in (_KEY, _KEY_OR_END):
                if c == '"':
                    self._start_string(i, is_key=True)
                elif c == "}" and state == _KEY_OR_END:
                    self._end_container()
                else:
                    expected = "a string key or '}'" if state == _KEY_OR_END else "a string key"
                    self._fail(self._offset + i, f"expected {expected}, got {c!r}")
            elif state == _COLON:
                if c != ":":
                    self._fail(self._offset + i, f"expected ':' after an object key, got {c!r}")
                self._state = _VALUE
            else:
                self._fail(self._offset + i, f"unexpected {c!r} after the end of the JSON document")
            i += 1

    def _emit(self, path: str, value: Any) -> None:
        self._out.append({"op": "add", "path": path, "value": value})

    def _value_done(self) -> None:
        self._state = _AFTER_VALUE if self._paths else _DONE

    def _end_container(self) -> None:
        self._paths.pop()
        self._counters.pop()
        self._value_done()

    def _start_value(self, text: str, i: int) -> int:
        """Begin the value whose first character is text[i]; return where scanning continues."""
        paths = self._paths
        if not paths:
            path = ""
        else:
            index = self._counters[-1]
            if index >= 0:
                self._counters[-1] = index + 1
                path = f"{paths[-1]}/{index}"
            else:
                path = f"{paths[-1]}/{self._key}"
        c = text[i]
        if c == '"':
            self._path = path
            self._start_string(i, is_key=False)
            return i + 1
        if (c == "{" or c == "[") and len(paths) >= MAX_DEPTH:
            self._fail(self._offset + i, f"the document is nested deeper than {MAX_DEPTH} levels")
        if c == "{":
            self._emit(path, {})
            paths.append(path)
            self._counters.append(-1)
            self._state = _KEY_OR_END
            return i + 1
        if c == "[":
            self._emit(path, [])
            paths.append(path)
            self._counters.append(0)
            self._state = _VALUE_OR_END
            return i + 1
        if c == "-" or "0" <= c <= "9":
            self._path = path
            self._token_start = self._offset + i
            self._state = _NUMBER
            return i
        literal = _LITERALS.get(c)
        if literal is None:
            hint = " (NaN and Infinity are not JSON)" if c in "NI" else ""
            self._fail(self._offset + i, f"expected a value, got {c!r}{hint}")
        self._path = path
        self._literal, self._literal_value = literal
        self._matched = 0
        self._token_start = self._offset + i
        self._state = _LITERAL
        return i

    def _start_string(self, i: int, *, is_key: bool) -> None:
        self._is_key = is_key
        self._escaped = False
        self._token_start = self._offset + i
        self._state = _STRING

    def _scan_string(self, text: str, i: int) -> int:
        """Consume string content from text[i]; return where scanning continues."""
        n = len(text)
        chunks = self._chunks
        start = i
        if self._escape_pending:  # the backslash ended the previous piece
            if text[i] not in _ESCAPABLE:
                self._fail(self._offset - 1, f"invalid escape '\\{text[i]}' in a string")
            self._escape_pending = False
            i += 1
        search = _STRING_STOP.search
        while True:
            match = search(text, i)
            if match is None:
                chunks.append(text[start:])
                return n
            j = match.start()
            c = text[j]
            if c == '"':
                chunks.append(text[start:j])
                self._end_string()
                return j + 1
            if c == "\\":
                self._escaped = True
                if j + 1 == n:
                    chunks.append(text[start:])
                    self._escape_pending = True
                    return n
                if text[j + 1] not in _ESCAPABLE:
                    self._fail(self._offset + j, f"invalid escape '\\{text[j + 1]}' in a string")
                i = j + 2
                continue
            self._fail(self._offset + j, f"raw control character {c!r} in a string (it must be escaped)")

    def _end_string(self) -> None:
        chunks = self._chunks
        raw = chunks[0] if len(chunks) == 1 else "".join(chunks)
        chunks.clear()
        value = raw
        if self._escaped:
            try:
                value = _scanstring(raw + '"', 0, True)[0]
            except json.JSONDecodeError as exc:
                self._fail(self._token_start + 1 + exc.pos, f"{exc.msg} in a string")
        if self._is_key:
            self._key = escape_segment(value)
            self._state = _COLON
        else:
            self._emit(self._path, value)
            self._value_done()

    def _scan_number(self, text: str, i: int) -> int:
        """Consume number characters from text[i]; the number ends at the first other character."""
        match = _NUMBER_CHARS.match(text, i)
        j = match.end() if match else i
        if j > i:
            self._chunks.append(text[i:j])
        if j == len(text):
            return j
        if text[j] == "I" and self._chunks == ["-"]:
            self._fail(self._token_start, "expected a number, got '-Infinity' (Infinity is not JSON)")
        self._end_number()
        return j

    def _end_number(self) -> None:
        token = "".join(self._chunks)
        self._chunks.clear()
        match = _NUMBER_SYNTAX.fullmatch(token)
        if match is None:
            self._fail(self._token_start, f"invalid number {token!r}")
        try:
            value: int | float = float(token) if match.group(1) or match.group(2) else int(token)
        except ValueError as exc:  # e.g. more digits than int() allows (sys.set_int_max_str_digits)
            self._fail(self._token_start, f"number {token[:20]}... cannot be converted: {exc}")
        self._emit(self._path, value)
        self._value_done()

    def _scan_literal(self, text: str, i: int) -> int:
        literal, matched = self._literal, self._matched
        take = min(len(literal) - matched, len(text) - i)
        if text[i : i + take] != literal[matched : matched + take]:
            bad = next(k for k in range(take) if text[i + k] != literal[matched + k])
            got = text[i + bad]
            self._fail(self._offset + i + bad, f"invalid literal: expected {literal!r}, got {got!r}")
        self._matched = matched + take
        if self._matched == len(literal):
            self._emit(self._path, self._literal_value)
            self._value_done()
        return i + take
