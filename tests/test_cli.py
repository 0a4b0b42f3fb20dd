"""The `dottxt` command line, run as a user runs it: real subprocesses against loopback servers.

Most invocations are independent, so a module fixture starts them all at once
(each with its own FakeGateway and config directory) and the tests below check one
result each; the file costs about as much as its slowest few commands. Tests that
talk to a running process (piped streams, Ctrl-C, a broken pipe, the fake-gateway
command) drive it themselves, against a RawServer that holds back ops until told.
"""

from __future__ import annotations

import contextlib
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
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import requests

from dottxt import AuthenticationError, DotTxt, __version__
from dottxt.testing import FakeGateway, ops_from_document
from tests.clitools import TIMEOUT, cli_command, read_line, read_until, run_cli
from tests.conftest import MODEL, TEST_KEY, free_port
from tests.rawserver import RawConnection, RawServer, ndjson

OTHER_MODEL = "acme/tiny-model"
SECRET = "sk-dottxt-VERY-SECRET-4242"
PROMPT = "I was charged twice this month, please refund the duplicate."

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
BAD_SCHEMA = {"type": "object", "properties": {"age": {"type": "integr"}}}

# --------------------------------------------------------------------------- running the CLI


def cli_env(root: Path, *, key: str | None = TEST_KEY, base_url: str | None = None) -> dict[str, str]:
    """The environment a user would have: no stray DOTTXT_* or proxy settings, HOME and config under `root`.

    PYTHONUNBUFFERED is dropped so that piped stdout is block-buffered, as for real users.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOTTXT_")
        and k != "PYTHONUNBUFFERED"
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    (root / "home").mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(root / "home")
    env["XDG_CONFIG_HOME"] = str(root / "config")
    if key is not None:
        env["DOTTXT_API_KEY"] = key
    if base_url is not None:
        env["DOTTXT_BASE_URL"] = base_url
    return env


def popen_cli(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start the CLI; Ctrl-C reaches it even when this test run inherited SIGINT as ignored."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:  # a handler (unlike SIG_IGN) is reset to the default in the child on exec
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cli_command(*args), env=env, **kwargs)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Case:
    """One CLI invocation and, once run, its result and the gateway it talked to."""

    args: list[str]
    stdin: str | None = None  # None: stdin is /dev/null
    key: str | None = TEST_KEY  # DOTTXT_API_KEY; None leaves it unset
    server: Literal["gateway", "dead", "none"] = "gateway"
    gateway_key: str = TEST_KEY
    prepare: Callable[[Case], Any] | None = None  # called before the run (gateway up, root made)
    env: dict[str, str | None] = field(default_factory=dict)  # on top of cli_env (None removes)
    command: list[str] | None = None  # a full argv instead of `python -m dottxt ARGS`

    gw: FakeGateway | None = None
    root: Path = Path()
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""

    @property
    def gateway(self) -> FakeGateway:
        assert self.gw is not None
        return self.gw

    @property
    def credentials(self) -> Path:
        return self.root / "config" / "dottxt" / "credentials.json"

    @property
    def home_credentials(self) -> Path:
        """Where login stores the key when XDG_CONFIG_HOME is unset."""
        return self.root / "home" / ".config" / "dottxt" / "credentials.json"

    def chat_requests(self) -> list[Any]:
        assert self.gw is not None
        return [r for r in self.gw.requests if r.path.endswith("/chat/completions")]


def _enqueue_ticket(case: Case) -> None:
    case.gateway.enqueue(TICKET)


def _echo_the_key_in_a_401(case: Case) -> None:
    case.gateway.fail_next(401, body={"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "auth"}})


def _store_key(key: str) -> Callable[[Case], None]:
    def store(case: Case) -> None:
        case.credentials.parent.mkdir(parents=True)
        case.credentials.write_text(json.dumps({"api_key": key}))

    return store


HEAVY_IMPORTS_CHECK = """
import contextlib, io, json, sys
from dottxt._cli import main
for argv in (["--version"], ["--help"], ["generate", "--help"], ["stream", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0, (argv, exc.code)
print(json.dumps(sorted(m for m in ("pydantic", "jsonschema", "requests") if m in sys.modules)))
"""


def make_cases(files: dict[str, str], busy_port: int, dead_proxy: str) -> dict[str, Case]:
    """Every independent invocation, by name; `files` maps short names to the schema files' paths."""
    ticket, bad, not_json, a_dir, array = (files[k] for k in ("ticket", "bad", "not_json", "dir", "array"))
    gen = ["generate", "-m", MODEL, "-s", ticket]

    def three_429s(case: Case) -> None:
        for _ in range(3):  # the first try and both retries
            case.gateway.fail_next(429, headers={"Retry-After": "0"})

    def cut_after_two(case: Case) -> None:
        case.gateway.enqueue(TICKET)
        case.gateway.cut_next_after(2)

    def forbidden(case: Case) -> None:
        case.gateway.fail_next(403)

    def retry_then_ticket(case: Case) -> None:
        case.gateway.fail_next(503, headers={"Retry-After": "0"})
        case.gateway.enqueue(TICKET)

    secret: dict[str, Any] = {"key": SECRET, "gateway_key": SECRET}

    return {
        # start-up
        "version": Case(["--version"], server="none", key=None),
        "script-version": Case(
            [], server="none", key=None, command=[str(Path(sys.executable).parent / "dottxt"), "--version"]
        ),
        "help": Case(["--help"], server="none", key=None),
        "no-command": Case([], server="none", key=None),
        "unknown-command": Case(["frobnicate"], server="none", key=None),
        "heavy-imports": Case([], server="none", key=None, command=[sys.executable, "-c", HEAVY_IMPORTS_CHECK]),
        # models
        "models": Case(["models"], env={"DOTTXT_MODEL": MODEL}),
        "models-json": Case(["--json", "models"]),
        "models-author": Case(["models", "--author", "acme"]),
        # generate
        "generate": Case([*gen, PROMPT], prepare=_enqueue_ticket),
        "generate-json": Case(["--json", *gen, PROMPT], prepare=_enqueue_ticket),
        "generate-stdin": Case(
            ["generate", "-s", ticket], stdin=f"  {PROMPT}\n", env={"DOTTXT_MODEL": MODEL}, prepare=_enqueue_ticket
        ),
        "generate-options": Case(
            [*gen, "--temperature", "0.2", "--max-tokens", "500", "--seed", "7", PROMPT], prepare=_enqueue_ticket
        ),
        # stream
        "stream": Case(["stream", "-m", MODEL, "-s", ticket, PROMPT], prepare=_enqueue_ticket),
        "stream-cut": Case(
            ["stream", "-m", MODEL, "-s", ticket, PROMPT],
            prepare=cut_after_two,
        ),
        # schema check
        "schema-check": Case(["schema", "check", ticket], server="none", key=None),
        "schema-check-json": Case(["--json", "schema", "check", ticket], server="none", key=None),
        "schema-check-invalid": Case(["schema", "check", bad], server="none", key=None),
        "schema-check-invalid-json": Case(["--json", "schema", "check", bad], server="none", key=None),
        # login
        "login-env": Case(["login"]),
        "login-rejected": Case(["login"], key=None, stdin="wrong-key\n"),
        # demo
        "demo": Case(["demo", "--op-delay", "0.005"], server="none", key=None),
        "demo-json": Case(["--json", "demo", "--op-delay", "0.005"], server="none", key=None),
        # bad input: exit 1, one line on stderr
        "missing-schema": Case([*gen[:-1], files["missing"], PROMPT]),
        "schema-is-dir": Case([*gen[:-1], a_dir, PROMPT]),
        "schema-not-json": Case([*gen[:-1], not_json, PROMPT]),
        "schema-not-object": Case([*gen[:-1], array, PROMPT]),
        "schema-invalid": Case([*gen[:-1], bad, PROMPT]),
        "no-prompt": Case(gen),
        "blank-prompt": Case([*gen, "   "]),
        "no-key": Case(["models"], key=None),
        "unreachable": Case(["models"], server="dead"),
        "rejected-key": Case(["models"], key="wrong-key"),
        "rate-limited": Case([*gen, PROMPT], prepare=three_429s),
        "model-not-found": Case(["generate", "-m", "nobody/missing", "-s", ticket, PROMPT]),
        "model-not-found-stream": Case(["stream", "-m", "nobody/missing", "-s", ticket, PROMPT]),
        "model-forbidden": Case([*gen, PROMPT], prepare=forbidden),
        "bad-base-url": Case(["models"], server="none", env={"DOTTXT_BASE_URL": "ftp://example.org/v1"}),
        # usage errors: exit 2
        "no-model": Case(["generate", "-s", ticket, PROMPT]),
        # --json error envelopes
        "json-missing-schema": Case(["--json", *gen[:-1], files["missing"], PROMPT]),
        "json-rejected-key": Case(["--json", "models"], key="wrong-key"),
        "json-no-model": Case(["--json", "generate", "-s", ticket, PROMPT]),
        # --verbose
        "verbose-generate": Case(
            ["--verbose", *gen, PROMPT], key=SECRET, gateway_key=SECRET, prepare=retry_then_ticket
        ),
        "verbose-login": Case(["--verbose", "login"], key=SECRET, gateway_key=SECRET),
        "verbose-rejected": Case(["--verbose", "models"], key=SECRET),
        # the key never shows, even when the server echoes it back
        "echoed-key": Case(["models"], **secret, prepare=_echo_the_key_in_a_401),
        "echoed-key-json-login": Case(["--json", "login"], **secret, prepare=_echo_the_key_in_a_401),
        "echoed-key-verbose": Case(["--verbose", "models"], **secret, prepare=_echo_the_key_in_a_401),
        # login and logout: ~/.config (from HOME) when XDG_CONFIG_HOME is unset; a stored key is used
        "login-home": Case(["login"], key=None, gateway_key=SECRET, env={"XDG_CONFIG_HOME": None}, stdin=f"{SECRET}\n"),
        "login-json": Case(["--json", "login"]),
        "login-rejected-keeps-old": Case(["login"], key="sk-rejected-key", prepare=_store_key("the-key-stored-before")),
        "stored-key-verbose": Case(["--verbose", "models"], key=None, prepare=_store_key(TEST_KEY)),
        "logout-json-nothing-stored": Case(["--json", "logout"], server="none", key=None),
        # stream: prompt from stdin, model from DOTTXT_MODEL; a missing model is a usage error
        "stream-stdin": Case(
            ["stream", "-s", ticket], stdin=f"{PROMPT}\n", env={"DOTTXT_MODEL": MODEL}, prepare=_enqueue_ticket
        ),
        "stream-no-model": Case(["stream", "-s", ticket, PROMPT]),
        # offline commands keep working behind a proxy that cannot reach loopback
        "demo-behind-proxy": Case(
            ["demo", "--op-delay", "0.002"],
            server="none",
            key=None,
            env={"HTTP_PROXY": dead_proxy, "http_proxy": dead_proxy},
        ),
        "fake-gateway-busy-port": Case(["fake-gateway", "--port", str(busy_port)], server="none", key=None),
    }


def _run(case: Case) -> None:
    command = case.command or cli_command(*case.args)
    env = cli_env(case.root, key=case.key)
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    case.returncode, case.stdout, case.stderr = run_cli(command, env, case.stdin)


@pytest.fixture(scope="module")
def schema_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("schemas")
    files = {
        "ticket": json.dumps(TICKET_SCHEMA),
        "bad": json.dumps(BAD_SCHEMA),
        "not_json": '{"type": "object",\n  "properties": }\n',
        "array": "[1, 2, 3]",
    }
    paths = {}
    for name, text in files.items():
        path = root / f"{name}.json"
        path.write_text(text)
        paths[name] = str(path)
    (root / "a-directory.json").mkdir()
    paths["dir"] = str(root / "a-directory.json")
    paths["missing"] = str(root / "missing.json")
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, schema_files: dict[str, str]) -> Iterator[dict[str, Case]]:
    """Run every case at once, each with its own gateway and config directory; keep gateways for inspection."""
    gateways: list[FakeGateway] = []
    # A bound socket that never listens: connecting to it is refused, and no one else can take the port.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    busy = socket.socket()  # listening: a second server cannot bind its port
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
    cases = make_cases(schema_files, busy.getsockname()[1], dead_url)
    try:
        for name, case in cases.items():
            case.root = tmp_path_factory.mktemp(name)
            if case.server == "gateway":
                case.gw = FakeGateway(api_key=case.gateway_key, models=(MODEL, OTHER_MODEL))
                gateways.append(case.gw)
                case.env.setdefault("DOTTXT_BASE_URL", case.gw.base_url)
            elif case.server == "dead":
                case.env["DOTTXT_BASE_URL"] = f"{dead_url}/v1"
            if case.prepare is not None:
                case.prepare(case)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_run, cases.values()))
        yield cases
    finally:
        dead.close()
        busy.close()
        for gw in gateways:
            gw.close()


# --------------------------------------------------------------------------- assertions


def assert_clean_stderr(case: Case) -> None:
    assert "Traceback" not in case.stderr, case.stderr
    assert "Exception ignored" not in case.stderr, case.stderr


def assert_ok(case: Case) -> None:
    assert case.returncode == 0, case.stderr
    assert_clean_stderr(case)


def assert_error(case: Case, *fragments: str, stdout: str = "") -> str:
    """Exit 1, exactly one `dottxt: error: ...` line on stderr holding every fragment; returns the line."""
    assert case.returncode == 1, (case.returncode, case.stderr)
    assert_clean_stderr(case)
    assert case.stdout == stdout
    lines = case.stderr.splitlines()
    assert len(lines) == 1, case.stderr
    assert lines[0].startswith("dottxt: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def assert_json_error(case: Case, *fragments: str, code: int = 1) -> str:
    """Nothing on stdout; stderr is exactly one `{"error": {"message": ...}}` line."""
    assert case.returncode == code, (case.returncode, case.stderr)
    assert case.stdout == ""
    assert_clean_stderr(case)
    assert case.stderr.count("\n") == 1
    envelope = json.loads(case.stderr)
    assert list(envelope) == ["error"] and list(envelope["error"]) == ["message"]
    message: str = envelope["error"]["message"]
    for fragment in fragments:
        assert fragment in message
    return message


# --------------------------------------------------------------------------- start-up, help, usage


def test_version_prints_the_version_alone(runs: dict[str, Case]) -> None:
    assert_ok(runs["version"])
    assert runs["version"].stdout == f"{__version__}\n"  # as upstream's CLI prints it


def test_installed_console_script_runs(runs: dict[str, Case]) -> None:
    case = runs["script-version"]
    if not Path(case.command[0]).exists():  # type: ignore[index]
        pytest.skip("the dottxt console script is not installed next to this Python")
    assert_ok(case)
    assert case.stdout == f"{__version__}\n"


def test_help_lists_every_command(runs: dict[str, Case]) -> None:
    case = runs["help"]
    assert_ok(case)
    for command in ("login", "logout", "models", "generate", "stream", "schema", "demo", "fake-gateway"):
        assert command in case.stdout
    assert "--json" in case.stdout and "--verbose" in case.stdout


def test_version_and_help_import_nothing_heavy(runs: dict[str, Case]) -> None:
    case = runs["heavy-imports"]
    assert_ok(case)
    assert json.loads(case.stdout) == []


def test_no_command_prints_the_help_and_exits_0(runs: dict[str, Case]) -> None:
    case = runs["no-command"]
    assert_ok(case)
    assert case.stdout == runs["help"].stdout  # as upstream's CLI does


def test_an_unknown_command_is_a_usage_error(runs: dict[str, Case]) -> None:
    case = runs["unknown-command"]
    assert case.returncode == 2
    assert case.stdout == ""
    assert case.stderr.startswith("usage: dottxt")
    assert_clean_stderr(case)


def test_missing_model_is_a_usage_error(runs: dict[str, Case]) -> None:
    case = runs["no-model"]
    assert case.returncode == 2
    assert case.stdout == ""
    assert "usage: dottxt generate" in case.stderr
    assert "-m/--model" in case.stderr and "DOTTXT_MODEL" in case.stderr
    assert case.chat_requests() == []


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("models", f"{MODEL} * (default)\n{OTHER_MODEL}\n"),  # DOTTXT_MODEL is marked
        ("models-author", f"{OTHER_MODEL}\n"),  # --author filters by the part before the slash
    ],
)
def test_models_lists_ids_marks_the_default_and_filters_by_author(
    runs: dict[str, Case], name: str, expected: str
) -> None:
    assert_ok(runs[name])
    assert runs[name].stdout == expected


def test_models_json_gives_the_records_the_server_sent(runs: dict[str, Case]) -> None:
    case = runs["models-json"]
    assert_ok(case)
    assert case.gw is not None
    sent = requests.get(
        f"{case.gw.base_url}/models", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=TIMEOUT
    ).json()["data"]
    assert json.loads(case.stdout) == sent
    assert case.stdout.count("\n") == 1


# --------------------------------------------------------------------------- generate


def test_generate_prints_indented_json_and_sends_the_prompt(runs: dict[str, Case]) -> None:
    case = runs["generate"]
    assert_ok(case)
    assert case.stdout == json.dumps(TICKET, indent=2) + "\n"
    (request,) = case.chat_requests()
    assert request.json["model"] == MODEL
    assert request.json["messages"] == [{"role": "user", "content": PROMPT}]
    assert request.json["response_format"]["json_schema"]["schema"] == TICKET_SCHEMA


def test_generate_json_prints_one_line_with_upstreams_keys(runs: dict[str, Case]) -> None:
    case = runs["generate-json"]
    assert_ok(case)
    assert case.stdout.count("\n") == 1
    assert json.loads(case.stdout) == {
        "model": MODEL,
        "prompt": PROMPT,
        "schema_summary": {"type": "object", "keys": ["intent", "urgency", "reply"]},
        "result": TICKET,
    }


def test_generate_reads_the_prompt_from_stdin_and_the_model_from_env(runs: dict[str, Case]) -> None:
    case = runs["generate-stdin"]
    assert_ok(case)
    assert json.loads(case.stdout) == TICKET
    (request,) = case.chat_requests()
    assert request.json["model"] == MODEL
    assert request.json["messages"] == [{"role": "user", "content": PROMPT}]


def test_generate_passes_sampling_options(runs: dict[str, Case]) -> None:
    case = runs["generate-options"]
    assert_ok(case)
    (request,) = case.chat_requests()
    assert (request.json["temperature"], request.json["max_tokens"], request.json["seed"]) == (0.2, 500, 7)


# --------------------------------------------------------------------------- stream


def test_stream_prints_one_op_per_line_in_wire_order(runs: dict[str, Case]) -> None:
    case = runs["stream"]
    assert_ok(case)
    assert [json.loads(line) for line in case.stdout.splitlines()] == ops_from_document(TICKET)
    (request,) = case.chat_requests()
    assert request.json["stream"] == "patch"


def test_stream_cut_short_keeps_the_ops_received_and_fails(runs: dict[str, Case]) -> None:
    case = runs["stream-cut"]
    received = "".join(json.dumps(op) + "\n" for op in ops_from_document(TICKET)[:2])
    assert_error(case, "after 2 ops", stdout=received)


class HeldStream:
    """A RawServer handler: sends the first op, then holds the rest until the test calls release()."""

    def __init__(self, document: Any) -> None:
        self.ops = ops_from_document(document)
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()

    def __call__(self, conn: RawConnection) -> None:
        conn.head(200)
        conn.chunk(ndjson(self.ops[0]))
        if not self._release.wait(TIMEOUT):
            return
        for op in self.ops[1:]:
            conn.chunk(ndjson(op))
        conn.end()


@pytest.fixture
def held_stream(
    tmp_path: Path, schema_files: dict[str, str]
) -> Iterator[tuple[HeldStream, Callable[[], subprocess.Popen[bytes]]]]:
    """A server holding back every op after the first, and a function starting `dottxt stream` against it."""
    handler = HeldStream(TICKET)
    processes: list[subprocess.Popen[bytes]] = []
    with RawServer(handler) as server:

        def start() -> subprocess.Popen[bytes]:
            process = popen_cli(
                ["stream", "-m", MODEL, "-s", schema_files["ticket"], PROMPT],
                env=cli_env(tmp_path, base_url=server.base_url),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            processes.append(process)
            return process

        try:
            yield handler, start
        finally:
            handler.release()
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.communicate(timeout=TIMEOUT)
        assert server.errors == []


def test_stream_flushes_each_op_when_piped(
    held_stream: tuple[HeldStream, Callable[[], subprocess.Popen[bytes]]],
) -> None:
    handler, start = held_stream
    process = start()
    assert process.stdout is not None
    # The server has sent only the first op: it can only be read here if the CLI flushed it alone.
    first = read_line(process.stdout)
    assert json.loads(first) == handler.ops[0]
    handler.release()
    rest, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr
    assert [json.loads(line) for line in (first + rest).splitlines()] == handler.ops


def test_stream_ctrl_c_exits_130_quietly(held_stream: tuple[HeldStream, Callable[[], subprocess.Popen[bytes]]]) -> None:
    _, start = held_stream
    process = start()
    assert process.stdout is not None
    read_line(process.stdout)  # the stream is running and waiting for the next op
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130
    assert stderr == b""


def test_stream_into_a_closed_pipe_exits_quietly(
    held_stream: tuple[HeldStream, Callable[[], subprocess.Popen[bytes]]],
) -> None:
    handler, start = held_stream
    process = start()
    assert process.stdout is not None and process.stderr is not None
    read_line(process.stdout)  # like `| head -1`: read one line, then go away
    process.stdout.close()
    handler.release()  # the next op now arrives and its write hits the closed pipe
    stderr = process.stderr.read()
    process.wait(TIMEOUT)
    assert process.returncode == 141
    assert stderr == b""


# --------------------------------------------------------------------------- schema check


def test_schema_check_ok(runs: dict[str, Case], schema_files: dict[str, str]) -> None:
    assert_ok(runs["schema-check"])
    assert runs["schema-check"].stdout == f"ok: {schema_files['ticket']}\n"
    assert_ok(runs["schema-check-json"])
    assert json.loads(runs["schema-check-json"].stdout) == {"status": "ok", "schema_file": schema_files["ticket"]}


def test_schema_check_says_where_an_invalid_schema_fails(runs: dict[str, Case], schema_files: dict[str, str]) -> None:
    assert_error(runs["schema-check-invalid"], schema_files["bad"], "properties/age/type", "integr")
    assert_json_error(runs["schema-check-invalid-json"], "properties/age/type")


# --------------------------------------------------------------------------- login / logout


def test_login_from_env_stores_the_key_private(runs: dict[str, Case]) -> None:
    case = runs["login-env"]
    assert_ok(case)
    assert json.loads(case.credentials.read_text()) == {"api_key": TEST_KEY}
    assert stat.S_IMODE(case.credentials.stat().st_mode) == 0o600
    assert str(case.credentials) in case.stdout
    assert TEST_KEY not in case.stdout + case.stderr


def test_login_with_a_rejected_key_stores_nothing(runs: dict[str, Case]) -> None:
    case = runs["login-rejected"]
    assert_error(case, "rejected", "401", "nothing was stored")
    assert not case.credentials.exists()
    assert "wrong-key" not in case.stderr


def test_login_from_stdin_then_commands_use_the_stored_key_until_logout(tmp_path: Path, gateway: FakeGateway) -> None:
    def run(*args: str, key: str | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = cli_env(tmp_path, key=key, base_url=gateway.base_url)
        return subprocess.run(cli_command(*args), input=stdin, capture_output=True, text=True, env=env, timeout=TIMEOUT)

    credentials = tmp_path / "config" / "dottxt" / "credentials.json"
    login = run("login", stdin=f"{TEST_KEY}\n")
    assert login.returncode == 0, login.stderr
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    models = run("models")  # no DOTTXT_API_KEY: the stored key is used
    assert (models.returncode, models.stdout) == (0, f"{MODEL}\n"), models.stderr
    first = run("logout")
    assert first.returncode == 0 and "deleted" in first.stdout
    assert not credentials.exists()
    second = run("logout")
    assert second.returncode == 0 and "no key was stored" in second.stdout
    after = run("models")
    assert after.returncode == 1 and "no API key" in after.stderr


# --------------------------------------------------------------------------- bad input: one line, exit 1


def test_missing_schema_file(runs: dict[str, Case], schema_files: dict[str, str]) -> None:
    assert_error(runs["missing-schema"], "schema file not found", schema_files["missing"])


def test_unreadable_schema_file(runs: dict[str, Case], schema_files: dict[str, str]) -> None:
    assert_error(runs["schema-is-dir"], schema_files["dir"], "directory")


def test_schema_file_with_invalid_json(runs: dict[str, Case], schema_files: dict[str, str]) -> None:
    assert_error(runs["schema-not-json"], schema_files["not_json"], "not valid JSON", "line 2")


def test_schema_file_holding_no_object(runs: dict[str, Case]) -> None:
    assert_error(runs["schema-not-object"], "holds an array")


def test_generate_with_an_invalid_schema_says_where(runs: dict[str, Case]) -> None:
    assert_error(runs["schema-invalid"], "properties/age/type")
    assert runs["schema-invalid"].chat_requests() == []


@pytest.mark.parametrize("name", ["no-prompt", "blank-prompt"])
def test_no_prompt(runs: dict[str, Case], name: str) -> None:
    assert_error(runs[name], "prompt", "empty")
    assert runs[name].chat_requests() == []


def test_no_api_key(runs: dict[str, Case]) -> None:
    assert_error(runs["no-key"], "no API key", "DOTTXT_API_KEY", "dottxt login")


def test_unreachable_server(runs: dict[str, Case]) -> None:
    case = runs["unreachable"]
    assert_error(case, "cannot reach the API", case.env["DOTTXT_BASE_URL"])


def test_rejected_key(runs: dict[str, Case]) -> None:
    assert_error(runs["rejected-key"], "rejected", "401", "dottxt login")


def test_rate_limited_after_retries(runs: dict[str, Case]) -> None:
    case = runs["rate-limited"]
    assert_error(case, "rate limited", "429")
    assert len(case.chat_requests()) == 3  # the first try and two retries


@pytest.mark.parametrize("name", ["model-not-found", "model-not-found-stream", "model-forbidden"])
def test_unusable_model_says_how_to_pick_one(runs: dict[str, Case], name: str) -> None:
    assert_error(runs[name], "not available", "dottxt models", "DOTTXT_MODEL", "--model")


def test_malformed_base_url(runs: dict[str, Case]) -> None:
    assert_error(runs["bad-base-url"], "ftp://example.org/v1")


# --------------------------------------------------------------------------- --json errors


def test_json_errors_go_to_stderr_as_an_envelope(runs: dict[str, Case], schema_files: dict[str, str]) -> None:
    assert_json_error(runs["json-missing-schema"], "schema file not found", schema_files["missing"])
    assert_json_error(runs["json-rejected-key"], "401")
    assert_json_error(runs["json-no-model"], "-m/--model", code=2)


# --------------------------------------------------------------------------- --verbose


def test_verbose_explains_on_stderr_and_never_shows_the_key(runs: dict[str, Case]) -> None:
    case = runs["verbose-generate"]
    assert_ok(case)
    assert case.stdout == runs["generate"].stdout  # stdout is unchanged by --verbose
    assert case.gw is not None
    assert case.gw.base_url in case.stderr
    assert f"model: {MODEL}" in case.stderr
    assert "retrying" in case.stderr
    assert re.search(r"generated in \d+ ms", case.stderr)
    for name in ("verbose-generate", "verbose-login", "verbose-rejected"):
        assert SECRET not in runs[name].stdout + runs[name].stderr, name
    assert runs["verbose-login"].returncode == 0
    assert runs["verbose-rejected"].returncode == 1


# --------------------------------------------------------------------------- demo and fake-gateway


def test_demo_prints_each_field_with_its_time_then_the_lead(runs: dict[str, Case]) -> None:
    case = runs["demo"]
    assert_ok(case)
    rows = re.findall(r"^\s+(intent|urgency|reply)\s+(.+?)\s+(\d+) ms$", case.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["intent", "urgency", "reply"]
    assert [row[1] for row in rows[:2]] == ["billing", "high"]
    times = [int(row[2]) for row in rows]
    assert times == sorted(times)
    match = re.search(r"^Routing was decided (\d+) ms before the reply landed", case.stdout, re.MULTILINE)
    assert match is not None, case.stdout
    assert int(match.group(1)) == times[2] - times[0]
    last = case.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("Next: ") and len(last) <= 80, "the last line suggests a next step and fits 80 columns"


def test_demo_json_gives_one_record_per_field_then_a_summary(runs: dict[str, Case]) -> None:
    case = runs["demo-json"]
    assert_ok(case)
    *fields, summary = [json.loads(line) for line in case.stdout.splitlines()]
    assert [f["field"] for f in fields] == ["intent", "urgency", "reply"]
    assert summary["lead_ms"] == fields[2]["ms"] - fields[0]["ms"]


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start `dottxt ARGS` (a server); yield it and the first line it prints. Killed if it outlives the block."""
    process = popen_cli(args, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        yield process, read_line(process.stdout).decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_fake_gateway_serves_until_ctrl_c(tmp_path: Path) -> None:
    with serving(["fake-gateway", "--api-key", SECRET], cli_env(tmp_path, key=None)) as (process, first):
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", first)
        assert match is not None, first
        base_url = match.group(1)
        with DotTxt(api_key=SECRET, base_url=base_url, max_retries=0) as client:
            assert [model.id for model in client.models.list()] == [MODEL, "openai/gpt-oss-20b"], "the docs' model too"
        with DotTxt(api_key="wrong", base_url=base_url, max_retries=0) as client:
            with pytest.raises(AuthenticationError):
                client.models.list()
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=TIMEOUT)
    output = first + rest.decode()
    assert process.returncode == 130
    assert f"export DOTTXT_BASE_URL={base_url}" in output
    assert SECRET not in output
    assert b"Traceback" not in stderr


# --------------------------------------------------------------------------- the key, login and logout, stream, offline


def test_a_key_the_server_echoes_back_is_not_printed(runs: dict[str, Case]) -> None:
    line = assert_error(runs["echoed-key"], "rejected", "401")
    assert SECRET not in line


def test_a_key_the_server_echoes_back_is_not_in_the_json_error(runs: dict[str, Case]) -> None:
    run = runs["echoed-key-json-login"]
    assert (run.returncode, run.stdout) == (1, "")
    message = json.loads(run.stderr)["error"]["message"]
    assert "rejected" in message and "nothing was stored" in message
    assert SECRET not in run.stderr
    assert not run.credentials.exists()


def test_verbose_does_not_show_a_key_the_server_echoes_back(runs: dict[str, Case]) -> None:
    run = runs["echoed-key-verbose"]
    assert run.returncode == 1
    assert "rejected" in run.stderr
    assert SECRET not in run.stdout + run.stderr


def test_login_without_xdg_config_home_stores_under_home_dot_config(runs: dict[str, Case]) -> None:
    run = runs["login-home"]
    assert run.returncode == 0, run.stderr
    assert json.loads(run.home_credentials.read_text()) == {"api_key": SECRET}
    assert stat.S_IMODE(run.home_credentials.stat().st_mode) == 0o600
    assert str(run.home_credentials) in run.stdout
    assert SECRET not in run.stdout + run.stderr


def test_the_key_stored_by_login_is_used_by_the_sdk(runs: dict[str, Case], monkeypatch: pytest.MonkeyPatch) -> None:
    run = runs["login-home"]
    assert run.home_credentials.exists(), run.stderr
    for name in ("DOTTXT_API_KEY", "DOTTXT_BASE_URL", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(run.root / "home"))
    strict = FakeGateway(api_key=SECRET)  # accepts only the stored key
    with strict, DotTxt(base_url=strict.base_url, max_retries=0) as client:
        assert [model.id for model in client.models.list()] == [MODEL]
    assert strict.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"


def test_login_json_reports_where_the_key_went(runs: dict[str, Case]) -> None:
    run = runs["login-json"]
    assert run.returncode == 0, run.stderr
    expected = {"status": "ok", "path": str(run.credentials), "source": "env", "models_available": 2}
    assert json.loads(run.stdout) == expected
    assert run.stderr == ""


def test_a_rejected_key_leaves_the_stored_one_alone(runs: dict[str, Case]) -> None:
    run = runs["login-rejected-keeps-old"]
    assert_error(run, "rejected", "nothing was stored")
    assert json.loads(run.credentials.read_text()) == {"api_key": "the-key-stored-before"}


def test_commands_use_the_stored_key_and_verbose_says_where_it_came_from(runs: dict[str, Case]) -> None:
    run = runs["stored-key-verbose"]
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{MODEL}\n{OTHER_MODEL}\n"
    assert str(run.credentials) in run.stderr
    assert TEST_KEY not in run.stdout + run.stderr


def test_logout_with_nothing_stored_succeeds(runs: dict[str, Case]) -> None:
    run = runs["logout-json-nothing-stored"]
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"status": "ok", "removed": False, "path": str(run.credentials)}


def test_login_asks_with_a_hidden_prompt_when_stdin_is_a_terminal(tmp_path: Path, gateway: FakeGateway) -> None:
    env = cli_env(tmp_path, key=None, base_url=gateway.base_url)
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


def test_stream_reads_the_prompt_from_stdin_and_the_model_from_env(runs: dict[str, Case]) -> None:
    run = runs["stream-stdin"]
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()] == ops_from_document(TICKET)
    (chat,) = run.chat_requests()
    assert chat.json["model"] == MODEL
    assert chat.json["messages"] == [{"role": "user", "content": PROMPT}]


def test_stream_without_a_model_is_a_usage_error(runs: dict[str, Case]) -> None:
    run = runs["stream-no-model"]
    assert (run.returncode, run.stdout) == (2, "")
    assert "-m/--model" in run.stderr
    assert run.chat_requests() == []


def test_demo_needs_no_network_even_with_a_proxy_configured(runs: dict[str, Case]) -> None:
    run = runs["demo-behind-proxy"]
    assert run.returncode == 0, run.stderr
    fields = re.findall(r"^\s+(intent|urgency|reply)\s+.+?\s+\d+ ms$", run.stdout, re.MULTILINE)
    assert fields == ["intent", "urgency", "reply"]


def test_fake_gateway_on_a_busy_port_is_an_error(runs: dict[str, Case]) -> None:
    assert_error(runs["fake-gateway-busy-port"], "in use")


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
    process = _start_ignoring_sigint(["--json", "fake-gateway"], cli_env(tmp_path, key=None))
    try:
        assert process.stdout is not None
        info = json.loads(read_line(process.stdout))
        with DotTxt(api_key="anything", base_url=info["base_url"], max_retries=0) as client:
            assert [model.id for model in client.models.list()] == [MODEL, "openai/gpt-oss-20b"]
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
    args = ["fake-gateway", "--host", "127.0.0.1", "--port", str(port), "--op-delay", str(delay)]
    with serving(args, cli_env(tmp_path, key=None)) as (process, first):
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
    assert process.returncode == 130
