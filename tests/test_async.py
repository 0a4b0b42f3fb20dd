"""AsyncDotTxt against loopback servers: the awaitable surface, streams, and prompt closing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar

import pydantic
import pytest

from dottxt import (
    APIConnectionError,
    AsyncDotTxt,
    AsyncPatchStream,
    AuthenticationError,
    BackgroundStream,
    InvalidOutputError,
    PatchEvent,
    PatchStreamError,
    StreamCancelledError,
)
from dottxt.testing import FakeGateway, ops_from_document
from tests.conftest import MODEL, STREAM_THREAD, TEST_KEY, WAIT, Busy, Stall, joined
from tests.models import TRIAGE, TRIAGE_FIELDS, Triage
from tests.rawserver import RawConnection, RawServer

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


def workers(prefix: str = STREAM_THREAD) -> list[threading.Thread]:
    """The SDK's worker threads of one kind still running."""
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


@pytest.fixture
def client_for(gateway: FakeGateway) -> Callable[[], AsyncDotTxt]:
    return lambda: AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, timeout=(5, 30))


@pytest.fixture
def served() -> Iterator[Callable[..., AsyncDotTxt]]:
    """Make an AsyncDotTxt of a RawServer running `handler` (30 s timeouts, no retries); servers closed afterwards."""
    servers: list[RawServer] = []

    def make(handler: Callable[[RawConnection], None], **kwargs: Any) -> AsyncDotTxt:
        servers.append(RawServer(handler))
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", (30, 30))
        return AsyncDotTxt(api_key="sk-test", base_url=servers[-1].base_url, **kwargs)

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
            assert workers() == []

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


def test_breaking_out_and_dropping_the_stream_closes_it(served: Callable[..., AsyncDotTxt]) -> None:
    stall = Stall(STALL_OPS)
    client = served(stall)

    async def main() -> None:
        async with client:
            async for event in stream_of(client, {"type": "object"}):
                if event.field == "intent":
                    running = workers()
                    break
            assert stall.disconnected.wait(WAIT)
            assert joined(running)

    run(main)


def test_aclose_during_a_stall_closes_at_once(served: Callable[..., AsyncDotTxt]) -> None:
    stall = Stall(STALL_OPS)
    client = served(stall)

    async def main() -> None:
        async with client:
            stream = stream_of(client, {"type": "object"})
            assert (await stream.__anext__()).field == ""
            assert (await stream.__anext__()).field == "intent"
            running = workers()
            await stream.aclose()
            assert joined(running)
            assert stall.disconnected.wait(WAIT)
            assert [e async for e in stream] == []
            with pytest.raises(StreamCancelledError) as info:
                await stream.result()
            assert info.value.document == {"intent": "billing"}
            assert stream.document == {"intent": "billing"}

    run(main)


def test_leaving_async_with_during_a_stall_closes_it(served: Callable[..., AsyncDotTxt]) -> None:
    stall = Stall(STALL_OPS)
    client = served(stall)

    async def main() -> None:
        async with client:
            async with stream_of(client, {"type": "object"}) as stream:
                async for event in stream:
                    if event.field == "intent":
                        running = workers()
                        break
            assert joined(running)
            assert stall.disconnected.wait(WAIT)

    run(main)


@pytest.mark.parametrize("inside", ["async with", "a bare async for"])
def test_cancelling_the_task_during_a_stall_closes_it(served: Callable[..., AsyncDotTxt], inside: str) -> None:
    stall = Stall(STALL_OPS)
    client = served(stall)

    async def main() -> None:
        async with client:
            got_intent = asyncio.Event()
            seen: list[PatchEvent] = []

            async def consume() -> None:
                stream = stream_of(client, {"type": "object"})
                async with stream if inside == "async with" else contextlib.nullcontext(stream):
                    async for event in stream:
                        seen.append(event)
                        if event.field == "intent":
                            got_intent.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(got_intent.wait(), WAIT)
            running = workers()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert joined(running)
            assert stall.disconnected.wait(WAIT)
            assert [e.field for e in seen] == ["", "intent"]

    run(main)


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
            running = workers("dottxt-chat-stream-")
            await chunks.aclose()
            assert joined(running)
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

    async def scenario(server: RawServer) -> None:
        async with AsyncDotTxt(api_key="k", base_url=server.base_url, timeout=(5, 30), max_retries=2) as client:
            task = asyncio.create_task(client.generate(model="m", response_format={"type": "object"}, input="x"))
            await asyncio.to_thread(server.requested.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(server.handled.wait, WAIT)  # long before the 30 s read timeout

    with RawServer(handler) as server:
        asyncio.run(scenario(server))
    assert disconnected == [True]
    assert len(server.connections) == 1  # cancelled: not retried


# --------------------------------------------------------------------------- closing at every stage


@pytest.mark.parametrize("how", ["aclose", "async with", "cancel the task in async for", "cancel the task in result"])
def test_closing_a_stream_still_waiting_for_headers_ends_the_connection_and_the_worker(
    served: Callable[..., AsyncDotTxt], how: str
) -> None:
    stall = Stall()

    async def main() -> None:
        async with served(stall) as client:
            stream = client.stream(model=MODEL, response_format={"type": "object"}, input="x")
            if how in ("aclose", "async with"):
                async with stream:
                    assert await asyncio.to_thread(stall.arrived.wait, WAIT)
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
                assert await asyncio.to_thread(stall.arrived.wait, WAIT)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert joined(workers()), "the worker outlived the close"  # long before the 30 s timeout
            assert stall.disconnected.wait(WAIT)
            with pytest.raises(StreamCancelledError):
                await stream.result()

    run(main)


def test_aclose_during_a_retry_wait_ends_the_worker(served: Callable[..., AsyncDotTxt]) -> None:
    busy = Busy()

    async def main() -> None:
        async with served(busy, max_retries=2) as client:
            stream = client.stream(model=MODEL, response_format={"type": "object"}, input="x")
            await stream.__aenter__()
            assert await asyncio.to_thread(busy.answered.wait, WAIT)  # answered 503: now waiting 30 s to retry
            await stream.aclose()
            assert workers() == []

    run(main)
    assert busy.attempts == 1


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
        async with AsyncDotTxt(api_key="k", base_url=base_url, max_retries=0, timeout=(30, 30)) as client:
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


def test_closing_the_async_client_under_a_running_stream(served: Callable[..., AsyncDotTxt]) -> None:
    """`await client.close()` while a stream is read: `async for` raises a connection error, nothing else."""

    async def main(client: AsyncDotTxt) -> None:
        stream = client.stream(model=MODEL, response_format={"type": "object"}, input="x")
        assert (await stream.__anext__()).field == ""
        await client.close()
        with pytest.raises(APIConnectionError) as info:
            async for _ in stream:
                pass
        assert info.value.document == {}

    for _ in range(10):  # the close races the worker's read: repeat to catch a bad interleaving
        stall = Stall(ops_from_document({"intent": "billing"})[:1])
        asyncio.run(main(served(stall)))
        assert stall.disconnected.wait(WAIT)


def test_sse_patch_source_through_async_for_and_async_with(gateway: FakeGateway) -> None:
    gateway.enqueue(TRIAGE)
    gateway.enqueue(TRIAGE)

    async def main() -> None:
        async with AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, patch_source="sse") as client:
            stream = client.stream(model=MODEL, response_format=Triage, input="x")
            assert [e.field async for e in stream] == TRIAGE_FIELDS
            assert (await stream.result()).model_dump() == TRIAGE
            async with client.stream(model=MODEL, response_format=Triage, input="x") as second:
                values = {e.field: e.value async for e in second if e.is_leaf}
            assert values == {
                "intent": "billing",
                "steps/0": "refund",
                "steps/1": "apologise",
                "reply": TRIAGE["reply"],
            }

    run(main)
    assert [r.json["stream"] for r in gateway.requests] == [True, True]


def test_an_sse_sourced_async_stream_closes_on_break_during_a_stall(served: Callable[..., AsyncDotTxt]) -> None:
    stall = Stall(sse=['{"intent": "technical", "reply": "Try'])

    async def main() -> None:
        async with served(stall, patch_source="sse") as client:
            async for event in client.stream(model=MODEL, response_format={"type": "object"}, input="x"):
                if event.field == "intent":
                    break
            assert stall.disconnected.wait(WAIT)  # long before the 30 s read timeout
            assert joined(workers())

    run(main)


def test_generate_passes_any_extra_body_field_through(gateway: FakeGateway) -> None:
    """`**extra` goes into the request body, whatever its names (`name`, `function`, `call` included)."""
    gateway.enqueue(TRIAGE)

    async def main() -> Any:
        async with AsyncDotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0) as client:
            return await client.generate(
                model=MODEL, response_format=Triage, input="x", name="triage", function="f", call="c", user="u"
            )

    assert run(main).model_dump() == TRIAGE
    body = gateway.requests[-1].json
    assert (body["name"], body["function"], body["call"], body["user"]) == ("triage", "f", "c", "u")
