"""FakeGateway over real HTTP (requests against the loopback server): shapes, errors, faults, pacing, shutdown."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import pydantic
import pytest
import requests
from jsonschema import Draft202012Validator

from dottxt import DotTxt, apply_add
from dottxt.testing import FakeGateway, RecordedRequest, ops_from_document
from tests.conftest import MODEL, TEST_KEY, free_port

KEY = TEST_KEY  # what the `gateway` fixture expects
AUTH = {"Authorization": f"Bearer {KEY}"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["refund", "bug", "question"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "steps": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "reply": {"type": "string"},
    },
    "required": ["intent", "urgency", "steps", "reply"],
}
DOC: dict[str, Any] = {
    "intent": "refund",
    "urgency": 4,
    "steps": ["check the order", "refund it"],
    "address": {"city": "Zürich", "a/b~c": None},
    "reply": 'We are sorry: "café" 🚀 refunded.\nThanks!',
}


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "My order arrived broken."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "ticket", "schema": SCHEMA}},
    }
    body.update(overrides)
    return body


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(AUTH)
        yield session


def post(session: requests.Session, gw: FakeGateway, body: Any = None, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", (5, 10))
    return session.post(f"{gw.base_url}/chat/completions", json=body, **kwargs)


def assert_error(resp: requests.Response, status: int, *fragments: str) -> dict[str, Any]:
    """An OpenAI-style error body with the status, a request id and a message saying `fragments`."""
    assert resp.status_code == status, resp.text
    assert resp.headers["x-request-id"]
    assert resp.headers["Content-Type"].startswith("application/json")
    error: dict[str, Any] = resp.json()["error"]
    assert {"message", "type", "code"} <= error.keys()
    for fragment in fragments:
        assert fragment in error["message"]
    return error


def sse_payloads(resp: requests.Response) -> list[str]:
    """The `data:` payloads of an SSE body, per the SSE framing rules (events end at a blank line)."""
    events: list[str] = []
    data: list[str] = []
    for raw in resp.iter_lines():
        line = raw.decode("utf-8")
        if not line:
            if data:
                events.append("\n".join(data))
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return events


def fold(lines: list[bytes]) -> Any:
    doc: Any = None
    for line in lines:
        op = json.loads(line)
        doc = apply_add(doc, op["path"], op["value"])
    return doc


# --------------------------------------------------------------------------- basics


def test_urls(gateway: FakeGateway) -> None:
    assert gateway.base_url == f"http://127.0.0.1:{gateway.port}/v1"
    assert gateway.url == f"http://127.0.0.1:{gateway.port}"
    assert KEY not in repr(gateway)


def test_models_list(gateway: FakeGateway, http: requests.Session) -> None:
    resp = http.get(f"{gateway.base_url}/models", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"]
    page = resp.json()
    assert page["object"] == "list"
    assert page["data"] == [
        {"id": MODEL, "object": "model", "created": page["data"][0]["created"], "owned_by": "dottxt"}
    ]


def test_models_owned_by_author_and_retrieve() -> None:
    with FakeGateway(models=("acme/small", "openai/gpt-x")) as gw, requests.Session() as s:
        data = s.get(f"{gw.base_url}/models", timeout=5).json()["data"]
        assert [(m["id"], m["owned_by"]) for m in data] == [("acme/small", "acme"), ("openai/gpt-x", "openai")]
        assert s.get(f"{gw.base_url}/models/acme/small", timeout=5).json()["id"] == "acme/small"
        assert_error(s.get(f"{gw.base_url}/models/acme/big", timeout=5), 404, "acme/big")


def test_no_key_configured_needs_no_auth() -> None:
    with FakeGateway() as gw, requests.Session() as s:
        assert s.get(f"{gw.base_url}/models", timeout=5).status_code == 200
        assert post(s, gw, chat_body()).status_code == 200


# --------------------------------------------------------------------------- errors


def test_missing_key_is_401(gateway: FakeGateway) -> None:
    with requests.Session() as s:
        error = assert_error(s.get(f"{gateway.base_url}/models", timeout=5), 401, "API key")
        assert error["type"] == "invalid_request_error"
        assert_error(post(s, gateway, chat_body()), 401)


def test_wrong_key_is_401_and_not_echoed(gateway: FakeGateway) -> None:
    with requests.Session() as s:
        resp = post(s, gateway, chat_body(), headers={"Authorization": "Bearer sk-wrong-123"})
        error = assert_error(resp, 401, "Incorrect API key")
        assert error["code"] == "invalid_api_key"
        assert "sk-wrong-123" not in resp.text and KEY not in resp.text


def test_unknown_model_is_404_naming_it(gateway: FakeGateway, http: requests.Session) -> None:
    error = assert_error(post(http, gateway, chat_body(model="acme/nope")), 404, "acme/nope")
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("response_format", "fragment"),
    [
        (None, "response_format"),
        ({"type": "json_object"}, "json_schema"),
        ({"type": "json_schema"}, "schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema"),
        ({"type": "json_schema", "json_schema": {"schema": [1, 2]}}, "JSON object"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "foo"}}}, "Invalid JSON Schema"),
        (
            {"type": "json_schema", "json_schema": {"schema": {"properties": {"a": {"minimum": "x"}}}}},
            "properties/a/minimum",
        ),
        ({"type": "json_schema", "json_schema": {"schema": {"$ref": "#/$defs/Missing"}}}, "$ref"),
    ],
)
def test_bad_response_format_is_400(
    gateway: FakeGateway, http: requests.Session, response_format: Any, fragment: str
) -> None:
    body = chat_body(response_format=response_format)
    if response_format is None:
        del body["response_format"]
    error = assert_error(post(http, gateway, body), 400, fragment)
    assert error["param"] == "response_format"


def test_structural_tag_schema_is_accepted(gateway: FakeGateway, http: requests.Session) -> None:
    schema = {"type": "structural-tag", "structures": [], "triggers": []}
    rf = {"type": "json_schema", "json_schema": {"name": "tags", "schema": schema}}
    resp = post(http, gateway, chat_body(response_format=rf))
    assert resp.status_code == 200
    assert isinstance(json.loads(resp.json()["choices"][0]["message"]["content"]), str)


@pytest.mark.parametrize("messages", [None, [], "hello", {"role": "user"}])
def test_messages_must_be_a_non_empty_list(gateway: FakeGateway, http: requests.Session, messages: Any) -> None:
    body = chat_body(messages=messages)
    if messages is None:
        del body["messages"]
    assert_error(post(http, gateway, body), 400, "messages")


@pytest.mark.parametrize(("field", "value"), [("stream", "yes"), ("max_tokens", 0), ("max_tokens", "10")])
def test_bad_parameters_are_400(gateway: FakeGateway, http: requests.Session, field: str, value: Any) -> None:
    assert_error(post(http, gateway, chat_body(**{field: value})), 400, field)


def test_body_that_is_not_json_is_400(gateway: FakeGateway, http: requests.Session) -> None:
    resp = http.post(f"{gateway.base_url}/chat/completions", data=b"{nope", timeout=5)
    assert_error(resp, 400, "JSON")


def test_unknown_endpoint_and_wrong_method(gateway: FakeGateway, http: requests.Session) -> None:
    assert_error(http.get(f"{gateway.base_url}/embeddings", timeout=5), 404, "/v1/embeddings")
    assert_error(http.get(f"{gateway.base_url}/chat/completions", timeout=5), 405, "GET")
    unsupported = http.request("OPTIONS", f"{gateway.base_url}/models", timeout=5)
    assert unsupported.status_code == 501 and unsupported.headers["x-request-id"]


# --------------------------------------------------------------------------- plain


def test_plain_reply_is_an_openai_chat_completion(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    resp = post(http, gateway, chat_body())
    assert resp.status_code == 200
    assert resp.headers["x-request-id"]
    completion = resp.json()
    assert completion["object"] == "chat.completion"
    assert completion["id"] and completion["model"] == MODEL and isinstance(completion["created"], int)
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == json.dumps(DOC, ensure_ascii=False)
    assert choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_generated_reply_is_valid_and_seeded(http: requests.Session) -> None:
    def content(gw: FakeGateway, **overrides: Any) -> str:
        text: str = post(http, gw, chat_body(**overrides)).json()["choices"][0]["message"]["content"]
        return text

    with FakeGateway(api_key=KEY, seed=1) as a, FakeGateway(api_key=KEY, seed=1) as b:
        first = content(a)
        Draft202012Validator(SCHEMA).validate(json.loads(first))
        assert content(a) == first, "the same request gets the same document"
        assert content(b) == first, "another gateway with the same seed agrees"
        assert content(a, seed=99) != first, "the request's seed changes it"
    with FakeGateway(api_key=KEY, seed=2) as c:
        assert content(c) != first


def test_queue_is_fifo_then_generated(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue({"n": 1})
    gateway.enqueue({"n": 2})
    contents = [post(http, gateway, chat_body()).json()["choices"][0]["message"]["content"] for _ in range(3)]
    assert contents[:2] == ['{"n": 1}', '{"n": 2}']
    Draft202012Validator(SCHEMA).validate(json.loads(contents[2]))


def test_raw_string_is_sent_verbatim(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue_raw('{"intent": "refund", "urgen')
    message = post(http, gateway, chat_body()).json()["choices"][0]["message"]
    assert message["content"] == '{"intent": "refund", "urgen'


def test_max_tokens_truncates_with_length(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    choice = post(http, gateway, chat_body(max_tokens=5)).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == json.dumps(DOC, ensure_ascii=False)[:20]
    gateway.enqueue(DOC)
    assert post(http, gateway, chat_body(max_tokens=10_000)).json()["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- SSE


def test_sse_stream(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    resp = post(http, gateway, chat_body(stream=True), stream=True)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"]
    payloads = sse_payloads(resp)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert all(1 <= len(p) <= 8 for p in pieces)
    assert len({len(p) for p in pieces}) > 1, "irregular piece sizes"
    text = "".join(pieces)
    assert text == json.dumps(DOC, ensure_ascii=False)
    assert "🚀" in text, "multi-byte UTF-8 travels raw"


def test_sse_ascii_json_splits_escapes_and_surrogates() -> None:
    with FakeGateway(ascii_json=True) as gw, requests.Session() as s:
        gw.enqueue(DOC)
        payloads = sse_payloads(post(s, gw, chat_body(stream=True), stream=True))
        text = "".join(json.loads(p)["choices"][0]["delta"].get("content") or "" for p in payloads[:-1])
        assert text == json.dumps(DOC)
        assert "\\ud83d\\ude80" in text


def test_sse_pieces_split_inside_escapes_and_surrogate_pairs() -> None:
    doc = {"s": 'say "hi" \\ now 🚀' * 20}
    for ascii_json, mark in ((False, "\\"), (True, "\\ud83d")):
        with FakeGateway(ascii_json=ascii_json) as gw, requests.Session() as s:
            gw.enqueue(doc)
            payloads = sse_payloads(post(s, gw, chat_body(stream=True), stream=True))
        pieces = [json.loads(p)["choices"][0]["delta"].get("content") or "" for p in payloads[1:-2]]
        assert "".join(pieces) == json.dumps(doc, ensure_ascii=ascii_json)
        assert any(p.endswith("\\") for p in pieces), "a piece ends inside an escape"
        assert mark in "".join(pieces)
        if ascii_json:
            assert any(p.endswith(("\\ud83d", "\\ud83", "\\ud8", "\\u", "\\ude")) for p in pieces)


def test_sse_usage_chunk_and_length(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    body = chat_body(stream=True, max_tokens=3, stream_options={"include_usage": True})
    chunks = [json.loads(p) for p in sse_payloads(post(http, gateway, body, stream=True))[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == json.dumps(DOC, ensure_ascii=False)[:12]


# --------------------------------------------------------------------------- patch


def test_patch_stream_folds_to_the_document(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    resp = post(http, gateway, chat_body(stream="patch"), stream=True)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert resp.headers["Transfer-Encoding"] == "chunked"
    assert resp.headers["x-request-id"]
    lines = list(resp.iter_lines())
    assert [json.loads(line) for line in lines] == ops_from_document(DOC)
    assert fold(lines) == DOC
    # the connection stays usable after a chunked stream
    assert post(http, gateway, chat_body()).status_code == 200


def test_patch_stream_close_delimited() -> None:
    with FakeGateway(stream_framing="close") as gw, requests.Session() as s:
        gw.enqueue(DOC)
        resp = post(s, gw, chat_body(stream="patch"), stream=True)
        assert resp.headers["Connection"] == "close"
        assert "Transfer-Encoding" not in resp.headers and "Content-Length" not in resp.headers
        assert fold(list(resp.iter_lines())) == DOC


def test_patch_stream_of_a_generated_document_is_valid(gateway: FakeGateway, http: requests.Session) -> None:
    doc = fold(list(post(http, gateway, chat_body(stream="patch"), stream=True).iter_lines()))
    Draft202012Validator(SCHEMA).validate(doc)
    assert list(doc)[:3] == ["intent", "urgency", "steps"], "schema order"


def test_patch_max_tokens_cuts_the_document(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    lines = list(post(http, gateway, chat_body(stream="patch", max_tokens=8), stream=True).iter_lines())
    ops = ops_from_document(DOC)
    assert 0 < len(lines) < len(ops)
    assert [json.loads(line) for line in lines] == ops[: len(lines)]
    assert fold(lines) != DOC
    gateway.enqueue(DOC)
    lines = list(post(http, gateway, chat_body(stream="patch", max_tokens=10_000), stream=True).iter_lines())
    assert fold(lines) == DOC


def test_patch_raw_lines_are_sent_verbatim(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue_raw('{"op":"add","path":"","value":{}}\r\n\nnot json\n{"op":"add","path":"/a","value":1}')
    resp = post(http, gateway, chat_body(stream="patch"), stream=True)
    assert resp.content == b'{"op":"add","path":"","value":{}}\r\n\nnot json\n{"op":"add","path":"/a","value":1}'


# --------------------------------------------------------------------------- request log


def test_requests_are_recorded(gateway: FakeGateway, http: requests.Session) -> None:
    http.get(f"{gateway.base_url}/models", timeout=5)
    body = chat_body(temperature=0.2)
    post(http, gateway, body, headers={"X-Trace": "abc"})
    get, chat = gateway.requests
    assert isinstance(get, RecordedRequest)
    assert (get.method, get.path, get.json) == ("GET", "/v1/models", None)
    assert (chat.method, chat.path, chat.json) == ("POST", "/v1/chat/completions", body)
    assert chat.headers["Authorization"] == chat.headers["authorization"] == f"Bearer {KEY}"
    assert chat.headers.get("x-trace") == "abc" and "X-TRACE" in chat.headers
    assert json.loads(chat.body) == body


# --------------------------------------------------------------------------- faults


def test_fail_next_with_retry_after(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.fail_next(429, headers={"Retry-After": "2"})
    resp = post(http, gateway, chat_body())
    error = assert_error(resp, 429)
    assert resp.headers["Retry-After"] == "2"
    assert error["message"]
    assert post(http, gateway, chat_body()).status_code == 200
    assert len(gateway.requests) == 2, "failed requests are recorded too"


def test_fail_next_queues_and_hits_any_endpoint(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.fail_next(503)
    gateway.fail_next(500, body={"error": {"message": "boom", "type": "server_error", "code": None}})
    gateway.fail_next(502, body="Bad gateway, plain text")
    assert_error(http.get(f"{gateway.base_url}/models", timeout=5), 503)
    assert_error(post(http, gateway, chat_body()), 500, "boom")
    resp = http.get(f"{gateway.base_url}/models", timeout=5)
    assert (resp.status_code, resp.text) == (502, "Bad gateway, plain text")
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert http.get(f"{gateway.base_url}/models", timeout=5).status_code == 200


def test_cut_next_after_chunked(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    gateway.cut_next_after(3)
    resp = post(http, gateway, chat_body(stream="patch"), stream=True)
    lines: list[bytes] = []
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        for line in resp.iter_lines():
            lines.append(line)
    assert [json.loads(line) for line in lines] == ops_from_document(DOC)[:3]
    assert post(http, gateway, chat_body(stream="patch"), stream=True).status_code == 200, "one-shot"


def test_cut_next_after_close_delimited_ends_early() -> None:
    with FakeGateway(stream_framing="close") as gw, requests.Session() as s:
        gw.enqueue(DOC)
        gw.cut_next_after(2)
        lines = list(post(s, gw, chat_body(stream="patch"), stream=True).iter_lines())
        assert [json.loads(line) for line in lines] == ops_from_document(DOC)[:2]


def test_cut_next_after_sse_has_no_done(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.cut_next_after(2)
    resp = post(http, gateway, chat_body(stream=True), stream=True)
    raw: list[bytes] = []
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        for line in resp.iter_lines():
            raw.append(line)
    payloads = [line for line in raw if line]
    assert len(payloads) == 2 and b"[DONE]" not in b"".join(raw)


def test_error_next_after_sends_an_error_line(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    gateway.error_next_after(2, "model overloaded")
    lines = [json.loads(line) for line in post(http, gateway, chat_body(stream="patch"), stream=True).iter_lines()]
    assert lines[:2] == ops_from_document(DOC)[:2]
    assert len(lines) == 3 and "op" not in lines[2]
    assert lines[2]["error"]["message"] == "model overloaded"


def test_error_next_after_sse(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.error_next_after(1, "quota exceeded")
    payloads = sse_payloads(post(http, gateway, chat_body(stream=True), stream=True))
    assert len(payloads) == 2 and "[DONE]" not in payloads
    assert json.loads(payloads[1])["error"]["message"] == "quota exceeded"


def test_stall_next_after_goes_silent(gateway: FakeGateway, http: requests.Session) -> None:
    gateway.enqueue(DOC)
    gateway.stall_next_after(2)
    resp = post(http, gateway, chat_body(stream="patch"), stream=True, timeout=(5, 0.5))
    lines: list[bytes] = []
    with pytest.raises(requests.ConnectionError):  # requests reports a read timeout mid-body this way
        for line in resp.iter_lines():
            lines.append(line)
    assert [json.loads(line) for line in lines] == ops_from_document(DOC)[:2]
    resp.close()  # the client leaves; the stalled server thread notices and ends


def read_in_thread(resp: requests.Response) -> tuple[threading.Thread, threading.Event, dict[str, Any]]:
    """Read `resp` to its end on a thread; the dict gets the lines, the outcome and the time it took."""
    started = threading.Event()
    result: dict[str, Any] = {"lines": []}

    def run() -> None:
        t0 = time.monotonic()
        started.set()
        try:
            for line in resp.iter_lines():
                result["lines"].append(line)
            result["outcome"] = "eof"
        except requests.RequestException as exc:
            result["outcome"] = type(exc).__name__
        result["elapsed"] = time.monotonic() - t0

    thread = threading.Thread(target=run, name="test-reader")
    thread.start()
    return thread, started, result


def test_close_while_stalled_unblocks_the_client() -> None:
    gw = FakeGateway()
    gw.stall_next_after(1)
    with requests.Session() as s:
        resp = post(s, gw, chat_body(stream="patch"), stream=True, timeout=(5, 60))
        reader, started, result = read_in_thread(resp)
        started.wait(5)
        gw.close()
        reader.join(10)
        assert not reader.is_alive()
        assert result["elapsed"] < 10  # not the 60 s read timeout
        assert len(result["lines"]) <= 1


def test_close_mid_paced_stream_unblocks_the_client() -> None:
    gw = FakeGateway(op_delay=30.0)
    with requests.Session() as s:
        resp = post(s, gw, chat_body(stream="patch"), stream=True, timeout=(5, 60))
        reader, started, result = read_in_thread(resp)
        started.wait(5)
        t0 = time.monotonic()
        gw.close()
        assert time.monotonic() - t0 < 10, "close() interrupts the pacing wait"
        reader.join(10)
        assert not reader.is_alive()
        assert result["lines"] == [] and result["elapsed"] < 10


# --------------------------------------------------------------------------- pacing


def arrival_times(resp: requests.Response) -> list[tuple[float, dict[str, Any]]]:
    return [(time.monotonic(), json.loads(line)) for line in resp.iter_lines()]


def test_op_delay_paces_ops_so_early_fields_arrive_first() -> None:
    delay = 0.05
    doc = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    with FakeGateway(op_delay=delay) as gw, requests.Session() as s:
        gw.enqueue(doc)
        times = arrival_times(post(s, gw, chat_body(stream="patch"), stream=True))
    assert [op for _, op in times] == ops_from_document(doc)
    # Lower bounds only: the last op cannot arrive before five more paced waits have passed,
    # so the first one was visibly there well before the stream finished.
    assert times[-1][0] - times[0][0] >= 0.8 * 5 * delay


def test_long_strings_take_proportionally_longer() -> None:
    delay = 0.02
    doc = {"short": "x", "long": "y" * 400}  # 400 chars: 20 x op_delay
    with FakeGateway(op_delay=delay) as gw, requests.Session() as s:
        gw.enqueue(doc)
        times = arrival_times(post(s, gw, chat_body(stream="patch"), stream=True))
    (t_short, op_short), (t_long, op_long) = times[1], times[2]
    assert (op_short["path"], op_long["path"]) == ("/short", "/long")
    assert t_long - t_short >= 0.8 * 20 * delay


def test_sse_is_paced_too() -> None:
    with FakeGateway(op_delay=0.04) as gw, requests.Session() as s:
        gw.enqueue({"k": "v" * 40})  # ~50 chars: at least 7 pieces of <= 8 chars, 0.01 s each
        resp = post(s, gw, chat_body(stream=True), stream=True)
        times = [time.monotonic() for line in resp.iter_lines() if line]
    assert times[-1] - times[0] >= 0.8 * 7 * 0.01


# --------------------------------------------------------------------------- concurrency and shutdown


def test_concurrent_streams() -> None:
    results: dict[int, Any] = {}
    with FakeGateway(api_key=KEY, op_delay=0.01) as gw:

        def run(i: int) -> None:
            with requests.Session() as s:
                s.headers.update(AUTH)
                results[i] = fold(list(post(s, gw, chat_body(stream="patch"), stream=True).iter_lines()))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(results) == 8
    assert all(doc == results[0] for doc in results.values()), "same seed, same request: same document"


def test_close_leaves_no_threads_and_is_idempotent() -> None:
    gw = FakeGateway(op_delay=0.01)
    idle = requests.Session()  # keeps an idle keep-alive connection open across close()
    try:
        assert idle.get(f"{gw.base_url}/models", timeout=5).status_code == 200
        gw.stall_next_after(0)
        stalled = post(idle, gw, chat_body(stream="patch"), stream=True, timeout=(5, 30))
        assert stalled.status_code == 200
        assert any(t.name.startswith("FakeGateway") for t in threading.enumerate())
        gw.close()
        assert [t.name for t in threading.enumerate() if t.name.startswith("FakeGateway")] == []
        gw.close()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{gw.base_url}/models", timeout=5)
    finally:
        idle.close()


def test_wait_closed() -> None:
    gw = FakeGateway()
    assert gw.wait_closed(0.01) is False
    gw.close()
    assert gw.wait_closed() is True


def test_context_manager_closes() -> None:
    with FakeGateway() as gw:
        assert "running" in repr(gw)
    assert "closed" in repr(gw)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{gw.base_url}/models", timeout=5)


def test_a_queued_string_is_a_json_string_document_in_every_shape():
    from dottxt import DotTxt

    with FakeGateway() as gw, DotTxt(api_key="k", base_url=gw.base_url, max_retries=0) as client:
        for _ in range(3):
            gw.enqueue("a plain string answer")
        assert client.generate(model="dottxt/fake-model", response_format=str, input="x") == "a plain string answer"
        stream = client.stream(model="dottxt/fake-model", response_format=str, input="x")
        assert [e.op for e in stream] == [{"op": "add", "path": "", "value": "a plain string answer"}]
        chunks = client.chat.completions.create(
            model="dottxt/fake-model",
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "string"}}},
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == '"a plain string answer"'


# --------------------------------------------------------------------------- the documented surface, through DotTxt


def test_fake_gateway_takes_exactly_the_documented_keywords() -> None:
    parameters = inspect.signature(FakeGateway).parameters
    documented = {
        "api_key": None,
        "models": ("dottxt/fake-model",),
        "seed": 0,
        "op_delay": 0.0,
        "host": "127.0.0.1",
        "port": 0,
    }
    for name, default in documented.items():
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameters[name].default == default, name
    with pytest.raises(TypeError):
        FakeGateway("sk-positional")  # type: ignore[call-arg]


def test_fake_gateway_listens_on_the_port_it_is_given() -> None:
    port = free_port()
    with FakeGateway(
        api_key=None, models=("acme/one", "acme/two"), seed=3, op_delay=0.0, host="127.0.0.1", port=port
    ) as gw:
        assert gw.base_url == f"http://127.0.0.1:{port}/v1"
        with DotTxt(api_key="anything", base_url=gw.base_url, max_retries=0) as client:
            assert [model.id for model in client.models.list()] == ["acme/one", "acme/two"]


class Ticket(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


def test_enqueue_takes_a_pydantic_instance_and_copies_what_it_is_given(gateway: FakeGateway) -> None:
    document = {"intent": "technical", "reply": "Restart the router."}
    with DotTxt(api_key=KEY, base_url=gateway.base_url, max_retries=0) as client:
        gateway.enqueue(Ticket(intent="billing", reply="Refunded."))
        gateway.enqueue(document)
        document["intent"] = "billing"  # changed after queuing: the queued reply stays as it was
        first = client.generate(model=MODEL, response_format=Ticket, input="x")
        second = client.stream(model=MODEL, response_format=Ticket, input="x").result()
    assert first == Ticket(intent="billing", reply="Refunded.")
    assert second == Ticket(intent="technical", reply="Restart the router.")
    with pytest.raises(TypeError):
        gateway.enqueue({"when": object()})


COMPOSITE_SCHEMA: dict[str, Any] = {
    "$defs": {
        "Step": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 3, "maxLength": 12},
                "minutes": {"type": "integer", "minimum": 1, "maximum": 90},
            },
            "required": ["title", "minutes"],
        }
    },
    "type": "object",
    "properties": {
        "kind": {"const": "plan"},
        "priority": {"enum": ["low", "high"]},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 2, "maxItems": 4},
        "owner": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 8}]},
        "contact": {
            "oneOf": [
                {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
                {"type": "integer", "minimum": 100, "maximum": 999},
            ]
        },
    },
    "required": ["kind", "priority", "score", "steps", "owner", "contact"],
}


def _generated(seed: int) -> tuple[Any, Any]:
    """What `generate` and a patch stream get for COMPOSITE_SCHEMA from a fresh gateway with `seed`."""
    with FakeGateway(seed=seed) as gw, DotTxt(api_key="anything", base_url=gw.base_url, max_retries=0) as client:
        plain = client.generate(model=MODEL, response_format=COMPOSITE_SCHEMA, input="plan my day")
        streamed = client.stream(model=MODEL, response_format=COMPOSITE_SCHEMA, input="plan my day").result()
    return plain, streamed


def test_generated_documents_are_valid_and_the_same_for_the_same_seed() -> None:
    validator = Draft202012Validator(COMPOSITE_SCHEMA)
    seen = []
    for seed in (0, 1, 0):
        plain, streamed = _generated(seed)
        validator.validate(plain)
        assert streamed == plain  # the same request gets the same document, in every shape
        seen.append(plain)
    assert seen[0] == seen[2]
    assert seen[0] != seen[1]
