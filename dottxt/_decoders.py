"""Decoders: a streamed body's bytes -> the items a stream yields. No I/O, so sync and async share them.

- `PatchLineDecoder`: NDJSON lines -> checked RFC 6902 ops (the gateway's patch stream).
- `SSEDecoder`: Server-Sent Events framing -> each event's `data` (comments and other fields skipped).
- `chunk_payload`: one SSE event's data -> an OpenAI chat chunk (a dict), or None for `[DONE]`.
- `SSEPatchDecoder`: chat chunks -> the gateway's ops, derived from the token deltas (SPEC section 10).
- `ChatChunkDecoder`: chat chunks as records, for `chat.completions.create(stream=True)`.

The patch decoders hand each op to the `DocumentBuilder` and yield its event.

Every decoder raises the SDK's errors itself (`StreamDecodeError`, or `PatchStreamError`
for an `error` event the server sent); the stream adds `.document` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic_core import from_json as _from_json

from ._errors import (
    APIConnectionError,
    PatchError,
    PatchStreamError,
    StreamDecodeError,
    error_member_message,
    shorten,
)
from ._events import DocumentBuilder, PatchEvent
from ._incremental import IncrementalJSONParser
from ._lines import DEFAULT_MAX_LINE_BYTES, LineReader, loads
from ._types import ChatCompletionChunk

__all__ = ["DONE", "ChatChunkDecoder", "PatchLineDecoder", "SSEDecoder", "SSEPatchDecoder", "chunk_payload", "check_op"]

#: The data OpenAI-compatible servers send as their last event.
DONE = "[DONE]"

_NEEDS_VALUE = frozenset({"add", "replace", "test"})
_NEEDS_FROM = frozenset({"move", "copy"})
_KNOWN_OPS = _NEEDS_VALUE | _NEEDS_FROM | {"remove"}


def check_op(data: Any) -> dict[str, Any] | None:
    """The op in a decoded line; None for objects without `op` (skipped). ValueError for anything else."""
    if type(data) is dict and data.get("op") == "add" and type(data.get("path")) is str and "value" in data:
        return data  # the shape of nearly every line: checked in one expression
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {_json_type(data)}")
    kind = data.get("op")
    if kind is None:
        return None
    if not isinstance(kind, str) or kind not in _KNOWN_OPS:
        raise ValueError(f"unknown op {shorten(repr(kind), 60)}")
    if not isinstance(data.get("path"), str):
        raise ValueError(f"{kind!r} op has no string 'path'")
    if kind in _NEEDS_VALUE and "value" not in data:
        raise ValueError(f"{kind!r} op has no 'value'")
    if kind in _NEEDS_FROM and not isinstance(data.get("from"), str):
        raise ValueError(f"{kind!r} op has no string 'from'")
    return data


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _stream_error(error: Any, body: str, status_code: int, request_id: str | None) -> PatchStreamError:
    """The PatchStreamError for an `error` member the server sent inside a 2xx stream."""
    return PatchStreamError(
        status_code,
        shorten(body, 1 << 16),
        message=f"the server reported an error mid-stream: {error_member_message(error)}",
        request_id=request_id,
    )


class _EventDecoder:
    """What both patch decoders hold: the builder their ops go to, and the response they report errors for."""

    def __init__(
        self,
        builder: DocumentBuilder,
        status_code: int,
        request_id: str | None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._builder = builder
        self._status_code = status_code
        self._request_id = request_id
        self.done = False  # True once no more bytes are wanted
        self._start(max_line_bytes)

    def _start(self, max_line_bytes: int) -> None:
        """What the decoder itself needs, made with the rest (each decoder says)."""


class PatchLineDecoder(_EventDecoder):
    """The gateway's NDJSON patch stream: each complete line -> its op -> the event the builder makes of it.

    `line_number` counts every line (blank ones too). An object with `error` and
    no `op` is the gateway reporting a failure; other objects without `op` are skipped.
    """

    def _start(self, max_line_bytes: int) -> None:
        self._lines = LineReader(max_line_bytes)
        self.line_number = 0

    def feed(self, data: bytes) -> Iterator[PatchEvent]:
        """The events for the lines `data` completes, each as soon as it is decoded."""
        apply = self._builder.apply
        try:
            lines = self._lines.feed(data)
        except StreamDecodeError as exc:  # a line over the limit, still arriving: it is the next one
            exc.line_number = self.line_number + 1
            raise
        for line in lines:
            op = self._op(line)
            if op is not None:
                try:
                    yield apply(op, line)
                except PatchError as exc:
                    raise self._error(f"cannot be applied: {shorten(str(exc))}", line) from None

    def finish(self) -> Iterator[PatchEvent]:
        """The event for a last line that had no `\\n`."""
        last = self._lines.finish()
        if last is not None:
            yield from self.feed(last + b"\n")

    def _op(self, line: bytes) -> dict[str, Any] | None:
        """Decode one line (counting it); None when it carries no op."""
        self.line_number += 1
        if not line or line.isspace():
            return None
        try:
            data = loads(line)
            op = check_op(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise self._error(f"is not a valid patch op: {exc}", line) from None
        if op is None and data.get("error") is not None:
            text = line.decode("utf-8", "replace").strip()
            raise _stream_error(data["error"], text, self._status_code, self._request_id)
        return op

    def _error(self, reason: str, line: bytes) -> StreamDecodeError:
        return StreamDecodeError(f"line {self.line_number} {reason}", line_number=self.line_number, line=shorten(line))


class SSEDecoder:
    """Server-Sent Events framing: bytes -> the `data` of each complete event (its `data:` lines joined)."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.lines = LineReader(max_line_bytes)
        self._data: list[str] = []
        self._at_line_start = True  # the last read ended with `\n`: the line reader holds nothing

    def feed(self, chunk: bytes) -> list[str]:
        """The events `chunk` completes."""
        if self._at_line_start and chunk.endswith(b"\n") and len(chunk) <= self.lines.max_line_bytes:
            # Whole lines, none over the limit (the usual read of a token stream): no line reader needed.
            if not self._data and chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2:
                return [chunk[6:-2].decode("utf-8", errors="replace").rstrip("\r")]  # exactly one event
            lines = chunk.decode("utf-8", errors="replace").split("\n")
            lines.pop()
        else:
            lines = [raw.decode("utf-8", errors="replace") for raw in self.lines.feed(chunk)]
        self._at_line_start = chunk.endswith(b"\n")
        return self._events(lines)

    def finish(self) -> list[str]:
        """The events a body that ends without a blank line leaves behind."""
        last = self.lines.finish()
        events = self._events([last.decode("utf-8", errors="replace")] if last is not None else [])
        if self._data:
            events.append("\n".join(self._data))
            self._data.clear()
        return events

    def _events(self, lines: list[str]) -> list[str]:
        events: list[str] = []
        data = self._data
        for line in lines:
            if line.startswith("data: "):  # nearly every line
                data.append(line[6:].rstrip("\r"))
                continue
            line = line.rstrip("\r")
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else "\n".join(data))
                    data.clear()
                continue
            if line.startswith(":"):
                continue  # a comment: keep-alive pings
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
        return events


def chunk_payload(data: str, status_code: int, request_id: str | None) -> dict[str, Any] | None:
    """One SSE event's data as a chat chunk (a dict); None for `[DONE]`.

    Decoded by pydantic_core's `from_json` (3x json.loads, and stricter: no NaN, nesting
    past 200 levels and lone surrogates refused), falling back to the strict `loads` for
    whatever it refuses, so exactly what `loads` accepts is accepted, with its values.
    StreamDecodeError when it is not a JSON object; PatchStreamError for an
    `error` event (an object with `error` and no `choices`).
    """
    try:
        payload = _from_json(data, allow_inf_nan=False)  # the fast, stricter decoder: most events are valid chunks
    except ValueError:  # not JSON to it: `[DONE]`, or let the strict decoder judge (and word the error)
        if data.strip() == DONE:
            return None
        try:
            payload = loads(data)
        except ValueError as exc:
            raise StreamDecodeError(f"an SSE event is not JSON: {exc}", line=shorten(data)) from None
    if not isinstance(payload, dict):
        raise StreamDecodeError(f"an SSE event is {_json_type(payload)}, not a chat chunk object", line=shorten(data))
    if payload.get("error") is not None and not payload.get("choices"):
        raise _stream_error(payload["error"], data, status_code, request_id)
    return payload


class SSEPatchDecoder(_EventDecoder):
    """An OpenAI-style SSE stream -> the events the gateway's ops would have made, from the content deltas.

    `done` turns True once the root value is whole, or at `[DONE]`: the stream
    then ends at once, reading and judging nothing after it.
    """

    def _start(self, max_line_bytes: int) -> None:
        self._events = SSEDecoder(max_line_bytes)
        self._parser = IncrementalJSONParser()
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> Iterator[PatchEvent]:
        """The events the SSE events in `data` complete."""
        for event in self._events.feed(data):
            ops = self._event_ops(event)
            if ops is None:  # [DONE]
                yield from self._end()
                return
            for op in ops:
                yield self._apply(op)
            if self._parser.complete:
                self.done = True
                return

    def finish(self) -> Iterator[PatchEvent]:
        """At the end of the body: the last events, or why the output is incomplete."""
        for event in self._events.finish():
            ops = self._event_ops(event)
            if ops is None:
                break
            for op in ops:
                yield self._apply(op)
            if self._parser.complete:
                self.done = True
                return
        yield from self._end()

    def _event_ops(self, data: str) -> list[dict[str, Any]] | None:
        """The ops one SSE event's chunk completes with its delta content; None for `[DONE]`."""
        chunk = chunk_payload(data, self._status_code, self._request_id)
        if chunk is None:
            return None
        choices = chunk.get("choices")
        if not choices or type(choices) is not list or type(choices[0]) is not dict:
            return []  # a usage chunk (choices: []) or a shape we do not use
        choice = choices[0]
        reason = choice.get("finish_reason")
        if reason and type(reason) is str:
            self.finish_reason = reason
        delta = choice.get("delta")
        content = delta.get("content") if type(delta) is dict else None
        if not content:
            return []
        if type(content) is not str:
            raise StreamDecodeError(f"a chunk's delta content is {_json_type(content)}, not a string")
        return self._parser.feed(content)

    def _end(self) -> Iterator[PatchEvent]:
        """The input is over: a root number completes now; cut short without `length` is a dropped stream.

        Cut by max_tokens (`finish_reason == "length"`) nothing is raised here: `result()` says "truncated".
        """
        self.done = True
        if self._parser.complete or self.finish_reason == "length":
            return
        try:
            ops = self._parser.close()
        except StreamDecodeError:
            raise APIConnectionError("the stream ended before the output was complete") from None
        for op in ops:
            yield self._apply(op)

    def _apply(self, op: dict[str, Any]) -> PatchEvent:
        try:
            return self._builder.apply(op)
        except PatchError as exc:
            raise StreamDecodeError(f"cannot apply op: {shorten(str(exc))}", line=shorten(repr(op))) from None


class ChatChunkDecoder:
    """`chat.completions.create(stream=True)`: SSE events -> ChatCompletionChunk records, ending at `[DONE]`."""

    def __init__(self, status_code: int, request_id: str | None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self._events = SSEDecoder(max_line_bytes)
        self._status_code = status_code
        self._request_id = request_id
        self.done = False

    def feed(self, data: bytes) -> Iterator[ChatCompletionChunk]:
        """The chunks the SSE events in `data` complete."""
        yield from self._chunks(self._events.feed(data))

    def finish(self) -> Iterator[ChatCompletionChunk]:
        """A last event without its blank line."""
        yield from self._chunks(self._events.finish())

    def _chunks(self, events: list[str]) -> Iterator[ChatCompletionChunk]:
        for data in events:
            chunk = chunk_payload(data, self._status_code, self._request_id)
            if chunk is None:
                self.done = True
                return
            try:
                yield ChatCompletionChunk.model_validate(chunk)
            except ValueError:  # pydantic's ValidationError
                raise StreamDecodeError("an SSE event is not a chat completion chunk", line=shorten(data)) from None
