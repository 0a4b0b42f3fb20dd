"""AsyncDotTxt against loopback servers: the awaitable surface, streams, and prompt closing."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar

import pydantic
import pytest

from dottxt import (
    APIConnectionError,
    AuthenticationError,
    InvalidOutputError,
    PatchEvent,
    PatchStreamError,
    StreamCancelledError,
)
from dottxt._async_client import AsyncDotTxt, AsyncPatchStream
from dottxt._background import BackgroundStream
from dottxt._patch import ops_from_document
from dottxt.testing import FakeGateway
from tests.conftest import TEST_KEY
from tests.rawserver import RawConnection, RawServer, ndjson

MODEL = "dottxt/fake-model"
WAIT = 5.0  # generous bound for things that happen in milliseconds
T = TypeVar("T")


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


TICKET = {"intent": "billing", "reply": "We refunded you; the money is on its way back."}
TICKET_FORMAT = {"type": "json_schema", "json_schema": {"name": "t", "schema": Ticket.model_json_schema()}}


def run(coroutine_function: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a test coroutine on a fresh event loop, then check the SDK left no thread behind."""
    before = set(threading.enumerate())
    result = asyncio.run(coroutine_function())
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("dottxt-"):
            thread.join(WAIT)
            assert not thread.is_alive(), f"{thread.name} outlived its call"
    return result


def sdk_threads(prefix: str = "dottxt-stream-") -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def ended_within(threads: list[threading.Thread], started: float) -> float:
    """Join `threads` (bounded) and return the seconds since `started` once they have all ended."""
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), f"{thread.name} is still running"
    return time.monotonic() - started


@pytest.fixture
def client_for(gateway: FakeGateway) -> Callable[[], AsyncDotTxt]:
    return lambda: AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, timeout=(5, 5))


@pytest.fixture
def stalling() -> Iterator[Callable[[list[dict[str, Any]]], tuple[AsyncDotTxt, threading.Event]]]:
    """A client whose stream sends `ops`, then goes silent; the event is set when the client leaves."""
    servers: list[RawServer] = []

    def make(ops: list[dict[str, Any]]) -> tuple[AsyncDotTxt, threading.Event]:
        disconnected = threading.Event()

        def handler(conn: RawConnection) -> None:
            conn.head()
            conn.chunk(ndjson(*ops))
            if conn.wait_for_disconnect(30):
                disconnected.set()

        server = RawServer(handler)
        servers.append(server)
        client = AsyncDotTxt(api_key="sk-test", base_url=server.base_url, max_retries=0, timeout=(30, 30))
        return client, disconnected

    yield make
    for server in servers:
        server.close()
        assert not server.errors, server.errors


STALL_OPS = ops_from_document({"intent": "billing", "reply": "x"})[:2]  # root and intent, then silence


def stream_of(client: AsyncDotTxt, response_format: Any = Ticket) -> AsyncPatchStream:
    return client.stream(model=MODEL, response_format=response_format, input="hi")


# --------------------------------------------------------------------------- the awaitable surface


def test_generate_models_and_chat(gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]) -> None:
    gateway.enqueue(TICKET)
    gateway.enqueue(TICKET)
    gateway.enqueue(TICKET)

    async def main() -> None:
        async with client_for() as client:
            ticket = await client.generate(model=MODEL, response_format=Ticket, input="refund please")
            assert isinstance(ticket, Ticket) and ticket.model_dump() == TICKET

            page = await client.models.list()
            assert [m.id for m in page] == [MODEL]

            messages = [{"role": "user", "content": "hi"}]
            completion = await client.chat.completions.create(
                model=MODEL, messages=messages, response_format=TICKET_FORMAT
            )
            assert json.loads(completion.choices[0].message.content) == TICKET

            chunks = await client.chat.completions.create(
                model=MODEL, messages=messages, response_format=TICKET_FORMAT, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
            assert json.loads(text) == TICKET

    run(main)
    assert gateway.requests[0].json["messages"] == [{"role": "user", "content": "refund please"}]


def test_status_errors_raise_from_the_await(gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]) -> None:
    async def main() -> None:
        async with client_for() as client:
            gateway.fail_next(401)
            with pytest.raises(AuthenticationError):
                await client.models.list()
            gateway.fail_next(401)
            with pytest.raises(AuthenticationError):
                await client.chat.completions.create(model=MODEL, messages=[], stream=True)
            gateway.enqueue_raw("not json")
            with pytest.raises(InvalidOutputError):
                await client.generate(model=MODEL, response_format=Ticket, input="hi")

    run(main)


def test_close_closes_the_shared_transport(gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]) -> None:
    async def main() -> None:
        client = client_for()
        assert TEST_KEY not in repr(client)
        await client.close()
        with pytest.raises(APIConnectionError, match="closed"):
            await client.models.list()

    run(main)


def test_the_event_loop_keeps_running_while_a_call_waits_on_the_network() -> None:
    release = threading.Event()
    answered_after_release: list[bool] = []

    def handler(conn: RawConnection) -> None:
        answered_after_release.append(release.wait(WAIT))  # only the loop's ticker sets it
        body = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    async def main(base_url: str) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1
                if ticks == 5:
                    release.set()

        tick_task = asyncio.create_task(ticker())
        async with AsyncDotTxt(api_key="k", base_url=base_url, max_retries=0) as client:
            page = await client.models.list()
        tick_task.cancel()
        assert [m.id for m in page] == ["m"]

    with RawServer(handler) as server:
        run(lambda: main(server.base_url))
    assert answered_after_release == [True]


# --------------------------------------------------------------------------- streams


def test_stream_yields_events_in_order_and_result_is_typed(
    gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]
) -> None:
    gateway.enqueue(TICKET)
    gateway.enqueue(TICKET)

    async def main() -> None:
        async with client_for() as client:
            stream = stream_of(client)
            assert isinstance(stream, AsyncPatchStream)
            fields = [event.field async for event in stream]
            assert fields == ["", "intent", "reply"]
            assert stream.document == TICKET
            result = await stream.result()
            assert isinstance(result, Ticket) and result.model_dump() == TICKET

            async with stream_of(client) as second:
                assert (await second.result()).model_dump() == TICKET

    run(main)


def test_stream_sends_nothing_until_iterated(gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]) -> None:
    async def main() -> None:
        async with client_for() as client:
            stream = stream_of(client)  # not a coroutine: returns at once
            assert gateway.requests == []
            assert stream.document is None
            await stream.aclose()
            assert [e async for e in stream] == []
            with pytest.raises(StreamCancelledError):
                await stream.result()
            assert gateway.requests == []
            assert sdk_threads() == []

    run(main)


def test_the_event_loop_is_not_blocked_by_a_slow_stream() -> None:
    async def main(base_url: str) -> None:
        ticks = 0
        ticks_at_event: list[int] = []

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.002)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        async with AsyncDotTxt(api_key=TEST_KEY, base_url=base_url, max_retries=0) as client:
            async for _ in client.stream(model=MODEL, response_format=Ticket, input="hi"):
                ticks_at_event.append(ticks)
        tick_task.cancel()
        # The ticker ran between every two events: reading them never held the loop.
        gaps = [b - a for a, b in itertools.pairwise(ticks_at_event)]
        assert len(gaps) == 2 and all(gap >= 1 for gap in gaps), ticks_at_event

    with FakeGateway(api_key=TEST_KEY, op_delay=0.03) as gateway:
        gateway.enqueue(TICKET)
        run(lambda: main(gateway.base_url))


@pytest.mark.parametrize(
    ("fault", "error", "fields"),
    [
        (lambda gw: gw.error_next_after(2, "model crashed"), PatchStreamError, ["", "intent"]),
        (lambda gw: gw.cut_next_after(2), APIConnectionError, ["", "intent"]),
        (lambda gw: gw.fail_next(401), AuthenticationError, []),
    ],
)
def test_errors_raise_from_async_for(
    gateway: FakeGateway,
    client_for: Callable[[], AsyncDotTxt],
    fault: Callable[[FakeGateway], None],
    error: type[Exception],
    fields: list[str],
) -> None:
    gateway.enqueue(TICKET)
    fault(gateway)

    async def main() -> None:
        async with client_for() as client:
            stream = stream_of(client)
            seen = []
            with pytest.raises(error) as info:
                async for event in stream:
                    seen.append(event.field)
            assert seen == fields
            if fields:
                assert info.value.document == {"intent": "billing"}  # type: ignore[attr-defined]
            with pytest.raises(error):
                await stream.result()

    run(main)


def test_breaking_out_and_dropping_the_stream_closes_it(stalling: Callable[..., Any]) -> None:
    client, disconnected = stalling(STALL_OPS)
    timing: dict[str, float] = {}

    async def main() -> None:
        async with client:
            async for event in stream_of(client, {"type": "object"}):
                if event.field == "intent":
                    workers = sdk_threads()
                    timing["break"] = time.monotonic()
                    break
            assert disconnected.wait(WAIT)
            assert ended_within(workers, timing["break"]) < 0.5

    run(main)


def test_aclose_during_a_stall_closes_at_once(stalling: Callable[..., Any]) -> None:
    client, disconnected = stalling(STALL_OPS)

    async def main() -> None:
        async with client:
            stream = stream_of(client, {"type": "object"})
            assert (await stream.__anext__()).field == ""
            assert (await stream.__anext__()).field == "intent"
            workers = sdk_threads()
            started = time.monotonic()
            await stream.aclose()
            assert ended_within(workers, started) < 0.5
            assert disconnected.wait(WAIT)
            assert [e async for e in stream] == []
            with pytest.raises(StreamCancelledError) as info:
                await stream.result()
            assert info.value.document == {"intent": "billing"}
            assert stream.document == {"intent": "billing"}

    run(main)


def test_leaving_async_with_during_a_stall_closes_it(stalling: Callable[..., Any]) -> None:
    client, disconnected = stalling(STALL_OPS)

    async def main() -> None:
        async with client:
            async with stream_of(client, {"type": "object"}) as stream:
                async for event in stream:
                    if event.field == "intent":
                        workers = sdk_threads()
                        started = time.monotonic()
                        break
            assert ended_within(workers, started) < 0.5
            assert disconnected.wait(WAIT)

    run(main)


def test_cancelling_the_task_during_a_stall_closes_it(stalling: Callable[..., Any]) -> None:
    client, disconnected = stalling(STALL_OPS)

    async def main() -> None:
        async with client:
            got_intent = asyncio.Event()
            seen: list[PatchEvent] = []

            async def consume() -> None:
                async with stream_of(client, {"type": "object"}) as stream:
                    async for event in stream:
                        seen.append(event)
                        if event.field == "intent":
                            got_intent.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(got_intent.wait(), WAIT)
            workers = sdk_threads()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert ended_within(workers, started) < 0.5
            assert disconnected.wait(WAIT)
            assert [e.field for e in seen] == ["", "intent"]

    run(main)


def test_cancelling_a_bare_async_for_closes_it(stalling: Callable[..., Any]) -> None:
    client, disconnected = stalling(STALL_OPS)

    async def main() -> None:
        async with client:
            got_intent = asyncio.Event()

            async def consume() -> None:
                async for event in stream_of(client, {"type": "object"}):
                    if event.field == "intent":
                        got_intent.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(got_intent.wait(), WAIT)
            workers = sdk_threads()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert ended_within(workers, started) < 0.5
            assert disconnected.wait(WAIT)

    run(main)


def test_aclose_before_the_server_answers_does_not_wait_for_it() -> None:
    """Nothing can interrupt a wait for response headers: aclose() returns anyway, the worker follows."""
    arrived = threading.Event()
    disconnected = threading.Event()

    def handler(conn: RawConnection) -> None:
        arrived.set()
        if conn.wait_for_disconnect(WAIT):  # never answers
            disconnected.set()

    async def main(base_url: str) -> None:
        async with AsyncDotTxt(api_key="k", base_url=base_url, max_retries=0, timeout=(WAIT, 0.3)) as client:
            stream = stream_of(client, {"type": "object"})
            await stream.__aenter__()
            assert await asyncio.to_thread(arrived.wait, WAIT)
            started = time.monotonic()
            await stream.aclose()
            assert time.monotonic() - started < 0.5
            with pytest.raises(StreamCancelledError):
                await stream.result()

    with RawServer(handler) as server:
        run(lambda: main(server.base_url))  # joins the worker: it ends at the 0.3 s read timeout
        assert disconnected.wait(WAIT)


def test_chat_chunk_stream_aclose_during_a_stall(gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]) -> None:
    gateway.stall_next_after(2)

    async def main() -> None:
        async with client_for() as client:
            chunks = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], response_format=TICKET_FORMAT, stream=True
            )
            first = await chunks.__anext__()
            assert first.choices[0].delta.role == "assistant"
            await chunks.__anext__()
            workers = sdk_threads("dottxt-chat-stream-")
            started = time.monotonic()
            await chunks.aclose()
            assert ended_within(workers, started) < 0.5
            assert [c async for c in chunks] == []

    run(main)


def test_many_concurrent_streams_on_one_loop(gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]) -> None:
    documents = [{"intent": "billing", "reply": f"reply {i}"} for i in range(50)]
    for document in documents:
        gateway.enqueue(document)

    async def main() -> list[Any]:
        async with client_for() as client:
            streams = [stream_of(client, {"type": "object"}) for _ in documents]
            return list(await asyncio.gather(*(s.result() for s in streams)))

    results = run(main)
    assert sorted(results, key=lambda d: int(d["reply"].split()[1])) == documents


def test_stream_in_background_is_the_sync_background_stream(
    gateway: FakeGateway, client_for: Callable[[], AsyncDotTxt]
) -> None:
    gateway.enqueue(TICKET)

    async def main() -> None:
        async with client_for() as client:
            bg = client.stream_in_background(model=MODEL, response_format=Ticket, input="hi")
            assert isinstance(bg, BackgroundStream)
            result = await asyncio.to_thread(bg.result, WAIT)
            assert result.model_dump() == TICKET

    run(main)


def test_cancelling_a_task_awaiting_generate_interrupts_the_request():
    """The worker thread ends at once (not at the read timeout) and the server sees the hang-up."""

    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        disconnected.append(conn.wait_for_disconnect(10))  # never answers

    async def scenario(server: RawServer) -> float:
        async with AsyncDotTxt(api_key="k", base_url=server.base_url, timeout=(5, 30), max_retries=2) as client:
            task = asyncio.create_task(client.generate(model="m", response_format={"type": "object"}, input="x"))
            await asyncio.to_thread(server.requested.wait, 5)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.to_thread(server.handled.wait, 5)
            return time.monotonic() - started

    with RawServer(handler) as server:
        elapsed = asyncio.run(scenario(server))
    assert disconnected == [True]
    assert elapsed < 2.0
    assert len(server.connections) == 1  # cancelled: not retried
