"""SPEC sections 8 and 9 read sentence by sentence: the `dottxt` CLI and the offline kit.

Each test is what a careful user would check from one sentence of the contract, for
behaviour tests/test_cli.py and tests/test_gateway.py do not already pin down. The CLI
runs as real subprocesses (`python -m dottxt`) against loopback FakeGateways; the
independent invocations start all at once from a module fixture, so the file costs
about as much as its slowest command.
"""

from __future__ import annotations

import inspect
import json
import os
import pty
import re
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from dottxt import DotTxt
from dottxt.testing import FakeGateway, ops_from_document
from tests.clitools import TIMEOUT, cli_command, read_line, read_until, run_cli
from tests.conftest import TEST_KEY

MODEL = "dottxt/fake-model"
KEY = "sk-dottxt-acceptance-0123456789"
PROMPT = "I was charged twice this month"

TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"enum": ["billing", "technical", "account", "feedback"]},
        "urgency": {"enum": ["low", "medium", "high", "critical"]},
        "reply": {"type": "string"},
    },
    "required": ["intent", "urgency", "reply"],
}
TICKET = {"intent": "billing", "urgency": "high", "reply": "Sorry about that: the duplicate is refunded."}


# --------------------------------------------------------------------------- running the CLI


def user_env(root: Path, **settings: str | None) -> dict[str, str]:
    """A user's environment: no stray DOTTXT_* or proxy settings, HOME and XDG_CONFIG_HOME under `root`.

    `settings` override it; a None value removes the variable.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOTTXT_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.pop("PYTHONUNBUFFERED", None)  # piped stdout is block-buffered, as for real users
    (root / "home").mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(root / "home")
    env["XDG_CONFIG_HOME"] = str(root / "config")
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Run:
    """One CLI invocation, run by the `runs` fixture; its gateway stays up for inspection."""

    args: list[str]
    stdin: str | None = None  # None: stdin is /dev/null
    env: dict[str, str | None] = field(default_factory=dict)  # on top of user_env (None removes)
    gateway: Literal["yes", "no"] = "yes"  # a FakeGateway requiring KEY, as DOTTXT_BASE_URL
    prepare: Callable[[Run], Any] | None = None  # called before the run (gateway up, root made)

    gw: FakeGateway | None = None
    root: Path = Path()
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""

    @property
    def home_credentials(self) -> Path:
        return self.root / "home" / ".config" / "dottxt" / "credentials.json"

    @property
    def xdg_credentials(self) -> Path:
        return self.root / "config" / "dottxt" / "credentials.json"


def _echo_the_key_in_a_401(run: Run) -> None:
    assert run.gw is not None
    run.gw.fail_next(401, body={"error": {"message": f"Incorrect API key provided: {KEY}", "type": "auth"}})


def _store_key(run: Run) -> None:
    path = run.xdg_credentials
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"api_key": KEY}))


def _store_old_key(run: Run) -> None:
    path = run.xdg_credentials
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"api_key": "the-key-stored-before"}))


def _enqueue_ticket(run: Run) -> None:
    assert run.gw is not None
    run.gw.enqueue(TICKET)


def make_runs(schema_file: str, busy_port: int, dead_proxy: str) -> dict[str, Run]:
    no_key: dict[str, str | None] = {"DOTTXT_API_KEY": None}
    return {
        # The key never appears in CLI output, even when the server echoes it back.
        "echoed-key": Run(["models"], prepare=_echo_the_key_in_a_401),
        "echoed-key-json-login": Run(["--json", "login"], prepare=_echo_the_key_in_a_401),
        "echoed-key-verbose": Run(["--verbose", "models"], prepare=_echo_the_key_in_a_401),
        # login: ~/.config (from HOME) when XDG_CONFIG_HOME is unset
        "login-home": Run(["login"], env={**no_key, "XDG_CONFIG_HOME": None}, stdin=f"{KEY}\n"),
        "login-json": Run(["--json", "login"]),
        "login-rejected-keeps-old": Run(["login"], env={"DOTTXT_API_KEY": "sk-rejected-key"}, prepare=_store_old_key),
        # the stored key is what CLI commands use; --verbose says where it came from, never what it is
        "stored-key-verbose": Run(["--verbose", "models"], env=no_key, prepare=_store_key),
        "logout-json-nothing-stored": Run(["--json", "logout"], gateway="no", env=no_key),
        # stream: prompt from stdin, model from DOTTXT_MODEL; missing model is a usage error
        "stream-stdin": Run(
            ["stream", "-s", schema_file], stdin=f"{PROMPT}\n", env={"DOTTXT_MODEL": MODEL}, prepare=_enqueue_ticket
        ),
        "stream-no-model": Run(["stream", "-s", schema_file, PROMPT]),
        # offline commands keep working behind a proxy that cannot reach loopback
        "demo-behind-proxy": Run(
            ["demo", "--op-delay", "0.002"],
            gateway="no",
            env={**no_key, "HTTP_PROXY": dead_proxy, "http_proxy": dead_proxy},
        ),
        # fake-gateway: a port already in use is one line, exit 1
        "fake-gateway-busy-port": Run(["fake-gateway", "--port", str(busy_port)], gateway="no", env=no_key),
    }


def _run(run: Run) -> None:
    env = user_env(run.root, DOTTXT_API_KEY=KEY)
    if run.gw is not None:
        env["DOTTXT_BASE_URL"] = run.gw.base_url
    for name, value in run.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    run.returncode, run.stdout, run.stderr = run_cli(cli_command(*run.args), env, run.stdin)


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("schema") / "ticket.json"
    path.write_text(json.dumps(TICKET_SCHEMA))
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, schema_file: str) -> Iterator[dict[str, Run]]:
    """Every independent invocation at once, each with its own gateway and home directory."""
    gateways: list[FakeGateway] = []
    busy = socket.socket()  # listening: a second server cannot bind its port
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    dead = socket.socket()  # bound, never listening: a proxy there refuses every connection
    dead.bind(("127.0.0.1", 0))
    try:
        runs = make_runs(schema_file, busy.getsockname()[1], f"http://127.0.0.1:{dead.getsockname()[1]}")
        for name, run in runs.items():
            run.root = tmp_path_factory.mktemp(name)
            if run.gateway == "yes":
                run.gw = FakeGateway(api_key=KEY, models=(MODEL,))
                gateways.append(run.gw)
            if run.prepare is not None:
                run.prepare(run)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_run, runs.values()))
        yield runs
    finally:
        busy.close()
        dead.close()
        for gw in gateways:
            gw.close()


def assert_one_error_line(run: Run, *fragments: str) -> str:
    """Exit 1, nothing on stdout, one `dottxt: error: ...` line holding every fragment, no traceback."""
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("dottxt: error: ")
    for fragment in fragments:
        assert fragment in line, line
    return line


# --------------------------------------------------------------------------- §1/§8: the key is never shown


def test_a_key_the_server_echoes_back_is_not_printed(runs: dict[str, Run]) -> None:
    line = assert_one_error_line(runs["echoed-key"], "rejected", "401")
    assert KEY not in line


def test_a_key_the_server_echoes_back_is_not_in_the_json_error(runs: dict[str, Run]) -> None:
    run = runs["echoed-key-json-login"]
    assert (run.returncode, run.stdout) == (1, "")
    message = json.loads(run.stderr)["error"]["message"]
    assert "rejected" in message and "nothing was stored" in message
    assert KEY not in run.stderr
    assert not run.xdg_credentials.exists()


def test_verbose_does_not_show_a_key_the_server_echoes_back(runs: dict[str, Run]) -> None:
    run = runs["echoed-key-verbose"]
    assert run.returncode == 1
    assert "rejected" in run.stderr
    assert KEY not in run.stdout + run.stderr


# --------------------------------------------------------------------------- §8: login / logout


def test_login_without_xdg_config_home_stores_under_home_dot_config(runs: dict[str, Run]) -> None:
    run = runs["login-home"]
    assert run.returncode == 0, run.stderr
    assert json.loads(run.home_credentials.read_text()) == {"api_key": KEY}
    assert stat.S_IMODE(run.home_credentials.stat().st_mode) == 0o600
    assert str(run.home_credentials) in run.stdout
    assert KEY not in run.stdout + run.stderr


def test_the_key_stored_by_login_is_used_by_the_sdk(runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch) -> None:
    run = runs["login-home"]
    assert run.home_credentials.exists(), run.stderr
    for name in ("DOTTXT_API_KEY", "DOTTXT_BASE_URL", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(run.root / "home"))
    strict = FakeGateway(api_key=KEY)  # accepts only the stored key
    with strict, DotTxt(base_url=strict.base_url, max_retries=0) as client:
        assert [model.id for model in client.models.list()] == [MODEL]
    assert strict.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_login_json_reports_where_the_key_went(runs: dict[str, Run]) -> None:
    run = runs["login-json"]
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"status": "ok", "credentials_file": str(run.xdg_credentials), "models": 1}
    assert run.stderr == ""


def test_a_rejected_key_leaves_the_stored_one_alone(runs: dict[str, Run]) -> None:
    run = runs["login-rejected-keeps-old"]
    assert_one_error_line(run, "rejected", "nothing was stored")
    assert json.loads(run.xdg_credentials.read_text()) == {"api_key": "the-key-stored-before"}


def test_commands_use_the_stored_key_and_verbose_says_where_it_came_from(runs: dict[str, Run]) -> None:
    run = runs["stored-key-verbose"]
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{MODEL}\n"
    assert str(run.xdg_credentials) in run.stderr
    assert KEY not in run.stdout + run.stderr


def test_logout_with_nothing_stored_succeeds(runs: dict[str, Run]) -> None:
    run = runs["logout-json-nothing-stored"]
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"status": "ok", "deleted": False, "credentials_file": str(run.xdg_credentials)}


def test_login_asks_with_a_hidden_prompt_when_stdin_is_a_terminal(tmp_path: Path, gateway: FakeGateway) -> None:
    env = user_env(tmp_path, DOTTXT_BASE_URL=gateway.base_url)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            cli_command("login"),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no controlling terminal: the prompt uses stdin, the pty
        )
    finally:
        os.close(terminal)
    try:
        assert process.stderr is not None
        prompt = read_until(process.stderr, b": ")  # once the prompt is out, echo is off
        os.write(controller, TEST_KEY.encode() + b"\n")
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        with selectors.DefaultSelector() as selector:
            selector.register(controller, selectors.EVENT_READ)
            try:
                echoed = os.read(controller, 4096) if selector.select(0) else b""
            except OSError:  # EIO: the terminal side is closed and nothing is left to read
                echoed = b""
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert b"key" in prompt.lower()
    assert TEST_KEY.encode() not in echoed + stdout + stderr + prompt
    credentials = tmp_path / "config" / "dottxt" / "credentials.json"
    assert json.loads(credentials.read_text()) == {"api_key": TEST_KEY}


# --------------------------------------------------------------------------- §8: stream


def test_stream_reads_the_prompt_from_stdin_and_the_model_from_env(runs: dict[str, Run]) -> None:
    run = runs["stream-stdin"]
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()] == ops_from_document(TICKET)
    assert run.gw is not None
    (chat,) = [r for r in run.gw.requests if r.path.endswith("/chat/completions")]
    assert chat.json["model"] == MODEL
    assert chat.json["messages"] == [{"role": "user", "content": PROMPT}]


def test_stream_without_a_model_is_a_usage_error(runs: dict[str, Run]) -> None:
    run = runs["stream-no-model"]
    assert (run.returncode, run.stdout) == (2, "")
    assert "-m/--model" in run.stderr
    assert run.gw is not None and run.gw.requests == []


# --------------------------------------------------------------------------- §9: demo and fake-gateway


def test_demo_needs_no_network_even_with_a_proxy_configured(runs: dict[str, Run]) -> None:
    run = runs["demo-behind-proxy"]
    assert run.returncode == 0, run.stderr
    fields = re.findall(r"^\s+(intent|urgency|reply)\s+.+?\s+\d+ ms$", run.stdout, re.MULTILINE)
    assert fields == ["intent", "urgency", "reply"]


def test_fake_gateway_on_a_busy_port_is_an_error(runs: dict[str, Run]) -> None:
    assert_one_error_line(runs["fake-gateway-busy-port"], "in use")


def _start_ignoring_sigint(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the CLI the way a script's background job (`cmd &`) starts: SIGINT inherited as ignored."""
    # SIG_IGN (unlike a handler) survives exec, just as it does for a shell's `&` job.
    launcher = "import os, signal as s, sys; s.signal(s.SIGINT, s.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", launcher, *cli_command(*args)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_fake_gateway_stops_on_sigint_even_as_a_background_job(tmp_path: Path) -> None:
    process = _start_ignoring_sigint(["--json", "fake-gateway"], user_env(tmp_path))
    try:
        assert process.stdout is not None
        info = json.loads(read_line(process.stdout))
        with DotTxt(api_key="anything", base_url=info["base_url"], max_retries=0) as client:
            assert [model.id for model in client.models.list()] == [MODEL]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert b"Traceback" not in stderr


def test_fake_gateway_serves_on_the_host_and_port_given_with_the_op_delay_given(tmp_path: Path) -> None:
    port, delay = free_port(), 0.05
    process = subprocess.Popen(
        cli_command("fake-gateway", "--host", "127.0.0.1", "--port", str(port), "--op-delay", str(delay)),
        env=user_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = read_line(process.stdout).decode()
        base_url = f"http://127.0.0.1:{port}/v1"
        assert base_url in first
        fields = ("a", "b", "c", "d")
        schema = {
            "type": "object",
            "properties": {name: {"type": "integer"} for name in fields},
            "required": list(fields),
            "additionalProperties": False,
        }
        with DotTxt(api_key="anything", base_url=base_url, max_retries=0) as client:
            start = time.monotonic()
            with client.stream(model=MODEL, response_format=schema, input="x") as stream:
                arrivals = [(event.field, time.monotonic() - start) for event in stream]
        assert [name for name, _ in arrivals] == ["", *fields]
        assert arrivals[-1][1] >= 0.8 * len(arrivals) * delay  # every op waited its turn
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130


# --------------------------------------------------------------------------- §9: FakeGateway


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


class Ticket(BaseModel):
    intent: Literal["billing", "technical"]
    reply: str


def test_enqueue_takes_a_pydantic_instance_and_copies_what_it_is_given(gateway: FakeGateway) -> None:
    document = {"intent": "technical", "reply": "Restart the router."}
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0) as client:
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
