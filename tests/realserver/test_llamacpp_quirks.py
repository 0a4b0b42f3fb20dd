"""SSE quirks (SPEC section 10), replayed byte for byte from streams captured off the real llama.cpp server.

The real server never pings, fails mid-stream or stops early on demand, so each test captures a real answer, then a
`RawServer` replays it with one change: a keep-alive comment, an error event, a cut, endless trailing whitespace, ...
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from dottxt import APIConnectionError, DotTxt, PatchStreamError, StreamDecodeError, build_response_format
from dottxt.testing import ops_from_document
from tests.rawserver import RawConnection, RawServer
from tests.realserver.llamacpp import LlamaServer
from tests.realserver.test_llamacpp import MODEL, Ticket

#: How long a replaying server waits for the client to act before it gives up (a failure, never a hang).
PATIENCE = 10.0


def capture(server: LlamaServer, seed: int) -> list[dict[str, Any]]:
    """The `data:` payloads of one real streamed answer (a Ticket), `[DONE]` left off."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "response_format": build_response_format(Ticket),
        "seed": seed,
        "stream": True,
    }
    answer = requests.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
    return [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])


def frame(payload: dict[str, Any] | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


def replay(send: Callable[[RawConnection], None]) -> RawServer:
    """A server answering with an SSE head, then whatever `send` writes."""

    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        send(conn)

    return RawServer(handler)


@pytest.fixture(scope="module")
def captured(llama: LlamaServer) -> list[dict[str, Any]]:
    return capture(llama, seed=21)


@pytest.fixture
def document(captured: list[dict[str, Any]]) -> Any:
    return json.loads(text_of(captured))


def content_chunks(captured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chunks that carry text, in order (llama.cpp sends the role first and `finish_reason` on its own)."""
    return [chunk for chunk in captured if chunk["choices"] and chunk["choices"][0]["delta"].get("content")]


def stream_from(server: RawServer) -> Iterator[Any]:
    client = DotTxt(api_key="unused", base_url=server.base_url, patch_source="sse", max_retries=0)
    return client, client.stream(model=MODEL, response_format=Ticket, input="hello")  # type: ignore[return-value]


def test_replayed_capture_gives_the_same_ops(captured, document):
    with replay(lambda conn: [conn.chunk(frame(c)) for c in [*captured, "[DONE]"]] and conn.end()) as server:
        client, stream = stream_from(server)
        with client, stream:
            assert [event.op for event in stream] == ops_from_document(document)


def test_keep_alive_comments_are_skipped(captured, document):
    def send(conn: RawConnection) -> None:
        for chunk in captured:
            conn.chunk(b": ping\n\n" + frame(chunk))
        conn.chunk(b": ping\n\ndata: [DONE]\n\n")
        conn.end()

    with replay(send) as server:
        client, stream = stream_from(server)
        with client, stream:
            assert [event.op for event in stream] == ops_from_document(document)
            assert stream.result() == Ticket.model_validate(document)


def test_finish_reason_in_the_same_chunk_as_the_last_content(captured, document):
    chunks = content_chunks(captured)
    last = json.loads(json.dumps(chunks[-1]))
    last["choices"][0]["finish_reason"] = "stop"

    def send(conn: RawConnection) -> None:
        for chunk in [*chunks[:-1], last, "[DONE]"]:
            conn.chunk(frame(chunk))
        conn.end()

    with replay(send) as server:
        client, stream = stream_from(server)
        with client, stream:
            assert stream.result() == Ticket.model_validate(document)


def assert_half_then_fails(captured: list[dict[str, Any]], tail: list[Any], error: type[Exception], match: str) -> None:
    """Replay the first half of the real answer, then `tail` and the end of the body: `error`, with the document."""
    half = content_chunks(captured)[: len(content_chunks(captured)) // 2]

    def send(conn: RawConnection) -> None:
        for chunk in [*half, *tail]:
            conn.chunk(frame(chunk))
        conn.end()

    with replay(send) as server:
        client, stream = stream_from(server)
        events = []
        with client, stream, pytest.raises(error, match=match) as info:
            events.extend(stream)
    assert events and info.value.document == events[-1].snapshot  # type: ignore[attr-defined]


def test_error_event_mid_stream_keeps_the_document(captured):
    error = {"error": {"code": 500, "message": "slot crashed", "type": "server_error"}}
    assert_half_then_fails(captured, [error], PatchStreamError, "slot crashed")


@pytest.mark.parametrize("tail", [["[DONE]"], []], ids=["with-DONE", "without-DONE"])
def test_body_ending_before_the_root_completes_is_a_connection_error(captured, tail):
    assert_half_then_fails(captured, tail, APIConnectionError, "ended before the output was complete")


def test_whitespace_after_the_root_ends_the_stream_at_once(captured, document):
    """llama.cpp's grammar lets the model keep writing whitespace after the root: the SDK must not wait for it.

    After the real answer the server sends ~10 MB of whitespace chunks (more than any socket buffer holds) before
    `[DONE]`; the result must be there while that is still being sent.
    """
    sent_everything = threading.Event()
    blank = json.loads(json.dumps(content_chunks(captured)[-1]))
    blank["choices"][0]["delta"]["content"] = " \n"

    def send(conn: RawConnection) -> None:
        for chunk in content_chunks(captured):
            conn.chunk(frame(chunk))
        for _ in range(40_000):  # raises OSError once the client has gone, as it should
            conn.chunk(frame(blank))
        sent_everything.set()
        conn.chunk(frame("[DONE]"))
        conn.end()

    with replay(send) as server:
        client, stream = stream_from(server)
        with client, stream:
            assert stream.result() == Ticket.model_validate(document)
            assert not sent_everything.is_set()


def test_markdown_fence_before_the_json_fails_at_once(captured):
    gave_up_waiting = threading.Event()
    fence = json.loads(json.dumps(content_chunks(captured)[0]))
    fence["choices"][0]["delta"]["content"] = "```json\n"

    def send(conn: RawConnection) -> None:
        conn.chunk(frame(fence))
        if not conn.wait_for_disconnect(PATIENCE):  # the rest is never sent while the client is there
            gave_up_waiting.set()
            conn.end()

    with replay(send) as server:
        client, stream = stream_from(server)
        with client, stream, pytest.raises(StreamDecodeError):
            list(stream)
    assert not gave_up_waiting.is_set()


def test_each_event_arrives_before_the_rest_is_sent(captured, document):
    """The server holds back everything after the chunk that closes `intent` until the test has seen its event."""
    chunks = content_chunks(captured)
    closed = f'"{document["intent"]}"'  # the first chunk after which `intent` is complete:
    held = next(i for i in range(len(chunks)) if closed in text_of(chunks[: i + 1]).partition('"intent"')[2])
    seen_intent = threading.Event()
    released_by_test = threading.Event()

    def send(conn: RawConnection) -> None:
        for chunk in chunks[: held + 1]:
            conn.chunk(frame(chunk))
        if seen_intent.wait(PATIENCE):
            released_by_test.set()
        for chunk in [*chunks[held + 1 :], "[DONE]"]:
            conn.chunk(frame(chunk))
        conn.end()

    with replay(send) as server:
        client, stream = stream_from(server)
        with client, stream:
            for event in stream:
                if event.field == "intent":
                    seen_intent.set()
            assert stream.document == document
    assert released_by_test.is_set()
