"""The pump from a blocking iterator to a sink: order, one end signal, cancel, back-pressure, closed loops, threads."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dottxt._pump import End, LoopSink, Pump, ThreadSink, run
from dottxt._transport import CancelToken

WAIT = 5.0


class Cancelled(Exception):
    """What the thread sink reports after a cancel in these tests."""


class Source:
    """A blocking source: yields `items`, then raises `error` or blocks (until close()) or ends."""

    def __init__(self, items: list[Any], *, block: bool = False, error: BaseException | None = None) -> None:
        self.items = items
        self.block = block
        self.error = error
        self.pulled = 0  # items handed out so far
        self.handed_out = [threading.Event() for _ in items]  # set as each item leaves the source
        self.started = threading.Event()
        self.blocked = threading.Event()  # the read is waiting on the "server"
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        self.started.set()
        for n, item in enumerate(self.items):
            self.pulled += 1
            self.handed_out[n].set()
            yield item
        if self.error is not None:
            raise self.error
        if self.block:
            self.blocked.set()
            assert self.closed.wait(WAIT), "nothing woke the blocked read"

    def close(self) -> None:
        self.closed.set()


class Recorder:
    """Callbacks for a ThreadSink that record what they were called with, and on which thread."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.threads: set[str] = set()
        self.completed: list[Any] = []
        self.errors: list[BaseException] = []

    def sink(self, q: queue.Queue[Any] | None = None) -> ThreadSink[Any]:
        return ThreadSink(
            q if q is not None else queue.Queue(),
            on_item=self.on_item,
            on_complete=self.completed.append,
            on_error=self.errors.append,
            cancelled_error=Cancelled,
        )

    def on_item(self, item: Any) -> None:
        self.items.append(item)
        self.threads.add(threading.current_thread().name)


def drain(q: queue.Queue[Any]) -> list[Any]:
    """Every item up to and including the closing None."""
    items = []
    while (item := q.get(timeout=WAIT)) is not None:
        items.append(item)
    return [*items, None]


# --------------------------------------------------------------------------- the thread sink


def test_items_arrive_in_order_on_the_worker_then_one_end_signal() -> None:
    source, seen = Source([1, 2, 3, 4, 5]), Recorder()
    sink = seen.sink()
    pump = Pump(source, sink, name="test", finish=lambda: "final")
    assert not source.started.is_set()  # nothing happens before start()
    pump.start()

    assert sink.result(WAIT) == "final"
    assert drain(sink.queue) == [1, 2, 3, 4, 5, None]
    assert seen.items == [1, 2, 3, 4, 5]
    assert seen.threads == {pump.name} and pump.name.startswith("dottxt-test-")
    assert seen.completed == ["final"] and seen.errors == []
    assert source.closed.is_set()  # closed before the end signal
    assert pump.join(WAIT)
    assert pump.cancel() is False and not pump.cancelled


def test_a_source_error_is_the_one_end_signal_and_finish_is_not_called() -> None:
    finished: list[int] = []
    source, seen = Source([1, 2], error=ValueError("cut off")), Recorder()
    sink = seen.sink()
    pump = Pump(source, sink, name="test", finish=lambda: finished.append(1))
    pump.start()

    with pytest.raises(ValueError, match="cut off"):
        sink.result(WAIT)
    assert drain(sink.queue) == [1, 2, None]
    assert [str(e) for e in seen.errors] == ["cut off"] and seen.completed == [] and finished == []
    assert source.closed.is_set()
    assert pump.join(WAIT)


def test_a_callback_that_raises_stops_the_pump_and_closes_the_source() -> None:
    source = Source([1, 2, 3], block=True)
    errors: list[BaseException] = []

    def on_item(item: int) -> None:
        if item == 2:
            raise KeyError(item)

    sink: ThreadSink[int] = ThreadSink(
        queue.Queue(), on_item=on_item, on_error=errors.append, cancelled_error=Cancelled
    )
    pump = Pump(source, sink, name="test")
    pump.start()

    assert isinstance(sink.exception(WAIT), KeyError) and errors == [sink.exception()]
    assert drain(sink.queue) == [1, 2, None]
    assert source.pulled == 2 and source.closed.is_set()
    assert pump.join(WAIT)


def test_cancel_wakes_a_read_blocked_in_the_source() -> None:
    source, seen = Source(["a"], block=True), Recorder()
    sink = seen.sink()
    pump = Pump(source, sink, name="test", finish=lambda: "never")
    pump.start()
    assert source.blocked.wait(WAIT)

    assert pump.cancel() is True
    assert pump.cancelled and sink.done()
    assert isinstance(sink.exception(0), Cancelled)  # known at once, before the worker ends
    assert pump.join(WAIT)
    assert drain(sink.queue) == ["a", None]
    assert seen.completed == [] and seen.errors == []  # a cancelled pump reports nothing
    assert pump.cancel() is False


def test_cancel_before_start_never_reads_and_still_ends_the_queue() -> None:
    source, seen = Source([1, 2]), Recorder()
    sink = seen.sink()
    pump = Pump(source, sink, name="test")
    assert pump.cancel() is True
    pump.start()

    assert drain(sink.queue) == [None]
    assert not source.started.is_set() and source.closed.is_set()
    assert pump.join(WAIT)


def test_a_pump_starts_once() -> None:
    sink = Recorder().sink()
    pump = Pump(Source([]), sink, name="test")
    pump.start()
    with pytest.raises(RuntimeError, match="already started"):
        pump.start()
    assert drain(sink.queue) == [None]
    assert pump.join(WAIT)


def test_a_bounded_queue_gives_back_pressure_and_drops_nothing() -> None:
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    items = list(range(200))
    sink = Recorder().sink(q)
    pump = Pump(Source(items), sink, name="test")
    pump.start()

    assert drain(q) == [*items, None]
    assert pump.join(WAIT)


def test_cancel_wakes_a_worker_blocked_on_a_full_bounded_queue() -> None:
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    source, seen = Source([1, 2, 3]), Recorder()
    pump = Pump(source, seen.sink(q), name="test")
    pump.start()
    assert source.handed_out[1].wait(WAIT)  # item 2 is on its way into the full queue: nobody reads

    assert pump.cancel() is True
    assert pump.join(WAIT)
    assert drain(q) == [1, None]  # the closing None arrives even though the queue was full
    assert seen.items == [1] and source.pulled == 2


# --------------------------------------------------------------------------- the event-loop sink


def test_a_loop_sink_hands_items_to_the_loop_in_order_then_the_end() -> None:
    async def main() -> list[Any]:
        sink: LoopSink[int] = LoopSink(asyncio.get_running_loop())
        pump = Pump(Source([1, 2, 3]), sink, name="test", finish=lambda: "final")
        pump.start()
        got: list[Any] = []
        while not isinstance(item := await sink.get(), End):
            got.append(item)
        await sink.wait_ended()
        assert pump.join(WAIT)
        return [*got, item]

    assert asyncio.run(main()) == [1, 2, 3, End("final", None)]


def test_a_closed_loop_means_nobody_reads_the_pump_cancels_itself() -> None:
    loop = asyncio.new_event_loop()
    discarded: list[Any] = []
    sink: LoopSink[str] = LoopSink(loop, discard=discarded.append)
    loop.close()
    source = Source(["first", "second"], block=True)
    pump = Pump(source, sink, name="test")
    pump.start()

    assert pump.join(WAIT)
    assert pump.cancelled and source.closed.is_set()
    assert source.pulled == 1 and discarded == ["first"]  # nothing read past the refused item


# --------------------------------------------------------------------------- one-shot calls


def test_run_returns_the_value_or_raises_the_error_of_the_call() -> None:
    def boom(token: CancelToken) -> None:
        raise LookupError("no such model")

    async def main() -> None:
        assert await run(lambda token: 42, name="test") == 42
        with pytest.raises(LookupError, match="no such model"):
            await run(boom, name="test")

    asyncio.run(main())


def test_cancelling_the_awaiting_task_sets_the_token_and_discards_a_late_value() -> None:
    entered = threading.Event()
    woke: list[bool] = []

    def call(token: CancelToken) -> str:
        entered.set()
        woke.append(token.wait(WAIT))  # a request the token interrupts
        return "late"

    async def main() -> list[str]:
        discarded: list[str] = []
        got_it = asyncio.Event()

        def discard(value: str) -> None:
            discarded.append(value)
            got_it.set()

        task = asyncio.create_task(run(call, name="test", discard=discard))
        assert await asyncio.to_thread(entered.wait, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(got_it.wait(), WAIT)
        return discarded

    assert asyncio.run(main()) == ["late"]
    assert woke == [True]


def test_run_hands_the_callers_context_to_the_call() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> str:
        var.set("caller's")
        return await run(lambda token: var.get(), name="test")

    assert asyncio.run(main()) == "caller's"


# --------------------------------------------------------------------------- threads


def test_no_thread_outlives_its_pump_and_nothing_reaches_the_excepthook(monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)

    pumps = []
    sinks = []
    for error in (SystemExit(3), KeyboardInterrupt(), RuntimeError("x")):
        sink = Recorder().sink()
        pump = Pump(Source([1], error=error), sink, name="test")
        pump.start()
        pumps.append(pump)
        sinks.append(sink)
    for pump, sink in zip(pumps, sinks, strict=True):
        assert pump.join(WAIT)
        assert sink.exception(WAIT) is not None
    assert hooked == []
    assert not [t for t in threading.enumerate() if t.name.startswith("dottxt-test-")]


def test_a_sink_whose_end_raises_is_logged_not_sent_to_the_excepthook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)

    class Broken:
        def put(self, item: Any) -> bool:
            return True

        def end(self, value: Any, error: BaseException | None) -> None:
            raise RuntimeError("sink broke")

        def cancel(self) -> None:
            pass

    pump = Pump(Source([1]), Broken(), name="test")
    with caplog.at_level(logging.ERROR, logger="dottxt"):
        pump.start()
        assert pump.join(WAIT)
    assert hooked == []
    assert "end signal raised" in caplog.text
