"""DotTxt: configuration, request shapes, error mapping (with `responses`), and generate's typed output."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
import requests
import responses

from dottxt import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DotTxt,
    DotTxtError,
    InternalServerError,
    InvalidOutputError,
    InvalidSchemaError,
    NotFoundError,
    PatchStreamError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    __version__,
    build_response_format,
)
from dottxt.testing import FakeGateway
from tests.conftest import MODEL, TEST_KEY
from tests.models import Color, Movie, Point
from tests.rawserver import RawConnection, RawServer

BASE = "http://api.test/v1"
KEY = "sk-secret-key-123"


pytestmark = pytest.mark.usefixtures("isolated_env")


def save_api_key(key: str) -> None:
    """Store `key` where `dottxt login` does (the isolated XDG_CONFIG_HOME)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "dottxt" / "credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"api_key": key}))
    path.chmod(0o600)  # as `dottxt login` leaves it: a file others can read is warned about


@pytest.fixture
def mocked() -> Iterator[DotTxt]:
    """A client of BASE, where `responses` answers."""
    with DotTxt(api_key=KEY, base_url=BASE, max_retries=0) as c:
        yield c


def completion(content: str | None, finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "system_fingerprint": "fp_x",
    }


# --------------------------------------------------------------------------- configuration


def test_the_key_comes_from_the_argument_then_the_environment_then_the_credentials_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def sent_key(**kwargs: Any) -> str:
        """The key the client sends, as the gateway saw it."""
        with FakeGateway() as gateway, DotTxt(base_url=gateway.base_url, **kwargs) as client:
            client.models.list()
            return gateway.requests[-1].headers["Authorization"]

    save_api_key("from-file")
    assert sent_key() == "Bearer from-file"
    monkeypatch.setenv("DOTTXT_API_KEY", "from-env")
    assert sent_key() == "Bearer from-env"
    assert DotTxt().api_key == "from-env"
    assert sent_key(api_key="from-arg") == "Bearer from-arg"
    assert DotTxt(api_key="from-arg").api_key == "from-arg"
    assert "from-arg" not in repr(DotTxt(api_key="from-arg"))


def test_missing_key_names_all_three_sources():
    with pytest.raises(ValueError) as info:
        DotTxt()
    message = str(info.value)
    assert "api_key" in message and "DOTTXT_API_KEY" in message and "dottxt login" in message


def test_base_url_resolution(monkeypatch):
    assert DotTxt(api_key="k").base_url == "https://api.dottxt.ai/v1"
    monkeypatch.setenv("DOTTXT_BASE_URL", "http://env.test/v1/")
    assert DotTxt(api_key="k").base_url == "http://env.test/v1"
    assert DotTxt(api_key="k", base_url="http://arg.test/v1/").base_url == "http://arg.test/v1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": 123},
        {"timeout": "slow"},
        {"timeout": (1, 2, 3)},
        {"max_retries": -1},
        {"session": object()},
    ],
)
def test_wrong_argument_types(kwargs):
    kwargs.setdefault("api_key", "k")
    with pytest.raises(TypeError):
        DotTxt(**kwargs)


def test_defaults() -> None:
    client = DotTxt(api_key="k")
    assert (client.base_url, client.timeout, client.max_retries) == ("https://api.dottxt.ai/v1", 60.0, 2)


def test_a_key_read_with_its_newline_works_and_is_never_echoed(
    gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A key pasted from a file keeps its "\\n"; requests would put the whole header in its error."""
    caplog.set_level(logging.DEBUG)
    with DotTxt(api_key=f"{TEST_KEY}\n", base_url=gateway.base_url, max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [MODEL]
    assert gateway.requests[-1].headers["Authorization"] == f"Bearer {TEST_KEY}"
    secret = "sk-embedded-SECRET"
    with pytest.raises(ValueError) as info:
        DotTxt(api_key=f"{secret}\nX-Injected: 1", base_url=gateway.base_url)
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in caplog.text


def test_the_key_never_appears_in_errors_or_logs(gateway: FakeGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-wrong-SECRET-0123456789"
    seen: list[BaseException] = []
    with DotTxt(api_key=secret, base_url=gateway.base_url, max_retries=1) as client:
        gateway.fail_next(503, headers={"Retry-After": "0"})  # logged as a retry
        with pytest.raises(AuthenticationError) as status:
            client.models.list()
        seen.append(status.value)
        with pytest.raises(PatchStreamError) as streamed:
            list(client.stream(model=MODEL, response_format=Point, input="x"))
        seen.append(streamed.value)
        assert "SECRET" not in repr(client)
    assert "retrying" in caplog.text
    assert all("SECRET" not in text for e in seen for text in (str(e), repr(e), getattr(e, "body", "")))
    assert "SECRET" not in caplog.text


# --------------------------------------------------------------------------- requests


@responses.activate
def test_models_list(mocked):
    responses.get(
        f"{BASE}/models",
        json={
            "object": "list",
            "data": [{"id": "a/one", "object": "model", "context": 8192}, {"id": "b/two"}],
        },
    )
    page = mocked.models.list()
    assert [m.id for m in page.data] == ["a/one", "b/two"]
    assert [m.id for m in page] == ["a/one", "b/two"]
    assert page.data[0].context == 8192  # fields we do not declare are kept
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"] == f"dottxt-python/{__version__}"


@responses.activate
def test_chat_completions_passed_through_unchanged(mocked):
    responses.post(f"{BASE}/chat/completions", json=completion('{"a": 1}'))
    out = mocked.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
    )
    assert out.choices[0].message.content == '{"a": 1}'
    assert out.model_dump() == completion('{"a": 1}')
    assert json.loads(responses.calls[0].request.body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"},
    }


@responses.activate
def test_chat_completions_stream_yields_chunks(mocked):
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"content": '{"a"'}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"content": ": 1}"}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ": keep-alive\n\ndata: [DONE]\n\n"
    responses.post(f"{BASE}/chat/completions", body=body, content_type="text/event-stream")
    with mocked.chat.completions.create(model="m", messages=[], stream=True) as stream:
        got = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in got) == '{"a": 1}'
    assert got[-1].choices[0].finish_reason == "stop"


@responses.activate
def test_generate_request_shape(mocked):
    responses.post(f"{BASE}/chat/completions", json=completion('{"x": 1}'))
    mocked.generate(
        model="m",
        response_format={"type": "object"},
        input=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        temperature=0.2,
        max_tokens=50,
        seed=7,
        top_p=0.9,
    )
    body = json.loads(responses.calls[0].request.body)
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}},
        },
        "temperature": 0.2,
        "max_tokens": 50,
        "seed": 7,
        "top_p": 0.9,
    }


@pytest.mark.parametrize("bad_input", [42, None, [1, 2], {"role": "user"}])
def test_generate_rejects_bad_input_types(mocked, bad_input):
    with pytest.raises(TypeError):
        mocked.generate(model="m", response_format={"type": "object"}, input=bad_input)


# --------------------------------------------------------------------------- errors


@responses.activate
@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
def test_status_errors(mocked, status, cls):
    body = {"error": {"message": f"nope {status}", "type": "x"}}
    responses.get(f"{BASE}/models", status=status, json=body, headers={"x-request-id": "req-42"})
    with pytest.raises(cls) as info:
        mocked.models.list()
    error = info.value
    assert isinstance(error, DotTxtError)
    assert (error.status_code, error.message, error.request_id) == (status, f"nope {status}", "req-42")
    assert json.loads(error.body) == body


@responses.activate
def test_status_error_without_json_body(mocked):
    responses.get(f"{BASE}/models", status=502, body="<html>bad gateway</html>")
    with pytest.raises(InternalServerError) as info:
        mocked.models.list()
    assert info.value.body == "<html>bad gateway</html>"
    assert info.value.message


def test_connection_refused_is_an_api_connection_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with DotTxt(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as c:
        with pytest.raises(APIConnectionError) as info:
            c.models.list()
    assert f"127.0.0.1:{port}" in str(info.value)


# --------------------------------------------------------------------------- generate's typed output


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


@responses.activate
@pytest.mark.parametrize(
    ("response_format", "content", "expected"),
    [
        (Ticket, '{"intent": "billing", "reply": "ok"}', Ticket(intent="billing", reply="ok")),
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Movie, '{"title": "Up", "year": 2009}', {"title": "Up", "year": 2009}),
        (Color, '"green"', Color.GREEN),
        (list[int], "[1, 2]", [1, 2]),
        (tuple[int, str], '[1, "a"]', (1, "a")),
        (Literal["a", "b"], '"b"', "b"),
        (Ticket | None, "null", None),
        ({"type": "object", "properties": {"n": {"type": "integer"}}}, '{"n": 5}', {"n": 5}),
        ('{"type": "array", "items": {"type": "string"}}', '["a"]', ["a"]),
    ],
)
def test_generate_returns_the_typed_value(mocked, response_format, content, expected):
    responses.post(f"{BASE}/chat/completions", json=completion(content))
    result = mocked.generate(model="m", response_format=response_format, input="x")
    assert result == expected
    assert type(result) is type(expected)


@responses.activate
def test_generate_with_genson_builder(mocked):
    genson = pytest.importorskip("genson")
    builder = genson.SchemaBuilder()
    builder.add_object({"name": "x", "tags": ["a"]})
    responses.post(f"{BASE}/chat/completions", json=completion('{"name": "n", "tags": []}'))
    assert mocked.generate(model="m", response_format=builder, input="x") == {"name": "n", "tags": []}
    sent = json.loads(responses.calls[0].request.body)["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["tags"]["type"] == "array"


@responses.activate
@pytest.mark.parametrize(
    ("content", "finish_reason", "fragment"),
    [
        ('{"intent": "billing"', "stop", "not valid JSON"),
        ('{"intent": "billing"', "length", "truncated"),
        ('{"intent": "sales", "reply": "x"}', "stop", "intent"),
        (None, "stop", "no message content"),
    ],
)
def test_generate_invalid_output(mocked, content, finish_reason, fragment):
    responses.post(f"{BASE}/chat/completions", json=completion(content, finish_reason))
    with pytest.raises(InvalidOutputError) as info:
        mocked.generate(model="fake/m", response_format=Ticket, input="x")
    error = info.value
    assert fragment in str(error)
    assert (error.model, error.raw_output, error.finish_reason) == ("fake/m", content, finish_reason)
    if content is not None:
        assert error.original_error is not None


@responses.activate
def test_generate_invalid_output_against_json_schema(mocked):
    responses.post(f"{BASE}/chat/completions", json=completion('{"n": "five"}'))
    with pytest.raises(InvalidOutputError) as info:
        mocked.generate(
            model="m", response_format={"type": "object", "properties": {"n": {"type": "integer"}}}, input="x"
        )
    assert "n" in str(info.value) and "integer" in str(info.value)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ([1, 2], "list instance"),
        (lambda x: x, "callable"),
        ("{not json", "not valid JSON"),
        ('["a"]', "not a JSON Schema object"),
        ({"type": "banana"}, "invalid JSON Schema"),
        ({"properties": {"a": {"minLength": -1}}}, "properties/a/minLength"),
        ({"properties": {"a": {"$ref": "#/$defs/Missing"}}}, "'#/$defs/Missing' points to nothing"),
        (42, "int instance"),
        (None, "required"),
    ],
)
def test_invalid_schemas_are_refused_before_sending(mocked, bad, fragment):
    with pytest.raises(InvalidSchemaError) as info:
        mocked.generate(model="m", response_format=bad, input="x")
    assert fragment in str(info.value)


@responses.activate
def test_requests_session_can_be_supplied() -> None:
    responses.get(f"{BASE}/models", json={"object": "list", "data": [{"id": "m"}]})
    session = requests.Session()
    answered: list[requests.Response] = []
    session.hooks["response"].append(lambda response, **_: answered.append(response))
    with DotTxt(api_key="k", base_url=BASE, session=session) as c:
        assert [m.id for m in c.models.list()] == ["m"]
    assert [r.url for r in answered] == [f"{BASE}/models"]  # the request went through that session


@responses.activate
def test_an_answer_of_the_wrong_shape_is_an_api_error_not_a_validation_error(mocked):
    responses.get(f"{BASE}/models", json={"object": "list", "data": [{"id": ["not", "a", "string"]}]})
    with pytest.raises(APIStatusError) as info:
        mocked.models.list()
    assert "ModelPage" in str(info.value)
    responses.post(f"{BASE}/chat/completions", json={"choices": "nope"})
    passed_through = mocked.chat.completions.create(model="m", messages=[])  # a 2xx is not a status error
    assert passed_through.model_dump() == {"choices": "nope"}


@responses.activate
def test_fractional_timestamps_pass_through(mocked):
    responses.get(f"{BASE}/models", json={"object": "list", "data": [{"id": "m", "created": 1.5}]})
    assert mocked.models.list().data[0].created == 1.5


def test_breaking_out_of_a_chunk_stream_and_dropping_it_closes_the_connection():
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        conn.chunk(b'data: {"choices": [{"index": 0, "delta": {"content": "{"}}]}\n\n')
        disconnected.append(conn.wait_for_disconnect(5))

    with RawServer(handler) as server, DotTxt(api_key="k", base_url=server.base_url, max_retries=0) as c:
        for chunk in c.chat.completions.create(model="m", messages=[], stream=True):
            assert chunk.choices[0].delta.content == "{"
            break
        assert server.handled.wait(5)  # dropped: closed at once, not when the client closes
    assert disconnected == [True]


def test_chat_completion_stream_cut_short_is_an_api_connection_error(gateway: FakeGateway, client: DotTxt) -> None:
    gateway.cut_next_after(3)
    chunks: list[Any] = []
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        response_format=build_response_format(Point),
        stream=True,
    )
    with pytest.raises(APIConnectionError) as info:
        for chunk in stream:
            chunks.append(chunk)
    assert not isinstance(info.value, APITimeoutError)
    assert len(chunks) == 3  # what arrived was handed over first


def test_chat_completion_stream_silence_is_an_api_timeout_error(gateway: FakeGateway) -> None:
    gateway.stall_next_after(2)
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, timeout=(5, 0.3)) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            response_format=build_response_format(Point),
            stream=True,
        )
        with pytest.raises(APITimeoutError):
            list(stream)


def sse_body(*events: str) -> Callable[[RawConnection], None]:
    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        for data in events:
            conn.chunk(f"data: {data}\n\n".encode())
        conn.end()

    return handler


def test_chat_completion_stream_event_that_is_not_json_is_an_api_error(raw: Callable[..., DotTxt]) -> None:
    good = json.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": "{"}}]})
    client = raw(sse_body(good, "<html>proxy error</html>"))
    stream = client.chat.completions.create(model="m", messages=[], stream=True)
    assert next(stream).choices[0].delta.content == "{"
    with pytest.raises(APIError, match="not JSON"):
        next(stream)


def test_chat_completion_stream_closed_from_another_thread_ends_quietly() -> None:
    role = json.dumps({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        conn.chunk(f"data: {role}\n\n".encode())
        disconnected.append(conn.wait_for_disconnect(10))

    with RawServer(handler) as server, DotTxt(api_key="k", base_url=server.base_url, timeout=(5, 30)) as client:
        stream = client.chat.completions.create(model="m", messages=[], stream=True)
        next(stream)
        closer = threading.Timer(0.2, stream.close)  # while the loop below is blocked reading
        closer.start()
        started = time.monotonic()
        assert list(stream) == []
        closer.join()
        assert time.monotonic() - started < 5
        assert server.handled.wait(5)
    assert disconnected == [True]
