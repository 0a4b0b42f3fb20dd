"""The patch stream: bytes -> lines -> ops -> events.

`_LineReader` cuts bytes into lines the moment each `\\n` arrives (on bytes, so
a split UTF-8 sequence or a raw U+2028 inside a JSON string is harmless).
`_DocumentBuilder` folds ops into the live document and hands out events whose
snapshots are only copied when read. `PatchStream` ties them to one HTTP
response.
"""

from __future__ import annotations

import json
import json.scanner
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    DotTxtError,
    InvalidOutputError,
    PatchError,
    PatchStreamError,
    StreamDecodeError,
    patch_stream_error,
)
from .incremental import IncrementalJSONParser
from .patch import _segments, apply_op, decode_path, parse_pointer
from .schemas import OutputSchema
from .sse import DONE, iter_sse_data
from .transport import CLOSED_BY_CLIENT, CancelToken, interrupt_response

__all__ = ["PatchEvent", "PatchStream", "DEFAULT_MAX_LINE_BYTES", "copy_json", "iter_lines"]

#: The longest line a stream accepts; a longer one is refused while it is still arriving.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024
_SHOWN_LINE = 200
_NEEDS_VALUE = frozenset({"add", "replace", "test"})
_NEEDS_FROM = frozenset({"move", "copy"})
_KNOWN_OPS = _NEEDS_VALUE | _NEEDS_FROM | {"remove"}


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, (dict, list)) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


# --------------------------------------------------------------------------- events


class _LazySnapshot:
    """Class attribute standing in for `PatchEvent.snapshot` on events a stream made.

    A non-data descriptor: an event built directly holds its snapshot in its
    own `__dict__`, which wins; a streamed event finds no entry and asks its
    document builder for a copy, once, on first read.
    """

    def __get__(self, event: PatchEvent | None, owner: type | None = None) -> Any:
        if event is None:
            return self
        state = event.__dict__
        source: _DocumentBuilder = state["_source"]
        value = state["snapshot"] = source.snapshot_at(state["_index"])
        return value


@dataclass(frozen=True)
class PatchEvent:
    """One patch op as received, and the document after it.

    `snapshot` is an independent copy, valid whenever it is read; streams
    only make it when you read it, so iterating without snapshots is cheap.
    """

    op: dict[str, Any]
    snapshot: Any

    @property
    def field(self) -> str:
        """The op's JSON Pointer without its leading `/` (`"intent"`, `"steps/0"`, `""` for the root)."""
        return str(self.op.get("path", ""))[1:]

    @property
    def path(self) -> tuple[str | int, ...]:
        """The decoded pointer: `("address", "city")`, `("steps", 0)`; list indices are ints."""
        cached = self.__dict__.get("_path")
        if cached is None:
            cached = _decoded_path(self.snapshot, parse_pointer(str(self.op.get("path", ""))))
            self.__dict__["_path"] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def value(self) -> Any:
        """The op's value (`{}` and `[]` included); None for ops without one."""
        return self.op.get("value")

    @property
    def is_leaf(self) -> bool:
        """True for an `add` of a non-container value below the root (0, "", False, None included)."""
        op = self.op
        return op.get("op") == "add" and op.get("path", "") != "" and not isinstance(op.get("value"), (dict, list))

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle rebuild it as PatchEvent(op, snapshot): a streamed event's
        # state also holds its document builder (and that builder's lock), which cannot be copied.
        return (PatchEvent, (self.op, self.snapshot))


PatchEvent.snapshot = _LazySnapshot()  # type: ignore[assignment,method-assign]


def _decoded_path(document: Any, segments: list[str]) -> tuple[str | int, ...]:
    """Turn pointer segments into a path tuple, with ints where the container is a list."""
    out: list[str | int] = []
    node = document
    for segment in segments:
        if isinstance(node, list):
            index = len(node) - 1 if segment == "-" else int(segment)
            out.append(index)
            node = node[index] if 0 <= index < len(node) else None
        else:
            out.append(segment)
            node = node.get(segment) if isinstance(node, dict) else None
    return tuple(out)


def _list_index(segment: str) -> int:
    """The index an RFC 6901 array segment names, or -1 when it names none ("01", "-", "x")."""
    if segment.isdigit() and segment.isascii() and (segment[0] != "0" or len(segment) == 1):
        return int(segment)
    return -1


class _DocumentBuilder:
    """Folds ops into the live document; makes events and their snapshots on demand.

    Thread-safe: a background stream applies ops on its worker while another
    thread reads snapshots of earlier events.
    """

    def __init__(self) -> None:
        self._document: Any = None
        # Every op applied, for replaying older snapshots: as its raw line when there is one
        # (bytes are compact and invisible to the garbage collector), else as the dict.
        self._ops: list[bytes | dict[str, Any]] = []
        # pointer -> (container, decoded path) for containers this stream added, while still in place
        self._containers: dict[str, tuple[Any, tuple[str | int, ...]]] = {}
        self._cursor = -1  # the op index the cursor document has been replayed to
        self._cursor_document: Any = None
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """How many ops have been applied."""
        return len(self._ops)

    def apply(self, op: dict[str, Any], line: bytes | None = None) -> PatchEvent:
        """Apply one op (already checked for shape; `line` is its raw text, if any); return its event.

        PatchError if it cannot be applied.
        """
        with self._lock:
            path = self._add(op["path"], op["value"]) if op["op"] == "add" else None
            if path is None:  # not an add, or an add the fast paths declined: the general, checking path
                self._containers.clear()
                self._document = apply_op(self._document, op)
                path = decode_path(self._document, op["path"])  # list indices as ints, after a remove too
            index = len(self._ops)
            self._ops.append(op if line is None else line)
        event = object.__new__(PatchEvent)
        event.__dict__.update(op=op, _source=self, _index=index, _path=path)
        return event

    def _add(self, pointer: str, value: Any) -> tuple[str | int, ...] | None:
        """The hot path: an `add` under a container this stream added, found by its pointer.

        The gateway seeds every container before its children, so the parent
        of nearly every op is in `_containers` and no walk from the root is
        needed. Anything that could move a container (a replaced container, a
        list insert, a non-add op) empties the cache. Returns None, changing
        nothing, when this path does not apply.
        """
        if type(value) is dict or type(value) is list:
            value = copy_json(value) if value else type(value)()  # never alias the op's value
        if not pointer:
            self._document = value
            self._containers.clear()
            path: tuple[str | int, ...] = ()
        elif pointer[0] != "/":
            return None  # not a JSON Pointer: the general path words the error
        else:
            parent_pointer, _, key = pointer.rpartition("/")
            entry = self._containers.get(parent_pointer)
            if entry is None:
                entry = self._find(parent_pointer)
                if entry is None:
                    return None
                self._containers[parent_pointer] = entry
            parent, parent_path = entry
            if type(parent) is dict:
                if "~" in key:
                    key = _segments(pointer)[-1]  # unescaped, and checked
                old = parent.get(key)
                if type(old) is dict or type(old) is list:
                    self._containers.clear()  # a container is being replaced
                parent[key] = value
                path = (*parent_path, key)
            else:
                size = len(parent)
                index = size if key == "-" else _list_index(key)
                if index == size:
                    parent.append(value)
                elif 0 <= index < size:
                    parent.insert(index, value)
                    self._containers.clear()  # later items moved
                else:
                    return None
                path = (*parent_path, index)
                if key == "-":
                    pointer = f"{parent_pointer}/{index}"
        if type(value) is dict or type(value) is list:
            self._containers[pointer] = (value, path)
        return path

    def _find(self, pointer: str) -> tuple[Any, tuple[str | int, ...]] | None:
        """The container at `pointer` and its decoded path, walking from the root; None if there is none."""
        node = self._document
        path: list[str | int] = []
        for segment in _segments(pointer):
            if type(node) is dict:
                node = node.get(segment)
                path.append(segment)
            elif type(node) is list:
                index = _list_index(segment)
                if not 0 <= index < len(node):
                    return None
                node = node[index]
                path.append(index)
            else:
                return None
        return (node, tuple(path)) if type(node) is dict or type(node) is list else None

    def document(self) -> Any:
        """A copy of the document so far (None before the first op)."""
        with self._lock:
            return copy_json(self._document)

    def snapshot_at(self, index: int) -> Any:
        """A copy of the document as it was right after op `index`.

        The latest one is copied from the live document. An older one is
        replayed on a private cursor document that only moves forward, so a
        consumer reading snapshots in order while the stream runs ahead pays
        one op and one copy per read, not a replay from the start.
        """
        with self._lock:
            if index == len(self._ops) - 1:
                return copy_json(self._document)
            if index < self._cursor:
                self._cursor, self._cursor_document = -1, None
            for position in range(self._cursor + 1, index + 1):
                logged = self._ops[position]
                op: dict[str, Any] = _decode_line(logged) if isinstance(logged, bytes) else logged
                self._cursor_document = apply_op(self._cursor_document, op)
            self._cursor = index
            return copy_json(self._cursor_document)


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _decode_line(line: bytes) -> Any:
    """Decode one JSON line: the C scanner directly, `json.loads` only to word an error."""
    text = line.decode("utf-8")
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # leading whitespace, or invalid: let json say which
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)  # raises "Extra data"
    return value


def _check_op(data: Any) -> dict[str, Any] | None:
    """The op in a decoded line; None for lines to skip (objects without `op`). Raises ValueError."""
    if type(data) is dict and data.get("op") == "add" and type(data.get("path")) is str and "value" in data:
        return data  # the shape of nearly every line: checked in one expression
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("op")
    if kind is None:
        return None
    if kind not in _KNOWN_OPS:
        raise ValueError(f"unknown op {kind!r}")
    if not isinstance(data.get("path"), str):
        raise ValueError(f"{kind!r} op has no string 'path'")
    if kind in _NEEDS_VALUE and "value" not in data:
        raise ValueError(f"{kind!r} op has no 'value'")
    if kind in _NEEDS_FROM and not isinstance(data.get("from"), str):
        raise ValueError(f"{kind!r} op has no string 'from'")
    return data


def _shorten(line: bytes | str) -> str:
    text = line.decode("utf-8", errors="replace") if isinstance(line, (bytes, bytearray)) else line
    return text if len(text) <= _SHOWN_LINE else text[: _SHOWN_LINE - 3] + "..."


# --------------------------------------------------------------------------- lines


class _LineReader:
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
            line=_shorten(bytes(line[:_SHOWN_LINE])),
        )


def iter_lines(response: requests.Response, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[bytes]:
    """Yield the body's lines as each one completes (a last line without `\\n` included)."""
    reader = _LineReader(max_line_bytes)
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


# --------------------------------------------------------------------------- stream


class _Pipeline:
    """One request's bytes -> lines -> ops -> events, apart from PatchStream so that the
    running generator holds no reference to the stream: dropping the stream closes it.
    """

    def __init__(
        self,
        open_response: Callable[[CancelToken], requests.Response],
        release: Callable[[requests.Response], None],
        max_line_bytes: int,
        sse: bool = False,
    ) -> None:
        self.open_response = open_response
        self.release = release
        self.max_line_bytes = max_line_bytes
        self.sse = sse
        self.finish_reason: str | None = None  # what an SSE stream's last chunk said
        self.builder = _DocumentBuilder()
        self.response: requests.Response | None = None
        self.cancel = CancelToken()
        self.error: BaseException | None = None
        self.finished = False
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop: wake a blocked read or retry wait, and close the connection."""
        with self._lock:
            if self.cancel.is_set():
                return
            self.cancel.set()
            response = self.response
        if response is not None:
            interrupt_response(response)
            self.release(response)

    def events(self) -> Iterator[PatchEvent]:
        """Open the response, then yield one event per op line as each line arrives."""
        response = self._open()
        if response is None:
            return
        reader = _LineReader(self.max_line_bytes)
        event_for = self._event_for
        line_number = 0
        try:
            if self.sse:
                for op in self._sse_ops(response):
                    yield self._apply(op)
                return
            for chunk in read_chunks(response):
                for line in reader.feed(chunk):
                    line_number += 1
                    event = event_for(line, line_number, response)
                    if event is not None:
                        yield event
            last = reader.finish()
            if last is not None:
                line_number += 1
                event = event_for(last, line_number, response)
                if event is not None:
                    yield event
        except GeneratorExit:
            raise
        except Exception as exc:
            if self.cancel.is_set():
                return  # closed by us: the read error is our own interrupt, not a failure
            error = self._translate(exc, None if self.sse else line_number + 1)
            self.error = error
            if error is exc:
                raise
            raise error from exc
        finally:
            self.finished = True
            self.cancel.set()
            self.release(response)

    def _open(self) -> requests.Response | None:
        if self.cancel.is_set():
            return None  # closed before the first read: send nothing
        try:
            response = self.open_response(self.cancel)
        except APIStatusError as exc:
            self.error = patch_stream_error(exc)
            raise self.error from exc
        except DotTxtError as exc:
            if self.cancel.is_set():
                return None  # closed while waiting for the response: our interrupt, not a failure
            self.error = exc
            raise
        with self._lock:
            self.response = response
            closed = self.cancel.is_set()
        if closed:
            interrupt_response(response)
            self.release(response)
            return None
        return response

    def _event_for(self, line: bytes, line_number: int, response: requests.Response) -> PatchEvent | None:
        """Decode and apply one line; None for lines that carry no op."""
        if not line or line.isspace():
            return None
        try:
            data = _decode_line(line)
            op = _check_op(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise StreamDecodeError(
                f"line {line_number} is not a valid patch op: {exc}",
                line_number=line_number,
                line=_shorten(line),
            ) from exc
        if op is None:
            error = data.get("error")
            if error is not None:
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise PatchStreamError(
                    response.status_code,
                    line.decode("utf-8", errors="replace").strip(),
                    message=f"the gateway reported an error mid-stream: {message}",
                    request_id=response.headers.get("x-request-id"),
                )
            return None
        try:
            return self.builder.apply(op, line)
        except PatchError as exc:
            raise self._unappliable(exc, op, line_number, line) from exc

    def _apply(self, op: dict[str, Any]) -> PatchEvent:
        try:
            return self.builder.apply(op)
        except PatchError as exc:
            raise self._unappliable(exc, op, None, None) from exc

    @staticmethod
    def _unappliable(exc: PatchError, op: dict[str, Any], line_number: int | None, line: bytes | None) -> Exception:
        """The StreamDecodeError for an op that cannot be applied to the document."""
        where = f"line {line_number}: " if line_number is not None else ""
        return StreamDecodeError(
            f"{where}cannot apply op: {exc}",
            line_number=line_number,
            line=_shorten(line if line is not None else json.dumps(op)),
        )

    def _sse_ops(self, response: requests.Response) -> Iterator[dict[str, Any]]:
        """Ops derived from an OpenAI-style SSE stream: token deltas through the incremental parser."""
        parser = IncrementalJSONParser()
        for data in iter_sse_data(iter_lines(response, self.max_line_bytes)):
            if data.strip() == DONE:
                break
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                raise StreamDecodeError(f"an SSE event is not JSON: {exc}", line=_shorten(data)) from exc
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") is not None and not chunk.get("choices"):
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise PatchStreamError(
                    response.status_code,
                    data,
                    message=f"the server reported an error mid-stream: {message}",
                    request_id=response.headers.get("x-request-id"),
                )
            choices = chunk.get("choices")
            if not choices or not isinstance(choices[0], dict):
                continue
            choice = choices[0]
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if content:
                yield from parser.feed(content)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if self.finish_reason != "length":  # cut by max_tokens: result() says "truncated" instead
            yield from parser.close()

    def _translate(self, exc: Exception, line_number: int | None) -> Exception:
        """Map a failure while reading to the SDK's errors, all carrying the document so far."""
        document = self.builder.document()
        count = self.builder.count
        if isinstance(exc, DotTxtError):
            if isinstance(exc, StreamDecodeError) and exc.line_number is None:
                exc.line_number = line_number
            exc.document = document
            return exc
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return APITimeoutError(
                f"the stream went silent for longer than the read timeout after {count} ops",
                document=document,
            )
        if isinstance(exc, (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError)):
            return APIConnectionError(f"the connection dropped mid-stream after {count} ops ({exc})", document=document)
        return exc


class PatchStream:
    """An iterator of PatchEvents for one patch-stream request; also a context manager.

    The request is sent when iteration starts. `close()` (or leaving the
    `with`, or dropping the stream) closes the connection at once; `.document`
    is a copy of what has arrived; `.result()` drains the rest and returns the
    validated output, typed as `generate` returns it.
    """

    def __init__(
        self,
        open_response: Callable[[CancelToken], requests.Response],
        *,
        output: OutputSchema,
        model: str | None = None,
        release: Callable[[requests.Response], None] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        sse: bool = False,
        max_tokens: int | None = None,
    ) -> None:
        self._pipeline = _Pipeline(open_response, release or _close_response, max_line_bytes, sse)
        self._output = output
        self._model = model
        self._max_tokens = max_tokens
        self._events: Iterator[PatchEvent] | None = None
        self._result: Any = None
        self._has_result = False

    def __iter__(self) -> Iterator[PatchEvent]:
        # The generator itself, so a `for` loop pays for no extra layer; it holds no
        # reference to this object, and closes the connection when it is dropped.
        if self._events is None:
            self._events = self._pipeline.events()
        return self._events

    def __next__(self) -> PatchEvent:
        if self._events is None:
            self._events = self._pipeline.events()
        return next(self._events)

    def __enter__(self) -> PatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pipeline = self._pipeline
        state = "finished" if pipeline.finished else "closed" if pipeline.cancel.is_set() else "open"
        return f"<PatchStream {state}, {pipeline.builder.count} ops>"

    @property
    def document(self) -> Any:
        """A copy of the document built so far (None before the first op)."""
        return self._pipeline.builder.document()

    @property
    def closed(self) -> bool:
        """True once the stream has been closed or has ended."""
        return self._pipeline.cancel.is_set()

    def close(self) -> None:
        """Close the connection now. Safe from any thread, and more than once."""
        self._pipeline.close()
        events = self._events
        if events is not None:
            try:
                events.close()  # type: ignore[attr-defined]
            except ValueError:  # running on another thread: the interrupt above ends it
                pass

    def result(self) -> Any:
        """Drain the stream; return the final document validated and typed like `generate` returns it.

        Raises the stream's error if it failed, InvalidOutputError if the final
        document does not match the schema (for example, cut off by max_tokens).
        """
        if not self._has_result:
            for _ in self:
                pass
            pipeline = self._pipeline
            if pipeline.error is not None:
                raise pipeline.error
            if pipeline.builder.count == 0:
                raise InvalidOutputError(
                    "the stream ended before any patch op arrived",
                    model=self._model,
                    raw_output="",
                    finish_reason=pipeline.finish_reason,
                )
            try:
                self._result = self._output.validate(
                    pipeline.builder.document(), model=self._model, finish_reason=pipeline.finish_reason
                )
            except InvalidOutputError as exc:
                if self._max_tokens is not None and pipeline.finish_reason is None:
                    exc.message = f"{exc.message} (the output may have been truncated by max_tokens={self._max_tokens})"
                    exc.args = (exc.message,)
                raise
            self._has_result = True
        return self._result


def _close_response(response: requests.Response) -> None:
    response.close()
