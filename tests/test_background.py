"""BackgroundStream: callbacks, the queue, Future-like waiting and cancelling, against loopback servers."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

import pydantic
import pytest

from dottxt import (
    APIConnectionError,
    BackgroundStream,
    DotTxt,
    DotTxtError,
    InvalidOutputError,
    PatchEvent,
    PatchStreamError,
    RateLimitError,
    StreamCancelledError,
)
from dottxt.testing import FakeGateway, ops_from_document
from tests.conftest import MODEL, STREAM_THREAD, TEST_KEY, WAIT, Busy, RawClients, Stall, drain, stream_threads
from tests.models import TRIAGE, TRIAGE_FIELDS, Triage
from tests.rawserver import RawConnection, ndjson

OBJECT = {"type": "object"}


class Step(pydantic.BaseModel):
    title: str


class Address(pydantic.BaseModel):
    city: str
    zip: str


class Plan(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[Step]
    address: Address
    reply: str


PLAN = {
    "intent": "billing",
    "steps": [{"title": "refund"}, {"title": "apologise"}],
    "address": {"city": "Paris", "zip": "75001"},
    "reply": "We refunded you.",
}
PLAN_FIELDS = [
    "",
    "intent",
    "steps",
    "steps/0",
    "steps/0/title",
    "steps/1",
    "steps/1/title",
    "address",
    "address/city",
    "address/zip",
    "reply",
]


def background(client: DotTxt, **kwargs: Any) -> BackgroundStream:
    return client.stream_in_background(
        model=MODEL, response_format=kwargs.pop("response_format", Plan), input="hi", **kwargs
    )


# --------------------------------------------------------------------------- callbacks


def test_callbacks_run_on_the_worker_in_wire_order_and_on_complete_gets_the_typed_result(
    gateway: FakeGateway, client: DotTxt
) -> None:
    gateway.enqueue(PLAN)
    seen: list[tuple[str, Any, Any, str]] = []
    completed: list[Any] = []
    errors: list[BaseException] = []

    bg = background(
        client,
        on_event=lambda e: seen.append((e.field, e.value, e.snapshot, threading.current_thread().name)),
        on_complete=completed.append,
        on_error=errors.append,
    )
    result = bg.result(timeout=WAIT)

    assert isinstance(result, Plan) and result.model_dump() == PLAN
    assert completed == [result] and completed[0] is result
    assert errors == []
    assert [field for field, *_ in seen] == PLAN_FIELDS
    assert [value for _, value, _, _ in seen] == [op["value"] for op in ops_from_document(PLAN)]
    assert seen[1][2] == {"intent": "billing"}  # the snapshot as of that op
    assert seen[-1][2] == PLAN
    (worker,) = {name for *_, name in seen}  # one thread ran every callback: the stream's worker
    assert worker.startswith(STREAM_THREAD) and worker != threading.current_thread().name
    assert bg.done() and not bg.cancelled() and bg.exception() is None
    assert bg.document == PLAN
    assert bg.join(WAIT)


def test_on_field_matches_exact_fields_and_one_segment_wildcards(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    calls: list[tuple[str, str]] = []

    def record(name: str) -> Callable[[PatchEvent], None]:
        return lambda event: calls.append((name, event.field))

    bg = background(
        client,
        on_field={
            "steps/*": record("steps/*"),
            "steps/0": record("steps/0"),
            "intent": record("intent"),
            "/reply": record("/reply"),
            "*/city": record("*/city"),
            "steps/*/title": record("steps/*/title"),
            "nothing": record("nothing"),
            "address/*/x": record("address/*/x"),
            "*": record("*"),
        },
    )
    bg.result(timeout=WAIT)

    # Wire order; several matches for one event run in the order they were registered.
    assert calls == [
        ("intent", "intent"),
        ("*", "intent"),
        ("*", "steps"),
        ("steps/*", "steps/0"),
        ("steps/0", "steps/0"),
        ("steps/*/title", "steps/0/title"),
        ("steps/*", "steps/1"),
        ("steps/*/title", "steps/1/title"),
        ("*", "address"),
        ("*/city", "address/city"),
        ("/reply", "reply"),
        ("*", "reply"),
    ]


def test_on_field_sees_appends_at_the_index_they_landed_at(raw: Callable[..., DotTxt]) -> None:
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/steps", "value": []},
        {"op": "add", "path": "/steps/-", "value": {"title": "a"}},
        {"op": "add", "path": "/steps/-", "value": {"title": "b"}},
    ]

    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*ops))
        conn.end()

    calls: list[tuple[str, Any]] = []
    bg = background(
        raw(handler),
        response_format={"type": "object"},
        on_field={
            "steps/*": lambda e: calls.append(("*", e.value)),
            "steps/1": lambda e: calls.append(("1", e.value)),
            "steps/-": lambda e: calls.append(("-", e.value)),
        },
    )
    assert bg.result(timeout=WAIT) == {"steps": [{"title": "a"}, {"title": "b"}]}
    assert calls == [
        ("*", {"title": "a"}),
        ("-", {"title": "a"}),
        ("*", {"title": "b"}),
        ("1", {"title": "b"}),
        ("-", {"title": "b"}),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on_event": 1},
        {"on_error": "x"},
        {"on_complete": object()},
        {"on_field": {"a": None}},
        {"on_field": ["a"]},
        {"queue": []},
    ],
)
def test_wrong_argument_types_raise_type_error(client: DotTxt, gateway: FakeGateway, kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        background(client, **kwargs)
    assert gateway.requests == []  # nothing was sent


# --------------------------------------------------------------------------- the queue and iteration


def test_queue_gets_every_event_then_none_on_success(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    bg = background(client)
    assert [e.field for e in drain(bg.queue)] == PLAN_FIELDS
    assert bg.result(timeout=WAIT).model_dump() == PLAN


def test_a_queue_passed_in_is_used(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    mine: queue.Queue[PatchEvent | None] = queue.Queue()
    bg = background(client, queue=mine)
    assert bg.queue is mine
    assert [e.field for e in drain(mine)] == PLAN_FIELDS


def test_iterating_yields_the_events_once(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    bg = background(client)
    assert [e.field for e in bg] == PLAN_FIELDS
    assert list(bg) == []  # the events went to the first consumer; a second loop ends at once
    assert isinstance(bg.result(timeout=WAIT), Plan)


def test_error_line_reaches_on_error_result_queue_and_iteration(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    gateway.error_next_after(2, "the model crashed")
    errors: list[BaseException] = []
    completed: list[Any] = []
    bg = background(client, on_error=errors.append, on_complete=completed.append)

    fields = []
    with pytest.raises(PatchStreamError, match="the model crashed") as info:
        for event in bg:
            fields.append(event.field)
    assert fields == ["", "intent"]
    assert info.value.document == {"intent": "billing"}
    assert errors == [info.value] and completed == []
    assert bg.exception(timeout=WAIT) is info.value
    with pytest.raises(PatchStreamError):
        bg.result(timeout=0)
    assert bg.queue.empty()  # the sentinel was consumed by the loop above, nothing after it


def test_cut_connection_is_an_api_connection_error_and_the_queue_still_ends(
    gateway: FakeGateway, client: DotTxt
) -> None:
    gateway.enqueue(PLAN)
    gateway.cut_next_after(3)
    errors: list[BaseException] = []
    bg = background(client, on_error=errors.append)
    assert [e.field for e in drain(bg.queue)] == ["", "intent", "steps"]
    with pytest.raises(APIConnectionError) as info:
        bg.result(timeout=WAIT)
    assert info.value.document == {"intent": "billing", "steps": []}
    assert errors == [info.value]


def test_status_error_before_the_stream_starts(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.fail_next(429, headers={"Retry-After": "0"})
    errors: list[BaseException] = []
    bg = background(client, on_error=errors.append)
    assert drain(bg.queue) == []
    with pytest.raises(RateLimitError) as info:
        bg.result(timeout=WAIT)
    assert isinstance(info.value, PatchStreamError) and info.value.status_code == 429
    assert errors == [info.value]


def test_slow_consumer_gets_every_event_in_order(gateway: FakeGateway, client: DotTxt) -> None:
    document = {"items": list(range(500))}
    gateway.enqueue(document)
    bg = background(client, response_format={"type": "object"})
    bg.result(timeout=WAIT)  # the consumer only starts once the stream is over
    assert [e.value for e in drain(bg.queue)] == [{}, [], *range(500)]


def test_bounded_queue_applies_back_pressure_without_dropping(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue({"items": list(range(300))})
    small: queue.Queue[PatchEvent | None] = queue.Queue(maxsize=1)
    bg = background(client, response_format={"type": "object"}, queue=small)
    values = [e.value for e in drain(small)]
    assert values == [{}, [], *range(300)]
    assert bg.result(timeout=WAIT) == {"items": list(range(300))}


def test_cancel_wakes_a_worker_blocked_on_a_full_bounded_queue(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue({"items": list(range(50))})
    small: queue.Queue[PatchEvent | None] = queue.Queue(maxsize=2)
    second = threading.Event()
    bg = background(
        client,
        response_format={"type": "object"},
        queue=small,
        on_event=lambda e: second.set() if e.field == "items" else None,
    )
    assert second.wait(WAIT)  # the queue is full now; the worker blocks putting the next event
    assert bg.cancel()
    assert bg.join(WAIT)
    assert [e.field for e in drain(small)] == ["", "items"]  # no drop, no reorder, then the sentinel


# --------------------------------------------------------------------------- raising callbacks


def test_a_raising_callback_stops_the_stream_and_closes_the_connection(raw: Callable[..., DotTxt]) -> None:
    ops = ops_from_document({"intent": "billing", "reply": "x"})
    stall = Stall(ops[:2])
    client = raw(stall, timeout=(30, 30))  # then silence: only a close ends it
    errors: list[BaseException] = []
    boom = ValueError("bad intent")

    def refuse(event: PatchEvent) -> None:
        raise boom

    bg = background(client, response_format={"type": "object"}, on_field={"intent": refuse}, on_error=errors.append)
    assert [e.field for e in drain(bg.queue)] == ["", "intent"]
    with pytest.raises(ValueError, match="bad intent"):
        bg.result(timeout=WAIT)
    assert errors == [boom]
    assert stall.disconnected.wait(WAIT)
    assert bg.join(WAIT)


def test_a_raising_on_complete_goes_to_on_error_and_result(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    errors: list[BaseException] = []

    def complete(result: Any) -> None:
        raise RuntimeError("could not save")

    bg = background(client, on_complete=complete, on_error=errors.append)
    with pytest.raises(RuntimeError, match="could not save"):
        bg.result(timeout=WAIT)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert len(drain(bg.queue)) == len(PLAN_FIELDS)


def test_a_raising_on_error_keeps_the_original_error_and_logs(
    gateway: FakeGateway, client: DotTxt, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.enqueue(PLAN)
    gateway.error_next_after(1)

    def bad_handler(exc: BaseException) -> None:
        raise KeyError("handler bug")

    with caplog.at_level(logging.ERROR, logger="dottxt"):
        bg = background(client, on_error=bad_handler)
        with pytest.raises(PatchStreamError):
            bg.result(timeout=WAIT)
    assert "on_error callback raised" in caplog.text and "handler bug" in caplog.text


def test_nothing_reaches_threading_excepthook(
    gateway: FakeGateway, client: DotTxt, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    gateway.enqueue(PLAN)

    def leave(event: PatchEvent) -> None:
        raise SystemExit(3)

    bg = background(client, on_event=leave)
    with pytest.raises(SystemExit):
        bg.result(timeout=WAIT)
    assert bg.join(WAIT)
    assert hooked == []


# --------------------------------------------------------------------------- waiting and cancelling


def test_result_times_out_on_a_stall_then_cancel_interrupts_the_blocked_read(raw: Callable[..., DotTxt]) -> None:
    ops = ops_from_document({"intent": "billing", "reply": "x"})
    stall = Stall(ops[:2])
    client = raw(stall, timeout=(30, 30))
    errors: list[BaseException] = []
    bg = background(client, response_format={"type": "object"}, on_error=errors.append)
    assert [bg.queue.get(timeout=WAIT).field for _ in range(2)] == ["", "intent"]

    with pytest.raises(TimeoutError):
        bg.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        bg.exception(timeout=0.01)
    assert not bg.done()

    assert bg.cancel() is True
    assert bg.join(WAIT)  # long before the 30 s read timeout
    assert stall.disconnected.wait(WAIT)  # the server saw the connection go

    assert bg.done() and bg.cancelled()
    assert bg.cancel() is False
    with pytest.raises(StreamCancelledError) as info:
        bg.result()
    assert info.value.document == {"intent": "billing"}
    assert isinstance(bg.exception(), StreamCancelledError)
    assert bg.queue.get(timeout=WAIT) is None
    assert errors == []  # cancelling is not a failure
    with pytest.raises(StreamCancelledError):
        list(bg)  # the sentinel is gone; iterating still tells why the stream ended


def test_iterating_a_stream_cancelled_mid_loop_raises_cancelled(raw: Callable[..., DotTxt]) -> None:
    stall = Stall(ops_from_document({"intent": "billing"}))
    client = raw(stall, timeout=(30, 30))
    bg = background(client, response_format={"type": "object"})
    fields = []
    with pytest.raises(StreamCancelledError):
        for event in bg:
            fields.append(event.field)
            if event.field == "intent":
                bg.cancel()
    assert fields == ["", "intent"]
    assert stall.disconnected.wait(WAIT)


def test_cancel_from_inside_a_callback(raw: Callable[..., DotTxt]) -> None:
    stall = Stall(ops_from_document({"intent": "billing", "reply": "x"}))
    client = raw(stall, timeout=(30, 30))
    holder: list[BackgroundStream] = []
    ready = threading.Event()

    def stop(event: PatchEvent) -> None:
        ready.wait(WAIT)
        holder[0].cancel()

    bg = background(client, response_format={"type": "object"}, on_field={"intent": stop})
    holder.append(bg)
    ready.set()
    with pytest.raises(StreamCancelledError):
        bg.result(timeout=WAIT)
    assert stall.disconnected.wait(WAIT)
    assert bg.join(WAIT)
    assert [e.field for e in drain(bg.queue)] == ["", "intent"]


def test_cancel_after_the_end_returns_false_and_keeps_the_result(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    bg = background(client)
    result = bg.result(timeout=WAIT)
    assert bg.cancel() is False
    assert not bg.cancelled()
    assert bg.result() is result


def test_leaving_the_with_cancels_and_joins_the_thread(raw: Callable[..., DotTxt]) -> None:
    stall = Stall(ops_from_document({"intent": "billing"}))
    client = raw(stall, timeout=(30, 30))
    with background(client, response_format={"type": "object"}) as bg:
        assert bg.queue.get(timeout=WAIT) is not None
    assert bg.join(0)  # already joined
    assert bg.cancelled()
    assert stall.disconnected.wait(WAIT)


def test_leaving_the_with_after_the_end_keeps_the_result(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue(PLAN)
    with background(client) as bg:
        result = bg.result(timeout=WAIT)
    assert bg.join(0)  # already joined
    assert bg.result() is result and not bg.cancelled()


def test_two_hundred_concurrent_streams_on_one_client(gateway: FakeGateway, client: DotTxt) -> None:
    documents = [{"n": i, "tags": [f"t{i}", f"u{i}"], "note": f"document {i}"} for i in range(200)]
    for document in documents:
        gateway.enqueue(document)
    streams = [background(client, response_format={"type": "object"}) for _ in documents]

    results = [bg.result(timeout=30) for bg in streams]
    # Which request got which document depends on arrival order; each went to exactly one stream,
    # and each stream's events fold to the document it returned.
    assert sorted(results, key=lambda d: d["n"]) == documents
    for bg, result in zip(streams, results, strict=True):
        events = drain(bg.queue)
        assert [e.op for e in events] == ops_from_document(result)
        assert events[-1].snapshot == result == bg.document
    assert all(bg.join(WAIT) for bg in streams)
    assert stream_threads() == []


def test_json_schema_result_is_the_decoded_document(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue({"a": [1, 2]})
    completed: list[Any] = []
    bg = background(client, response_format=json.dumps({"type": "object"}), on_complete=completed.append)
    assert bg.result(timeout=WAIT) == {"a": [1, 2]} == completed[0]


# --------------------------------------------------------------------------- every keyword; cancel at every stage


def test_stream_in_background_takes_the_stream_arguments_and_every_callback_keyword(
    gateway: FakeGateway, client: DotTxt
) -> None:
    gateway.enqueue(TRIAGE)
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
        response_format=Triage,
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

    assert isinstance(result, Triage) and result.model_dump() == TRIAGE
    assert completed == [result] and errors == []
    assert [e.field for e in drain(mine)] == TRIAGE_FIELDS
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
    raw: RawClients,
) -> None:
    stall = Stall(ops_from_document({"intent": "billing", "reply": "x"})[:2])
    boom = RuntimeError("refused")
    errors: list[BaseException] = []
    completed: list[Any] = []

    def refuse(event: PatchEvent) -> None:
        if event.field == "intent":
            raise boom

    with raw(stall, timeout=(30, 30)) as client:
        bg = client.stream_in_background(
            model=MODEL,
            response_format={"type": "object"},
            input="x",
            on_event=refuse,
            on_error=errors.append,
            on_complete=completed.append,
        )
        fields = []
        with pytest.raises(RuntimeError) as info:
            for event in bg:  # the events queued before the failure, then the error
                fields.append(event.field)
        assert info.value is boom
        assert fields == ["", "intent"]
        assert errors == [boom] and completed == []
        assert bg.exception(timeout=0) is boom
        assert stall.disconnected.wait(WAIT)  # the stream stopped: only a close ends it
        assert bg.join(WAIT)


def test_output_that_does_not_match_the_schema_fails_like_result(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.enqueue({"intent": "shipping", "steps": [], "reply": "?"})  # not a Ticket intent
    errors: list[BaseException] = []
    completed: list[Any] = []
    bg = client.stream_in_background(
        model=MODEL, response_format=Triage, input="x", on_error=errors.append, on_complete=completed.append
    )
    assert [e.field for e in drain(bg.queue)] == ["", "intent", "steps", "reply"]
    with pytest.raises(InvalidOutputError) as info:
        bg.result(timeout=WAIT)
    assert errors == [info.value] and completed == []


def test_cancel_while_waiting_for_the_response_headers(raw: RawClients) -> None:
    """A cancel reaches the socket before the headers: nothing waits out the 30 s read timeout."""
    stall = Stall()
    errors: list[BaseException] = []
    with raw(stall, timeout=(30, 30)) as client:
        bg = client.stream_in_background(
            model=MODEL, response_format={"type": "object"}, input="x", on_error=errors.append
        )
        assert stall.arrived.wait(WAIT)
        assert not bg.done()
        assert bg.cancel() is True
        assert bg.join(WAIT)
        assert stall.disconnected.wait(WAIT)
        with pytest.raises(StreamCancelledError) as info:
            bg.result(timeout=0)
        assert isinstance(info.value, DotTxtError) and info.value.document is None
        assert bg.queue.get(timeout=0) is None
        assert errors == []


def test_cancel_during_a_retry_wait_sends_nothing_more(raw: RawClients) -> None:
    busy = Busy()
    with raw(busy, max_retries=2) as client:
        bg = client.stream_in_background(model=MODEL, response_format={"type": "object"}, input="x")
        assert busy.answered.wait(WAIT)  # answered 503: now waiting 30 s to retry
        assert bg.cancel() is True
        assert bg.join(WAIT)
        with pytest.raises(StreamCancelledError):
            bg.result()
        assert drain(bg.queue) == []
    assert busy.attempts == 1


def test_cancel_while_a_callback_runs_stops_at_once_and_calls_nothing_more(
    gateway: FakeGateway, client: DotTxt
) -> None:
    gateway.enqueue(TRIAGE)
    inside, release = threading.Event(), threading.Event()
    seen: list[str] = []
    released: list[bool] = []
    completed: list[Any] = []

    def slow(event: PatchEvent) -> None:
        seen.append(event.field)
        if event.field == "intent":
            inside.set()
            released.append(release.wait(WAIT))

    bg = client.stream_in_background(
        model=MODEL, response_format=Triage, input="x", on_event=slow, on_complete=completed.append
    )
    assert inside.wait(WAIT)
    assert bg.cancel() is True  # from another thread, while the worker is inside a callback
    with pytest.raises(StreamCancelledError) as info:
        bg.result(timeout=WAIT)
    assert info.value.document == {"intent": "billing"}
    release.set()  # only now may the callback return
    assert bg.join(WAIT)
    assert released == [True]  # so the outcome came while the callback still ran
    assert seen == ["", "intent"] and completed == []
    assert [e.field for e in drain(bg.queue)] == ["", "intent"]


def test_leaving_the_with_by_an_exception_cancels_joins_and_lets_it_through(
    raw: RawClients,
) -> None:
    stall = Stall(ops_from_document({"intent": "billing"}))
    with raw(stall, timeout=(30, 30)) as client:
        with pytest.raises(KeyError, match="caller"):
            with client.stream_in_background(model=MODEL, response_format={"type": "object"}, input="x") as bg:
                assert bg.queue.get(timeout=WAIT) is not None
                raise KeyError("caller")
        assert stream_threads() == []  # joined on the way out
        assert stall.disconnected.wait(WAIT)
        assert bg.cancelled()


def test_closing_the_client_under_a_running_background_stream(raw: RawClients) -> None:
    """`with DotTxt() as client:` ending while a stream still runs: a connection error, never a crash."""
    for _ in range(10):  # the close races the worker's read: repeat to catch a bad interleaving
        errors: list[BaseException] = []
        client = raw(Stall(ops_from_document({"intent": "billing", "reply": "x"})[:2]), timeout=(30, 30))
        bg = client.stream_in_background(
            model=MODEL, response_format={"type": "object"}, input="x", on_error=errors.append
        )
        assert [bg.queue.get(timeout=WAIT).field for _ in range(2)] == ["", "intent"]  # type: ignore[union-attr]
        client.close()
        with pytest.raises(APIConnectionError) as info:
            bg.result(timeout=WAIT)
        assert info.value.document == {"intent": "billing"}
        assert errors == [info.value]
        assert bg.queue.get(timeout=WAIT) is None
        assert bg.join(WAIT)


def test_sse_patch_source_through_a_background_stream(gateway: FakeGateway) -> None:
    gateway.enqueue(TRIAGE)
    steps: list[str] = []
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, patch_source="sse", max_retries=0) as client:
        bg = client.stream_in_background(
            model=MODEL, response_format=Triage, input="x", on_field={"steps/*": lambda e: steps.append(e.value)}
        )
        assert [e.field for e in bg] == TRIAGE_FIELDS
        assert bg.result(timeout=WAIT).model_dump() == TRIAGE
    assert steps == ["refund", "apologise"]
    assert gateway.requests[-1].json["stream"] is True


def test_cancel_an_sse_sourced_stream_while_the_server_is_silent(raw: RawClients) -> None:
    stall = Stall(sse=['{"intent": "billing", "reply": "We ref'])
    got_intent = threading.Event()
    with raw(stall, patch_source="sse", timeout=(30, 30)) as client:
        bg = client.stream_in_background(
            model=MODEL, response_format={"type": "object"}, input="x", on_field={"intent": lambda e: got_intent.set()}
        )
        assert got_intent.wait(WAIT)
        assert bg.cancel() is True
        assert bg.join(WAIT)
        assert stall.disconnected.wait(WAIT)
        with pytest.raises(StreamCancelledError) as info:
            bg.result()
        assert info.value.document == {"intent": "billing"}
