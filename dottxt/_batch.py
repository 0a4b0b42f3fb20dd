"""`generate_many`: one schema over many inputs, on threads of one client, slowing down under rate limits.

Each input is one call of the client's public `generate`, so the per-request
rules (timeouts, retries with backoff, `Retry-After` between them) stay the
transport's. This module adds what only a batch can do: how many requests run
at once, and what the whole run does when the server says "too many".

Back-off policy, AIMD (additive increase, multiplicative decrease, as TCP's
congestion control):

- The window (requests allowed at once) starts at `concurrency`, its ceiling.
- An input that still ends in 429 after the transport's own retries halves
  the window (never below 1) and pauses every new start for its
  `Retry-After` (else the transport's exponential backoff, longer with each
  cut in a row); the input goes back to the front of the queue, so the run
  slows down instead of failing. Only a 429 on a request sent after the last
  cut counts as news: the requests already in flight when it happened carry
  the same message, so one burst cuts the window once.
- Each success widens the window by 1/window: about one more request at once
  per window's worth of successes, back up to the ceiling.
- An input rate limited MAX_RATE_LIMITED times in a row ends as an error
  item holding the RateLimitError, so a server that never lets up cannot
  hold the run forever.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sized
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._errors import DotTxtError, RateLimitError
from ._transport import CancelToken, retry_delay

if TYPE_CHECKING:
    pass

__all__ = ["BatchItem", "generate_many", "MAX_RATE_LIMITED"]

#: How many times one input may end rate limited (each after the transport's retries) before it is an error item.
MAX_RATE_LIMITED = 8
#: How long stopping a run waits for each worker thread (they are woken at once; this only bounds a bug).
_JOIN_TIMEOUT = 30.0
#: Put on the results queue once every input is accounted for, or the run failed.
_DONE = object()


@dataclass(frozen=True)
class BatchItem:
    """The outcome of one input of `generate_many`: `value` as `generate` returns it, or `error`."""

    #: The input's position in the iterable given to `generate_many` (0-based).
    index: int
    #: The input as given (the prompt string or the list of messages).
    input: Any
    #: The parsed output, typed as `generate` returns it (None when `error` is set).
    value: Any = None
    #: The DotTxtError the input ended with, after retries; None on success.
    error: DotTxtError | None = None

    @property
    def ok(self) -> bool:
        """True when the input succeeded (`error` is None)."""
        return self.error is None


@dataclass(frozen=True)
class _Job:
    index: int
    input: Any
    rate_limited: int = 0  # how many times this input has ended in 429 so far


class _Window:
    """AIMD: how many requests may run at once, and until when none may start (see the module docstring)."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.size = float(ceiling)
        self.resume_at = 0.0  # time.monotonic() before which nothing new starts
        self._last_cut = -math.inf
        self._cuts_in_a_row = 0

    def allows(self, running: int) -> bool:
        """Whether one more request may start now that `running` are in flight (pauses aside)."""
        return running < int(self.size)

    def succeeded(self) -> None:
        self.size = min(float(self.ceiling), self.size + 1.0 / self.size)
        self._cuts_in_a_row = 0

    def rate_limited(self, started: float, now: float, retry_after: str | None) -> None:
        """A request sent at `started` ended in 429: cut the window once per burst, pause new starts."""
        news = started >= self._last_cut
        if news:
            self.size = max(1.0, self.size / 2.0)
            self._last_cut = now
            self._cuts_in_a_row += 1
        if news or retry_after:
            pause = retry_delay(self._cuts_in_a_row - 1, retry_after)
            self.resume_at = max(self.resume_at, now + pause)


class _Run:
    """One generate_many run: the inputs, the window, the worker threads and the results they hand back."""

    def __init__(self, call: Callable[[Any, CancelToken], Any], inputs: Iterable[Any], concurrency: int) -> None:
        self._call = call
        self._threads_wanted = min(concurrency, len(inputs)) if isinstance(inputs, Sized) else concurrency
        self._source = enumerate(inputs)
        self._window = _Window(concurrency)
        self._cond = threading.Condition()
        self._retry: deque[_Job] = deque()
        self._running = 0  # inputs taken by a worker and not yet accounted for
        self._unread = 0  # items on the results queue the caller has not taken yet
        self._pulling = False  # a worker is inside next() of the caller's iterable
        self._exhausted = False
        self._stopped = False
        self._done = False
        self._failure: BaseException | None = None
        self._tokens: list[CancelToken] = []
        self._threads: list[threading.Thread] = []
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()

    # -- the caller's side

    def start(self) -> None:
        for number in range(1, max(self._threads_wanted, 1) + 1):
            token = CancelToken()
            thread = threading.Thread(target=self._work, args=(token,), name=f"dottxt-batch-{number}", daemon=True)
            self._tokens.append(token)
            self._threads.append(thread)
            thread.start()

    def taken(self) -> None:
        """The caller took one item off the results queue: room for one more."""
        with self._cond:
            self._unread -= 1
            self._cond.notify_all()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """Start nothing more, interrupt what is in flight, and wait for every worker thread to end."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for token in self._tokens:
            token.set()  # wakes a retry wait and shuts down the socket of a request in flight
        for thread in self._threads:
            thread.join(_JOIN_TIMEOUT)

    # -- the workers' side

    def _work(self, token: CancelToken) -> None:
        while (job := self._next_job()) is not None:
            started = time.monotonic()
            try:
                value = self._call(job.input, token)  # stop() interrupts the request through the token
            except DotTxtError as exc:
                self._finish(job, started, None, exc)
            except Exception as exc:  # a bad input or argument: the caller's bug, raised to the caller
                self._fail(exc)
                return
            else:
                self._finish(job, started, value, None)

    def _next_job(self) -> _Job | None:
        """The next input to send once the window allows it; None when the run is over or stopped."""
        with self._cond:
            while True:
                if self._stopped or self._done:
                    return None
                now = time.monotonic()
                if now < self._window.resume_at:
                    self._cond.wait(self._window.resume_at - now)
                elif not self._window.allows(self._running) or self._unread >= self._window.ceiling:
                    self._cond.wait()
                elif self._retry:
                    self._running += 1
                    return self._retry.popleft()
                elif self._exhausted or self._pulling:
                    self._cond.wait()
                else:
                    self._pulling = True
                    self._running += 1
                    break
        return self._pull()

    def _pull(self) -> _Job | None:
        """The next input of the caller's iterable, read outside the lock (it may be slow)."""
        try:
            index, value = next(self._source)
        except StopIteration:
            with self._cond:
                self._pulling, self._exhausted = False, True
                self._running -= 1
                self._settle()
            return self._next_job()  # only retried inputs are left
        except Exception as exc:
            self._fail(exc)
            return None
        with self._cond:
            self._pulling = False
            self._cond.notify_all()
        return _Job(index, value)

    def _finish(self, job: _Job, started: float, value: Any, error: DotTxtError | None) -> None:
        with self._cond:
            self._running -= 1
            if self._stopped:
                pass  # the caller has gone: the outcome (often our own interrupt) has nobody to go to
            elif isinstance(error, RateLimitError):
                self._window.rate_limited(started, time.monotonic(), error.headers.get("retry-after"))
                if job.rate_limited + 1 < MAX_RATE_LIMITED:
                    self._retry.appendleft(replace(job, rate_limited=job.rate_limited + 1))
                else:
                    self._hand_over(BatchItem(job.index, job.input, None, error))
            else:
                if error is None:
                    self._window.succeeded()
                self._hand_over(BatchItem(job.index, job.input, value, error))
            self._settle()

    def _hand_over(self, item: BatchItem) -> None:
        self._unread += 1
        self.results.put(item)

    def _settle(self) -> None:
        """(Under the lock.) Wake the waiting workers; once every input is accounted for, tell the caller."""
        if not self._done and self._exhausted and not self._running and not self._retry:
            self._done = True
            self.results.put(_DONE)
        self._cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        """Stop the run because of `exc`, which the caller's loop raises after the items already handed over."""
        with self._cond:
            if self._failure is None and not self._stopped:
                self._failure = exc
            self._pulling = False
            if not self._done:
                self._done = True
                self.results.put(_DONE)
            self._cond.notify_all()


def _with_system(input: Any, system: str | None) -> Any:
    """The input with `system` as a first system message (a prompt string becomes a list of messages)."""
    if system is None:
        return input
    message = {"role": "system", "content": system}
    if isinstance(input, str):
        return [message, {"role": "user", "content": input}]
    if isinstance(input, list):
        return [message, *input]
    return input  # generate() raises the TypeError that names what was wrong


def generate_many(
    call: Callable[[Any, CancelToken], Any], inputs: Iterable[Any], *, concurrency: int = 8, system: str | None = None
) -> Generator[BatchItem, None, None]:
    """`call(input, cancel)` over every input, up to `concurrency` at once: one BatchItem each, in completion order.

    Requests start when iteration does. The iterable is read lazily, as room
    frees up. Leaving the loop early (break, an exception, `close()`) starts
    nothing more, interrupts the requests in flight (through their tokens) and
    ends every worker thread before it returns.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool):
        raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be a string, not {type(system).__name__}")
    return _items(_Run(lambda input, cancel: call(_with_system(input, system), cancel), inputs, concurrency))


def _items(run: _Run) -> Generator[BatchItem, None, None]:
    """The caller's end of a run: items as they finish; the run stops when the loop ends, however it ends."""
    run.start()
    try:
        while (item := run.results.get()) is not _DONE:
            run.taken()
            yield item
        run.raise_failure()
    finally:
        run.stop()
