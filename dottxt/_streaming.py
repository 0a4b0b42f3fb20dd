"""The patch stream: lines -> ops -> events, for one HTTP response.

`_Pipeline` reads the response through `dottxt.lines`, checks each op and
hands it to the document builder in `dottxt.events`; with `patch_source="sse"`
the ops come from token deltas through `dottxt.incremental`. `PatchStream` is
the iterator users hold.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests

from ._errors import (
    APIStatusError,
    DotTxtError,
    InvalidOutputError,
    PatchError,
    PatchStreamError,
    StreamDecodeError,
    error_member_message,
    patch_stream_error,
)
from ._events import DocumentBuilder, PatchEvent
from ._incremental import IncrementalJSONParser
from ._lines import DEFAULT_MAX_LINE_BYTES, LineReader, decode_line, iter_lines, read_chunks, read_error, shorten
from ._schemas import OutputSchema
from ._sse import DONE, iter_sse_data
from ._transport import CancelToken, interrupt_response

__all__ = ["PatchEvent", "PatchStream", "DEFAULT_MAX_LINE_BYTES", "iter_lines"]

_NEEDS_VALUE = frozenset({"add", "replace", "test"})
_NEEDS_FROM = frozenset({"move", "copy"})
_KNOWN_OPS = _NEEDS_VALUE | _NEEDS_FROM | {"remove"}


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
        self.builder = DocumentBuilder()
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
        reader = LineReader(self.max_line_bytes)
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
            data = decode_line(line)
            op = _check_op(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise StreamDecodeError(
                f"line {line_number} is not a valid patch op: {exc}",
                line_number=line_number,
                line=shorten(line),
            ) from exc
        if op is None:
            error = data.get("error")
            if error is not None:
                message = error_member_message(error)
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
            line=shorten(line if line is not None else json.dumps(op)),
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
                raise StreamDecodeError(f"an SSE event is not JSON: {exc}", line=shorten(data)) from exc
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") is not None and not chunk.get("choices"):
                error = chunk["error"]
                message = error_member_message(error)
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
        return read_error(exc, f" after {count} ops", document)


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
