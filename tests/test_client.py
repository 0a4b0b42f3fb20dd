"""DotTxt: configuration, request shapes, error mapping (with `responses`), and generate's typed output."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from typing import Literal

import pydantic
import pytest
import requests
import responses
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from dottxt import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DotTxt,
    DotTxtError,
    InternalServerError,
    InvalidOutputError,
    InvalidSchemaError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    __version__,
)
from dottxt._credentials import save_api_key

BASE = "http://api.test/v1"
KEY = "sk-secret-key-123"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    for name in ("DOTTXT_API_KEY", "DOTTXT_BASE_URL", "DOTTXT_PATCH_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def client():
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


def test_key_from_argument_then_environment_then_credentials_file(monkeypatch):
    save_api_key("from-file")
    assert DotTxt()._transport.headers["Authorization"] == "Bearer from-file"
    monkeypatch.setenv("DOTTXT_API_KEY", "from-env")
    assert DotTxt()._transport.headers["Authorization"] == "Bearer from-env"
    assert DotTxt(api_key="from-arg")._transport.headers["Authorization"] == "Bearer from-arg"


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


@responses.activate
def test_the_key_never_leaks(client, caplog):
    caplog.set_level(logging.DEBUG)
    responses.get(f"{BASE}/models", status=401, json={"error": {"message": "bad key"}})
    assert KEY not in repr(client)
    with pytest.raises(AuthenticationError) as info:
        client.models.list()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in caplog.text


# --------------------------------------------------------------------------- requests


@responses.activate
def test_models_list(client):
    responses.get(
        f"{BASE}/models",
        json={
            "object": "list",
            "data": [{"id": "a/one", "object": "model", "context": 8192}, {"id": "b/two"}],
        },
    )
    page = client.models.list()
    assert [m.id for m in page.data] == ["a/one", "b/two"]
    assert [m.id for m in page] == ["a/one", "b/two"]
    assert page.data[0].context == 8192  # fields we do not declare are kept
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"] == f"dottxt-python/{__version__}"


@responses.activate
def test_chat_completions_passed_through_unchanged(client):
    responses.post(f"{BASE}/chat/completions", json=completion('{"a": 1}'))
    out = client.chat.completions.create(
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
def test_chat_completions_stream_yields_chunks(client):
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"content": '{"a"'}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"content": ": 1}"}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ": keep-alive\n\ndata: [DONE]\n\n"
    responses.post(f"{BASE}/chat/completions", body=body, content_type="text/event-stream")
    with client.chat.completions.create(model="m", messages=[], stream=True) as stream:
        got = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in got) == '{"a": 1}'
    assert got[-1].choices[0].finish_reason == "stop"


@responses.activate
def test_generate_request_shape(client):
    responses.post(f"{BASE}/chat/completions", json=completion('{"x": 1}'))
    client.generate(
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
def test_generate_rejects_bad_input_types(client, bad_input):
    with pytest.raises(TypeError):
        client.generate(model="m", response_format={"type": "object"}, input=bad_input)


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
def test_status_errors(client, status, cls):
    body = {"error": {"message": f"nope {status}", "type": "x"}}
    responses.get(f"{BASE}/models", status=status, json=body, headers={"x-request-id": "req-42"})
    with pytest.raises(cls) as info:
        client.models.list()
    error = info.value
    assert isinstance(error, DotTxtError)
    assert (error.status_code, error.message, error.request_id) == (status, f"nope {status}", "req-42")
    assert json.loads(error.body) == body


@responses.activate
def test_status_error_without_json_body(client):
    responses.get(f"{BASE}/models", status=502, body="<html>bad gateway</html>")
    with pytest.raises(InternalServerError) as info:
        client.models.list()
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


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


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
def test_generate_returns_the_typed_value(client, response_format, content, expected):
    responses.post(f"{BASE}/chat/completions", json=completion(content))
    result = client.generate(model="m", response_format=response_format, input="x")
    assert result == expected
    assert type(result) is type(expected)


@responses.activate
def test_generate_with_genson_builder(client):
    genson = pytest.importorskip("genson")
    builder = genson.SchemaBuilder()
    builder.add_object({"name": "x", "tags": ["a"]})
    responses.post(f"{BASE}/chat/completions", json=completion('{"name": "n", "tags": []}'))
    assert client.generate(model="m", response_format=builder, input="x") == {"name": "n", "tags": []}
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
def test_generate_invalid_output(client, content, finish_reason, fragment):
    responses.post(f"{BASE}/chat/completions", json=completion(content, finish_reason))
    with pytest.raises(InvalidOutputError) as info:
        client.generate(model="fake/m", response_format=Ticket, input="x")
    error = info.value
    assert fragment in str(error)
    assert (error.model, error.raw_output, error.finish_reason) == ("fake/m", content, finish_reason)
    if content is not None:
        assert error.original_error is not None


@responses.activate
def test_generate_invalid_output_against_json_schema(client):
    responses.post(f"{BASE}/chat/completions", json=completion('{"n": "five"}'))
    with pytest.raises(InvalidOutputError) as info:
        client.generate(
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
def test_invalid_schemas_are_refused_before_sending(client, bad, fragment):
    with pytest.raises(InvalidSchemaError) as info:
        client.generate(model="m", response_format=bad, input="x")
    assert fragment in str(info.value)


def test_requests_session_can_be_supplied():
    session = requests.Session()
    with DotTxt(api_key="k", base_url=BASE, session=session) as c:
        assert c._transport.session is session


@responses.activate
def test_an_answer_of_the_wrong_shape_is_an_api_error_not_a_validation_error(client):
    responses.get(f"{BASE}/models", json={"object": "list", "data": [{"id": ["not", "a", "string"]}]})
    with pytest.raises(APIStatusError) as info:
        client.models.list()
    assert "ModelPage" in str(info.value)
    responses.post(f"{BASE}/chat/completions", json={"choices": "nope"})
    passed_through = client.chat.completions.create(model="m", messages=[])  # a 2xx is not a status error
    assert passed_through.model_dump() == {"choices": "nope"}


@responses.activate
def test_fractional_timestamps_pass_through(client):
    responses.get(f"{BASE}/models", json={"object": "list", "data": [{"id": "m", "created": 1.5}]})
    assert client.models.list().data[0].created == 1.5


def test_breaking_out_of_a_chunk_stream_and_dropping_it_closes_the_connection():
    from tests.rawserver import RawConnection, RawServer

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
