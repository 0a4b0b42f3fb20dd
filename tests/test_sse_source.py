"""patch_source="sse": the same PatchEvents derived on the client from an OpenAI-style token stream."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Literal

import pydantic
import pytest

from dottxt import APIConnectionError, DotTxt, InvalidOutputError, PatchStreamError, StreamDecodeError
from dottxt.testing import FakeGateway, ops_from_document
from tests.conftest import MODEL, TEST_KEY
from tests.models import Plan as TriagePlan
from tests.rawserver import RawConnection, RawServer


class Plan(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[str]
    meta: dict[str, int | None]
    reply: str


DOCUMENT = {
    "intent": "billing",
    "steps": ["check the invoice", 'say "sorry" \\ refund', "emoji 😀 and é"],
    "meta": {"a/b": 1, "~x": None},
    "reply": "Line one\nline two\u2028end",
}


@pytest.fixture
def gateway():
    with FakeGateway(api_key=TEST_KEY, seed=3) as gw:
        yield gw


def events_of(gateway: FakeGateway, source: str, document=DOCUMENT, **kwargs):  # type: ignore[no-untyped-def]
    gateway.enqueue(document)
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, patch_source=source, max_retries=0) as client:
        stream = client.stream(model=MODEL, response_format=kwargs.pop("response_format", Plan), input="x", **kwargs)
        return list(stream), stream


def test_sse_gives_exactly_the_gateway_op_sequence(gateway):
    sse_events, sse_stream = events_of(gateway, "sse")
    patch_events, patch_stream = events_of(gateway, "gateway")
    assert [e.op for e in sse_events] == [e.op for e in patch_events] == ops_from_document(DOCUMENT)
    assert [e.path for e in sse_events] == [e.path for e in patch_events]
    assert sse_stream.result() == patch_stream.result() == Plan.model_validate(DOCUMENT)
    sent = [r for r in gateway.requests if r.path.endswith("/chat/completions")]
    assert sent[0].json["stream"] is True and sent[1].json["stream"] == "patch"
    assert sent[0].json["response_format"]["type"] == "json_schema"


def test_generated_documents_match_too(gateway):
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, patch_source="sse") as client:
        for seed in range(5):
            stream = client.stream(model=MODEL, response_format=Plan, input="x", seed=seed)
            ops = [e.op for e in stream]
            assert ops == ops_from_document(stream.document)
            assert isinstance(stream.result(), Plan)


def test_unknown_patch_source_is_refused():
    with pytest.raises(ValueError, match="patch_source"):
        DotTxt(api_key="k", patch_source="carrier-pigeon")


def test_length_finish_reason_is_truncated_output_with_what_was_parsed(gateway):
    _, stream = events_of(gateway, "sse", max_tokens=8)
    with pytest.raises(InvalidOutputError) as info:
        stream.result()
    assert "truncated" in str(info.value)
    assert info.value.finish_reason == "length"
    assert info.value.document is not None and info.value.document.get("intent") == "billing"


def sse_server(*payloads: object, finish: bool = True):  # type: ignore[no-untyped-def]
    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        for payload in payloads:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            conn.chunk(f"data: {data}\n\n".encode())
        if finish:
            conn.chunk(b"data: [DONE]\n\n")
            conn.end()

    return RawServer(handler)


def delta(content: str, finish_reason: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}]}


def stream_from(server: RawServer):  # type: ignore[no-untyped-def]
    client = DotTxt(api_key="k", base_url=server.base_url, patch_source="sse", max_retries=0)
    return client, client.stream(model=MODEL, response_format={"type": "object"}, input="x")


def test_error_payload_mid_stream_keeps_the_document():
    with sse_server(delta('{"intent": "bil'), delta('ling", "re'), {"error": {"message": "overloaded"}}) as server:
        client, stream = stream_from(server)
        with client, pytest.raises(PatchStreamError) as info:
            list(stream)
    assert info.value.status_code == 200
    assert "overloaded" in str(info.value)
    assert info.value.document == {"intent": "billing"}


def test_invalid_json_from_the_model_is_a_decode_error_with_its_position():
    with sse_server(delta('{"a": 1,'), delta(' "b": tru e}', "stop")) as server:
        client, stream = stream_from(server)
        with client, pytest.raises(StreamDecodeError) as info:
            list(stream)
    assert info.value.document == {"a": 1}
    assert "position" in str(info.value) or "12" in str(info.value)


def test_connection_cut_mid_stream():
    with sse_server(delta('{"a": [1, 2'), finish=False) as server:
        client, stream = stream_from(server)
        with client, pytest.raises(APIConnectionError) as info:
            list(stream)
    assert info.value.document == {"a": [1]}


def test_keepalive_comments_role_chunks_and_usage_chunks_are_skipped():
    with sse_server(
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        delta('{"x"'),
        {"choices": [], "usage": {"total_tokens": 3}},
        delta(": [true, null]}", "stop"),
    ) as server:
        client, stream = stream_from(server)
        with client:
            assert [e.field for e in stream] == ["", "x", "x/0", "x/1"]
            assert stream.result() == {"x": [True, None]}


@pytest.mark.usefixtures("isolated_env")
def test_sse_source_from_the_environment_gives_the_gateway_events(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def seen(client: DotTxt, seed: int) -> tuple[list[Any], Any]:
        stream = client.stream(model=MODEL, response_format=TriagePlan, input="x", seed=seed)
        events = [(e.op, e.field, e.path, e.value, e.is_leaf, e.snapshot) for e in stream]
        return events, stream.result()

    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url) as client:
        expected = [seen(client, seed) for seed in range(3)]
    monkeypatch.setenv("DOTTXT_PATCH_SOURCE", "sse")
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url) as client:
        assert client.patch_source == "sse"
        assert [seen(client, seed) for seed in range(3)] == expected
    sent = [r.json["stream"] for r in gateway.requests]
    assert sent == ["patch"] * 3 + [True] * 3
    assert all(events for events, _ in expected)


def test_sse_source_emits_a_string_at_its_closing_quote(raw: Callable[..., DotTxt]) -> None:
    """The event for "intent" must arrive while the server still holds the rest of the document back."""
    release = threading.Event()
    held_back: list[bool] = []

    def delta(content: str) -> bytes:
        chunk = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        conn.chunk(delta('{"intent": "billing", "re'))
        held_back.append(not release.wait(5))
        conn.chunk(delta('ply": "ok", "steps": []}'))
        conn.chunk(b"data: [DONE]\n\n")
        conn.end()

    client = raw(handler, patch_source="sse")
    stream = client.stream(model="m", response_format=TriagePlan, input="x")
    assert [next(stream).field, next(stream).field] == ["", "intent"]
    release.set()
    assert [e.field for e in stream] == ["reply", "steps"]
    assert held_back == [False]
