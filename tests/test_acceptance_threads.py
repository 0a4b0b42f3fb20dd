"""SPEC sections 6 and 7 read sentence by sentence: background streams and AsyncDotTxt.

Complements tests/test_background.py and tests/test_async.py: the keyword surface
as the SPEC spells it, cancelling at every stage of a request (before the response
headers, in a retry wait, mid-body, inside a callback) within the 100 ms the SPEC
allows, the `sse` patch source through both, and closing the client under a
running stream. Every wait is bounded; servers signal through events.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar

import pydantic
import pytest

from dottxt import (
    APIConnectionError,
    AsyncDotTxt,
    BackgroundStream,
    DotTxt,
    DotTxtError,
    InvalidOutputError,
    PatchEvent,
    StreamCancelledError,
)
from dottxt._patch import ops_from_document
from dottxt.testing import FakeGateway
from tests.conftest import TEST_KEY
from tests.rawserver import RawConnection, RawServer, ndjson

MODEL = "dottxt/fake-model"
WAIT = 5.0  # bound for things that happen in milliseconds
CANCEL_BUDGET = 0.1  # SPEC 6: cancel() closes the connection within 100 ms
OBJECT = {"type": "object"}
T = TypeVar("T")


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[str]
    reply: str


TICKET = {"intent": "billing", "steps": ["refund", "apologise"], "reply": "We refunded you."}
TICKET_FIELDS = ["", "intent", "steps", "steps/0", "steps/1", "reply"]


def stream_threads() -> list[threading.Thread]:
    """The SDK's stream worker threads still running."""
    return [t for t in threading.enumerate() if t.name.startswith("dottxt-stream-")]


def drain(q: queue.Queue[PatchEvent | None]) -> list[PatchEvent]:
    """Every event up to the None sentinel, which must come."""
    events = []
    while (event := q.get(timeout=WAIT)) is not None:
        events.append(event)
    return events


def wait_until(condition: Callable[[], bool]) -> bool:
    """Poll `condition` (for state no event signals) until true, or False after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


class Silent:
    """A server that reads the request and never answers; records when the client hangs up."""

    def __init__(self, *, body_ops: list[dict[str, Any]] | None = None, sse: list[str] | None = None) -> None:
        self.arrived = threading.Event()
        self.disconnected = threading.Event()
        self.disconnected_at = 0.0
        self._body_ops = body_ops
        self._sse = sse
        self.server = RawServer(self._handle)

    def _handle(self, conn: RawConnection) -> None:
        if self._body_ops is not None:
            conn.head()
            conn.chunk(ndjson(*self._body_ops))
        elif self._sse is not None:
            conn.head(headers={"Content-Type": "text/event-stream"})
            for piece in self._sse:
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                conn.chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self.arrived.set()
        if conn.wait_for_disconnect(30):
            self.disconnected_at = time.monotonic()
            self.disconnected.set()

    def hung_up_within(self, started: float) -> float:
        """Seconds from `started` to the client's hang-up (which must come)."""
        assert self.disconnected.wait(WAIT), "the client never closed the connection"
        return self.disconnected_at - started

    def close(self) -> None:
        self.server.close()
        assert not self.server.errors, self.server.errors


@pytest.fixture
def silent() -> Iterator[Callable[..., Silent]]:
    made: list[Silent] = []

    def make(**kwargs: Any) -> Silent:
        made.append(Silent(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[DotTxt]:
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, timeout=(5, 5)) as c:
        yield c


# --------------------------------------------------------------------------- SPEC 6: background streams


def test_stream_in_background_takes_the_stream_arguments_and_every_callback_keyword(
    gateway: FakeGateway, client: DotTxt
) -> None:
    gateway.enqueue(TICKET)
    mine: queue.Queue[PatchEvent | None] = queue.Queue()
    calls: list[tuple[str, str, str]] = []
    thread_names: set[str] = set()

    def note(kind: str) -> Callable[[PatchEvent], None]:
        def callback(event: PatchEvent) -> None:
            thread_names.add(threading.current_thread().name)
            calls.append((kind, event.field, event.value if event.is_leaf else ""))

        return callback

    completed: list[Any] = []
    errors: list[BaseException] = []
    bg = client.stream_in_background(
        model=MODEL,
        response_format=Ticket,
        input=[{"role": "system", "content": "triage"}, {"role": "user", "content": "refund"}],
        temperature=0.2,
        max_tokens=500,
        seed=7,
        timeout=(5, 5),
        extra={"top_p": 0.5},
        on_event=note("event"),
        on_field={"intent": note("intent"), "steps/*": note("steps/*")},
        on_error=errors.append,
        on_complete=completed.append,
        queue=mine,
    )
    assert isinstance(bg, BackgroundStream)
    assert bg.queue is mine
    result = bg.result(timeout=WAIT)  # nothing but waiting: it was already running

    assert isinstance(result, Ticket) and result.model_dump() == TICKET
    assert completed == [result] and errors == []
    assert [e.field for e in drain(mine)] == TICKET_FIELDS
    # on_event then the matching on_field callbacks, event by event in wire order, on the worker
    assert calls == [
        ("event", "", ""),
        ("event", "intent", "billing"),
        ("intent", "intent", "billing"),
        ("event", "steps", ""),
        ("event", "steps/0", "refund"),
        ("steps/*", "steps/0", "refund"),
        ("event", "steps/1", "apologise"),
        ("steps/*", "steps/1", "apologise"),
        ("event", "reply", "We refunded you."),
    ]
    assert len(thread_names) == 1 and thread_names != {threading.current_thread().name}
    body = gateway.requests[-1].json
    assert body["stream"] == "patch"
    assert (body["temperature"], body["max_tokens"], body["seed"], body["top_p"]) == (0.2, 500, 7, 0.5)
    assert body["messages"][0] == {"role": "system", "content": "triage"}


def test_a_raising_on_event_ends_iteration_with_that_exception_and_reaches_on_error_once(
    silent: Callable[..., Silent],
) -> None:
    server = silent(body_ops=ops_from_document({"intent": "billing", "reply": "x"})[:2])  # then silence
    boom = RuntimeError("refused")
    errors: list[BaseException] = []
    completed: list[Any] = []

    def refuse(event: PatchEvent) -> None:
        if event.field == "intent":
            raise boom

    with DotTxt(api_key="k", base_url=server.server.base_url, max_retries=0, timeout=(30, 30)) as client:
        bg = client.stream_in_background(
            model=MODEL,
            response_format=OBJECT,
            input="x",
            on_event=refuse,
            on_error=errors.append,
            on_complete=completed.append,
        )
        fields = []
        with pytest.raises(RuntimeError) as info:
            for event in bg:  # the events queued before the failure, then the error
                fields.append(event.field)
        started = time.monotonic()
        assert info.value is boom
        assert fields == ["", "intent"]
        assert errors == [boom] and completed == []
        assert bg.exception(timeout=0) is boom
        assert server.hung_up_within(started) < WAIT  # the stream stopped: only a close ends it
        assert bg.join(WAIT)


def test_output_that_does_not_match_the_schema_fails_like_result(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue({"intent": "shipping", "steps": [], "reply": "?"})  # not a Ticket intent
    errors: list[BaseException] = []
    completed: list[Any] = []
    bg = client.stream_in_background(
        model=MODEL, response_format=Ticket, input="x", on_error=errors.append, on_complete=completed.append
    )
    assert [e.field for e in drain(bg.queue)] == ["", "intent", "steps", "reply"]
    with pytest.raises(InvalidOutputError) as info:
        bg.result(timeout=WAIT)
    assert errors == [info.value] and completed == []


def test_cancel_while_waiting_for_the_response_headers(silent: Callable[..., Silent]) -> None:
    """A CancelToken reaches the socket before the headers: nothing waits out the read timeout."""
    server = silent()
    errors: list[BaseException] = []
    with DotTxt(api_key="k", base_url=server.server.base_url, max_retries=0, timeout=(30, 30)) as client:
        bg = client.stream_in_background(model=MODEL, response_format=OBJECT, input="x", on_error=errors.append)
        assert server.arrived.wait(WAIT)
        assert not bg.done()
        started = time.monotonic()
        assert bg.cancel() is True
        assert bg.join(WAIT)
        ended = time.monotonic() - started
        assert server.hung_up_within(started) < CANCEL_BUDGET
        assert ended < CANCEL_BUDGET, f"the worker took {ended * 1000:.1f} ms to end"
        with pytest.raises(StreamCancelledError) as info:
            bg.result(timeout=0)
        assert isinstance(info.value, DotTxtError) and info.value.document is None
        assert bg.queue.get(timeout=0) is None
        assert errors == []


def test_cancel_during_a_retry_wait_sends_nothing_more(gateway: FakeGateway) -> None:
    gateway.fail_next(503, headers={"Retry-After": "30"})
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=2, timeout=(5, 5)) as client:
        bg = client.stream_in_background(model=MODEL, response_format=OBJECT, input="x")
        assert wait_until(lambda: len(gateway.requests) == 1)  # answered 503: now waiting 30 s to retry
        started = time.monotonic()
        assert bg.cancel() is True
        assert bg.join(WAIT)
        assert time.monotonic() - started < CANCEL_BUDGET
        with pytest.raises(StreamCancelledError):
            bg.result()
        assert drain(bg.queue) == []
    assert len(gateway.requests) == 1


def test_cancel_while_a_callback_runs_stops_at_once_and_calls_nothing_more(
    gateway: FakeGateway, client: DotTxt
) -> None:
    gateway.enqueue(TICKET)
    inside, release = threading.Event(), threading.Event()
    seen: list[str] = []
    completed: list[Any] = []

    def slow(event: PatchEvent) -> None:
        seen.append(event.field)
        if event.field == "intent":
            inside.set()
            release.wait(WAIT)

    bg = client.stream_in_background(
        model=MODEL, response_format=Ticket, input="x", on_event=slow, on_complete=completed.append
    )
    assert inside.wait(WAIT)
    started = time.monotonic()
    assert bg.cancel() is True  # from another thread, while the worker is inside a callback
    with pytest.raises(StreamCancelledError) as info:
        bg.result(timeout=WAIT)
    assert time.monotonic() - started < CANCEL_BUDGET  # the outcome does not wait for the callback
    assert info.value.document == {"intent": "billing"}
    release.set()
    assert bg.join(WAIT)
    assert seen == ["", "intent"] and completed == []
    assert [e.field for e in drain(bg.queue)] == ["", "intent"]


def test_leaving_the_with_by_an_exception_cancels_joins_and_lets_it_through(
    silent: Callable[..., Silent],
) -> None:
    server = silent(body_ops=ops_from_document({"intent": "billing"}))
    with DotTxt(api_key="k", base_url=server.server.base_url, max_retries=0, timeout=(30, 30)) as client:
        with pytest.raises(KeyError, match="caller"):
            with client.stream_in_background(model=MODEL, response_format=OBJECT, input="x") as bg:
                assert bg.queue.get(timeout=WAIT) is not None
                started = time.monotonic()
                raise KeyError("caller")
        assert stream_threads() == []  # joined on the way out
        assert server.hung_up_within(started) < CANCEL_BUDGET
        assert bg.cancelled()


def test_closing_the_client_under_a_running_background_stream(silent: Callable[..., Silent]) -> None:
    """`with DotTxt() as client:` ending while a stream still runs: a connection error, never a crash."""
    for _ in range(10):  # the close races the worker's read: repeat to catch a bad interleaving
        server = silent(body_ops=ops_from_document({"intent": "billing", "reply": "x"})[:2])
        errors: list[BaseException] = []
        client = DotTxt(api_key="k", base_url=server.server.base_url, max_retries=0, timeout=(30, 30))
        bg = client.stream_in_background(model=MODEL, response_format=OBJECT, input="x", on_error=errors.append)
        assert [bg.queue.get(timeout=WAIT).field for _ in range(2)] == ["", "intent"]  # type: ignore[union-attr]
        client.close()
        with pytest.raises(APIConnectionError) as info:
            bg.result(timeout=WAIT)
        assert info.value.document == {"intent": "billing"}
        assert errors == [info.value]
        assert bg.queue.get(timeout=WAIT) is None
        assert bg.join(WAIT)
        server.close()


def test_sse_patch_source_through_a_background_stream(gateway: FakeGateway) -> None:
    gateway.enqueue(TICKET)
    steps: list[str] = []
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, patch_source="sse", max_retries=0) as client:
        bg = client.stream_in_background(
            model=MODEL, response_format=Ticket, input="x", on_field={"steps/*": lambda e: steps.append(e.value)}
        )
        assert [e.field for e in bg] == TICKET_FIELDS
        assert bg.result(timeout=WAIT).model_dump() == TICKET
    assert steps == ["refund", "apologise"]
    assert gateway.requests[-1].json["stream"] is True


def test_cancel_an_sse_sourced_stream_while_the_server_is_silent(silent: Callable[..., Silent]) -> None:
    server = silent(sse=['{"intent": "billing", "reply": "We ref'])
    got_intent = threading.Event()
    with DotTxt(api_key="k", base_url=server.server.base_url, patch_source="sse", timeout=(30, 30)) as client:
        bg = client.stream_in_background(
            model=MODEL, response_format=OBJECT, input="x", on_field={"intent": lambda e: got_intent.set()}
        )
        assert got_intent.wait(WAIT)
        started = time.monotonic()
        assert bg.cancel() is True
        assert bg.join(WAIT)
        assert server.hung_up_within(started) < CANCEL_BUDGET
        with pytest.raises(StreamCancelledError) as info:
            bg.result()
        assert info.value.document == {"intent": "billing"}


# --------------------------------------------------------------------------- SPEC 7: AsyncDotTxt


def async_client(base_url: str, **kwargs: Any) -> AsyncDotTxt:
    return AsyncDotTxt(api_key=kwargs.pop("api_key", "k"), base_url=base_url, max_retries=0, timeout=(30, 30), **kwargs)


@pytest.mark.parametrize("how", ["aclose", "async with", "cancel the task in async for", "cancel the task in result"])
def test_closing_a_stream_still_waiting_for_headers_ends_the_connection_and_the_worker(
    silent: Callable[..., Silent], how: str
) -> None:
    server = silent()

    async def main() -> None:
        async with async_client(server.server.base_url) as client:
            stream = client.stream(model=MODEL, response_format=OBJECT, input="x")
            if how in ("aclose", "async with"):
                async with stream:
                    assert await asyncio.to_thread(server.arrived.wait, WAIT)
                    started = time.monotonic()
                    if how == "aclose":
                        await stream.aclose()
            else:

                async def consume() -> None:
                    if how == "cancel the task in result":
                        await stream.result()
                    else:
                        async for _ in stream:
                            pass

                task = asyncio.create_task(consume())
                assert await asyncio.to_thread(server.arrived.wait, WAIT)
                started = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for thread in stream_threads():  # cancelling cannot wait: the worker follows at once
                    thread.join(WAIT)
            ended = time.monotonic() - started
            assert stream_threads() == [], "the worker outlived the close"
            assert ended < CANCEL_BUDGET, f"closing took {ended * 1000:.1f} ms"
            assert server.hung_up_within(started) < CANCEL_BUDGET
            with pytest.raises(StreamCancelledError):
                await stream.result()

    run(main)


def test_aclose_during_a_retry_wait_ends_the_worker(gateway: FakeGateway) -> None:
    gateway.fail_next(503, headers={"Retry-After": "30"})

    async def main() -> None:
        async with AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=2) as client:
            stream = client.stream(model=MODEL, response_format=OBJECT, input="x")
            await stream.__aenter__()
            while not gateway.requests:  # the first attempt is answered 503: now waiting 30 s to retry
                await asyncio.sleep(0.002)
            started = time.monotonic()
            await stream.aclose()
            assert time.monotonic() - started < CANCEL_BUDGET
            assert stream_threads() == []

    run(main)
    assert len(gateway.requests) == 1


def test_cancelling_a_task_awaiting_a_chunk_stream_does_not_leave_its_connection_open() -> None:
    """The chunk stream that arrives after its awaiting task was cancelled is closed, not dropped open."""
    arrived, answer, disconnected = threading.Event(), threading.Event(), threading.Event()

    def handler(conn: RawConnection) -> None:
        arrived.set()
        assert answer.wait(WAIT)
        try:
            conn.head(headers={"Content-Type": "text/event-stream"})
            conn.chunk(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n')
        except OSError:  # the cancel already hung up on the request: the answer cannot even be sent
            disconnected.set()
            return
        if conn.wait_for_disconnect(WAIT):
            disconnected.set()

    async def main(base_url: str) -> None:
        async with async_client(base_url) as client:
            task = asyncio.create_task(
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
            )
            assert await asyncio.to_thread(arrived.wait, WAIT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            answer.set()  # the response arrives now: nobody will read it
            assert await asyncio.to_thread(disconnected.wait, WAIT), "the connection was left open"

    with RawServer(handler) as server:
        run(lambda: main(server.base_url))


def test_closing_the_async_client_under_a_running_stream(silent: Callable[..., Silent]) -> None:
    """`await client.close()` while a stream is read: `async for` raises a connection error, nothing else."""

    async def main(base_url: str) -> None:
        client = async_client(base_url)
        stream = client.stream(model=MODEL, response_format=OBJECT, input="x")
        assert (await stream.__anext__()).field == ""
        await client.close()
        with pytest.raises(APIConnectionError) as info:
            async for _ in stream:
                pass
        assert info.value.document == {}

    for _ in range(10):  # the close races the worker's read: repeat to catch a bad interleaving
        server = silent(body_ops=ops_from_document({"intent": "billing"})[:1])
        asyncio.run(main(server.server.base_url))
        assert server.disconnected.wait(WAIT)
        server.close()


def test_sse_patch_source_through_async_for_and_async_with(gateway: FakeGateway) -> None:
    gateway.enqueue(TICKET)
    gateway.enqueue(TICKET)

    async def main() -> None:
        async with AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, patch_source="sse") as client:
            stream = client.stream(model=MODEL, response_format=Ticket, input="x")
            assert [e.field async for e in stream] == TICKET_FIELDS
            assert (await stream.result()).model_dump() == TICKET
            async with client.stream(model=MODEL, response_format=Ticket, input="x") as second:
                values = {e.field: e.value async for e in second if e.is_leaf}
            assert values == {
                "intent": "billing",
                "steps/0": "refund",
                "steps/1": "apologise",
                "reply": TICKET["reply"],
            }

    run(main)
    assert [r.json["stream"] for r in gateway.requests] == [True, True]


def test_an_sse_sourced_async_stream_closes_on_break_during_a_stall(silent: Callable[..., Silent]) -> None:
    server = silent(sse=['{"intent": "technical", "reply": "Try'])

    async def main() -> None:
        async with async_client(server.server.base_url, patch_source="sse") as client:
            async for event in client.stream(model=MODEL, response_format=OBJECT, input="x"):
                if event.field == "intent":
                    started = time.monotonic()
                    break
            assert server.hung_up_within(started) < CANCEL_BUDGET
            for thread in stream_threads():
                thread.join(WAIT)
            assert time.monotonic() - started < CANCEL_BUDGET

    run(main)


def test_generate_passes_any_extra_body_field_through(gateway: FakeGateway) -> None:
    """`**extra` goes into the request body, whatever its names (`name`, `function`, `call` included)."""
    gateway.enqueue(TICKET)

    async def main() -> Any:
        async with AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0) as client:
            return await client.generate(
                model=MODEL, response_format=Ticket, input="x", name="triage", function="f", call="c", user="u"
            )

    assert run(main).model_dump() == TICKET
    body = gateway.requests[-1].json
    assert (body["name"], body["function"], body["call"], body["user"]) == ("triage", "f", "c", "u")
