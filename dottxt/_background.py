"""`BackgroundStream`: a `PatchStream` read on its own thread, feeding callbacks and a queue.

A `Pump` reads the stream on its worker thread into a `ThreadSink`: each event
goes on `.queue`, then to `on_event` and the matching `on_field` callbacks; at
the end `on_complete` or `on_error`, then the `None` sentinel. Other threads
see a Future-like object: `result()`, `exception()`, `done()`, `cancel()`.
`cancel()` closes the stream from the calling thread, which shuts the socket
down so a read blocked on a silent server returns at once.
"""

from __future__ import annotations

import queue as queue_module
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypedDict, TypeVar, cast

from ._errors import StreamCancelledError
from ._events import PatchEvent
from ._fields import CompletionTracker, FieldDone, FieldMatcher
from ._params import GenerationParams
from ._pump import Pump, ThreadSink
from ._streaming import PatchStream

__all__ = ["BackgroundOptions", "BackgroundParams", "BackgroundStream", "DoneCallback", "FieldCallback"]

FieldCallback = Callable[[PatchEvent], Any]
DoneCallback = Callable[[FieldDone], Any]


class BackgroundOptions(TypedDict, total=False):
    """The keywords `stream_in_background` hands to its BackgroundStream (callbacks and the queue)."""

    on_event: Callable[[PatchEvent], Any] | None
    on_field: Mapping[str, FieldCallback] | None
    on_done: Mapping[str, DoneCallback] | None
    on_error: Callable[[BaseException], Any] | None
    on_complete: Callable[[Any], Any] | None
    queue: queue_module.Queue[PatchEvent | None] | None


class BackgroundParams(GenerationParams, BackgroundOptions, total=False):
    """Everything `stream_in_background` takes besides model, response_format and input."""


def split_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`stream_in_background`'s keywords as (the stream's generation params, the BackgroundStream's options)."""
    params = dict(kwargs)
    return params, {name: params.pop(name) for name in BackgroundOptions.__annotations__ if name in params}


class _FieldRouter:
    """Maps an event to its `on_field` callbacks, in the order they were given."""

    def __init__(self, on_field: Mapping[str, FieldCallback]) -> None:
        for field, callback in on_field.items():
            if not callable(callback):
                raise TypeError(f"on_field[{field!r}] must be callable, not {type(callback).__name__}")
        self._matcher: FieldMatcher[FieldCallback] = FieldMatcher(on_field.items(), what="on_field keys")

    def __bool__(self) -> bool:
        return bool(self._matcher)

    def callbacks(self, event: PatchEvent) -> Sequence[FieldCallback]:
        """The callbacks whose field or pattern matches `event`, in registration order."""
        return self._matcher.match(str(event.op.get("path", "")), lambda: event.path)


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


T = TypeVar("T")


class BackgroundStream(Generic[T]):
    """A patch stream already running on its own thread; Future-like, iterable, a context manager.

    Callbacks run on the worker thread in wire order: `on_event(event)` for
    every event, `on_field[field](event)` for matching fields (`"intent"`, or
    `"steps/*"` where `*` is exactly one segment), then `on_done[pattern](done)`
    for each matching value that event finished (a `FieldDone`, typed as
    declared: see `PatchStream.completed`), then once either
    `on_complete(document)`, with the final document validated and typed: the
    very object result() returns (a model instance for a Pydantic model,
    decoded JSON for a JSON Schema); or `on_error(exc)`. A callback that raises
    stops the stream; its exception goes to `on_error` and out of `result()`.
    A cancelled stream calls neither `on_complete` nor `on_error`. Whatever the
    worker raises (BaseExceptions such as SystemExit included) is captured and
    re-raised by `result()`, never printed by threading's excepthook.

    Every event is also put on `.queue` (the `queue.Queue` passed in, else a new
    unbounded one), followed by `None` when the stream ends for any reason. A
    bounded queue applies back-pressure (the worker waits for room; nothing is
    dropped); cancel() still ends the worker at once. Iterating the
    BackgroundStream reads that same queue: use one consumer, either a loop
    over the stream or `.queue`, not both.

    cancel() ends the worker within milliseconds at every stage of the
    request: a read blocked on a silent server, a wait for the response
    headers, a wait between retries. Two waits it cannot cut short: a
    connection still being made, and the headers of a request sent through a
    `session=` of your own; result() still raises StreamCancelledError at
    once, and the worker ends when that wait does (dropping the response).
    """

    def __init__(
        self,
        stream: PatchStream[T],
        *,
        on_event: Callable[[PatchEvent], Any] | None = None,
        on_field: Mapping[str, FieldCallback] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        on_complete: Callable[[Any], Any] | None = None,
        queue: queue_module.Queue[PatchEvent | None] | None = None,
        on_done: Mapping[str, DoneCallback] | None = None,
    ) -> None:
        _check_callable("on_event", on_event)
        _check_callable("on_error", on_error)
        _check_callable("on_complete", on_complete)
        if on_field is not None and not isinstance(on_field, Mapping):
            raise TypeError(f"on_field must be a mapping of field -> callback, not {type(on_field).__name__}")
        if queue is not None and not isinstance(queue, queue_module.Queue):
            raise TypeError(f"queue must be a queue.Queue, not {type(queue).__name__}")
        tracker = _done_tracker(stream, on_done) if on_done else None
        self._stream = stream
        self.queue: queue_module.Queue[PatchEvent | None] = queue if queue is not None else queue_module.Queue()
        self._sink = ThreadSink(
            self.queue,
            on_item=_deliver_to(on_event, _FieldRouter(on_field or {}), tracker),
            on_complete=on_complete,
            on_error=on_error,
            cancelled_error=lambda: StreamCancelledError(document=stream.document),
        )
        finish = stream.result if tracker is None else _finish_with(stream, tracker)
        self._pump = Pump(stream, self._sink, name="stream", finish=finish)
        self._pump.start()

    # ------------------------------------------------------------------ Future-like

    def cancel(self) -> bool:
        """Stop reading and close the connection now, even mid-read on a silent server.

        Returns True if this cancelled a running stream (result() then raises
        StreamCancelledError), False if it had already finished. Safe from any thread.
        """
        return self._pump.cancel()

    def cancelled(self) -> bool:
        """True if cancel() stopped the stream before it finished."""
        return self._pump.cancelled

    def done(self) -> bool:
        """True once the outcome is known: finished, failed or cancelled."""
        return self._sink.done()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the end; return the output as `PatchStream.result()` does, or raise the stream's error.

        Raises the builtin TimeoutError when not done within `timeout` seconds,
        StreamCancelledError (carrying `.document`) after cancel().
        """
        return cast(T, self._sink.result(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the end; return the stream's error (StreamCancelledError if cancelled), or None.

        Raises the builtin TimeoutError when not done within `timeout` seconds.
        """
        return self._sink.exception(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread to end; True if it has."""
        return self._pump.join(timeout)

    @property
    def document(self) -> Any:
        """A copy of the document built so far (None before the first op)."""
        return self._stream.document

    # ------------------------------------------------------------------ iteration, with

    def __iter__(self) -> Iterator[PatchEvent]:
        """Yield the queued events as they arrive, then raise the stream's error if it failed.

        Only one consumer may read the events: iterate, or read `.queue`, not both.
        """
        q, sink = self.queue, self._sink
        while not (sink.ended.is_set() and q.empty()):  # a second loop ends at once
            event = q.get()
            if event is None:
                break
            yield event
        error = sink.exception(0)  # the sentinel follows the outcome
        if error is not None:
            raise error

    def __enter__(self) -> BackgroundStream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Cancel if still running, and wait for the worker thread to end."""
        self.cancel()
        self.join()

    def __repr__(self) -> str:
        if not self._sink.done():
            state = "running"
        elif self._pump.cancelled:
            state = "cancelled"
        else:
            state = "failed" if self._sink.exception(0) is not None else "finished"
        return f"<BackgroundStream {self._pump.name} {state}>"


def _done_tracker(stream: PatchStream[Any], on_done: Mapping[str, DoneCallback]) -> CompletionTracker[DoneCallback]:
    """The tracker that finds the values `on_done` asks for."""
    if not isinstance(on_done, Mapping):
        raise TypeError(f"on_done must be a mapping of field -> callback, not {type(on_done).__name__}")
    for field, callback in on_done.items():
        if not callable(callback):
            raise TypeError(f"on_done[{field!r}] must be callable, not {type(callback).__name__}")
    return stream.tracker(FieldMatcher(on_done.items(), what="on_done keys"))


def _finish_with(stream: PatchStream[T], tracker: CompletionTracker[DoneCallback]) -> Callable[[], T]:
    """The end of a stream with `on_done`: the values still open are finished (innermost first), then the result."""

    def finish() -> T:
        if stream.finish_reason != "length":
            _call_done(tracker.end())
        return stream.result()

    return finish


def _call_done(finished: Sequence[tuple[FieldDone, Sequence[DoneCallback]]]) -> None:
    for done, callbacks in finished:
        for callback in callbacks:
            callback(done)


def _deliver_to(
    on_event: Callable[[PatchEvent], Any] | None,
    router: _FieldRouter,
    tracker: CompletionTracker[DoneCallback] | None = None,
) -> Callable[[PatchEvent], None] | None:
    """One event's callbacks, on the worker: `on_event`, the matching `on_field` ones, then `on_done` for its values."""
    if on_event is None and not router and tracker is None:
        return None  # a queue-only stream pays for no call per event

    def deliver(event: PatchEvent) -> None:
        if on_event is not None:
            on_event(event)
        if router:
            for callback in router.callbacks(event):
                callback(event)
        if tracker is not None:
            _call_done(tracker.step(event))

    return deliver
