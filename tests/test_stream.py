"""The patch stream, byte by byte, against a raw loopback server."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Literal

import pydantic
import pytest

import dottxt._events
from dottxt import (
    APIConnectionError,
    APITimeoutError,
    DotTxt,
    InvalidOutputError,
    PatchEvent,
    PatchStreamError,
    RateLimitError,
    StreamDecodeError,
)
from dottxt._patch import apply_add, ops_from_document
from tests.rawserver import RawConnection, RawServer, ndjson


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


TICKET_OPS = ops_from_document({"intent": "billing", "reply": "We refunded you."})


@pytest.fixture
def serve() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()
    for server in servers:
        assert not server.errors, server.errors


def client_for(servers: list[RawServer], handler, **kwargs) -> DotTxt:  # type: ignore[no-untyped-def]
    server = RawServer(handler)
    servers.append(server)
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", (5, 5))
    return DotTxt(api_key="sk-test", base_url=server.base_url, **kwargs)


def stream_of(client: DotTxt, **kwargs):  # type: ignore[no-untyped-def]
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
def test_events_fields_paths_and_typed_result(serve, chunked):
    seen: list[RawConnection] = []

    def handler(conn: RawConnection) -> None:
        seen.append(conn)
        send_all(ndjson(*TICKET_OPS), chunked=chunked)(conn)

    with client_for(serve, handler) as client:
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
def test_each_event_arrives_before_the_server_sends_more(serve, chunked):
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

    with client_for(serve, handler) as client, stream_of(client) as stream:
        first = next(stream)
        assert first.op == TICKET_OPS[0]
        release.set()
        assert [e.field for e in stream] == ["intent", "reply"]
    assert held_back == [False]


def test_utf8_split_across_reads_and_raw_line_separators(serve):
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

    with client_for(serve, handler) as client:
        stream = stream_of(client)
        events = [next(stream) for _ in range(3)]
        gate.set()
        assert events[2].value == text
        assert list(stream) == []


def test_crlf_blank_lines_and_final_line_without_newline(serve):
    body = (
        b"\r\n"
        + json.dumps(TICKET_OPS[0]).encode()
        + b"\r\n\r\n\n"
        + json.dumps(TICKET_OPS[1]).encode()
        + b"\r\n"
        + json.dumps(TICKET_OPS[2]).encode()
    )
    with client_for(serve, send_all(body, chunked=False)) as client:
        assert stream_of(client).result() == Ticket(intent="billing", reply="We refunded you.")


def test_objects_without_op_are_ignored(serve):
    body = ndjson(TICKET_OPS[0], {"usage": {"tokens": 3}}, TICKET_OPS[1], {"heartbeat": True}, TICKET_OPS[2])
    with client_for(serve, send_all(body)) as client:
        assert [e.field for e in stream_of(client)] == ["", "intent", "reply"]


def test_keys_with_slash_and_tilde_and_deep_nesting(serve):
    deep: dict = {"leaf": 1}
    for i in range(60):
        deep = {f"k{i}": deep}
    document = {"a/b": {"~c": [1, {"x~1/y": "z"}]}, "deep": deep, "": "empty key"}
    with client_for(serve, send_all(ndjson(*ops_from_document(document)))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        events = list(stream)
        assert stream.result() == document
    paths = {e.path for e in events}
    assert ("a/b", "~c", 1, "x~1/y") in paths
    assert ("",) in paths
    assert events[-1].snapshot == document


def test_ten_thousand_array_items(serve):
    document = {"items": [{"n": i, "tag": f"t{i}"} for i in range(10_000)]}
    with client_for(serve, send_all(ndjson(*ops_from_document(document)))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        count = sum(1 for _ in stream)
        assert count == 1 + 1 + 10_000 * 3
        assert stream.result() == document


# --------------------------------------------------------------------------- events and snapshots


def test_snapshots_are_independent_and_valid_after_the_stream_moved_on(serve):
    ops = ops_from_document({"steps": ["a", "b", "c"], "done": True})
    with client_for(serve, send_all(ndjson(*ops))) as client:
        events = list(stream_of(client, response_format={"type": "object"}))
    assert events[2].snapshot == {"steps": ["a"]}  # read long after op 3 was applied
    events[3].snapshot["steps"].append("mutated")
    assert events[3].snapshot == {"steps": ["a", "b", "mutated"]}  # the reader's own copy
    assert events[4].snapshot == {"steps": ["a", "b", "c"]}
    assert events[1].op == {"op": "add", "path": "/steps", "value": []}  # later ops never change an op
    assert events[3].path == ("steps", 1)


def test_iterating_without_snapshots_copies_nothing(serve, monkeypatch):
    calls = {"n": 0}
    real = dottxt._events.copy_json

    def counting(value):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(value)

    monkeypatch.setattr(dottxt._events, "copy_json", counting)
    document = {"items": list(range(500))}
    with client_for(serve, send_all(ndjson(*ops_from_document(document)))) as client:
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


def test_document_is_a_copy_and_none_before_the_first_op(serve):
    with client_for(serve, send_all(ndjson(*TICKET_OPS))) as client:
        stream = stream_of(client)
        assert stream.document is None
        next(stream)
        next(stream)
        doc = stream.document
        doc["intent"] = "changed"
        assert stream.document == {"intent": "billing"}
        stream.close()


def test_other_rfc6902_ops_are_applied(serve):
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a", "value": [1, 2, 3]},
        {"op": "remove", "path": "/a/0"},
        {"op": "replace", "path": "/a/0", "value": 20},
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "move", "from": "/b", "path": "/c"},
        {"op": "test", "path": "/c", "value": [20, 3]},
    ]
    with client_for(serve, send_all(ndjson(*ops))) as client:
        stream = stream_of(client, response_format={"type": "object"})
        events = list(stream)
    assert stream.result() == {"a": [20, 3], "c": [20, 3]}
    assert events[2].snapshot == {"a": [2, 3]}


# --------------------------------------------------------------------------- failures keep what arrived


def test_invalid_json_line(serve):
    body = ndjson(*TICKET_OPS[:2]) + b"\n" + b"{not json}\n"
    with client_for(serve, send_all(body)) as client, pytest.raises(StreamDecodeError) as info:
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
def test_bad_ops(serve, line):
    body = ndjson(TICKET_OPS[0]) + json.dumps(line).encode() + b"\n"
    with client_for(serve, send_all(body)) as client, pytest.raises(StreamDecodeError) as info:
        list(stream_of(client))
    assert info.value.line_number == 2
    assert info.value.document == {}


def test_long_line_is_refused_while_still_arriving(serve):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0]))
        conn.chunk(b'{"op": "add", "path": "/reply", "value": "' + b"x" * 5000)
        conn.wait_for_disconnect()  # never finish the line: the client must not wait for it

    with client_for(serve, handler) as client, pytest.raises(StreamDecodeError) as info:
        list(stream_of(client, max_line_bytes=1000))
    assert "1000" in str(info.value)
    assert info.value.line_number == 2
    assert len(info.value.line or "") <= 200
    assert info.value.document == {}


def test_error_line_mid_stream(serve):
    body = ndjson(*TICKET_OPS[:2], {"error": {"message": "model overloaded", "type": "server_error"}})
    with client_for(serve, send_all(body)) as client, pytest.raises(PatchStreamError) as info:
        list(stream_of(client))
    assert info.value.status_code == 200
    assert "model overloaded" in str(info.value)
    assert "model overloaded" in info.value.body
    assert info.value.document == {"intent": "billing"}


def test_non_2xx_is_a_patch_stream_error_and_a_status_error(serve):
    def handler(conn: RawConnection) -> None:
        body = b'{"error": {"message": "slow down"}}'
        conn.send(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nx-request-id: req-9\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    with client_for(serve, handler) as client:
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


def test_retried_before_the_first_event(serve):
    attempts: list[int] = []

    def handler(conn: RawConnection) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            conn.send(b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
            return
        send_all(ndjson(*TICKET_OPS))(conn)

    with client_for(serve, handler, max_retries=2) as client:
        assert stream_of(client).result().intent == "billing"
    assert len(attempts) == 2


def test_truncated_chunked_body(serve):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*TICKET_OPS[:2]))
        conn.send(b"40\r\n" + b'{"op": "add", "path"')  # a chunk cut short, then the connection drops

    with client_for(serve, handler) as client, pytest.raises(APIConnectionError) as info:
        list(stream_of(client))
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.document == {"intent": "billing"}


def test_body_shorter_than_content_length(serve):
    def handler(conn: RawConnection) -> None:
        body = ndjson(*TICKET_OPS[:2])
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body) + 100, body))

    with client_for(serve, handler) as client, pytest.raises(APIConnectionError) as info:
        list(stream_of(client))
    assert info.value.document == {"intent": "billing"}


def test_silence_past_the_read_timeout(serve):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*TICKET_OPS[:2]))
        conn.wait_for_disconnect()

    with client_for(serve, handler, timeout=(5, 0.3)) as client, pytest.raises(APITimeoutError) as info:
        list(stream_of(client))
    assert info.value.document == {"intent": "billing"}


def test_result_raises_invalid_output_when_cut_short(serve):
    with client_for(serve, send_all(ndjson(*TICKET_OPS[:2]))) as client:
        stream = stream_of(client)
        with pytest.raises(InvalidOutputError) as info:
            stream.result()
    assert info.value.document == {"intent": "billing"}
    assert "reply" in str(info.value)


def test_result_typed_for_dataclasses(serve):
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    with client_for(serve, send_all(ndjson(*ops_from_document({"x": 1, "y": 2})))) as client:
        assert stream_of(client, response_format=Point).result() == Point(1, 2)


# --------------------------------------------------------------------------- closing


@pytest.mark.parametrize("how", ["close", "with", "break-and-drop"])
def test_closing_closes_the_connection_at_once(serve, how):
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*TICKET_OPS[:2]))
        disconnected.append(conn.wait_for_disconnect(5))

    with client_for(serve, handler) as client:
        server = serve[-1]
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


def test_close_from_another_thread_during_a_stall(serve):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0]))
        conn.wait_for_disconnect(10)

    with client_for(serve, handler, timeout=(5, 30)) as client:
        stream = stream_of(client)
        next(stream)
        timer = threading.Timer(0.2, stream.close)
        timer.start()
        started = time.monotonic()
        assert list(stream) == []  # ends quietly: we closed it
        elapsed = time.monotonic() - started
        timer.join()
    assert elapsed < 5


def test_client_close_interrupts_live_streams(serve):
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(TICKET_OPS[0]))
        conn.wait_for_disconnect(10)

    client = client_for(serve, handler, timeout=(5, 30))
    stream = stream_of(client)
    next(stream)
    client.close()
    assert serve[-1].handled.wait(5)  # the server saw the disconnect


def test_fold_ops_with_apply_add_gives_back_the_document(serve):
    document = {"steps": [{"id": 1}, {"id": 2}], "meta": {"k": None}}
    with client_for(serve, send_all(ndjson(*ops_from_document(document)))) as client:
        doc = None
        for event in stream_of(client, response_format={"type": "object"}):
            doc = apply_add(doc, event.op["path"], event.op["value"])
    assert doc == document


def test_reading_old_snapshots_replays_no_ops(serve, monkeypatch):
    """A consumer behind the stream pays one copy per snapshot read, never a replay of the ops."""
    document = {"items": list(range(300))}
    with client_for(serve, send_all(ndjson(*ops_from_document(document)))) as client:
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


def test_close_before_the_response_headers_interrupts_the_wait(serve):
    """A server that never answers: close() from another thread still ends the request at once."""
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        disconnected.append(conn.wait_for_disconnect(10))  # headers never sent

    with client_for(serve, handler, timeout=(5, 30)) as client:
        stream = stream_of(client)
        outcome: list[object] = []
        reader = threading.Thread(target=lambda: outcome.append(list(stream)))
        reader.start()
        assert serve[-1].requested.wait(5)  # the request has reached the server, which stays silent
        started = time.monotonic()
        stream.close()
        reader.join(5)
        elapsed = time.monotonic() - started
        assert not reader.is_alive()
        assert outcome == [[]]  # ended quietly: we closed it
        assert serve[-1].handled.wait(5)
    assert disconnected == [True]
    assert elapsed < 1.0


def test_containers_replaced_or_shifted_mid_stream_keep_later_ops_right(serve):
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
    with client_for(serve, send_all(ndjson(*ops))) as client:
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
