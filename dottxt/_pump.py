"""One pump from a blocking iterator to a sink, on a daemon thread of its own.

Every bridge off the network thread goes through `Pump`: `BackgroundStream`
(sink: `ThreadSink`, a `queue.Queue` plus callbacks), `AsyncPatchStream` and
`AsyncChatCompletionStream` (sink: `LoopSink`, an event loop's asyncio.Queue),
and the awaitable one-shot calls (`run`: a one-item source around a blocking
call). The pump reads its source on its worker thread, hands each item to the
sink in order, closes the source and sends the sink exactly one end signal:

    source (PatchStream, ChatCompletionStream, _Call) --items--> Pump worker --put()--> sink
                                                                            --end(value, error)--> sink

`cancel()` (any thread) closes the source, so a read blocked on a silent
server wakes at once, and wakes a worker waiting on a full sink. The worker
holds only the pump, its source and its sink: never the user-facing object,
so dropping that object (whose finalizer cancels the pump) closes the
connection. Nothing the worker raises reaches threading's excepthook.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import queue as queue_module
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ._transport import CancelToken

__all__ = ["End", "LoopSink", "Pump", "Sink", "Source", "ThreadSink", "run"]

log = logging.getLogger("dottxt")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

_thread_numbers = itertools.count(1)

# Pump states: new (start() not called), running (cancel() still cancels), ended
# (the worker has its outcome: cancel() returns False), cancelled (cancel() won).
_NEW, _RUNNING, _ENDED, _CANCELLED = "new", "running", "ended", "cancelled"


class Source(Protocol[T_co]):
    """A blocking iterator that can be closed from another thread, waking a read blocked in it."""

    def __iter__(self) -> Iterator[T_co]: ...

    def close(self) -> None: ...


class Sink(Protocol[T_contra]):
    """Where a pump's items go. put() and end() run on the worker thread, cancel() on the cancelling one."""

    def put(self, item: T_contra) -> bool:
        """Hand over one item; False if nobody will take more (the pump then cancels itself)."""
        ...

    def end(self, value: Any, error: BaseException | None) -> None:
        """The last call, exactly once: `finish()`'s value, or the error that stopped the source.

        After a cancel both are None.
        """
        ...

    def cancel(self) -> None:
        """The pump was cancelled: stop waiting in put(). Runs under the pump's lock, before end(): keep it short."""
        ...


class Pump(Generic[T]):
    """Reads `source` on a daemon thread named `dottxt-<name>-<n>`, handing each item to `sink`.

    Nothing happens until start(). After the source is exhausted the worker
    calls `finish()` (if given; `PatchStream.result`, say) for the end value.
    The source is always closed before the end signal.
    """

    def __init__(self, source: Source[T], sink: Sink[T], *, name: str, finish: Callable[[], Any] | None = None) -> None:
        self._source = source
        self._sink = sink
        self._finish = finish
        self._lock = threading.Lock()
        self._state = _NEW
        self._started = False
        self._stop = threading.Event()
        # Daemon: a worker stuck in a user callback, or on a server that never
        # answers, must not keep the interpreter from exiting; it holds nothing
        # that needs flushing, and otherwise it always ends with its source.
        self._thread = threading.Thread(target=self._run, name=f"dottxt-{name}-{next(_thread_numbers)}", daemon=True)

    @property
    def name(self) -> str:
        """The worker thread's name."""
        return self._thread.name

    def start(self) -> None:
        """Start the worker, once. If no thread can be started, the source is closed and the error raised."""
        with self._lock:
            if self._started:
                raise RuntimeError(f"{self.name} was already started")
            self._started = True
            if self._state == _NEW:
                self._state = _RUNNING
            # else cancelled before starting: the worker still runs, to send the sink its end signal
        try:
            self._thread.start()
        except BaseException:  # no thread to run it (RuntimeError: can't start new thread)
            with self._lock:
                if self._state == _RUNNING:
                    self._state = _ENDED
            _close(self._source)
            raise

    def cancel(self) -> bool:
        """Stop: close the source (waking a blocked read) and the sink's waits; True if the pump had not ended."""
        with self._lock:
            if self._state in (_ENDED, _CANCELLED):
                return False
            self._state = _CANCELLED
            self._stop.set()
            self._sink.cancel()  # under the lock: done before the worker can send its end signal
        _close(self._source)
        return True

    @property
    def cancelled(self) -> bool:
        """True if cancel() stopped the pump before it ended."""
        return self._state == _CANCELLED

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread to end; True if it has (or never started). Harmless from the worker itself."""
        thread = self._thread
        if thread.ident is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        """The worker: read, hand over, close, end; never lets an exception escape."""
        value: Any = None
        error: BaseException | None = None
        try:
            try:
                if not self._stop.is_set():
                    for item in self._source:
                        if not self._sink.put(item):
                            self.cancel()  # nobody takes the rest
                        if self._stop.is_set():
                            break
                    else:
                        if self._finish is not None and not self._stop.is_set():
                            value = self._finish()
            except BaseException as exc:  # anything at all: threading's excepthook must never see it
                error = exc
            finally:
                _close(self._source)
        finally:
            with self._lock:
                cancelled = self._state == _CANCELLED
                if not cancelled:
                    self._state = _ENDED
            try:
                if cancelled:
                    self._sink.end(None, None)  # a read error after a cancel is our own interrupt
                else:
                    self._sink.end(value, error)
            except BaseException:
                log.exception("%s: the sink's end signal raised", self.name)

    def __repr__(self) -> str:
        return f"<Pump {self.name} {self._state}>"


def _close(source: Source[Any]) -> None:
    """Close a source; a failure closing a half-read response has nothing left to report."""
    try:
        source.close()
    except Exception:
        log.debug("closing %r raised", source, exc_info=True)


# --------------------------------------------------------------------------- a thread sink: queue + callbacks


class ThreadSink(Generic[T]):
    """Puts each item on a `queue.Queue` then calls `on_item`, on the worker; Future-like outcome.

    A bounded queue applies back-pressure (the worker waits for room; nothing
    is dropped) and a cancel still wakes it. The queue always gets a closing
    `None`, even when full, so `while (item := q.get()) is not None` ends. At
    the end, `on_complete(value)` or `on_error(error)` (not after a cancel):
    an `on_item` or `on_complete` that raises becomes the error.
    """

    def __init__(
        self,
        queue: queue_module.Queue[T | None],
        *,
        on_item: Callable[[T], Any] | None = None,
        on_complete: Callable[[Any], Any] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        cancelled_error: Callable[[], BaseException],
    ) -> None:
        self.queue = queue
        self._on_item = on_item
        self._on_complete = on_complete
        self._on_error = on_error
        self._cancelled_error = cancelled_error
        self._cancelled = False
        self._done = threading.Event()  # the outcome is known
        self.ended = threading.Event()  # the closing None is on the queue: nothing more comes
        self._value: Any = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ the worker's side

    def put(self, item: T) -> bool:
        if self._cancelled or not self._put_waiting(item):
            return False
        if self._on_item is not None:
            self._on_item(item)
        return True

    def _put_waiting(self, item: T) -> bool:
        """Queue.put, waiting for room in a bounded queue until cancel(); False if cancelled first."""
        q = self.queue
        if q.maxsize <= 0:
            q.put(item)
            return True
        with q.not_full:
            while q._qsize() >= q.maxsize:  # we hold q.mutex
                if self._cancelled:
                    return False
                q.not_full.wait()
            _force_put_locked(q, item)
        return True

    def end(self, value: Any, error: BaseException | None) -> None:
        try:
            if not self._cancelled:  # a cancelled outcome was published by cancel()
                self._settle(value, error)
        finally:
            with self.queue.mutex:  # even on a full bounded queue: every get() loop must end
                _force_put_locked(self.queue, None)
            self.ended.set()

    def _settle(self, value: Any, error: BaseException | None) -> None:
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
        self._value, self._error = value, error
        self._done.set()

    def cancel(self) -> None:
        self._error = self._cancelled_error()  # before the closing None: a reader then finds it
        self._cancelled = True
        self._done.set()
        q = self.queue
        if q.maxsize > 0:
            with q.not_full:  # wake a worker blocked on a full bounded queue
                q.not_full.notify_all()

    # ------------------------------------------------------------------ the reader's side

    def done(self) -> bool:
        """True once the outcome is known: finished, failed or cancelled."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the outcome; the end value, or raise the error (the builtin TimeoutError if not done in time)."""
        error = self.exception(timeout)
        if error is not None:
            raise error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the outcome; the error, or None (the builtin TimeoutError if not done in time)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the stream did not finish within {timeout} seconds")
        return self._error


def _force_put_locked(q: queue_module.Queue[Any], item: object) -> None:
    """Queue.put without the size check; the caller holds `q.mutex`."""
    q._put(item)
    q.unfinished_tasks += 1
    q.not_empty.notify()


# --------------------------------------------------------------------------- an event-loop sink


@dataclass(frozen=True)
class End:
    """A LoopSink's last item: the pump's end value, or the error that stopped it (both None after a cancel)."""

    value: Any = None
    error: BaseException | None = None


class LoopSink(Generic[T]):
    """Hands each item to an asyncio.Queue on `loop` (`call_soon_threadsafe`), then an `End`.

    A closed loop means nobody reads: put() refuses, so the pump cancels
    itself. After `abandon()` (on the loop) queued and later items are
    dropped, each passed to `discard` (to close a stream nobody will read).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, discard: Callable[[T], Any] | None = None) -> None:
        self._loop = loop
        self._discard = discard
        self._items: asyncio.Queue[T | End] = asyncio.Queue()
        self._ended = asyncio.Event()
        self._abandoned = False
        self.delivered = False  # an item was handed over (for a stream: its response is open)

    def put(self, item: T) -> bool:
        if not self._hand_over(item):
            self._drop(item)
            return False
        self.delivered = True
        return True

    def end(self, value: Any, error: BaseException | None) -> None:
        self._hand_over(End(value, error))

    def cancel(self) -> None:
        pass  # put() never waits

    def _hand_over(self, item: T | End) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._receive, item)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _receive(self, item: T | End) -> None:
        """On the loop."""
        if isinstance(item, End):
            self._ended.set()
            if not self._abandoned:
                self._items.put_nowait(item)
        elif self._abandoned:
            self._drop(item)
        else:
            self._items.put_nowait(item)

    def _drop(self, item: T) -> None:
        if self._discard is not None:
            self._discard(item)

    async def get(self) -> T | End:
        """The next item, or the `End`."""
        return await self._items.get()

    async def wait_ended(self) -> None:
        """Wait until the end signal has reached the loop (the worker has made its last hand-over)."""
        await self._ended.wait()

    def abandon(self) -> None:
        """On the loop: nobody will read again; discard what is queued and what comes."""
        self._abandoned = True
        while not self._items.empty():
            item = self._items.get_nowait()
            if not isinstance(item, End):
                self._drop(item)


# --------------------------------------------------------------------------- one-shot calls


class _Call(Generic[T]):
    """A one-item source: `fn(token)` run in the caller's context; close() sets the token while it runs."""

    def __init__(self, fn: Callable[[CancelToken], T]) -> None:
        self._fn = fn
        self._token = CancelToken()
        self._context = contextvars.copy_context()
        self._running = False

    def __iter__(self) -> Iterator[T]:
        self._running = True
        try:
            value = self._context.run(self._fn, self._token)
        finally:
            self._running = False
        yield value

    def close(self) -> None:
        if self._running:  # once the call has returned, its token no longer governs anything
            self._token.set()


async def run(fn: Callable[[CancelToken], T], *, name: str = "call", discard: Callable[[T], Any] | None = None) -> T:
    """Await the blocking `fn(cancel)` run on a thread of its own, without blocking the loop.

    If the awaiting task is cancelled, the token is set (the request `fn` is
    sending wakes at once, so the thread ends promptly) and a value that
    arrives anyway is passed to `discard`.
    """
    sink: LoopSink[T] = LoopSink(asyncio.get_running_loop(), discard=discard)
    pump = Pump(_Call(fn), sink, name=name)
    pump.start()
    try:
        item = await sink.get()
    except asyncio.CancelledError:
        pump.cancel()
        sink.abandon()
        raise
    if isinstance(item, End):  # `fn` raised (only this function cancels the pump, and it is not reading then)
        raise item.error if item.error is not None else RuntimeError(f"{pump.name} ended without a value")
    return item
