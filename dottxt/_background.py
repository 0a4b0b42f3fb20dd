"""`BackgroundStream`: a `PatchStream` read on its own thread, feeding callbacks and a queue.

The worker thread owns the stream: it reads events in wire order, puts each on
`.queue`, calls `on_event` and the matching `on_field` callbacks, and at the end
`on_complete` or `on_error`, then puts the `None` sentinel and ends. Other
threads see a Future-like object: `result()`, `exception()`, `done()`,
`cancel()`. `cancel()` closes the stream from the calling thread, which shuts
the socket down so a read blocked on a silent server returns at once.
"""

from __future__ import annotations

import itertools
import logging
import queue as queue_module
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._errors import StreamCancelledError
from ._events import PatchEvent
from ._patch import escape_segment
from ._streaming import PatchStream

__all__ = ["BackgroundStream", "FieldCallback"]

log = logging.getLogger("dottxt")

FieldCallback = Callable[[PatchEvent], Any]

_thread_numbers = itertools.count(1)

# Worker states: reading (cancel() still cancels), finishing (the outcome is the
# worker's: cancel() returns False), cancelled (cancel() won).
_RUNNING, _FINISHING, _CANCELLED = "running", "finishing", "cancelled"


def _escaped_segments(pointer: str) -> tuple[str, ...]:
    """The segments of a JSON Pointer, still escaped as `on_field` keys are (`"/a~1b/0"` -> ("a~1b", "0"))."""
    return tuple(pointer[1:].split("/")) if pointer else ()


class _FieldRouter:
    """Maps an event to its `on_field` callbacks, in the order they were given.

    Exact fields are one dict lookup; patterns are split once into segment
    tuples (`*` matching any one segment) and grouped by length, so an event is
    only compared with patterns of its own depth.
    """

    def __init__(self, on_field: Mapping[str, FieldCallback]) -> None:
        self._exact: dict[str, list[tuple[int, FieldCallback]]] = {}
        self._patterns: dict[int, list[tuple[int, tuple[str | None, ...], FieldCallback]]] = {}
        for order, (field, callback) in enumerate(on_field.items()):
            if not isinstance(field, str):
                raise TypeError(f"on_field keys must be field strings, not {field!r}")
            if not callable(callback):
                raise TypeError(f"on_field[{field!r}] must be callable, not {type(callback).__name__}")
            field = field[1:] if field.startswith("/") else field
            parts = tuple(field.split("/")) if field else ()
            if "*" in parts:
                pattern = tuple(None if part == "*" else part for part in parts)
                self._patterns.setdefault(len(pattern), []).append((order, pattern, callback))
            else:
                self._exact.setdefault(field, []).append((order, callback))

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def callbacks(self, event: PatchEvent) -> list[FieldCallback]:
        """The callbacks whose field or pattern matches `event`, in registration order."""
        pointer = str(event.op.get("path", ""))
        segments = _escaped_segments(pointer)
        if "-" in segments:  # an append: also match the index it landed at ("steps/-" -> "steps/3")
            resolved = tuple(escape_segment(str(part)) for part in event.path)
            fields = {"/".join(segments), "/".join(resolved)}
            segments = resolved
        else:
            fields = {pointer[1:]}
        found: list[tuple[int, FieldCallback]] = []
        for field in fields:
            found.extend(self._exact.get(field, ()))
        for order, pattern, callback in self._patterns.get(len(segments), ()):
            if all(want is None or want == got for want, got in zip(pattern, segments, strict=True)):
                found.append((order, callback))
        if len(found) > 1:
            found.sort(key=lambda item: item[0])
        return [callback for _, callback in found]


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


class BackgroundStream:
    """A patch stream already running on its own thread; Future-like, iterable, a context manager.

    Callbacks run on the worker thread in wire order: `on_event(event)` for
    every event, `on_field[field](event)` for matching fields (`"intent"`, or
    `"steps/*"` where `*` is exactly one segment), then once either
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
        stream: PatchStream,
        *,
        on_event: Callable[[PatchEvent], Any] | None = None,
        on_field: Mapping[str, FieldCallback] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        on_complete: Callable[[Any], Any] | None = None,
        queue: queue_module.Queue[PatchEvent | None] | None = None,
    ) -> None:
        _check_callable("on_event", on_event)
        _check_callable("on_error", on_error)
        _check_callable("on_complete", on_complete)
        if on_field is not None and not isinstance(on_field, Mapping):
            raise TypeError(f"on_field must be a mapping of field -> callback, not {type(on_field).__name__}")
        if queue is not None and not isinstance(queue, queue_module.Queue):
            raise TypeError(f"queue must be a queue.Queue, not {type(queue).__name__}")
        self._stream = stream
        self._on_event = on_event
        self._router = _FieldRouter(on_field or {})
        self._on_error = on_error
        self._on_complete = on_complete
        self.queue: queue_module.Queue[PatchEvent | None] = queue if queue is not None else queue_module.Queue()
        self._lock = threading.Lock()
        self._state = _RUNNING
        self._cancel_requested = threading.Event()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._sentinel_put = threading.Event()  # the worker's last act: the queue gets nothing more
        # Daemon: a worker stuck in a user callback (or a server that never answers
        # the request) must not keep the interpreter from exiting; the worker holds
        # nothing that needs flushing, and it always ends with its stream otherwise.
        self._thread = threading.Thread(target=self._run, name=f"dottxt-stream-{next(_thread_numbers)}", daemon=True)
        try:
            self._thread.start()
        except BaseException:  # no thread to run it (RuntimeError: can't start new thread)
            stream.close()
            raise

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        """Read the stream to its end, then report the outcome; never lets an exception escape."""
        stream = self._stream
        value: Any = None
        error: BaseException | None = None
        try:
            try:
                for event in stream:
                    self._deliver(event)
                    if self._cancel_requested.is_set():
                        break
                if not self._cancel_requested.is_set():
                    value = stream.result()
            except BaseException as exc:  # anything at all: threading's excepthook must never see it
                error = exc
            finally:
                stream.close()
            self._finish(value, error)
        finally:
            self._put_sentinel()
            self._sentinel_put.set()

    def _deliver(self, event: PatchEvent) -> None:
        """Hand one event to the queue, then to the callbacks, on the worker thread."""
        if not self._put(event):
            return  # cancelled while a bounded queue was full: the stream is over anyway
        if self._on_event is not None:
            self._on_event(event)
        if self._router:
            for callback in self._router.callbacks(event):
                callback(event)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        """Run `on_complete` / `on_error`, then publish the outcome (unless cancel() already did)."""
        with self._lock:
            if self._state == _CANCELLED:
                return
            self._state = _FINISHING
        if error is None and self._on_complete is not None:
            try:
                self._on_complete(value)
            except BaseException as exc:
                error = exc
        if error is not None and self._on_error is not None:
            try:
                self._on_error(error)
            except BaseException:
                log.exception("on_error callback raised while handling %r; the stream's error is kept", error)
        if error is None:
            self._result = value
        else:
            self._error = error
        self._done.set()

    def _put(self, item: PatchEvent | None) -> bool:
        """Put an event on the queue without dropping it; False if cancel() interrupted a full queue.

        An unbounded queue never blocks. A full bounded queue blocks the worker
        (back-pressure) until there is room, or until cancel() wakes it.
        """
        q = self.queue
        if q.maxsize <= 0:
            q.put(item)
            return True
        with q.not_full:
            while q._qsize() >= q.maxsize:  # type: ignore[attr-defined]  # we hold q.mutex
                if self._cancel_requested.is_set():
                    return False
                q.not_full.wait()
            self._force_put_locked(q, item)
        return True

    @staticmethod
    def _force_put_locked(q: queue_module.Queue[PatchEvent | None], item: PatchEvent | None) -> None:
        """Queue.put without the size check; the caller holds `q.mutex`."""
        q._put(item)  # type: ignore[attr-defined]
        q.unfinished_tasks += 1  # type: ignore[attr-defined]
        q.not_empty.notify()

    def _put_sentinel(self) -> None:
        """Put the closing `None` even on a full bounded queue, so a `get()` loop always ends."""
        q = self.queue
        if q.maxsize <= 0:
            q.put(None)
            return
        with q.mutex:
            self._force_put_locked(q, None)

    # ------------------------------------------------------------------ Future-like

    def cancel(self) -> bool:
        """Stop reading and close the connection now, even mid-read on a silent server.

        Returns True if this cancelled a running stream (result() then raises
        StreamCancelledError), False if it had already finished. Safe from any thread.
        """
        with self._lock:
            if self._state != _RUNNING:
                return False
            self._state = _CANCELLED
            self._cancel_requested.set()
            # Set under the lock: the worker's sentinel (after which iteration reads
            # `_error`) can only follow once the worker has seen the cancelled state.
            self._error = StreamCancelledError(document=self._stream.document)
        self._done.set()
        q = self.queue
        if q.maxsize > 0:
            with q.not_full:  # wake a worker blocked on a full bounded queue
                q.not_full.notify_all()
        self._stream.close()  # shuts the socket down: a blocked read returns at once
        return True

    def cancelled(self) -> bool:
        """True if cancel() stopped the stream before it finished."""
        return self._state == _CANCELLED

    def done(self) -> bool:
        """True once the outcome is known: finished, failed or cancelled."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the end; return the output as `PatchStream.result()` does, or raise the stream's error.

        Raises the builtin TimeoutError when not done within `timeout` seconds,
        StreamCancelledError (carrying `.document`) after cancel().
        """
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the end; return the stream's error (StreamCancelledError if cancelled), or None.

        Raises the builtin TimeoutError when not done within `timeout` seconds.
        """
        self._wait(timeout)
        return self._error

    def _wait(self, timeout: float | None) -> None:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the stream did not finish within {timeout} seconds")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread to end; True if it has."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def document(self) -> Any:
        """A copy of the document built so far (None before the first op)."""
        return self._stream.document

    # ------------------------------------------------------------------ iteration, with

    def __iter__(self) -> Iterator[PatchEvent]:
        """Yield the queued events as they arrive, then raise the stream's error if it failed.

        Only one consumer may read the events: iterate, or read `.queue`, not both.
        """
        q = self.queue
        while not (self._sentinel_put.is_set() and q.empty()):  # a second loop ends at once
            event = q.get()
            if event is None:
                break
            yield event
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Cancel if still running, and wait for the worker thread to end."""
        self.cancel()
        self.join()

    def __repr__(self) -> str:
        if not self._done.is_set():
            state = "running"
        elif self._state == _CANCELLED:
            state = "cancelled"
        else:
            state = "failed" if self._error is not None else "finished"
        return f"<BackgroundStream {self._thread.name} {state}>"
