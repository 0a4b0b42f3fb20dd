"""dottxt.web.sse_events against a real FakeGateway: frames, include/exclude, errors, and closing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import pytest
import requests
from pydantic import BaseModel

from dottxt import DotTxt, PatchStream, apply_op
from dottxt.testing import FakeGateway
from dottxt.web import JS_PATH, sse_events

from .conftest import TEST_KEY

MODEL = "dottxt/fake-model"
ANY_OBJECT = {"type": "object"}
DOC: dict[str, Any] = {
    "intent": "billing",
    "a/b": 1,
    "m~n": {"x": [1, 2]},
    "internal": {"score": 0.93, "notes": "server only"},
    "steps": [{"text": "refund", "secret": "s-1"}, {"text": "email", "secret": "s-2"}],
    "reply": "Hello",
}


class Ticket(BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[DotTxt]:
    session = requests.Session()
    session.trust_env = False
    with session, DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, session=session) as c:
        yield c


def stream_of(client: DotTxt, response_format: Any = ANY_OBJECT) -> PatchStream:
    return client.stream(model=MODEL, response_format=response_format, input="charged twice")


def parse(frames: Iterable[str]) -> list[tuple[str, Any]]:
    """Each frame as (event, data), checking the SSE framing on the way."""
    out = []
    for frame in frames:
        assert frame.endswith("\n\n")
        event_line, data_line = frame[:-2].split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((event_line[len("event: ") :], json.loads(data_line[len("data: ") :])))
    return out


def rebuilt(frames: list[tuple[str, Any]]) -> Any:
    """The document a browser builds from the op frames."""
    doc: Any = None
    for event, data in frames:
        if event == "op":
            doc = apply_op(doc, data)
    return doc


def test_each_op_is_an_op_frame_then_done_carries_the_validated_document(client: DotTxt, gateway: FakeGateway) -> None:
    gateway.enqueue({"intent": "billing", "reply": "We refunded you.\nBest, Sam"})
    frames = parse(sse_events(stream_of(client, Ticket)))
    assert [event for event, _ in frames] == ["op", "op", "op", "done"]
    assert frames[1] == ("op", {"op": "add", "path": "/intent", "value": "billing"})
    assert frames[-1] == ("done", {"intent": "billing", "reply": "We refunded you.\nBest, Sam"})
    assert rebuilt(frames) == frames[-1][1]


def test_frames_are_yielded_as_the_ops_arrive(client: DotTxt, gateway: FakeGateway) -> None:
    gateway.enqueue({"intent": "billing", "reply": "late"})
    stream = stream_of(client, Ticket)
    frames = sse_events(stream)
    assert "/intent" in next(frames) + next(frames)
    assert stream.document == {"intent": "billing"}  # the reply has not been read yet
    frames.close()


def test_exclude_keeps_server_only_fields_out_of_every_frame(client: DotTxt, gateway: FakeGateway) -> None:
    gateway.enqueue(DOC)
    raw = list(sse_events(stream_of(client), exclude=["internal", "steps/*/secret"]))
    assert not any("server only" in frame or "0.93" in frame or "s-1" in frame for frame in raw)
    frames = parse(raw)
    expected = {k: v for k, v in DOC.items() if k != "internal"}
    expected["steps"] = [{"text": "refund"}, {"text": "email"}]
    assert frames[-1] == ("done", expected)
    assert rebuilt(frames) == expected


def test_include_sends_only_those_fields_and_the_containers_leading_to_them(
    client: DotTxt, gateway: FakeGateway
) -> None:
    gateway.enqueue(DOC)
    frames = parse(sse_events(stream_of(client), include=["intent", "m~0n/x", "steps/*/text"]))
    expected = {"intent": "billing", "m~n": {"x": [1, 2]}, "steps": [{"text": "refund"}, {"text": "email"}]}
    assert frames[-1] == ("done", expected)
    assert rebuilt(frames) == expected
    assert {data["path"] for event, data in frames if event == "op"} >= {"", "/m~0n", "/steps/0"}


def test_a_hidden_array_item_stays_in_place_as_null_so_later_indices_hold(client: DotTxt, gateway: FakeGateway) -> None:
    gateway.enqueue({"tags": ["public", "internal", "public too"]})
    frames = parse(sse_events(stream_of(client), exclude="tags/1"))
    assert frames[-1] == ("done", {"tags": ["public", None, "public too"]})
    assert rebuilt(frames) == frames[-1][1]


def test_an_output_that_fails_validation_is_an_error_frame(client: DotTxt, gateway: FakeGateway) -> None:
    gateway.enqueue({"intent": "weather", "reply": "?"})
    frames = parse(sse_events(stream_of(client, Ticket)))
    assert frames[-1][0] == "error"
    assert frames[-1][1]["type"] == "InvalidOutputError"
    assert set(frames[-1][1]) == {"message", "type"}


def test_a_dropped_upstream_is_an_error_frame_after_the_ops_received(client: DotTxt, gateway: FakeGateway) -> None:
    gateway.enqueue({"intent": "billing", "reply": "never sent"})
    gateway.cut_next_after(2)
    frames = parse(sse_events(stream_of(client, Ticket)))
    assert [event for event, _ in frames] == ["op", "op", "error"]
    assert frames[-1][1]["type"] == "APIConnectionError"


def test_the_error_frame_never_carries_the_api_key(
    client: DotTxt, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOTTXT_API_KEY", "sk-live-0123456789")
    body = {"error": {"message": "key sk-live-0123456789 rejected (Authorization: Bearer sk-other-42424242)"}}
    gateway.fail_next(500, body=body)
    (event, data), *_ = parse(sse_events(stream_of(client)))
    assert event == "error"
    assert "sk-live-0123456789" not in data["message"] and "sk-other-42424242" not in data["message"]
    assert "rejected" in data["message"]


def test_closing_the_frames_closes_the_upstream_at_once() -> None:
    with FakeGateway(api_key=TEST_KEY, op_delay=0.05) as slow, requests.Session() as session:
        session.trust_env = False
        with DotTxt(api_key=TEST_KEY, base_url=slow.base_url, max_retries=0, session=session) as client:
            slow.enqueue({"intent": "billing", "reply": "x" * 20_000})  # the reply takes seconds to "generate"
            stream = stream_of(client)
            frames = sse_events(stream)
            next(frames)
            frames.close()
            assert stream.closed
            assert list(frames) == []


def test_closing_from_another_thread_ends_a_read_that_waits_on_the_server() -> None:
    with FakeGateway(api_key=TEST_KEY, op_delay=0.05) as slow, requests.Session() as session:
        session.trust_env = False
        with DotTxt(api_key=TEST_KEY, base_url=slow.base_url, max_retries=0, session=session) as client:
            slow.enqueue({"intent": "billing", "reply": "x" * 200_000})  # far longer than this test
            stream = stream_of(client)
            frames = sse_events(stream)
            got: list[str] = []
            first = threading.Event()

            def relay() -> None:
                for frame in frames:
                    got.append(frame)
                    first.set()

            worker = threading.Thread(target=relay)
            worker.start()
            assert first.wait(10)
            frames.close()  # as a server does when it sees the browser's socket close
            worker.join(10)
            assert not worker.is_alive()
            assert stream.closed
            assert not any(frame.startswith(("event: done", "event: error")) for frame in got)


def test_patterns_must_be_strings(client: DotTxt) -> None:
    with pytest.raises(TypeError):
        sse_events(stream_of(client), include=[1])  # type: ignore[list-item]


def test_the_js_module_ships_in_the_package_and_exports_stream_fields() -> None:
    source = JS_PATH.read_text(encoding="utf-8")
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    assert "export function streamFields(" in code
    assert "import" not in code and "://" not in code  # no dependency, nothing fetched from elsewhere
