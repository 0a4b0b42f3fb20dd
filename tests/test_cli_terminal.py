"""The CLI for a person at a terminal: the live `stream` view and `generate`'s elapsed time under a real
pseudo-terminal, op lines unchanged through pipes, `--record`, `-s` in its three forms, `--system`."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dottxt.testing import FakeGateway, ops_from_document
from tests.clitools import TIMEOUT, cli_command, run_cli
from tests.conftest import MODEL, TEST_KEY
from tests.test_cli import cli_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TICKET_SCHEMA = str(EXAMPLES / "ticket.json")
TRIAGE = {"intent": "billing", "urgency": "high", "reply": "Sorry about the double charge; it is refunded."}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway(api_key=TEST_KEY) as gateway:
        yield gateway


def _env(tmp_path: Path, gateway: FakeGateway) -> dict[str, str]:
    env = cli_env(tmp_path, base_url=gateway.base_url)
    env.update(DOTTXT_MODEL=MODEL, COLUMNS="80", LINES="24")
    env.pop("NO_COLOR", None)
    return env


def _read_all(fd: int) -> bytes:
    """Everything written to the terminal until the other side is closed (EIO on Linux)."""
    data = b""
    while True:
        try:
            piece = os.read(fd, 65536)
        except OSError:
            return data
        if not piece:
            return data
        data += piece


def run_on_terminal(args: list[str], env: dict[str, str], *, stdout_tty: bool = True) -> tuple[int, str, str]:
    """Run `dottxt ARGS` with stderr (and stdout, when `stdout_tty`) on a pseudo-terminal.

    Returns (exit status, what the terminal showed, what a piped stdout got).
    """
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            cli_command(*args),
            stdin=subprocess.DEVNULL,
            stdout=terminal if stdout_tty else subprocess.PIPE,
            stderr=terminal,
            env=env,
        )
    finally:
        os.close(terminal)
    try:
        screen = _read_all(controller)
        piped = process.stdout.read() if process.stdout is not None else b""
        process.wait(TIMEOUT)
    finally:
        os.close(controller)
        if process.stdout is not None:
            process.stdout.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, screen.decode(), piped.decode()


def settled_lines(screen: str) -> list[str]:
    """The lines a person sees once the stream is over: status-line redraws and styling removed."""
    lines = []
    for line in screen.replace("\r\n", "\n").split("\n"):
        line = line.rsplit("\r\x1b[2K", 1)[-1]  # what was drawn after the last erase of this line
        lines.append(_ANSI.sub("", line).rstrip())
    return [line for line in lines if line]


def test_stream_on_a_terminal_shows_each_field_as_it_arrives_then_the_result(tmp_path: Path, gw: FakeGateway) -> None:
    gw.enqueue(TRIAGE)
    status, screen, _ = run_on_terminal(["stream", "-s", TICKET_SCHEMA, "I was charged twice"], _env(tmp_path, gw))
    assert status == 0, screen
    lines = settled_lines(screen)
    rows = [re.match(r"^  (\w+)\s+(.+?)\s+(\d+) ms$", line) for line in lines[:3]]
    assert [row and row.group(1) for row in rows] == ["intent", "urgency", "reply"], lines
    assert [row and row.group(2) for row in rows[:2]] == ["billing", "high"]
    times = [int(row.group(3)) for row in rows if row]
    assert times == sorted(times)
    assert lines[3].startswith("-- 3 fields in ") and "matches the schema" in lines[3]
    assert json.loads("\n".join(lines[4:])) == TRIAGE
    assert '"op"' not in screen, "no op lines on a terminal"
    assert len(max(lines, key=len)) <= 80 or lines.index(max(lines, key=len)) > 3, "field rows fit the terminal"


def test_stream_shows_it_is_waiting_before_the_first_field(tmp_path: Path, gw: FakeGateway) -> None:
    gw.enqueue(TRIAGE)
    status, screen, _ = run_on_terminal(["stream", "-s", TICKET_SCHEMA, "hello"], _env(tmp_path, gw))
    assert status == 0, screen
    first_drawn = _ANSI.sub("", screen.split("\r\x1b[2K")[1])
    assert first_drawn.startswith("waiting for the first field 0.")


def test_stream_ndjson_on_a_terminal_and_through_a_pipe_prints_the_ops_unchanged(
    tmp_path: Path, gw: FakeGateway
) -> None:
    env = _env(tmp_path, gw)
    expected = [json.dumps(op) for op in ops_from_document(TRIAGE)]
    gw.enqueue(TRIAGE)
    status, screen, _ = run_on_terminal(["stream", "--ndjson", "-s", TICKET_SCHEMA, "hi"], env)
    assert status == 0, screen
    assert screen.replace("\r\n", "\n").splitlines() == expected
    gw.enqueue(TRIAGE)
    status, stdout, stderr = run_cli(cli_command("stream", "-s", TICKET_SCHEMA, "hi"), env, None)
    assert (status, stderr) == (0, "")
    assert stdout.splitlines() == expected


def test_generate_shows_elapsed_time_on_a_terminal_stderr_only(tmp_path: Path, gw: FakeGateway) -> None:
    env = _env(tmp_path, gw)
    gw.enqueue(TRIAGE)
    status, screen, stdout = run_on_terminal(["generate", "-s", TICKET_SCHEMA, "hi"], env, stdout_tty=False)
    assert status == 0, screen
    assert json.loads(stdout) == TRIAGE, "stdout holds the result alone"
    assert _ANSI.sub("", screen.split("\r\x1b[2K")[1]).startswith("generating 0.")
    assert screen.endswith("\r\x1b[2K"), "the status line is erased when the answer is in"
    gw.enqueue(TRIAGE)
    status, stdout, stderr = run_cli(cli_command("generate", "-s", TICKET_SCHEMA, "hi"), env, None)
    assert (status, stderr, json.loads(stdout)) == (0, "", TRIAGE), "nothing on a stderr that is not a terminal"


def test_record_writes_every_op_with_its_time_and_replay_plays_it_back(tmp_path: Path, gw: FakeGateway) -> None:
    recording = tmp_path / "run.jsonl"
    gw.enqueue(TRIAGE)
    args = ["stream", "-s", TICKET_SCHEMA, "--record", str(recording), "I was charged twice"]
    status, stdout, stderr = run_cli(cli_command(*args), _env(tmp_path, gw), None)
    assert (status, stderr) == (0, "")
    entries = [json.loads(line) for line in recording.read_text().splitlines()]
    assert [entry["op"] for entry in entries] == [json.loads(line) for line in stdout.splitlines()]
    times = [entry["ms"] for entry in entries]
    assert times == sorted(times) and times[0] >= 0

    gw.replay(str(recording))
    gw.replay(str(recording))
    replay_status, replayed, _ = run_cli(cli_command("stream", "-s", TICKET_SCHEMA, "other"), _env(tmp_path, gw), None)
    assert replay_status == 0
    assert replayed == stdout, "the replayed stream is the recorded one, op for op"
    status, generated, _ = run_cli(cli_command("generate", "-s", TICKET_SCHEMA, "other"), _env(tmp_path, gw), None)
    assert json.loads(generated) == TRIAGE, "a plain request gets the document the recording builds"


def test_replay_refuses_a_file_that_is_not_a_recording(tmp_path: Path, gw: FakeGateway) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ms": 1, "op": {"op": "add", "path": "", "value": {}}}\n{"op": "add"}\n')
    with pytest.raises(ValueError, match="line 2"):
        gw.replay(str(bad))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "intent, urgency, reply",
            {
                "type": "object",
                "properties": {
                    "intent": {"type": "string"},
                    "urgency": {"type": "string"},
                    "reply": {"type": "string"},
                },
                "required": ["intent", "urgency", "reply"],
            },
        ),
        (
            "name, age int, bio: one sentence",
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer"},
                    "bio": {"type": "string", "description": "one sentence"},
                },
                "required": ["name", "age", "bio"],
            },
        ),
        (
            "score float: from 0 to 1, with decimals\nok bool\n",
            {
                "type": "object",
                "properties": {
                    "score": {"type": "number", "description": "from 0 to 1, with decimals"},
                    "ok": {"type": "boolean"},
                },
                "required": ["score", "ok"],
            },
        ),
        ('{"type": "object", "properties": {"a": {"type": "integer"}}}', None),
        (TICKET_SCHEMA, None),
    ],
    ids=["commas", "types-and-description", "newlines", "inline-json", "file"],
)
def test_schema_show_prints_what_each_form_of_s_makes(tmp_path: Path, spec: str, expected: object) -> None:
    status, stdout, stderr = run_cli(cli_command("--json", "schema", "show", spec), cli_env(tmp_path), None)
    assert (status, stderr) == (0, "")
    if expected is None:
        expected = json.loads(Path(spec).read_text() if spec == TICKET_SCHEMA else spec)
    assert json.loads(stdout) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("age integer", "unknown type 'integer'"),
        ("name, name", "given twice"),
        ("name, 2fast", "cannot read the field '2fast'"),
        ("missing.json", "schema file not found: missing.json"),
        ('{"type": ', "the inline schema is not valid JSON"),
        (",", "no fields given"),
    ],
)
def test_a_bad_schema_argument_is_one_line_naming_the_problem(tmp_path: Path, spec: str, message: str) -> None:
    status, stdout, stderr = run_cli(cli_command("schema", "show", spec), cli_env(tmp_path), None)
    assert (status, stdout) == (1, "")
    assert stderr.startswith("dottxt: error: ") and stderr.count("\n") == 1
    assert message in stderr


def test_concise_schema_and_system_message_reach_the_gateway(tmp_path: Path, gw: FakeGateway) -> None:
    args = ["generate", "-s", "intent, urgency int", "--system", "You triage tickets.", "My app crashes"]
    status, stdout, stderr = run_cli(cli_command(*args), _env(tmp_path, gw), None)
    assert (status, stderr) == (0, "")
    body = gw.requests[-1].json
    assert body["messages"] == [
        {"role": "system", "content": "You triage tickets."},
        {"role": "user", "content": "My app crashes"},
    ]
    assert body["response_format"]["json_schema"]["schema"]["properties"]["urgency"] == {"type": "integer"}
    assert isinstance(json.loads(stdout)["urgency"], int)


def test_batch_takes_the_concise_syntax_too(tmp_path: Path, gw: FakeGateway) -> None:
    inputs, outputs = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text('{"input": "I was charged twice"}\n')
    args = ["batch", "-s", "intent, reply", "-o", str(outputs), str(inputs)]
    status, _, stderr = run_cli(cli_command(*args), _env(tmp_path, gw), None)
    assert status == 0, stderr
    assert set(json.loads(outputs.read_text().splitlines()[0])["result"]) == {"intent", "reply"}


def test_verbose_times_agree_with_the_durations_they_report(tmp_path: Path, gw: FakeGateway) -> None:
    gw.enqueue(TRIAGE)
    status, _, stderr = run_cli(
        cli_command("--verbose", "generate", "-s", TICKET_SCHEMA, "hi"), _env(tmp_path, gw), None
    )
    assert status == 0, stderr
    sent = re.search(r"\[\s*(\d+) ms\] sending the request", stderr)
    done = re.search(r"\[\s*(\d+) ms\] generated in (\d+) ms", stderr)
    assert sent and done, stderr
    assert abs(int(done.group(1)) - int(sent.group(1)) - int(done.group(2))) <= 2, stderr
