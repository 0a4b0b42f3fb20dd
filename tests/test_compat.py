"""Drop-in compatibility (issue 13): the upstream SDK's behaviours its users rely on, and OpenAI SDK habits.

One test per cause found by porting the upstream SDK's suite, then the OpenAI request
options (`extra_headers`, `extra_query`, `extra_body`, `timeout`) on every call that sends
a request, sync and async, against a loopback server that records what arrived. CLI
causes run `dottxt._cli.main` in-process (some need `os.chmod` patched), on loopback too.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dottxt
from dottxt import APIError, APIStatusError, APITimeoutError, AsyncDotTxt, DotTxt, InvalidOutputError, PatchStreamError
from dottxt._cli import main
from dottxt.testing import ops_from_document
from tests.clitools import TIMEOUT
from tests.conftest import Stall
from tests.rawserver import RawConnection, RawServer, ndjson

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
DOCUMENT = {"answer": "yes"}
MODEL = "acme/model-1"
KEY = "sk-compat-test-key-1234"


ANSWER = {"role": "assistant", "content": json.dumps(DOCUMENT)}


def completion(message: Any = ANSWER, finish_reason: Any = "stop") -> dict[str, Any]:
    """A chat completion whose one choice holds `message` (by default, DOCUMENT as JSON)."""
    return {
        "id": "c1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }


class Canned:
    """A RawServer handler: JSON answers by path (status, body), a patch or SSE stream for streaming chats.

    The server keeps every connection, so a test reads back each request's method, path (query
    included), headers and body from `server.connections`.
    """

    def __init__(
        self, *, models: Any = None, chat: Any = None, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]} if models is None else models
        self.chat = completion() if chat is None else chat
        self.status = status
        self.headers = headers or {}

    def __call__(self, conn: RawConnection) -> None:
        path = urllib.parse.urlsplit(conn.path).path
        body = conn.json if conn.method == "POST" else None
        if isinstance(body, dict) and body.get("stream") == "patch":
            conn.head()
            conn.chunk(ndjson(*ops_from_document(DOCUMENT)))
            conn.end()
            return
        if isinstance(body, dict) and body.get("stream") is True:
            conn.head(headers={"Content-Type": "text/event-stream"})
            chunk = {"choices": [{"index": 0, "delta": {"content": json.dumps(DOCUMENT)}, "finish_reason": "stop"}]}
            conn.chunk(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
            conn.end()
            return
        if path.endswith("/models"):
            answer = self.models
        elif "/models/" in path:
            answer = {"id": urllib.parse.unquote(path.split("/models/", 1)[1]), "object": "model"}
        else:
            answer = self.chat
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        conn.head(self.status, {"Content-Type": "application/json", **self.headers}, chunked=False)
        conn.send(data)


@pytest.fixture
def servers() -> Iterator[Callable[..., RawServer]]:
    """Start RawServers running a `Canned` handler (keyword arguments as Canned's); all closed afterwards."""
    started: list[RawServer] = []

    def start(handler: Callable[[RawConnection], None] | None = None, **canned: Any) -> RawServer:
        server = RawServer(handler or Canned(**canned))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
    for server in started:
        assert not server.errors, server.errors


def sync_client(server: RawServer, **kwargs: Any) -> DotTxt:
    return DotTxt(api_key=KEY, base_url=server.base_url, max_retries=0, timeout=(5, 5), **kwargs)


# --------------------------------------------------------------------------- SDK causes (1-5, 11)


def test_1_extra_keywords_never_replace_the_messages_built_from_input(servers: Callable[..., RawServer]) -> None:
    server = servers()
    with sync_client(server) as client:
        result = client.generate(
            model=MODEL,
            response_format=SCHEMA,
            input="the real prompt",
            messages=[{"role": "user", "content": "an intruder"}],  # type: ignore[call-arg]
            model_extra="kept",  # type: ignore[call-arg]
        )
    assert result == DOCUMENT
    body = server.connections[-1].json
    assert body["messages"] == [{"role": "user", "content": "the real prompt"}]
    assert body["model"] == MODEL and body["model_extra"] == "kept"


def test_2_invalid_output_is_caught_as_a_value_error(servers: Callable[..., RawServer]) -> None:
    server = servers(chat=completion({"role": "assistant", "content": "not json"}))
    with sync_client(server) as client, pytest.raises(ValueError) as caught:
        client.generate(model=MODEL, response_format=SCHEMA, input="x")
    assert isinstance(caught.value, InvalidOutputError)
    assert caught.value.raw_output == "not json"


@pytest.mark.parametrize(
    "answer",
    [
        completion(message=None),  # 3: "message": null
        completion(finish_reason=1),  # 4: a finish_reason that is not a string
        {"object": "chat.completion"},  # no choices at all
        completion({"role": "assistant", "content": 42}),  # content that is not a string
        b"<html>not json</html>",
    ],
    ids=["message-null", "finish-reason-int", "no-choices", "content-int", "not-json"],
)
def test_3_4_a_wrongly_shaped_200_is_invalid_output_not_a_status_error(
    servers: Callable[..., RawServer], answer: dict[str, Any]
) -> None:
    server = servers(chat=answer)
    with sync_client(server) as client:
        with pytest.raises(InvalidOutputError) as caught:
            client.generate(model=MODEL, response_format=SCHEMA, input="x")
        assert not isinstance(caught.value, APIStatusError)
        if isinstance(answer, dict):
            passed = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
            assert passed.model_dump() == answer  # create hands back what arrived


def test_4_create_passes_a_non_string_finish_reason_through_with_attribute_access(
    servers: Callable[..., RawServer],
) -> None:
    server = servers(chat=completion(finish_reason=1))
    with sync_client(server) as client:
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].finish_reason == 1
    assert json.loads(answer.choices[0].message.content) == DOCUMENT


def test_5_invalid_output_error_built_from_keywords_words_its_own_message() -> None:
    cause = ValueError("Expecting value")
    error = InvalidOutputError(model="m", raw_output="{", finish_reason="length", original_error=cause)
    assert (error.model, error.raw_output, error.finish_reason, error.original_error) == ("m", "{", "length", cause)
    assert "truncated" in str(error) and "Expecting value" in str(error)
    assert isinstance(error, ValueError)


def test_patch_stream_errors_are_api_errors() -> None:
    assert issubclass(PatchStreamError, APIError)


def test_upstream_import_paths_work() -> None:
    from dottxt.client import AsyncDotTxt as UpstreamAsync
    from dottxt.client import DotTxt as UpstreamSync
    from dottxt.client import InvalidOutputError as UpstreamInvalid

    assert (UpstreamSync, UpstreamAsync, UpstreamInvalid) == (DotTxt, AsyncDotTxt, InvalidOutputError)


def _store(key: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "dottxt" / "credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"api_key": key}))
    path.chmod(0o600)
    return path


@pytest.mark.usefixtures("isolated_env")
def test_11_a_blank_dottxt_api_key_counts_as_unset(
    servers: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = servers()
    _store(KEY)
    monkeypatch.setenv("DOTTXT_API_KEY", "   ")
    monkeypatch.setenv("DOTTXT_BASE_URL", server.base_url)
    with DotTxt(max_retries=0) as client:
        assert [model.id for model in client.models.list()] == [MODEL]
    assert main(["models"]) == 0
    assert capsys.readouterr().out == f"{MODEL}\n"
    assert {conn.headers["authorization"] for conn in server.connections} == {f"Bearer {KEY}"}


# --------------------------------------------------------------------------- OpenAI request options


OPTIONS: dict[str, Any] = {
    "extra_headers": {"X-Trace": "abc"},
    "extra_query": {"trace": "1"},
    "extra_body": {"flag": True, "temperature": 0.5},
    "timeout": 7,
}


def assert_options_arrived(server: RawServer, count: int) -> None:
    """Each of the `count` requests carried the header and the query; each POST the body fields."""
    assert len(server.connections) == count
    for conn in server.connections:
        assert conn.headers["x-trace"] == "abc"
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(conn.path).query) == {"trace": ["1"]}
        if conn.method == "POST":
            assert conn.json["flag"] is True
            assert conn.json["temperature"] == 0.5  # extra_body is merged last: it overrides temperature=0.1
            assert conn.json["model"] == MODEL
            assert "extra_headers" not in conn.json and "timeout" not in conn.json


def test_request_options_on_every_sync_call(servers: Callable[..., RawServer]) -> None:
    server = servers()
    messages = [{"role": "user", "content": "x"}]
    gen = {"model": MODEL, "response_format": SCHEMA, "input": "x", "temperature": 0.1, **OPTIONS}
    with sync_client(server) as client:
        assert client.generate(**gen) == DOCUMENT
        with client.stream(**gen) as stream:
            assert stream.result() == DOCUMENT
        assert client.stream_in_background(**gen).result(timeout=TIMEOUT) == DOCUMENT
        create = client.chat.completions.create(model=MODEL, messages=messages, temperature=0.1, **OPTIONS)
        assert create.choices[0].message.content == json.dumps(DOCUMENT)
        with client.chat.completions.create(model=MODEL, messages=messages, stream=True, **OPTIONS) as chunks:
            assert len(list(chunks)) == 1
        assert [model.id for model in client.models.list(**OPTIONS)] == [MODEL]
        assert client.models.retrieve("acme/model 1", **OPTIONS).id == "acme/model 1"
    assert_options_arrived(server, 7)
    assert urllib.parse.urlsplit(server.connections[-1].path).path == "/v1/models/acme%2Fmodel%201"


def test_request_options_on_every_async_call(servers: Callable[..., RawServer]) -> None:
    server = servers()
    messages = [{"role": "user", "content": "x"}]
    gen = {"model": MODEL, "response_format": SCHEMA, "input": "x", "temperature": 0.1, **OPTIONS}

    async def calls() -> None:
        async with AsyncDotTxt(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
            assert await client.generate(**gen) == DOCUMENT
            async with client.stream(**gen) as stream:
                assert await stream.result() == DOCUMENT
            assert client.stream_in_background(**gen).result(timeout=TIMEOUT) == DOCUMENT
            create = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0.1, **OPTIONS)
            assert create.choices[0].message.content == json.dumps(DOCUMENT)
            chunks = await client.chat.completions.create(model=MODEL, messages=messages, stream=True, **OPTIONS)
            async with chunks:
                assert len([chunk async for chunk in chunks]) == 1
            assert [model.id for model in await client.models.list(**OPTIONS)] == [MODEL]
            assert (await client.models.retrieve(MODEL, **OPTIONS)).id == MODEL

    asyncio.run(calls())
    assert_options_arrived(server, 7)


def test_extra_body_overrides_even_the_named_arguments(servers: Callable[..., RawServer]) -> None:
    server = servers()
    with sync_client(server) as client:
        client.generate(model=MODEL, response_format=SCHEMA, input="x", extra_body={"model": "other/model"})
    assert server.connections[-1].json["model"] == "other/model"


def test_stream_takes_sampling_options_and_extra_fields_as_body_fields(servers: Callable[..., RawServer]) -> None:
    server = servers()
    with sync_client(server) as client:
        with client.stream(
            model=MODEL, response_format=SCHEMA, input="x", top_p=0.5, extra={"logprobs": True, "stream": False}
        ) as stream:
            stream.result()
    body = server.connections[-1].json
    assert (body["top_p"], body["logprobs"], body["stream"]) == (0.5, True, "patch")
    assert "extra" not in body


@pytest.mark.parametrize("call", ["generate", "models.list", "models.retrieve"])
def test_a_per_call_timeout_applies_to_that_call_only(servers: Callable[..., RawServer], call: str) -> None:
    stall = Stall()
    server = servers(stall)
    with DotTxt(api_key=KEY, base_url=server.base_url, max_retries=0, timeout=60) as client:
        with pytest.raises(APITimeoutError):
            if call == "generate":
                client.generate(model=MODEL, response_format=SCHEMA, input="x", timeout=0.2)
            elif call == "models.list":
                client.models.list(timeout=0.2)
            else:
                client.models.retrieve(MODEL, timeout=0.2)
    assert stall.arrived.is_set()


def test_a_value_that_cannot_be_sent_is_refused_before_sending(servers: Callable[..., RawServer]) -> None:
    server = servers()
    with sync_client(server) as client:
        with pytest.raises((ValueError, TypeError)):
            client.models.list(extra_headers={"X-Name": "caf\u00e9 \u2603"})
        with pytest.raises((ValueError, TypeError)):
            client.generate(model=MODEL, response_format=SCHEMA, input="x", temperature=float("nan"))
        with pytest.raises((ValueError, TypeError)):
            client.chat.completions.create(model=MODEL, messages=[], extra_body={"x": float("inf")})
    assert server.connections == []


# --------------------------------------------------------------------------- DOTTXT_LOG


LOG_SCRIPT = """
import os, sys
from dottxt import DotTxt
with DotTxt(api_key=os.environ["KEY"], base_url=os.environ["URL"], max_retries=0) as client:
    print([m.id for m in client.models.list()])
"""


def _run_with_log(level: str | None, server: RawServer) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOTTXT_")}
    env.update(KEY=KEY, URL=server.base_url)
    if level is not None:
        env["DOTTXT_LOG"] = level
    return subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT], capture_output=True, text=True, env=env, timeout=TIMEOUT, check=True
    )


def test_dottxt_log_debug_logs_requests_to_stderr_without_the_key(servers: Callable[..., RawServer]) -> None:
    server = servers()
    quiet, debug = _run_with_log(None, server), _run_with_log("debug", server)
    assert quiet.stderr == "" and quiet.stdout == debug.stdout == f"['{MODEL}']\n"
    assert "GET" in debug.stderr and "/v1/models" in debug.stderr
    assert KEY not in debug.stderr


def test_dottxt_log_info_logs_less_than_debug(servers: Callable[..., RawServer]) -> None:
    server = servers()
    info, debug = _run_with_log("info", server), _run_with_log("debug", server)
    assert len(info.stderr.splitlines()) < len(debug.stderr.splitlines())
    assert KEY not in info.stderr


def test_dottxt_log_leaves_an_application_configured_logger_alone(
    servers: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers()
    monkeypatch.delenv("DOTTXT_LOG", raising=False)
    logger = logging.getLogger("dottxt")
    before = (list(logger.handlers), logger.level)
    with sync_client(server) as client:
        client.models.list()
    assert (list(logger.handlers), logger.level) == before


# --------------------------------------------------------------------------- CLI causes (6-10, 12-14)


@pytest.fixture
def cli(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch, servers: Callable[..., RawServer]
) -> Callable[..., RawServer]:
    """Point the CLI (run in-process) at a Canned server made with the given keywords; the key in DOTTXT_API_KEY."""

    def start(**canned: Any) -> RawServer:
        server = servers(**canned)
        monkeypatch.setenv("DOTTXT_BASE_URL", server.base_url)
        monkeypatch.setenv("DOTTXT_API_KEY", KEY)
        return server

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return start


def credentials() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "dottxt" / "credentials.json"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--version"], dottxt.__version__), (["--json", "--version"], json.dumps(dottxt.__version__))],
)
def test_6_version_prints_the_version_alone(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert capsys.readouterr().out == expected + "\n"


def test_the_version_sorts_after_the_upstream_release() -> None:
    assert tuple(int(part) for part in dottxt.__version__.split(".")[:3]) > (0, 3, 0)


def test_7_no_command_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dottxt") and "generate" in out and "login" in out


@pytest.mark.parametrize(("typed", "meant"), [("genrate", "generate"), ("modles", "models"), ("lgout", "logout")])
def test_a_mistyped_command_gets_a_did_you_mean_hint(
    typed: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([typed])
    assert exited.value.code == 2
    assert f"did you mean '{meant}'?" in capsys.readouterr().err


def test_a_mistyped_command_hint_in_the_json_envelope(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--json", "strem"])
    assert "did you mean 'stream'?" in json.loads(capsys.readouterr().err)["error"]["message"]


def test_8_login_json_has_the_upstream_keys(cli: Callable[..., RawServer], capsys: pytest.CaptureFixture[str]) -> None:
    cli()
    assert main(["--json", "login"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload | {"path": "", "source": ""} == payload | {
        "status": "ok",
        "path": "",
        "source": "",
        "models_available": 1,
    }
    assert (payload["path"], payload["source"]) == (str(credentials()), "env")


def test_8_login_json_source_names_stdin(
    cli: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli()
    monkeypatch.delenv("DOTTXT_API_KEY")
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY + "\n"))
    assert main(["--json", "login"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "stdin"


@pytest.mark.usefixtures("isolated_env")
@pytest.mark.parametrize("stored", [True, False])
def test_9_logout_json_has_the_upstream_keys(stored: bool, capsys: pytest.CaptureFixture[str]) -> None:
    if stored:
        _store(KEY)
    assert main(["--json", "logout"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["status"], payload["removed"], payload["path"]) == ("ok", stored, str(credentials()))
    assert not credentials().exists()


def test_10_generate_json_has_the_upstream_keys(
    cli: Callable[..., RawServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli()
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    assert main(["--json", "generate", "-m", MODEL, "-s", str(schema), "the prompt"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    payload = json.loads(out)
    assert payload == {
        "model": MODEL,
        "prompt": "the prompt",
        "schema_summary": {"type": "object", "keys": ["answer"]},
        "result": DOCUMENT,
    }


def test_12_login_stores_the_key_when_chmod_fails(
    cli: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    assert main(["--json", "login"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert json.loads(credentials().read_text()) == {"api_key": KEY}
    assert credentials().stat().st_mode & 0o077 == 0  # created 0600 all the same


def test_13_login_goes_on_when_the_model_list_has_the_wrong_shape(
    cli: Callable[..., RawServer], capsys: pytest.CaptureFixture[str]
) -> None:
    cli(models={"data": {"id": "m"}})
    assert main(["--json", "login"]) == 0
    assert json.loads(capsys.readouterr().out)["models_available"] == 0
    assert json.loads(credentials().read_text()) == {"api_key": KEY}
    assert main(["--json", "models"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({"foo": "bar"}, '{"foo": "bar"}'),
        ({"error": {"message": "   "}}, '{"error": {"message": "   "}}'),
        ({"error": {"message": "upstream model crashed"}}, "upstream model crashed"),
        (b"<html>bad gateway page</html>", "bad gateway page"),
    ],
    ids=["no-error-member", "blank-message", "message", "html"],
)
def test_14_cli_errors_keep_the_servers_detail(
    cli: Callable[..., RawServer], body: Any, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(models=body, status=502, headers={"Retry-After": "0"})
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "502" in err
    assert shown in err


def test_models_author_matches_the_records_author_field(
    cli: Callable[..., RawServer], capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        {"id": "x/first", "author": "acme"},
        {"id": "acme/second", "author": "someone-else"},
        {"id": "acme/third"},  # no author field: the id prefix (or owned_by) decides
        {"id": "fourth", "owned_by": "ACME"},
    ]
    cli(models={"object": "list", "data": records})
    assert main(["models", "--author", "acme"]) == 0
    assert capsys.readouterr().out == "x/first\nacme/third\nfourth\n"
