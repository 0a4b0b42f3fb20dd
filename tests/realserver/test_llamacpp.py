"""The SDK against a real llama.cpp server (xllamacpp's build), serving a tiny random-weight model (SPEC section 14).

Each answer is a real, schema-constrained SSE stream from llama.cpp's own code. Where a check needs the server's own
text, it is fetched with plain `requests` and the same seed (llama.cpp samples deterministically for a given seed).
"""

from __future__ import annotations

import asyncio
import enum
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest
import requests

from dottxt import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncDotTxt,
    BadRequestError,
    DotTxt,
    InvalidOutputError,
    StreamCancelledError,
    apply_op,
    build_response_format,
)
from dottxt.testing import ops_from_document
from tests.realserver.llamacpp import LlamaServer

#: llama.cpp serves its one model under any name (single-model mode), so this one is never looked up.
MODEL = "tiny"

Short = Annotated[str, pydantic.Field(max_length=8)]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical", "other"]
    summary: Annotated[str, pydantic.Field(max_length=16)]
    steps: Annotated[list[Short], pydantic.Field(max_length=3)]
    urgency: int
    labels: dict[str, int]  # llama.cpp ignores propertyNames and maxProperties: no bounds here


#: A short field, then one that takes ~1,500 tokens: a stream still running when a test breaks it.
LONG = {
    "type": "object",
    "properties": {"a": {"type": "string", "maxLength": 3}, "b": {"type": "string", "minLength": 1500}},
    "required": ["a", "b"],
}

ROOT_TYPES: list[Any] = [
    Ticket,
    Annotated[list[int], pydantic.Field(max_length=4)],
    dict[str, Short],
    Literal["yes", "no"],
    Color,
    int,
    bool,
    Short,
]


def sdk(server: LlamaServer, **options: Any) -> DotTxt:
    return DotTxt(api_key="unused", base_url=server.base_url, patch_source="sse", max_retries=0, **options)


def raw_text(server: LlamaServer, response_format: Any, seed: int, **body: Any) -> str:
    """The server's own answer, asked for without the SDK."""
    answer = requests.post(
        f"{server.base_url}/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "hello"}],
            "response_format": build_response_format(response_format),
            "seed": seed,
            **body,
        },
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]


def test_models_list_keeps_the_servers_fields(llama):
    with sdk(llama) as client:
        page = client.models.list()
    raw = llama.models()["data"]
    assert [model.id for model in page.data] == [model["id"] for model in raw] == [str(llama.model_path)]
    assert page.data[0].owned_by == "llamacpp"


def test_any_model_name_is_served_in_single_model_mode(llama):
    with sdk(llama) as client:
        assert client.generate(model="no/such-model", response_format=Color, input="hello", seed=1) in Color


def test_chat_completion_is_passed_through(llama):
    body = {"response_format": build_response_format(Ticket), "seed": 3}
    with sdk(llama) as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello"}], **body
        )
    content = completion.choices[0].message.content
    assert content == raw_text(llama, Ticket, seed=3)
    assert Ticket.model_validate_json(content)
    assert completion.model_dump()["usage"]["completion_tokens"] > 0


def test_chat_stream_chunks_equal_the_raw_sse(llama):
    body = {
        "messages": [{"role": "user", "content": "hello"}],
        "seed": 4,
        "response_format": build_response_format(Ticket),
    }
    raw = requests.post(f"{llama.base_url}/chat/completions", json={**body, "stream": True}, timeout=30)
    expected = [json.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: {")]
    with sdk(llama) as client:
        chunks = [chunk.model_dump() for chunk in client.chat.completions.create(model=MODEL, stream=True, **body)]
    assert [chunk["choices"] for chunk in chunks] == [chunk["choices"] for chunk in expected]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
    assert Ticket.model_validate_json(text)


@pytest.mark.parametrize("response_format", ROOT_TYPES, ids=lambda t: getattr(t, "__name__", str(t)[:30]))
def test_generate_returns_the_servers_answer_typed(llama, response_format):
    with sdk(llama) as client:
        value = client.generate(model=MODEL, response_format=response_format, input="hello", seed=5, max_tokens=400)
    expected = pydantic.TypeAdapter(response_format).validate_json(raw_text(llama, response_format, seed=5))
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("response_format", ROOT_TYPES, ids=lambda t: getattr(t, "__name__", str(t)[:30]))
@pytest.mark.parametrize("seed", [6, 7])
def test_sse_stream_gives_the_gateway_ops_for_the_servers_text(llama, response_format, seed):
    document = json.loads(raw_text(llama, response_format, seed=seed, max_tokens=400))
    with (
        sdk(llama) as client,
        client.stream(model=MODEL, response_format=response_format, input="hello", seed=seed, max_tokens=400) as stream,
    ):
        ops = [event.op for event in stream]
        assert stream.document == document
        assert ops == ops_from_document(document)
        assert stream.result() == pydantic.TypeAdapter(response_format).validate_python(document)


def test_usage_chunk_with_no_choices_is_skipped(llama):
    """llama.cpp sends `choices: []` with the usage when asked (`stream_options.include_usage`)."""
    document = json.loads(raw_text(llama, Ticket, seed=8))
    with sdk(llama) as client:
        stream = client.stream(
            model=MODEL,
            response_format=Ticket,
            input="hello",
            seed=8,
            extra={"stream_options": {"include_usage": True}},
        )
        assert [event.op for event in stream] == ops_from_document(document)


def test_background_stream_calls_back_in_wire_order(llama):
    document = json.loads(raw_text(llama, Ticket, seed=9))
    seen: list[str] = []
    with sdk(llama) as client:
        with client.stream_in_background(
            model=MODEL,
            response_format=Ticket,
            input="hello",
            seed=9,
            on_event=lambda event: seen.append(event.field),
            on_field={"steps/*": lambda event: seen.append(f"step {event.value}")},
            on_complete=lambda doc: seen.append("complete"),
        ) as background:
            result = background.result(timeout=30)
    assert result == Ticket.model_validate(document)
    fields = [op["path"][1:] for op in ops_from_document(document)]
    assert [entry for entry in seen if not entry.startswith("step ")] == [*fields, "complete"]
    assert [entry for entry in seen if entry.startswith("step ")] == [f"step {s}" for s in document["steps"]]


def test_cancel_stops_the_server_generating(llama_model: Path):
    """cancel() mid-answer: the single slot is free at once, so the next request is answered while ~1,500 tokens
    of the cancelled one were never generated (its grammar forbids ending earlier)."""
    with LlamaServer(llama_model, n_parallel=1) as server, sdk(server) as client:
        first = threading.Event()
        background = client.stream_in_background(
            model=MODEL, response_format=LONG, input="hello", max_tokens=3000, on_field={"a": lambda e: first.set()}
        )
        assert first.wait(30)
        background.cancel()
        with pytest.raises(StreamCancelledError):
            background.result(timeout=5)
        assert client.generate(model=MODEL, response_format=Color, input="hello", seed=1) in Color
        assert "cancel" in server.log_tail(200_000).lower()


def test_async_client_streams_without_blocking_the_loop(llama):
    document = json.loads(raw_text(llama, Ticket, seed=10))

    async def main() -> tuple[list[dict[str, Any]], int, Any]:
        ticks = 0
        ticking = True

        async def ticker() -> None:
            nonlocal ticks
            while ticking:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        async with AsyncDotTxt(api_key="unused", base_url=llama.base_url, patch_source="sse", max_retries=0) as client:
            ops = [
                event.op async for event in client.stream(model=MODEL, response_format=Ticket, input="hello", seed=10)
            ]
            value = await client.generate(model=MODEL, response_format=Ticket, input="hello", seed=10)
        ticking = False
        await task
        return ops, ticks, value

    ops, ticks, value = asyncio.run(main())
    assert ops == ops_from_document(document)
    assert value == Ticket.model_validate(document)
    assert ticks > len(ops)  # the loop ran other work while the network was read


def test_eight_threads_share_one_client(llama):
    """Concurrent answers are batched by llama.cpp; each thread still gets its own stream, op for op."""
    with sdk(llama) as client, ThreadPoolExecutor(8) as pool:

        def one(seed: int) -> tuple[Ticket, Any, list[dict[str, Any]]]:
            with client.stream(model=MODEL, response_format=Ticket, input="hello", seed=seed) as stream:
                ops = [event.op for event in stream]
                return stream.result(), stream.document, ops

        answers = list(pool.map(one, range(8)))
    assert len(answers) == 8
    for ticket, document, ops in answers:
        rebuilt = None
        # a key the model repeats (random weights do) is added twice: the last one wins, as in json.loads
        for op in ops:
            rebuilt = apply_op(rebuilt, op)
        assert rebuilt == document and Ticket.model_validate(document) == ticket


def test_max_tokens_cuts_the_answer_short(llama):
    with sdk(llama) as client:
        with pytest.raises(InvalidOutputError, match="truncated") as info:
            client.generate(model=MODEL, response_format=Ticket, input="hello", seed=11, max_tokens=12)
        assert info.value.finish_reason == "length"
        stream = client.stream(model=MODEL, response_format=Ticket, input="hello", seed=11, max_tokens=12)
        events = list(stream)
        with pytest.raises(InvalidOutputError, match="truncated") as info:
            stream.result()
    assert events and info.value.document == events[-1].snapshot


def test_server_killed_mid_stream_is_a_connection_error_with_the_document(llama_model: Path):
    with LlamaServer(llama_model, n_parallel=1) as server, sdk(server) as client:
        stream = client.stream(model=MODEL, response_format=LONG, input="hello", max_tokens=3000)
        with stream, pytest.raises(APIConnectionError) as info:
            for event in stream:
                if event.field == "a":
                    server.kill()
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.document is not None and "a" in info.value.document


def test_server_stopped_past_the_read_timeout_is_a_timeout_with_the_document(llama_model: Path):
    with LlamaServer(llama_model, n_parallel=1) as server, sdk(server, timeout=(5.0, 0.5)) as client:
        stream = client.stream(model=MODEL, response_format=LONG, input="hello", max_tokens=3000)
        try:
            with stream, pytest.raises(APITimeoutError) as info:
                for event in stream:
                    if event.field == "a":
                        server.pause()
        finally:
            server.resume()
    assert info.value.document is not None and "a" in info.value.document


def test_prompt_over_the_context_is_a_bad_request(llama):
    too_long = "hello " * 3000
    with sdk(llama) as client:
        with pytest.raises(BadRequestError, match="context") as info:
            client.generate(model=MODEL, response_format=Color, input=too_long)
        assert info.value.status_code == 400
        with pytest.raises(APIError, match="context") as stream_info:
            list(client.stream(model=MODEL, response_format=Color, input=too_long))
    assert getattr(stream_info.value, "status_code", None) == 400
