"""`sse_events`: a PatchStream as Server-Sent Events frames (`op`, `done`, `error`) for any WSGI server.

Field filters (`include` / `exclude`) are applied to every op and to the final
document by one rule (`_FieldFilter`), so a server-only field never reaches the
browser, whichever op or frame would have carried it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator, Iterable, Iterator
from enum import Enum
from typing import Any

from .._errors import DotTxtError
from .._patch import apply_op
from .._streaming import PatchStream

__all__ = ["SSEFrames", "sse_events"]

#: A compiled field pattern: escaped segments, None where the pattern says `*`.
_Pattern = tuple[str | None, ...]
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_MIN_SECRET_LENGTH = 8


class _Seen(Enum):
    """How much of the value at a path the filter lets through."""

    ALL = "all"  # the whole value
    SOME = "some"  # the value, minus excluded members below it
    ABOVE = "above"  # only the containers leading to included fields below it
    NONE = "none"  # nothing


class _Hidden:
    """The marker for a value the filter removes entirely."""


_HIDDEN = _Hidden()


def _escape(key: str) -> str:
    """One object key as a JSON Pointer segment (RFC 6901: `~` -> `~0`, `/` -> `~1`)."""
    return key.replace("~", "~0").replace("/", "~1")


def _segments(pointer: str) -> list[str]:
    """A JSON Pointer's segments, still escaped (`"/a~1b/0"` -> ["a~1b", "0"]); [] for the root."""
    return pointer.split("/")[1:] if pointer else []


def _compile(patterns: Iterable[str] | str | None, name: str) -> tuple[_Pattern, ...] | None:
    """Field patterns as segment tuples; a single string counts as one pattern."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled: list[_Pattern] = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"{name} takes field patterns (strings), not {pattern!r}")
        field = pattern[1:] if pattern.startswith("/") else pattern
        compiled.append(tuple(None if part == "*" else part for part in field.split("/")) if field else ())
    return tuple(compiled)


def _agrees(pattern: _Pattern, segments: tuple[str, ...]) -> bool:
    """True when pattern and segments agree on every segment both have (`*` agrees with anything)."""
    return all(want is None or want == got for want, got in zip(pattern, segments, strict=False))


class _FieldFilter:
    """`include` / `exclude` as one rule: what of the value at a path may be sent.

    A pattern covers its field and everything inside it: excluding `internal`
    hides `internal/notes` too, and including `customer` sends `customer/name`.
    The containers on the way to an included field are sent (seeded empty, as
    the gateway seeds them) so the browser can place the field.
    """

    def __init__(self, include: tuple[_Pattern, ...] | None, exclude: tuple[_Pattern, ...] | None) -> None:
        self._include = include
        self._exclude = exclude or ()

    def seen(self, segments: tuple[str, ...]) -> _Seen:
        """How much of the value at `segments` may be sent."""
        depth = len(segments)
        if any(len(p) <= depth and _agrees(p, segments) for p in self._exclude):
            return _Seen.NONE
        if self._include is not None and not any(len(p) <= depth and _agrees(p, segments) for p in self._include):
            above = any(len(p) > depth and _agrees(p, segments) for p in self._include)
            return _Seen.ABOVE if above else _Seen.NONE
        if any(len(p) > depth and _agrees(p, segments) for p in self._exclude):
            return _Seen.SOME
        return _Seen.ALL

    def prune(self, value: Any, segments: tuple[str, ...]) -> Any:
        """`value` (found at `segments`) without what may not be sent; `_HIDDEN` when nothing may.

        A hidden array item becomes `null` rather than vanishing, so the indices
        of later items (and the ops that address them) stay right.
        """
        seen = self.seen(segments)
        if seen is _Seen.ALL:
            return value
        if seen is _Seen.NONE:
            return _HIDDEN
        if isinstance(value, dict):
            kept = ((key, self.prune(item, (*segments, _escape(key)))) for key, item in value.items())
            return {key: item for key, item in kept if item is not _HIDDEN}
        if isinstance(value, list):
            items = (self.prune(item, (*segments, str(i))) for i, item in enumerate(value))
            return [None if item is _HIDDEN else item for item in items]
        return value if seen is _Seen.SOME else _HIDDEN


class _FilteredOps:
    """Rewrites ops for the browser: keeps a copy of the document to resolve `-`, parents and moved values."""

    def __init__(self, rule: _FieldFilter) -> None:
        self._rule = rule
        self._doc: Any = None

    def _parent_is_list(self, segments: list[str]) -> bool:
        """True when the pointer's parent in the document (before the op) is an array."""
        node = self._doc
        for segment in segments[:-1]:
            key = segment.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(key)
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return False
        return isinstance(node, list)

    def _in_shown_list(self, segments: list[str]) -> bool:
        """True for an array item whose array is sent: hiding the item must keep its index (as `null`)."""
        if not segments or self._rule.seen(tuple(segments[:-1])) is _Seen.NONE:
            return False
        return self._parent_is_list(segments)

    def _value_at(self, segments: list[str]) -> Any:
        node = self._doc
        for segment in segments:
            node = node[int(segment)] if isinstance(node, list) else node[segment.replace("~1", "/").replace("~0", "~")]
        return node

    def _put(self, op: dict[str, Any], segments: list[str], in_list: bool, value: Any) -> list[dict[str, Any]]:
        """`op` (an add or replace placing `value`) as far as the filter allows; a hidden array item is `null`."""
        shown = self._rule.prune(value, tuple(segments))
        if shown is _HIDDEN:
            return [{"op": "add", "path": op["path"], "value": None}] if in_list and op["op"] == "add" else []
        return [op if shown is value and "value" in op else {**op, "value": shown}]

    def _remove(self, pointer: str, segments: list[str], in_list: bool) -> list[dict[str, Any]]:
        visible = in_list or self._rule.seen(tuple(segments)) is not _Seen.NONE
        return [{"op": "remove", "path": pointer}] if visible else []

    def rewrite(self, op: dict[str, Any]) -> list[dict[str, Any]]:
        """The ops to send in place of `op` (none, one, or for a `move` two); the op is applied to the copy."""
        kind, pointer = op.get("op"), str(op.get("path", ""))
        segments = _segments(pointer)
        in_list = self._in_shown_list(segments)
        if in_list and segments[-1] == "-":
            segments[-1] = str(len(self._value_at(segments[:-1])))
        source = _segments(str(op.get("from", "")))
        from_in_list = kind == "move" and self._in_shown_list(source)
        self._doc = apply_op(self._doc, op)
        if kind in ("add", "replace"):
            return self._put(op, segments, in_list, op.get("value"))
        if kind == "remove":
            return self._remove(pointer, segments, in_list)
        if kind in ("move", "copy"):
            moved = self._value_at(segments)
            sent = self._remove(str(op["from"]), source, from_in_list) if kind == "move" else []
            return sent + self._put({"op": "add", "path": pointer}, segments, in_list, moved)
        # `test` changes nothing; it is sent only when its whole value may be.
        return [op] if self._rule.seen(tuple(segments)) is _Seen.ALL else []


def _frame(event: str, data: Any) -> str:
    """One SSE frame; JSON escapes every newline, so one `data:` line holds it."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _redacted(message: str) -> str:
    """An error message safe for a browser: bearer tokens and the environment's API key removed."""
    message = _BEARER.sub("Bearer [redacted]", message)
    key = os.environ.get("DOTTXT_API_KEY", "").strip()
    if len(key) >= _MIN_SECRET_LENGTH:
        message = message.replace(key, "[redacted]")
    return message


class SSEFrames(Iterator[str]):
    """The iterator `sse_events` returns: closing it closes the upstream stream at once, from any thread."""

    def __init__(self, stream: PatchStream[Any], rule: _FieldFilter | None) -> None:
        self._stream = stream
        self._rule = rule
        self._closed = False
        self._frames = self._generate()

    def __iter__(self) -> SSEFrames:
        return self

    def __next__(self) -> str:
        return next(self._frames)

    def close(self) -> None:
        """Close the upstream connection now (the browser left); safe from any thread, and more than once."""
        self._closed = True
        self._stream.close()
        try:
            self._frames.close()
        except ValueError:  # running on another thread: the closed stream ends it there
            pass

    def _generate(self) -> Generator[str, None, None]:
        stream, rule = self._stream, self._rule
        ops = _FilteredOps(rule) if rule is not None else None
        try:
            for event in stream:
                if self._closed:
                    return
                for op in [event.op] if ops is None else ops.rewrite(event.op):
                    yield _frame("op", op)
            if self._closed:
                return
            stream.result()
            document = stream.document
            if rule is not None:
                document = rule.prune(document, ())
            yield _frame("done", None if document is _HIDDEN else document)
        except DotTxtError as exc:
            if not self._closed:
                yield _frame("error", {"message": _redacted(str(exc)), "type": type(exc).__name__})
        except Exception as exc:  # a bug, not the server: tell the browser, then let the WSGI server log it
            yield _frame("error", {"message": "internal error while streaming", "type": type(exc).__name__})
            raise
        finally:
            stream.close()


def sse_events(
    stream: PatchStream[Any],
    *,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
) -> SSEFrames:
    """Server-Sent Events frames for `stream`: `op` per op as it arrives, then `done` or `error`.

    Hand the iterator to Flask (`Response(..., mimetype="text/event-stream")`),
    Django (`StreamingHttpResponse`) or any WSGI server. `include` / `exclude`
    take field patterns (as `on_field`: `*` is one segment); ops outside
    `include` or inside `exclude` are not sent and the `done` document is
    filtered the same way. Closing the iterator closes the upstream connection.
    """
    rule = _compile(include, "include"), _compile(exclude, "exclude")
    return SSEFrames(stream, None if rule == (None, None) else _FieldFilter(*rule))
