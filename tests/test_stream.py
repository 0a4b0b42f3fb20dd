"""The patch stream, byte by byte, against a raw loopback server."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Optional

import pydantic
import pytest

import dottxt._events
from dottxt import (
    APIConnectionError,
    APITimeoutError,
    DotTxt,
    InternalServerError,
    InvalidOutputError,
    PatchEvent,
    PatchStreamError,
    RateLimitError,
    StreamDecodeError,
    apply_add,
    build_response_format,
)
from dottxt.testing import FakeGateway, ops_from_document
from tests.conftest import MODEL, TEST_KEY
from tests.models import Color, Movie, Plan, Point
from tests.rawserver import RawConnection, ndjson


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


TICKET_OPS = ops_from_document({"intent": "billing", "reply": "We refunded you."})


def stream_of(client: DotTxt, **kwargs: Any) -> Any:
    return client.stream(model="m", response_format=kwargs.pop("response_format", Ticket), input="hi", **kwargs)


def send_all(body: bytes, *, chunked: bool = True):  # type: ignore[no-untyped-def]
    def handler(conn: RawConnection) -> None:
        conn.head(chunked=chunked)
        if chunked:
            conn.chunk(body)
            conn.end()
        else:
            conn.send(body)

    return handler


# --------------------------------------------------------------------------- the happy path


@pytest.mark.parametrize("chunked", [True, False])
def test_events_fields_paths_and_typed_result(raw, chunked):
    seen: list[RawConnection] = []

    def handler(conn: RawConnection) -> None:
        seen.append(conn)
        send_all(ndjson(*TICKET_OPS), chunked=chunked)(conn)

    with raw(handler) as client:
        stream = stream_of(client)
        events = list(stream)
        assert [e.field for e in events] == ["", "intent", "reply"]
        assert [e.path for e in events] == [(), ("intent",), ("reply",)]
        assert [e.is_leaf for e in events] == [False, True, True]
        assert events[1].snapshot == {"intent": "billing"}
        assert stream.result() == Ticket(intent="billing", reply="We refunded you.")
    body = seen[0].json
    assert body["stream"] == "patch"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["intent"]["enum"] == [
        "billing",
        "technical",
    ]
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert seen[0].headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("chunked", [True, False])
def test_each_event_arrives_before_the_server_sends_more(raw, chunked):
    """The client must not hold a complete line back waiting for more bytes."""
    release = threading.Event()
    held_back: list[bool] = []

    def handler(conn: RawConnection) -> None:
        conn.head(chunked=chunked)
        first = ndjson(TICKET_OPS[0])
        conn.chunk(first) if chunked else conn.send(first)
        held_back.append(not release.wait(5))  # the client must see op 1 now
        rest = ndjson(*TICKET_OPS[1:])
        if chunked:
            conn.chunk(rest)
            conn.end()
        else:
            conn.send(rest)

    with raw(handler) as client, stream_of(client) as stream:
        first = next(stream)
        assert first.op == TICKET_OPS[0]
        release.set()
        assert [e.field for e in stream] == ["intent", "reply"]
    assert held_back == [False]


def test_utf8_split_across_reads_and_raw_line_separators(raw):
    text = "café ☕ 😀 \u2028 line\u2029sep"
    line = json.dumps({"op": "add", "path": "/reply", "value": text}, ensure_ascii=False).encode() + b"\n"
    gate = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0], TICKET_OPS[1]))
        for i in range(len(line)):  # one byte per chunk: every multi-byte character is split
            conn.chunk(line[i : i + 1])
        gate.wait(5)
        conn.end()

    with raw(handler) as client:
        stream = stream_of(client)
        events = [next(stream) for _ in range(3)]
        gate.set()
        assert events[2].value == text
        assert list(stream) == []


def test_crlf_blank_lines_and_final_line_without_newline(raw):
    body = (
        b"\r\n"
        + json.dumps(TICKET_OPS[0]).encode()
        + b"\r\n\r\n\n"
        + json.dumps(TICKET_OPS[1]).encode()
        + b"\r\n"
        + json.dumps(TICKET_OPS[2]).encode()
    )
    with raw(send_all(body, chunked=False)) as client:
        assert stream_of(client).result() == Ticket(intent="billing", reply="We refunded you.")


def test_objects_without_op_are_ignored(raw):
    body = ndjson(TICKET_OPS[0], {"usage": {"tokens": 3}}, TICKET_OPS[1], {"heartbeat": True}, TICKET_OPS[2])
    with raw(send_all(body)) as client:
        assert [e.field for e in stream_of(client)] == ["", "intent", "reply"]


def test_keys_with_slash_and_tilde_and_deep_nesting(raw):
    deep: dict = {"leaf": 1}
    for i in range(60):
        deep = {f"k{i}": deep}
    document = {"a/b": {"~c": [1, {"x~1/y": "z"}]}, "deep": deep, "": "empty key"}
    with raw(send_all(ndjson(*ops_from_document(document)))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        events = list(stream)
        assert stream.result() == document
    paths = {e.path for e in events}
    assert ("a/b", "~c", 1, "x~1/y") in paths
    assert ("",) in paths
    assert events[-1].snapshot == document


def test_ten_thousand_array_items(raw):
    document = {"items": [{"n": i, "tag": f"t{i}"} for i in range(10_000)]}
    with raw(send_all(ndjson(*ops_from_document(document)))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        count = sum(1 for _ in stream)
        assert count == 1 + 1 + 10_000 * 3
        assert stream.result() == document


# --------------------------------------------------------------------------- events and snapshots


def test_snapshots_are_independent_and_valid_after_the_stream_moved_on(raw):
    ops = ops_from_document({"steps": ["a", "b", "c"], "done": True})
    with raw(send_all(ndjson(*ops))) as client:
        events = list(stream_of(client, response_format={"type": "object"}))
    assert events[2].snapshot == {"steps": ["a"]}  # read long after op 3 was applied
    events[3].snapshot["steps"].append("mutated")
    assert events[3].snapshot == {"steps": ["a", "b", "mutated"]}  # the reader's own copy
    assert events[4].snapshot == {"steps": ["a", "b", "c"]}
    assert events[1].op == {"op": "add", "path": "/steps", "value": []}  # later ops never change an op
    assert events[3].path == ("steps", 1)


def test_iterating_without_snapshots_copies_nothing(raw, monkeypatch):
    calls = {"n": 0}
    real = dottxt._events.copy_json

    def counting(value):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(value)

    monkeypatch.setattr(dottxt._events, "copy_json", counting)
    document = {"items": list(range(500))}
    with raw(send_all(ndjson(*ops_from_document(document)))) as client:
        events = list(stream_of(client, response_format={"type": "object"}))
    assert len(events) == 502
    assert calls["n"] == 0
    assert events[-1].snapshot == document
    assert calls["n"] > 0  # reading one snapshot makes one copy (copy_json recurses)


def test_patch_event_constructed_directly():
    event = PatchEvent({"op": "add", "path": "/steps/0", "value": "x"}, {"steps": ["x"]})
    assert (event.field, event.path, event.value, event.is_leaf) == ("steps/0", ("steps", 0), "x", True)
    assert dataclasses.is_dataclass(event)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.op = {}  # type: ignore[misc]
    falsy = [PatchEvent({"op": "add", "path": "/a", "value": v}, {"a": v}) for v in (0, "", False, None)]
    assert all(e.is_leaf for e in falsy)
    assert not PatchEvent({"op": "add", "path": "", "value": 1}, 1).is_leaf
    assert not PatchEvent({"op": "add", "path": "/a", "value": {}}, {"a": {}}).is_leaf
    assert PatchEvent({"op": "add", "path": "/a~1b/~0", "value": 1}, {"a/b": {"~": 1}}).path == ("a/b", "~")


def test_document_is_a_copy_and_none_before_the_first_op(raw):
    with raw(send_all(ndjson(*TICKET_OPS))) as client:
        stream = stream_of(client)
        assert stream.document is None
        next(stream)
        next(stream)
        doc = stream.document
        doc["intent"] = "changed"
        assert stream.document == {"intent": "billing"}
        stream.close()


def test_other_rfc6902_ops_are_applied(raw):
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a", "value": [1, 2, 3]},
        {"op": "remove", "path": "/a/0"},
        {"op": "replace", "path": "/a/0", "value": 20},
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "move", "from": "/b", "path": "/c"},
        {"op": "test", "path": "/c", "value": [20, 3]},
    ]
    with raw(send_all(ndjson(*ops))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        events = list(stream)
    assert stream.result() == {"a": [20, 3], "c": [20, 3]}
    assert events[2].snapshot == {"a": [2, 3]}


def test_event_field_path_value_and_is_leaf_for_every_pointer_shape(raw: Callable[..., DotTxt]) -> None:
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/address", "value": {}},
        {"op": "add", "path": "/address/city", "value": "Paris"},
        {"op": "add", "path": "/steps", "value": []},
        {"op": "add", "path": "/steps/0", "value": "first"},
        {"op": "add", "path": "/steps/-", "value": []},
        {"op": "add", "path": "/steps/1/-", "value": 0},
        {"op": "add", "path": "/a~1b", "value": ""},
        {"op": "add", "path": "/~0t", "value": False},
        {"op": "add", "path": "/none", "value": None},
    ]
    client = raw(send_all(ndjson(*ops)))
    stream = client.stream(model="m", response_format={"type": "object"}, input="x")
    events = list(stream)
    assert [(e.field, e.path, e.value, e.is_leaf) for e in events] == [
        ("", (), {}, False),
        ("address", ("address",), {}, False),
        ("address/city", ("address", "city"), "Paris", True),
        ("steps", ("steps",), [], False),
        ("steps/0", ("steps", 0), "first", True),
        ("steps/-", ("steps", 1), [], False),
        ("steps/1/-", ("steps", 1, 0), 0, True),
        ("a~1b", ("a/b",), "", True),
        ("~0t", ("~t",), False, True),
        ("none", ("none",), None, True),
    ]
    assert [e.op for e in events] == ops  # as received; later ops changed none of them
    assert events[5].snapshot == {"address": {"city": "Paris"}, "steps": ["first", []]}
    assert stream.result() == {
        "address": {"city": "Paris"},
        "steps": ["first", [0]],
        "a/b": "",
        "~t": False,
        "none": None,
    }


def test_other_rfc6902_ops_report_list_indices_as_ints(raw: Callable[..., DotTxt]) -> None:
    ops = [
        {"op": "add", "path": "", "value": {"xs": ["a", "b", "c"]}},
        {"op": "remove", "path": "/xs/0"},
        {"op": "remove", "path": "/xs/1"},  # the last item: its index is now the list's length
        {"op": "replace", "path": "/xs/0", "value": "B"},
    ]
    client = raw(send_all(ndjson(*ops)))
    events = list(client.stream(model="m", response_format={"type": "object"}, input="x"))
    assert [e.path for e in events] == [(), ("xs", 0), ("xs", 1), ("xs", 0)]
    assert [e.snapshot for e in events[1:]] == [{"xs": ["b", "c"]}, {"xs": ["b"]}, {"xs": ["B"]}]


def test_streamed_events_can_be_copied_and_pickled(client: DotTxt) -> None:
    events = list(client.stream(model=MODEL, response_format=Plan, input="x", seed=1))
    event = events[-2]
    for clone in (copy.copy(event), copy.deepcopy(event), pickle.loads(pickle.dumps(event))):
        assert clone == event
        assert (clone.field, clone.path, clone.is_leaf) == (event.field, event.path, event.is_leaf)
    copy.deepcopy(event).snapshot.clear()
    assert event.snapshot  # the copy's snapshot is its own


@pytest.mark.parametrize(
    "response_format",
    [Plan, Point, Movie, Color, Literal["a", "b"], list[int], tuple[int, str], Optional[Point], dict[str, int]],  # noqa: UP045
    ids=["basemodel", "dataclass", "typeddict", "enum", "literal", "list", "tuple", "optional", "dict"],
)
def test_result_is_typed_exactly_as_generate_returns_it(client: DotTxt, response_format: Any) -> None:
    """Same gateway seed, same request seed: the same document, so the same typed value."""
    streamed = client.stream(model=MODEL, response_format=response_format, input="x", seed=4).result()
    generated = client.generate(model=MODEL, response_format=response_format, input="x", seed=4)
    assert streamed == generated
    assert type(streamed) is type(generated)


def test_result_cut_off_by_max_tokens_is_invalid_output_saying_truncated(client: DotTxt) -> None:
    stream = client.stream(model=MODEL, response_format=Plan, input="x", max_tokens=6)
    with pytest.raises(InvalidOutputError) as info:
        stream.result()
    error = info.value
    assert "truncated" in str(error)
    assert error.model == MODEL
    assert isinstance(error.document, dict) and "reply" not in error.document
    assert error.document == stream.document


def test_stream_request_carries_the_parameters_and_extra(gateway: FakeGateway, client: DotTxt) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    stream = client.stream(
        model=MODEL,
        response_format=Point,
        input=messages,
        temperature=0.5,
        max_tokens=200,
        seed=9,
        extra={"top_p": 0.9, "user": "u-1"},
    )
    stream.result()
    sent = gateway.requests[-1]
    assert sent.json == {
        "model": MODEL,
        "messages": messages,
        "response_format": build_response_format(Point),
        "temperature": 0.5,
        "max_tokens": 200,
        "seed": 9,
        "top_p": 0.9,
        "user": "u-1",
        "stream": "patch",
    }
    assert sent.headers["User-Agent"].startswith("dottxt-python/")


# --------------------------------------------------------------------------- failures keep what arrived


def test_invalid_json_line(raw):
    body = ndjson(*TICKET_OPS[:2]) + b"\n" + b"{not json}\n"
    with raw(send_all(body)) as client, pytest.raises(StreamDecodeError) as info:
        list(stream_of(client))
    assert info.value.line_number == 4  # the blank line counts
    assert info.value.line == "{not json}"
    assert info.value.document == {"intent": "billing"}


@pytest.mark.parametrize(
    "line",
    [
        {"op": "add", "value": 1},  # no path
        {"op": "add", "path": "/x"},  # no value
        {"op": "frobnicate", "path": "/x", "value": 1},
        {"op": "add", "path": "x", "value": 1},  # no leading /
        {"op": "add", "path": "/missing/child", "value": 1},
        [1, 2],
    ],
)
def test_bad_ops(raw, line):
    body = ndjson(TICKET_OPS[0]) + json.dumps(line).encode() + b"\n"
    with raw(send_all(body)) as client, pytest.raises(StreamDecodeError) as info:
        list(stream_of(client))
    assert info.value.line_number == 2
    assert info.value.document == {}


def test_long_line_is_refused_while_still_arriving(raw):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0]))
        conn.chunk(b'{"op": "add", "path": "/reply", "value": "' + b"x" * 5000)
        conn.wait_for_disconnect()  # never finish the line: the client must not wait for it

    with raw(handler) as client, pytest.raises(StreamDecodeError) as info:
        list(stream_of(client, max_line_bytes=1000))
    assert "1000" in str(info.value)
    assert info.value.line_number == 2
    assert len(info.value.line or "") <= 200
    assert info.value.document == {}


def test_error_line_mid_stream(raw):
    body = ndjson(*TICKET_OPS[:2], {"error": {"message": "model overloaded", "type": "server_error"}})
    with raw(send_all(body)) as client, pytest.raises(PatchStreamError) as info:
        list(stream_of(client))
    assert info.value.status_code == 200
    assert "model overloaded" in str(info.value)
    assert "model overloaded" in info.value.body
    assert info.value.document == {"intent": "billing"}


def test_non_2xx_is_a_patch_stream_error_and_a_status_error(raw):
    def handler(conn: RawConnection) -> None:
        body = b'{"error": {"message": "slow down"}}'
        conn.send(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nx-request-id: req-9\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    with raw(handler) as client:
        stream = stream_of(client)
        with pytest.raises(PatchStreamError) as info:
            next(stream)
        assert isinstance(info.value, RateLimitError)
        assert (info.value.status_code, info.value.message, info.value.request_id) == (
            429,
            "slow down",
            "req-9",
        )
        assert "slow down" in info.value.body
        with pytest.raises(PatchStreamError):
            stream.result()


def test_retried_before_the_first_event(raw):
    attempts: list[int] = []

    def handler(conn: RawConnection) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            conn.send(b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
            return
        send_all(ndjson(*TICKET_OPS))(conn)

    with raw(handler, max_retries=2) as client:
        assert stream_of(client).result().intent == "billing"
    assert len(attempts) == 2


def test_truncated_chunked_body(raw):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*TICKET_OPS[:2]))
        conn.send(b"40\r\n" + b'{"op": "add", "path"')  # a chunk cut short, then the connection drops

    with raw(handler) as client, pytest.raises(APIConnectionError) as info:
        list(stream_of(client))
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.document == {"intent": "billing"}


def test_body_shorter_than_content_length(raw):
    def handler(conn: RawConnection) -> None:
        body = ndjson(*TICKET_OPS[:2])
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body) + 100, body))

    with raw(handler) as client, pytest.raises(APIConnectionError) as info:
        list(stream_of(client))
    assert info.value.document == {"intent": "billing"}


def test_silence_past_the_read_timeout(raw):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*TICKET_OPS[:2]))
        conn.wait_for_disconnect()

    with raw(handler, timeout=(5, 0.3)) as client, pytest.raises(APITimeoutError) as info:
        list(stream_of(client))
    assert info.value.document == {"intent": "billing"}


def test_result_raises_invalid_output_when_cut_short(raw):
    with raw(send_all(ndjson(*TICKET_OPS[:2]))) as client:
        stream = stream_of(client)
        with pytest.raises(InvalidOutputError) as info:
            stream.result()
    assert info.value.document == {"intent": "billing"}
    assert "reply" in str(info.value)


@pytest.mark.parametrize("fault", ["error", "cut", "stall"])
def test_gateway_faults_mid_stream_keep_the_document(gateway: FakeGateway, fault: str) -> None:
    gateway.enqueue({"intent": "billing", "steps": [{"title": "refund", "done": True}], "reply": "ok"})
    {"error": gateway.error_next_after, "cut": gateway.cut_next_after, "stall": gateway.stall_next_after}[fault](3)
    expected = {"error": PatchStreamError, "cut": APIConnectionError, "stall": APITimeoutError}[fault]
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=2, timeout=(5, 0.3)) as client:
        stream = client.stream(model=MODEL, response_format=Plan, input="x")
        received = []
        with pytest.raises(expected) as info:
            for event in stream:
                received.append(event)
    error = info.value
    assert type(error) is not APITimeoutError or fault == "stall"
    assert len(received) == 3
    assert error.document == {"intent": "billing", "steps": []} == received[-1].snapshot
    if fault == "error":
        assert error.status_code == 200
        assert "the gateway failed mid-stream" in str(error)
    assert len(gateway.requests) == 1  # never retried once an event was yielded


def test_non_2xx_after_retries_is_a_patch_stream_error(gateway: FakeGateway) -> None:
    for _ in range(3):
        gateway.fail_next(503, body={"error": {"message": "overloaded"}}, headers={"Retry-After": "0"})
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=2) as client:
        stream = client.stream(model=MODEL, response_format=Plan, input="x")
        with pytest.raises(PatchStreamError) as info:
            list(stream)
    error = info.value
    assert (error.status_code, error.document) == (503, None)
    assert "overloaded" in error.body and "overloaded" in str(error)
    assert isinstance(error, InternalServerError)
    assert len(gateway.requests) == 3


# --------------------------------------------------------------------------- closing


@pytest.mark.parametrize("how", ["close", "with", "break-and-drop"])
def test_closing_closes_the_connection_at_once(raw, how):
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*TICKET_OPS[:2]))
        disconnected.append(conn.wait_for_disconnect(5))

    with raw(handler) as client:
        server = raw.server
        if how == "close":
            stream = stream_of(client)
            next(stream)
            stream.close()
        elif how == "with":
            with stream_of(client) as stream:
                next(stream)
        else:
            for _event in stream_of(client):
                break
        assert server.handled.wait(5)
    assert disconnected == [True]


def test_close_from_another_thread_during_a_stall(raw):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0]))
        conn.wait_for_disconnect(10)

    with raw(handler, timeout=(5, 30)) as client:
        stream = stream_of(client)
        next(stream)
        timer = threading.Timer(0.2, stream.close)
        timer.start()
        started = time.monotonic()
        assert list(stream) == []  # ends quietly: we closed it
        elapsed = time.monotonic() - started
        timer.join()
    assert elapsed < 5


def test_client_close_interrupts_live_streams(raw):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0]))
        conn.wait_for_disconnect(10)

    client = raw(handler, timeout=(5, 30))
    stream = stream_of(client)
    next(stream)
    client.close()
    assert raw.server.handled.wait(5)  # the server saw the disconnect


def test_fold_ops_with_apply_add_gives_back_the_document(raw):
    document = {"steps": [{"id": 1}, {"id": 2}], "meta": {"k": None}}
    with raw(send_all(ndjson(*ops_from_document(document)))) as client:
        doc = None
        for event in stream_of(client, response_format={"type": "object"}):
            doc = apply_add(doc, event.op["path"], event.op["value"])
    assert doc == document


def test_reading_old_snapshots_replays_no_ops(raw, monkeypatch):
    """A consumer behind the stream pays one copy per snapshot read, never a replay of the ops."""
    document = {"items": list(range(300))}
    with raw(send_all(ndjson(*ops_from_document(document)))) as client:
        events = list(stream_of(client, response_format={"type": "object"}))
    applied = {"n": 0}
    real = dottxt._events.apply_op

    def counting(doc, op):  # type: ignore[no-untyped-def]
        applied["n"] += 1
        return real(doc, op)

    monkeypatch.setattr(dottxt._events, "apply_op", counting)
    for i, event in enumerate(events[:-1]):
        assert event.snapshot == ({"items": list(range(i - 1))} if i else {})
    assert applied["n"] == 0
    assert events[5].snapshot == {"items": [0, 1, 2, 3]}  # read out of order: still right


def test_close_before_the_response_headers_interrupts_the_wait(raw):
    """A server that never answers: close() from another thread still ends the request at once."""
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        disconnected.append(conn.wait_for_disconnect(10))  # headers never sent

    with raw(handler, timeout=(5, 30)) as client:
        stream = stream_of(client)
        outcome: list[object] = []
        reader = threading.Thread(target=lambda: outcome.append(list(stream)))
        reader.start()
        assert raw.server.requested.wait(5)  # the request has reached the server, which stays silent
        stream.close()
        reader.join(5)
        assert not reader.is_alive()
        assert outcome == [[]]  # ended quietly: we closed it
        assert raw.server.handled.wait(5)
    assert disconnected == [True]


def test_containers_replaced_or_shifted_mid_stream_keep_later_ops_right(raw):
    """Ops that move containers (a replaced object, a list insert, a remove) and later ops beneath them."""
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a", "value": {}},
        {"op": "add", "path": "/a/x", "value": 1},
        {"op": "add", "path": "/a", "value": {}},  # replaces /a: the old object is gone
        {"op": "add", "path": "/a/y", "value": 2},
        {"op": "add", "path": "/l", "value": []},
        {"op": "add", "path": "/l/0", "value": {}},
        {"op": "add", "path": "/l/0/k", "value": "first"},
        {"op": "add", "path": "/l/0", "value": {}},  # inserted before: the old item is now /l/1
        {"op": "add", "path": "/l/1/k2", "value": "moved"},
        {"op": "add", "path": "/l/-", "value": []},
        {"op": "add", "path": "/l/2/-", "value": "appended"},
        {"op": "remove", "path": "/l/0"},
        {"op": "add", "path": "/l/0/k3", "value": 3},
        {"op": "add", "path": "/~1s~0", "value": {}},
        {"op": "add", "path": "/~1s~0/in", "value": True},
    ]
    with raw(send_all(ndjson(*ops))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        events = list(stream)
    expected = {
        "a": {"y": 2},
        "l": [{"k": "first", "k2": "moved", "k3": 3}, ["appended"]],
        "/s~": {"in": True},
    }
    assert stream.result() == expected
    assert events[9].path == ("l", 1, "k2")
    assert events[11].path == ("l", 2, 0)
    assert events[-1].path == ("/s~", "in")
