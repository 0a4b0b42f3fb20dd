"""The streams users hold: `PatchStream` (field events) and `ChatCompletionStream` (OpenAI chunks).

Both are a `ResponseStream` (the I/O, one error boundary) with a decoder on
top: NDJSON patch lines or SSE-derived ops folded into a `DocumentBuilder`, or
SSE chat chunks. Neither reads a byte itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import requests

from ._decoders import ChatChunkDecoder, PatchLineDecoder, SSEPatchDecoder
from ._errors import DotTxtError, InvalidOutputError
from ._events import DocumentBuilder, PatchEvent
from ._fields import CompletionTracker, FieldDone, FieldMatcher, TypedPaths
from ._lines import DEFAULT_MAX_LINE_BYTES
from ._response import ResponseStream
from ._schemas import OutputSchema
from ._transport import CancelToken, Transport
from ._types import ChatCompletionChunk

__all__ = ["PatchEvent", "PatchStream", "ChatCompletionStream"]

T = TypeVar("T")
V = TypeVar("V")


class PatchStream(Generic[T]):
    """An iterator of PatchEvents for one streamed completion; also a context manager.

    The request is sent when iteration starts. `close()` (or leaving the
    `with`, or dropping the stream) closes the connection at once; `.document`
    is a copy of what has arrived; `.result()` drains the rest and returns the
    validated output, typed as `generate` returns it.
    """

    def __init__(
        self,
        transport: Transport,
        send: Callable[[CancelToken], requests.Response],
        *,
        output: OutputSchema[T],
        model: str | None = None,
        sse: bool = False,
        max_tokens: int | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        builder = self._builder = DocumentBuilder()
        decoders: list[PatchLineDecoder | SSEPatchDecoder] = []

        # A closure, not a method: the running generator must hold no reference to this object.
        def decoder(response: requests.Response) -> PatchLineDecoder | SSEPatchDecoder:
            status, request_id = response.status_code, response.headers.get("x-request-id")
            made = (SSEPatchDecoder if sse else PatchLineDecoder)(builder, status, request_id, max_line_bytes)
            decoders.append(made)
            return made

        self._decoders = decoders
        self._core: ResponseStream[PatchEvent] = ResponseStream(transport, send, decoder)
        self._core.document = builder.document
        self._core.progress = lambda: f" after {builder.count} ops"
        self._output = output
        self._model = model
        self._max_tokens = max_tokens
        self._events: Iterator[PatchEvent] | None = None
        self._result: T
        self._has_result = False

    def __iter__(self) -> Iterator[PatchEvent]:
        # The generator itself, so a `for` loop pays for no extra layer.
        if self._events is None:
            self._events = self._core.items()
        return self._events

    def __next__(self) -> PatchEvent:
        if self._events is None:
            self._events = self._core.items()
        return next(self._events)

    def __enter__(self) -> PatchStream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        core = self._core
        state = "finished" if core.finished else "closed" if core.closed else "open"
        return f"<PatchStream {state}, {self._builder.count} ops>"

    @property
    def document(self) -> Any:
        """A copy of the document built so far (None before the first op)."""
        return self._builder.document()

    @property
    def closed(self) -> bool:
        """True once the stream has been closed or has ended."""
        return self._core.closed

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for this stream, once the response has started."""
        response = self._core.response
        return response.headers.get("x-request-id") if response is not None else None

    @property
    def finish_reason(self) -> str | None:
        """Why the model stopped, when the server said (`"stop"`, `"length"`); None until then."""
        decoder = self._decoders[0] if self._decoders else None
        return decoder.finish_reason if isinstance(decoder, SSEPatchDecoder) else None

    def close(self) -> None:
        """Close the connection now. Safe from any thread, and more than once."""
        self._core.close()
        _close_generator(self._events)

    def start(self) -> None:
        """Send the request and wait for the response to start (a status error raises here); read nothing yet."""
        if self._events is not None:
            return
        try:
            self._core.start()
        except DotTxtError as exc:
            self._core.error = exc
            self._events = _no_events()  # failed: a later read must not send the request again
            raise

    def tracker(self, matcher: FieldMatcher[V] | None) -> CompletionTracker[V]:
        """A tracker of this stream's finished values (one per stream; `completed()` and `on_done` use it).

        Values are typed as declared when the response_format is a Python type.
        """
        typed = TypedPaths(self._output.source, model=self._model) if self._output.is_typed else None
        return CompletionTracker(self._builder, matcher, typed)

    def completed(self, *patterns: str) -> Iterator[FieldDone]:
        """Read the stream (the same reading as iteration) and yield each value the moment it is finished.

        Only values whose field matches a pattern (`"intent"`, or `"steps/*"`
        where `*` is one segment) are reported; with no patterns, every value
        below the root. A reported value that fails its declared type's
        validation closes the connection at once and raises InvalidOutputError
        (with `.field` and `.document`). `result()` afterwards reads nothing more.
        """
        matcher: FieldMatcher[None] | None = (
            FieldMatcher(((pattern, None) for pattern in patterns), what="completed() patterns") if patterns else None
        )
        return self._completed(self.tracker(matcher))

    def _completed(self, tracker: CompletionTracker[Any]) -> Iterator[FieldDone]:
        try:
            step = tracker.step
            closed, depths = tracker.wants()
            for event in self:
                # Inline, the test that rules most events out: no container closed, no pattern at its depth.
                if closed or depths is None or event.op["path"].count("/") in depths:
                    for done, _ in step(event):
                        yield done
            if self._core.finished and self.finish_reason != "length":  # cut short, nothing more is finished
                for done, _ in tracker.end():
                    yield done
        except InvalidOutputError as exc:  # a reported value failed its validation: nothing more is read
            self.fail(exc)
            raise

    def fail(self, error: Exception) -> None:
        """End the stream now with `error`: the connection is closed and `result()` raises it."""
        self.close()
        if self._core.error is None:
            self._core.error = error

    def result(self) -> T:
        """Drain the stream; return the final document validated and typed like `generate` returns it.

        Raises the stream's error if it failed, InvalidOutputError if the final
        document does not match the schema (for example, cut off by max_tokens).
        """
        if self._has_result:
            return self._result
        for _ in self:
            pass
        if self._core.error is not None:
            raise self._core.error
        finish_reason = self.finish_reason
        if self._builder.count == 0:
            raise InvalidOutputError(
                "the stream ended before any patch op arrived",
                model=self._model,
                raw_output="",
                finish_reason=finish_reason,
            )
        try:
            self._result = self._output.validate(
                self._builder.document(), model=self._model, finish_reason=finish_reason
            )
        except InvalidOutputError as exc:
            if self._max_tokens is not None and finish_reason is None:
                exc.message = f"{exc.message} (the output may have been truncated by max_tokens={self._max_tokens})"
            raise
        self._has_result = True
        return self._result


class ChatCompletionStream:
    """The chunks of `chat.completions.create(stream=True)`, each as soon as it arrives.

    The request is sent (and a status error raised) when it is made. A dropped
    or silent connection raises APIConnectionError / APITimeoutError; `close()`
    (from any thread) ends the iteration quietly.
    """

    def __init__(self, transport: Transport, send: Callable[[CancelToken], requests.Response]) -> None:
        def decoder(response: requests.Response) -> ChatChunkDecoder:
            return ChatChunkDecoder(response.status_code, response.headers.get("x-request-id"))

        self._core: ResponseStream[ChatCompletionChunk] = ResponseStream(transport, send, decoder)
        self._core.start()
        self._chunks = self._core.items()

    @property
    def response(self) -> requests.Response | None:
        """The underlying HTTP response."""
        return self._core.response

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self._chunks

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def __enter__(self) -> ChatCompletionStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection now. Safe from any thread, and more than once."""
        self._core.close()
        _close_generator(self._chunks)


def _no_events() -> Iterator[PatchEvent]:
    """The events of a stream whose request failed: none."""
    return
    yield


def _close_generator(generator: Iterator[Any] | None) -> None:
    """Finish a stream's generator now, unless another thread is running it (its read was just woken)."""
    if generator is not None:
        try:
            generator.close()  # type: ignore[attr-defined]
        except ValueError:  # "generator already executing": the interrupt ends it on its own thread
            pass
