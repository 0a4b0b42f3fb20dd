"""Hostile servers and careless input (issue 19): one test per numbered break, each against a loopback server.

Every failure caused by what a server sends is a documented class carrying `.document`,
never a raw exception and never a hang; the key never surfaces; resources are bounded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydantic
import pytest

import dottxt
from dottxt import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    DotTxt,
    DotTxtError,
    InternalServerError,
    InvalidOutputError,
    InvalidSchemaError,
    PatchError,
    PatchStreamError,
    StreamDecodeError,
    normalize_schema,
)
from dottxt.cli import main as cli_main
from tests.conftest import WAIT, RawClients, Stall, free_port
from tests.rawserver import RawConnection, RawServer, ndjson

MODEL = "m"
KEY = "sk-test"
SSE_TYPE = {"Content-Type": "text/event-stream"}


class Body:
    """A RawServer handler answering every request with one body (chunked), optionally cut into `pieces`."""

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.body, self.status, self.headers = body, status, headers or {}
        self.requests = 0

    def __call__(self, conn: RawConnection) -> None:
        self.requests += 1
        conn.head(self.status, self.headers)
        if self.body:
            conn.chunk(self.body)
        conn.end()


def sse(*contents: str, finish: str | None = None, done: bool = False) -> bytes:
    """An OpenAI-style SSE body whose chunks carry `contents` as deltas."""
    chunks = [{"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in contents]
    if finish is not None:
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def stream_failure(client: DotTxt, schema: Any = None) -> DotTxtError:
    """Read a stream to its end and return the documented error it failed with (it must fail)."""
    with client.stream(model=MODEL, response_format=schema or {"type": "object"}, input="x") as stream:
        with pytest.raises(DotTxtError) as caught:
            stream.result()
    assert hasattr(caught.value, "document")
    return caught.value


# --------------------------------------------------------------------------- raw exceptions and hangs


@pytest.mark.parametrize(
    "line",
    [
        {"op": ["add"], "path": "/a", "value": 1},
        {"op": {"add": 1}, "path": "/a", "value": 1},
        {"op": "add", "path": ["a"], "value": 1},
        {"op": "move", "path": "/a", "from": 5},
        {"op": "add", "path": 7, "value": 1},
    ],
)
def test_01_ops_of_the_wrong_types_are_stream_decode_errors(raw: RawClients, line: dict[str, Any]) -> None:
    client = raw(Body(ndjson({"op": "add", "path": "", "value": {}}, {"op": "add", "path": "/k", "value": 1}, line)))
    error = stream_failure(client)
    assert isinstance(error, StreamDecodeError)
    assert error.line_number == 3
    assert error.document == {"k": 1}


DEEP = "[" * 5000 + "]" * 5000


def test_02_deep_json_in_a_patch_line(raw: RawClients) -> None:
    body = ndjson({"op": "add", "path": "", "value": {}}) + b'{"op":"add","path":"/a","value":' + DEEP.encode() + b"}\n"
    error = stream_failure(raw(Body(body)))
    assert isinstance(error, StreamDecodeError)
    assert error.document == {}


def test_02_deep_json_in_an_sse_event(raw: RawClients) -> None:
    body = sse('{"a":') + b"data: " + DEEP.encode() + b"\n\n"
    error = stream_failure(raw(Body(body, headers=SSE_TYPE), patch_source="sse"))
    assert isinstance(error, StreamDecodeError)


def test_02_deep_json_in_a_chat_chunk(raw: RawClients) -> None:
    client = raw(Body(b"data: " + DEEP.encode() + b"\n\n", headers=SSE_TYPE))
    with pytest.raises(StreamDecodeError):
        for _ in client.chat.completions.create(model=MODEL, messages=[], stream=True):
            pass


def test_02_deep_json_in_a_401_body(raw: RawClients) -> None:
    client = raw(Body(b'{"error":' + DEEP.encode() + b"}", status=401))
    with pytest.raises(AuthenticationError) as caught:
        client.models.list()
    assert caught.value.status_code == 401


def test_02_deep_json_in_a_200_models_body(raw: RawClients) -> None:
    client = raw(Body(b'{"data":' + DEEP.encode() + b"}", headers={"Content-Type": "application/json"}))
    with pytest.raises(APIStatusError, match="is not JSON"):
        client.models.list()


def test_02_deep_json_in_a_generate_answer(raw: RawClients) -> None:
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": DEEP}, "finish_reason": "stop"}]}
    client = raw(Body(json.dumps(answer).encode(), headers={"Content-Type": "application/json"}))
    with pytest.raises(InvalidOutputError):
        client.generate(model=MODEL, response_format={"type": "array"}, input="x")


def deep_ops(depth: int) -> Iterator[dict[str, Any]]:
    """Valid ops building a document `depth` objects deep, one level per op."""
    yield {"op": "add", "path": "", "value": {}}
    for level in range(1, depth):
        yield {"op": "add", "path": "/a" * level, "value": {}}


def test_03_a_deep_document_built_from_valid_ops_reads_without_recursion_error(raw: RawClients) -> None:
    # Owned by the _events/_patch helper: the events arrive, then `.document` and `.result()` must not raise raw.
    client = raw(Body(ndjson(*deep_ops(1500))))
    with client.stream(model=MODEL, response_format={"type": "object"}, input="x") as stream:
        assert sum(1 for _ in stream) == 1500
        try:
            document = stream.document
        except DotTxtError:
            pass
        else:
            assert isinstance(document, dict)
        try:
            stream.result()
        except InvalidOutputError:
            pass


def test_04_retry_after_nan_falls_back_to_the_backoff(raw: RawClients) -> None:
    attempts: list[int] = []

    def handler(conn: RawConnection) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            conn.send(b"HTTP/1.1 503 Busy\r\nRetry-After: nan\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            body = b'{"object":"list","data":[{"id":"m"}]}'
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    client = raw(handler, max_retries=1)
    assert [m.id for m in client.models.list().data] == ["m"]
    assert len(attempts) == 2


@pytest.mark.parametrize("value", [b"NaN", b"-Infinity", b"Infinity"])
def test_05_nan_in_ndjson_is_refused(raw: RawClients, value: bytes) -> None:
    body = ndjson({"op": "add", "path": "", "value": {}}) + b'{"op":"add","path":"/a","value":' + value + b"}\n"
    error = stream_failure(raw(Body(body)))
    assert isinstance(error, StreamDecodeError)
    assert error.document == {}


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], list[str]]:
    """Point the CLI at a base URL; returns the argument list of `dottxt stream` with a schema file."""
    schema = tmp_path / "schema.json"
    schema.write_text('{"type":"object"}')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOTTXT_API_KEY", KEY)
    monkeypatch.setenv("DOTTXT_MODEL", MODEL)
    monkeypatch.setenv("DOTTXT_MAX_RETRIES", "0")

    def args(base_url: str) -> list[str]:
        monkeypatch.setenv("DOTTXT_BASE_URL", base_url)
        return ["-s", str(schema), "x"]

    return args


@pytest.fixture
def cli_stream(
    cli_env: Callable[[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> Callable[[bytes], tuple[int, Any]]:
    """Run `dottxt stream` against a server answering with `body`: its exit status and captured output."""

    def run(body: bytes) -> tuple[int, Any]:
        with RawServer(Body(body)) as server:
            status = cli_main(["stream", *cli_env(server.base_url)])
        return status, capsys.readouterr()

    return run


def test_05_cli_stream_refuses_nan(cli_stream: Callable[[bytes], tuple[int, Any]]) -> None:
    status, out = cli_stream(ndjson({"op": "add", "path": "", "value": {}}) + b'{"op":"add","path":"/a","value":NaN}\n')
    assert status != 0
    assert "NaN" not in out.out


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": 5},
        {"choices": [5]},
        {"choices": [{"delta": 5}]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"content": ["{"]}}]},
    ],
)
def test_06_wrong_types_in_an_sse_chunk(raw: RawClients, chunk: dict[str, Any]) -> None:
    body = sse('{"a":1,') + b"data: " + json.dumps(chunk).encode() + b"\n\n"
    error = stream_failure(raw(Body(body, headers=SSE_TYPE), patch_source="sse"))
    assert isinstance(error, (StreamDecodeError, APIConnectionError))
    assert error.document == {"a": 1}


def test_07_a_redirect_loop_stops_after_five_redirects_and_is_not_retried(raw: RawClients) -> None:
    seen: list[str] = []

    def handler(conn: RawConnection) -> None:
        seen.append(conn.path)
        conn.send(b"HTTP/1.1 302 Found\r\nLocation: /v1/models\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    client = raw(handler, max_retries=2)
    with pytest.raises(APIConnectionError, match="redirected"):
        client.models.list()
    assert len(seen) == 6  # the request and 5 redirects


class Named(pydantic.BaseModel):
    name: str


SURROGATE_FORMATS: list[Any] = [{"type": "object"}, Named, dict[str, str], '{"type":"object"}']


@pytest.mark.parametrize("response_format", SURROGATE_FORMATS)
def test_08_a_lone_surrogate_is_invalid_output_for_every_format(raw: RawClients, response_format: Any) -> None:
    content = '{"name": "\\ud83d"}'
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    client = raw(Body(json.dumps(answer).encode(), headers={"Content-Type": "application/json"}))
    with pytest.raises(InvalidOutputError):
        client.generate(model=MODEL, response_format=response_format, input="x")


@pytest.mark.parametrize("response_format", SURROGATE_FORMATS)
def test_08_a_lone_surrogate_in_a_stream_is_invalid_output(raw: RawClients, response_format: Any) -> None:
    body = ndjson({"op": "add", "path": "", "value": {}}) + b'{"op":"add","path":"/name","value":"\\ud83d"}\n'
    with raw(Body(body)).stream(model=MODEL, response_format=response_format, input="x") as stream:
        with pytest.raises(InvalidOutputError):
            stream.result()


def test_08_the_cli_reports_a_lone_surrogate_as_invalid_output(cli_stream: Callable[[bytes], tuple[int, Any]]) -> None:
    status, out = cli_stream(
        ndjson({"op": "add", "path": "", "value": {}}) + b'{"op":"add","path":"/\\ud83d","value":"\\ud83d"}\n'
    )
    assert status != 0
    assert "surrogates not allowed" not in out.err
    assert "surrogate" in out.err


@pytest.mark.parametrize("done", [False, True])
def test_09_an_sse_stream_ended_early_is_a_connection_error(raw: RawClients, done: bool) -> None:
    error = stream_failure(raw(Body(sse('{"a":1,', '"b":', done=done), headers=SSE_TYPE), patch_source="sse"))
    assert isinstance(error, APIConnectionError)
    assert "ended before the output was complete" in str(error)
    assert error.document == {"a": 1}


def test_10_a_schema_nested_100_levels_is_an_invalid_schema_error_or_accepted() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(100):
        schema = {"type": "object", "properties": {"a": schema}}
    try:
        assert normalize_schema(schema) == schema
    except InvalidSchemaError as exc:
        assert "deep" in str(exc)


def test_10_a_schema_nested_5000_levels_is_an_invalid_schema_error() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidSchemaError, match="deep"):
        normalize_schema(schema)
    with pytest.raises(InvalidSchemaError, match="deep"):
        normalize_schema(json.dumps({"items": {}}).replace("{}", '{"items": ' * 3000 + "{}" + "}" * 3000))


def test_11_temperature_nan_is_refused_before_anything_is_sent(raw: RawClients) -> None:
    handler = Body(b"{}")
    client = raw(handler, max_retries=2)
    with pytest.raises(ValueError):
        client.generate(model=MODEL, response_format={"type": "object"}, input="x", temperature=float("nan"))
    with pytest.raises(ValueError):
        client.stream(model=MODEL, response_format={"type": "object"}, input="x", temperature=float("inf")).result()
    assert handler.requests == 0


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("key", "message", "shown"),
    [
        ("x", "model ollama/llama3-x does not exist", "model ollama/llama3-x does not exist"),
        ("ollama", "model ollama/llama3-x does not exist", "model ollama/llama3-x does not exist"),
        ("e", "model ollama/llama3-x does not exist", "model ollama/llama3-x does not exist"),
        ("sk-1", "key sk-1 refused; sk-12 is another", "key *** refused; sk-12 is another"),
    ],
)
def test_12_only_whole_occurrences_of_the_key_are_blanked(raw: RawClients, key: str, message: str, shown: str) -> None:
    body = json.dumps({"error": {"message": message}}).encode()
    server = RawServer(Body(body, status=404))
    try:
        with DotTxt(api_key=key, base_url=server.base_url, max_retries=0, timeout=(5, 5)) as client:
            with pytest.raises(APIStatusError) as caught:
                client.models.list()
    finally:
        server.close()
    assert caught.value.message == shown
    assert shown in caught.value.body


SECRET = "sk-live-0123456789abcdef"


def secret_client(raw: RawClients, handler: Callable[[RawConnection], None], **kwargs: Any) -> DotTxt:
    server = RawServer(handler)
    client = DotTxt(api_key=SECRET, base_url=server.base_url, max_retries=0, timeout=(5, 5), **kwargs)
    raw.opened.append((server, client))
    return client


def assert_no_secret(error: BaseException) -> None:
    shown = " ".join([str(error), repr(error), *(str(v) for v in vars(error).values())])
    assert SECRET not in shown
    assert SECRET[3:] not in shown


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


@pytest.mark.parametrize("spelled", [SECRET, escaped(SECRET)])
def test_13_a_stream_error_line_echoing_the_key_is_redacted(raw: RawClients, spelled: str) -> None:
    line = ('{"error": {"message": "key ' + spelled + ' was revoked"}}\n').encode()
    body = ndjson({"op": "add", "path": "", "value": {}}) + line
    error = stream_failure(secret_client(raw, Body(body)))
    assert isinstance(error, PatchStreamError)
    assert "***" in str(error)
    assert_no_secret(error)


@pytest.mark.parametrize("spelled", [SECRET, escaped(SECRET)])
def test_13_an_sse_error_event_echoing_the_key_is_redacted(raw: RawClients, spelled: str) -> None:
    body = sse('{"a":') + ('data: {"error": {"message": "key ' + spelled + ' was revoked"}}\n\n').encode()
    error = stream_failure(secret_client(raw, Body(body, headers=SSE_TYPE), patch_source="sse"))
    assert isinstance(error, PatchStreamError)
    assert_no_secret(error)


@pytest.mark.parametrize("spelled", [SECRET, escaped(SECRET)])
def test_13_a_line_that_is_not_json_echoing_the_key_is_redacted(raw: RawClients, spelled: str) -> None:
    body = ndjson({"op": "add", "path": "", "value": {}}) + f"Bearer {spelled} is not a patch\n".encode()
    error = stream_failure(secret_client(raw, Body(body)))
    assert isinstance(error, StreamDecodeError)
    assert_no_secret(error)


@pytest.mark.parametrize("spelled", [SECRET, escaped(SECRET)])
def test_13_a_401_body_echoing_the_key_is_redacted(raw: RawClients, spelled: str) -> None:
    body = ('{"error": {"message": "invalid key ' + spelled + '"}}').encode()
    client = secret_client(raw, Body(body, status=401))
    with pytest.raises(AuthenticationError) as caught:
        client.models.list()
    assert_no_secret(caught.value)
    with pytest.raises(AuthenticationError) as streamed:
        client.stream(model=MODEL, response_format={"type": "object"}, input="x").result()
    assert_no_secret(streamed.value)


@pytest.mark.parametrize("key", ["sk-\u00e9\u20ac-secret-value", "sk-secret\nvalue", "sk-\u2028secret-value"])
def test_14_a_key_http_cannot_carry_is_refused_at_construction(key: str) -> None:
    with pytest.raises(ValueError) as caught:
        DotTxt(api_key=key, base_url="http://127.0.0.1:9/v1")
    assert "secret" not in str(caught.value)


@pytest.fixture
def config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private XDG_CONFIG_HOME and no key in the environment: DotTxt() reads the credentials file."""
    monkeypatch.delenv("DOTTXT_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    directory = tmp_path / "config" / "dottxt"
    directory.mkdir(parents=True, mode=0o700)
    return directory


def test_15_a_link_planted_at_the_temporary_path_is_refused(config_dir: Path, tmp_path: Path) -> None:
    from dottxt._credentials import save_api_key

    target = tmp_path / "victim"
    target.write_text("untouched")
    (config_dir / f".credentials.json.{os.getpid()}.tmp").symlink_to(target)
    try:
        save_api_key(SECRET)
    except OSError:
        pass
    assert target.read_text() == "untouched"


def test_15_a_link_planted_at_the_credentials_path_leaves_its_target_untouched(
    config_dir: Path, tmp_path: Path
) -> None:
    from dottxt._credentials import save_api_key

    target = tmp_path / "victim"
    target.write_text("untouched")
    (config_dir / "credentials.json").symlink_to(target)
    try:
        save_api_key(SECRET)
    except OSError:
        pass
    assert target.read_text() == "untouched"


def test_15_the_saved_file_is_private(config_dir: Path) -> None:
    from dottxt._credentials import save_api_key

    path = save_api_key(SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DotTxt(base_url="http://127.0.0.1:9/v1").api_key == SECRET


def test_15_a_fifo_at_the_credentials_path_is_refused_without_blocking(config_dir: Path) -> None:
    path = config_dir / "credentials.json"
    os.mkfifo(path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        DotTxt(base_url="http://127.0.0.1:9/v1")


def test_15_a_directory_at_the_credentials_path_is_refused(config_dir: Path) -> None:
    path = config_dir / "credentials.json"
    path.mkdir()
    with pytest.raises(ValueError, match=re.escape(str(path))):
        DotTxt(base_url="http://127.0.0.1:9/v1")


def test_15_a_credentials_file_others_can_read_loads_with_a_warning(config_dir: Path) -> None:
    path = config_dir / "credentials.json"
    path.write_text(json.dumps({"api_key": SECRET}))
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="readable by others") as caught:
        client = DotTxt(base_url="http://127.0.0.1:9/v1")
    assert client.api_key == SECRET
    assert all(SECRET not in str(w.message) for w in caught)


# --------------------------------------------------------------------------- resources and lifecycle


class Overwrites:
    """A RawServer handler streaming `count` adds that overwrite the same small key: many bytes, a tiny document."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __call__(self, conn: RawConnection) -> None:
        conn.head()
        conn.chunk(ndjson({"op": "add", "path": "", "value": {}}))
        block = ndjson({"op": "add", "path": "/k", "value": "v" * 40}) * 1000
        for _ in range(self.count // 1000):
            conn.chunk(block)
        conn.end()


def test_16_memory_follows_the_document_not_the_bytes(raw: RawClients) -> None:
    client = raw(Overwrites(100_000))  # about 6 MB of lines, a 50-byte document
    tracemalloc.start()
    try:
        with client.stream(model=MODEL, response_format={"type": "object"}, input="x") as stream:
            for _ in stream:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.document == {"k": "v" * 40}
    assert peak < 2_000_000


def test_17_brackets_past_the_depth_limit_are_refused(raw: RawClients) -> None:
    body = sse(*(["[" * 1000] * 40))
    client = raw(Body(body, headers=SSE_TYPE), patch_source="sse")
    with client.stream(model=MODEL, response_format={"type": "array"}, input="x") as stream:
        with pytest.raises(StreamDecodeError) as caught:
            for _ in stream:
                pass
    error = caught.value
    assert isinstance(error, StreamDecodeError)
    assert "deep" in str(error) or "depth" in str(error)


def test_18_an_error_body_is_read_at_most_one_mib(raw: RawClients) -> None:
    body = b'{"error": {"message": "' + b"x" * (3 << 20) + b'"}}'
    client = raw(Body(body, status=500))
    with pytest.raises(InternalServerError) as caught:
        client.generate(model=MODEL, response_format={"type": "object"}, input="x")
    assert len(caught.value.body) <= 1 << 20
    assert len(caught.value.message) < 1000


def test_20_leaving_both_withs_hangs_up_while_the_stream_is_still_referenced() -> None:
    stall = Stall([{"op": "add", "path": "", "value": {}}])
    with RawServer(stall) as server:
        with DotTxt(api_key=KEY, base_url=server.base_url, max_retries=0, timeout=(5, 30)) as client:
            with client.stream(model=MODEL, response_format={"type": "object"}, input="x") as stream:
                next(iter(stream))
        assert stall.disconnected.wait(WAIT)
        assert stream.document == {}  # still referenced


def test_20_a_finished_stream_still_referenced_hangs_up_when_the_client_closes() -> None:
    closed = threading.Event()

    def keep_alive(conn: RawConnection) -> None:
        conn.keep_alive = True  # the finished stream's connection goes back to the pool, still open
        conn.head()
        conn.chunk(ndjson({"op": "add", "path": "", "value": {}}))
        conn.end()
        if conn.wait_for_disconnect(30):
            closed.set()

    with RawServer(keep_alive) as server:
        with DotTxt(api_key=KEY, base_url=server.base_url, max_retries=0, timeout=(5, 30)) as client:
            with client.stream(model=MODEL, response_format={"type": "object"}, input="x") as stream:
                assert stream.result() == {}
        assert closed.wait(WAIT)
        assert stream.document == {}


def test_21_close_wakes_a_generate_waiting_for_headers(raw: RawClients) -> None:
    stall = Stall()
    client = raw(stall, timeout=(5, 60))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.generate(model=MODEL, response_format={"type": "object"}, input="x")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert stall.arrived.wait(WAIT)
    client.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], APIConnectionError)


class KeepAlive:
    """A RawServer handler that answers every request on a connection with the same NDJSON body, keep-alive."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __call__(self, conn: RawConnection) -> None:
        conn.keep_alive = True
        while True:
            conn.head()
            conn.chunk(self.body)
            conn.end()
            conn.method = ""
            conn.read_request()
            if not conn.method:
                return


def test_22_streams_read_to_their_end_reuse_one_connection(raw: RawClients) -> None:
    client = raw(KeepAlive(ndjson({"op": "add", "path": "", "value": {}}, {"op": "add", "path": "/a", "value": 1})))
    for _ in range(5):
        with client.stream(model=MODEL, response_format={"type": "object"}, input="x") as stream:
            assert [event.field for event in stream] == ["", "a"]
    assert len(raw.server.connections) == 1


def test_23_many_concurrent_streams_need_no_pool_warning(raw: RawClients, caplog: pytest.LogCaptureFixture) -> None:
    count = 80  # more than the old pool of 64
    arrived = threading.Barrier(count, timeout=WAIT)

    def handler(conn: RawConnection) -> None:
        arrived.wait()
        Body(ndjson({"op": "add", "path": "", "value": {}}))(conn)

    client = raw(handler)

    def one(_: int) -> Any:
        return client.stream(model=MODEL, response_format={"type": "object"}, input="x").result()

    with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(count) as pool:
        assert list(pool.map(one, range(count))) == [{}] * count
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_24_connection_errors_show_no_internal_class_names() -> None:
    with DotTxt(api_key=KEY, base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught:
            client.models.list()
    message = str(caught.value)
    assert "refused" in message.lower()
    assert not re.search(r"\b_[A-Z]\w*|object at 0x|Connection\(", message)


def test_25_a_huge_pointer_is_shortened_in_stream_errors(raw: RawClients) -> None:
    path = "/a" * 100_000
    body = ndjson({"op": "add", "path": "", "value": {}}, {"op": "add", "path": path, "value": 1})
    error = stream_failure(raw(Body(body)))
    assert isinstance(error, StreamDecodeError)
    assert len(str(error)) < 1000
    assert error.line is not None and len(error.line) < 1000


def test_25_a_huge_pointer_is_shortened_in_patch_errors() -> None:
    with pytest.raises(PatchError) as caught:
        dottxt.apply_add({}, "/a" * 100_000, 1)
    assert len(str(caught.value)) < 1000
