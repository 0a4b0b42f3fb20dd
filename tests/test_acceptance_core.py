"""The contract of SPEC sections 1-5 and 10, one sentence at a time, against loopback servers.

Configuration, requests, the error tree, schemas, the patch stream and `patch_source="sse"`,
each checked the way a user meets it: through `dottxt`'s public names, on a FakeGateway or a
RawServer that controls every byte.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any, Literal, Optional, Union

import pydantic
import pytest
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

import dottxt
import dottxt._transport
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
    PatchError,
    PatchStreamError,
    PermissionDeniedError,
    RateLimitError,
    StreamCancelledError,
    StreamDecodeError,
    UnprocessableEntityError,
    build_response_format,
    normalize_schema,
)
from dottxt._credentials import save_api_key
from dottxt.testing import FakeGateway
from tests.conftest import TEST_KEY
from tests.rawserver import RawConnection, RawServer, ndjson

MODEL = "dottxt/fake-model"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("DOTTXT_API_KEY", "DOTTXT_BASE_URL", "DOTTXT_PATCH_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[DotTxt]:
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, timeout=(5, 5)) as c:
        yield c


@pytest.fixture
def raw() -> Iterator[Callable[..., DotTxt]]:
    """Make a client of a RawServer running `handler`; servers and clients are closed afterwards."""
    opened: list[tuple[RawServer, DotTxt]] = []

    def make(handler: Callable[[RawConnection], None], **kwargs: Any) -> DotTxt:
        server = RawServer(handler)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", (5, 5))
        client = DotTxt(api_key="k", base_url=server.base_url, **kwargs)
        opened.append((server, client))
        return client

    yield make
    for server, client in opened:
        client.close()
        server.close()
        assert not server.errors, server.errors


class Step(pydantic.BaseModel):
    title: str
    done: bool


class Plan(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[Step]
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


# --------------------------------------------------------------------------- public names (SPEC 3, 5)

PUBLIC_NAMES = [
    "DotTxt",
    "AsyncDotTxt",
    "PatchEvent",
    "PatchStream",
    "BackgroundStream",
    "apply_add",
    "normalize_schema",
    "build_response_format",
    "DotTxtError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "InvalidSchemaError",
    "InvalidOutputError",
    "PatchError",
    "PatchStreamError",
    "StreamDecodeError",
    "StreamCancelledError",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_is_importable_from_dottxt(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from dottxt import {name}", namespace)
    assert namespace[name] is getattr(dottxt, name)
    assert name in dottxt.__all__


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (APIStatusError, (DotTxtError,)),
        (BadRequestError, (APIStatusError,)),
        (AuthenticationError, (APIStatusError,)),
        (PermissionDeniedError, (APIStatusError,)),
        (NotFoundError, (APIStatusError,)),
        (UnprocessableEntityError, (APIStatusError,)),
        (RateLimitError, (APIStatusError,)),
        (InternalServerError, (APIStatusError,)),
        (APIConnectionError, (DotTxtError,)),
        (APITimeoutError, (APIConnectionError,)),
        (InvalidSchemaError, (DotTxtError,)),
        (InvalidOutputError, (DotTxtError,)),
        (PatchError, (DotTxtError, ValueError)),
        (PatchStreamError, (DotTxtError,)),
        (StreamDecodeError, (DotTxtError,)),
        (StreamCancelledError, (DotTxtError,)),
    ],
)
def test_the_error_tree(cls: type, bases: tuple[type, ...]) -> None:
    assert all(issubclass(cls, base) for base in bases)


def test_errors_are_constructed_as_documented() -> None:
    stream_error = PatchStreamError(500, "body")
    assert (stream_error.status_code, stream_error.body, stream_error.document) == (500, "body", None)
    assert "500" in str(stream_error)
    cause = ValueError("bad")
    output = InvalidOutputError(
        "output was truncated", model="m", raw_output='{"a"', finish_reason="length", original_error=cause
    )
    assert (output.model, output.raw_output, output.finish_reason, output.original_error) == (
        "m",
        '{"a"',
        "length",
        cause,
    )
    assert isinstance(APITimeoutError(), APIConnectionError)


# --------------------------------------------------------------------------- 1. configuration


def test_the_key_comes_from_the_argument_then_the_environment_then_the_credentials_file(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_api_key(TEST_KEY)
    with DotTxt(base_url=gateway.base_url) as client:
        assert client.api_key == TEST_KEY
        client.models.list()  # the gateway accepts the stored key
    assert gateway.requests[-1].headers["Authorization"] == f"Bearer {TEST_KEY}"
    monkeypatch.setenv("DOTTXT_API_KEY", "from-env")
    assert DotTxt().api_key == "from-env"
    assert DotTxt(api_key="from-arg").api_key == "from-arg"
    assert "from-arg" not in repr(DotTxt(api_key="from-arg"))


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


# --------------------------------------------------------------------------- 2. requests


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


class _Clock:
    """The transport's `time` module for one test: sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float | None) -> bool:
        assert seconds is not None
        self.slept.append(seconds)
        return False  # not cancelled


def test_retry_after_seconds_and_http_date_on_the_wire_are_honoured_and_capped(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(dottxt._transport.CancelToken, "wait", lambda _token, seconds=None: clock.sleep(seconds))
    gateway.fail_next(503, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    gateway.fail_next(429, headers={"Retry-After": "7"})
    gateway.fail_next(429, headers={"Retry-After": "86400"})  # a day: capped
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=3) as client:
        assert [m.id for m in client.models.list()] == [MODEL]
    assert len(gateway.requests) == 4
    assert 28 <= clock.slept[0] <= 31
    assert clock.slept[1] == 7
    assert 7 < clock.slept[2] <= 60


# --------------------------------------------------------------------------- 4. schemas


def _genson_builder() -> Any:
    genson = pytest.importorskip("genson")
    builder = genson.SchemaBuilder()
    builder.add_object({"name": "x", "tags": ["a"]})
    return builder


@pytest.mark.parametrize(
    ("make", "check"),
    [
        (lambda: {"type": "object", "properties": {"n": {"type": "integer"}}}, lambda s: s["properties"]["n"]),
        (lambda: '{"type": "array", "items": {"type": "string"}}', lambda s: s["items"] == {"type": "string"}),
        (_genson_builder, lambda s: s["properties"]["tags"]["type"] == "array"),
        (lambda: Plan, lambda s: s["properties"]["intent"]["enum"] == ["billing", "technical"]),
        (lambda: Point, lambda s: s["required"] == ["x", "y"]),
        (lambda: Movie, lambda s: s["properties"]["year"]["type"] == "integer"),
        (lambda: Color, lambda s: s["enum"] == ["red", "green"]),
        (lambda: Literal["a", "b"], lambda s: s["enum"] == ["a", "b"]),
        (lambda: Union[int, str], lambda s: s["anyOf"] == [{"type": "integer"}, {"type": "string"}]),  # noqa: UP007
        (lambda: int | str, lambda s: s["anyOf"] == [{"type": "integer"}, {"type": "string"}]),
        (lambda: Optional[Point], lambda s: {"type": "null"} in s["anyOf"]),  # noqa: UP045
        (lambda: list[Point], lambda s: s["type"] == "array" and "Point" in s["$defs"]),
        (lambda: dict[str, int], lambda s: s["additionalProperties"] == {"type": "integer"}),
        (lambda: tuple[int, str], lambda s: s["prefixItems"] == [{"type": "integer"}, {"type": "string"}]),
    ],
    ids=[
        "dict",
        "json-string",
        "genson",
        "basemodel",
        "dataclass",
        "typeddict",
        "enum",
        "literal",
        "union",
        "union-operator",
        "optional",
        "list",
        "dict-type",
        "tuple",
    ],
)
def test_normalize_schema_accepts_every_documented_input(make: Callable[[], Any], check: Callable[[Any], Any]) -> None:
    schema = normalize_schema(make())
    assert isinstance(schema, dict)
    assert check(schema)


def test_structural_tags_pass_through_unchecked() -> None:
    tag = {"type": "structural-tag", "structures": [{"begin": "<x>", "schema": {"type": "banana"}}], "triggers": []}
    assert normalize_schema(tag) == tag
    assert normalize_schema(json.dumps(tag)) == tag


def test_build_response_format_shape() -> None:
    assert build_response_format({"type": "string"}) == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "string"}},
    }
    assert build_response_format(Point, name="point") == {
        "type": "json_schema",
        "json_schema": {"name": "point", "schema": normalize_schema(Point)},
    }


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ([{"type": "string"}], "list instance"),
        (print, "callable"),
        (lambda: None, "callable"),
        ('{"type": "object",', "not valid JSON"),
        ({"type": "object", "properties": {"n": {"type": "integr"}}}, "properties/n/type"),
        ({"type": "array", "minItems": "two"}, "minItems"),
    ],
)
def test_everything_else_is_an_invalid_schema_error_saying_what_was_wrong(bad: Any, fragment: str) -> None:
    for convert in (normalize_schema, build_response_format):
        with pytest.raises(InvalidSchemaError) as info:
            convert(bad)
        assert fragment in str(info.value)


# --------------------------------------------------------------------------- 5. the patch stream: events


def send_ops(*ops: dict[str, Any]) -> Callable[[RawConnection], None]:
    def handler(conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson(*ops))
        conn.end()

    return handler


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
    client = raw(send_ops(*ops))
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
    client = raw(send_ops(*ops))
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


# --------------------------------------------------------------------------- 5. the patch stream: failures


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


# --------------------------------------------------------------------------- 10. patch_source="sse"


def test_sse_source_from_the_environment_gives_the_gateway_events(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def seen(client: DotTxt, seed: int) -> tuple[list[Any], Any]:
        stream = client.stream(model=MODEL, response_format=Plan, input="x", seed=seed)
        events = [(e.op, e.field, e.path, e.value, e.is_leaf, e.snapshot) for e in stream]
        return events, stream.result()

    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url) as client:
        expected = [seen(client, seed) for seed in range(3)]
    monkeypatch.setenv("DOTTXT_PATCH_SOURCE", "sse")
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url) as client:
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
    stream = client.stream(model="m", response_format=Plan, input="x")
    assert [next(stream).field, next(stream).field] == ["", "intent"]
    release.set()
    assert [e.field for e in stream] == ["reply", "steps"]
    assert held_back == [False]
