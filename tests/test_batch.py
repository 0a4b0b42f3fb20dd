"""generate_many and `dottxt batch` against loopback servers: the cap on requests at once, 429s, failing inputs,
leaving the loop early, resuming, Ctrl-C, and pickling a client.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dottxt import BadRequestError, BatchItem, DotTxt, InvalidOutputError, InvalidSchemaError, RateLimitError
from dottxt.cli import main
from dottxt.testing import FakeGateway
from tests.conftest import TEST_KEY
from tests.rawserver import RawConnection, RawServer
from tests.test_cli import cli_env, popen_cli

MODEL = "dottxt/fake-model"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"echo": {"type": "string"}},
    "required": ["echo"],
    "additionalProperties": False,
}
HOLD_LIMIT = 10.0  # an upper bound only: a held request waits at most this long if the test is broken


def prompt_of(conn: RawConnection) -> str:
    """The last user message of a chat request."""
    return str(conn.json["messages"][-1]["content"])


def reply(conn: RawConnection, status: int = 200, payload: Any = None, headers: dict[str, str] | None = None) -> None:
    """A whole JSON response; the connection closes after it."""
    body = json.dumps(payload).encode()
    conn.head(
        status, {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}, chunked=False
    )
    conn.send(body)


def answer(conn: RawConnection, content: str | None = None) -> None:
    """A chat completion whose content echoes the prompt (or is `content`)."""
    text = json.dumps({"echo": prompt_of(conn)}) if content is None else content
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    reply(conn, payload={"id": "c", "object": "chat.completion", "created": 0, "model": MODEL, "choices": [choice]})


def too_many(conn: RawConnection, retry_after: str) -> None:
    reply(conn, 429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": retry_after})


@dataclass
class Traffic:
    """What a server saw, in order: ("arrive"|"answer"|"429", prompt, requests in flight, time.monotonic())."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    events: list[tuple[str, str, int, float]] = field(default_factory=list)
    in_flight: int = 0
    arrived: int = 0

    def arrive(self, conn: RawConnection) -> int:
        """Record an arrival; returns its 0-based arrival number."""
        with self.cond:
            self.in_flight += 1
            self.arrived += 1
            self.events.append(("arrive", prompt_of(conn), self.in_flight, time.monotonic()))
            self.cond.notify_all()
            return self.arrived - 1

    def leave(self, conn: RawConnection, kind: str = "answer") -> None:
        """Record a request's end, before its response is sent (so the client never sees fewer in flight)."""
        with self.cond:
            self.in_flight -= 1
            self.events.append((kind, prompt_of(conn), self.in_flight, time.monotonic()))
            self.cond.notify_all()

    def wait_for_arrivals(self, n: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.arrived >= n, HOLD_LIMIT)

    @property
    def peak(self) -> int:
        return max((in_flight for kind, _, in_flight, _ in self.events if kind == "arrive"), default=0)

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event[0] == kind)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[RawConnection], None]], DotTxt]]:
    """Start a RawServer with a handler and give a client of it (max_retries=0); both closed after the test."""
    opened: list[tuple[RawServer, DotTxt]] = []

    def start(handler: Callable[[RawConnection], None], max_retries: int = 0) -> DotTxt:
        server = RawServer(handler)
        client = DotTxt(api_key=TEST_KEY, base_url=server.base_url, max_retries=max_retries)
        opened.append((server, client))
        return client

    yield start
    for server, client in opened:
        client.close()
        server.close()
        assert not server.errors, server.errors


def run(client: DotTxt, inputs: Any, **options: Any) -> list[BatchItem]:
    return list(client.generate_many(inputs, model=MODEL, response_format=SCHEMA, **options))


# --------------------------------------------------------------------------- generate_many


def test_concurrency_cap_holds_and_is_reached(serve: Any) -> None:
    """Each request is held until its whole wave of `cap` has arrived: the server sees exactly `cap` at once."""
    cap, waves = 4, 3
    traffic = Traffic()

    def handler(conn: RawConnection) -> None:
        number = traffic.arrive(conn)
        traffic.wait_for_arrivals((number // cap + 1) * cap)
        traffic.leave(conn)
        answer(conn)

    client = serve(handler)
    prompts = [f"p{i}" for i in range(cap * waves)]
    items = run(client, prompts, concurrency=cap)
    assert traffic.peak == cap
    assert sorted(item.index for item in items) == list(range(len(prompts)))
    assert all(item.ok and item.value == {"echo": item.input} and item.input == prompts[item.index] for item in items)


def test_items_come_in_completion_order(serve: Any) -> None:
    """ "slow" is held until "third" arrives, which is sent only once "fast" is finished (2 at once at most)."""
    third_arrived = threading.Event()

    def handler(conn: RawConnection) -> None:
        if prompt_of(conn) == "slow":
            third_arrived.wait(HOLD_LIMIT)
        elif prompt_of(conn) == "third":
            third_arrived.set()
        answer(conn)

    items = run(serve(handler), ["slow", "fast", "third"], concurrency=2)
    order = [item.input for item in items]
    assert order[0] == "fast" and sorted(order[1:]) == ["slow", "third"]
    assert [item.index for item in items] == [["slow", "fast", "third"].index(text) for text in order]


def test_a_failing_input_is_one_error_item_and_the_rest_succeed(serve: Any) -> None:
    def handler(conn: RawConnection) -> None:
        prompt = prompt_of(conn)
        if prompt == "refused":
            reply(conn, 400, {"error": {"message": "no such thing"}})
        elif prompt == "garbled":
            answer(conn, content='{"echo": ')
        else:
            answer(conn)

    prompts = ["a", "refused", "b", "garbled", "c"]
    items = {item.index: item for item in run(serve(handler), prompts, concurrency=3)}
    assert len(items) == len(prompts)
    assert isinstance(items[1].error, BadRequestError) and items[1].value is None
    assert isinstance(items[3].error, InvalidOutputError)
    assert [items[i].value for i in (0, 2, 4)] == [{"echo": "a"}, {"echo": "b"}, {"echo": "c"}]


def test_429s_lower_the_concurrency_honour_retry_after_and_the_run_completes(serve: Any) -> None:
    """The first wave of 4 all get 429 (Retry-After 0.2 s): nothing is sent for 0.2 s, then at most 2 at once."""
    cap, retry_after = 4, 0.2
    traffic = Traffic()

    def handler(conn: RawConnection) -> None:
        number = traffic.arrive(conn)
        if number < cap:
            traffic.wait_for_arrivals(cap)  # the whole first wave is in flight, then all of it is refused
            traffic.leave(conn, "429")
            too_many(conn, str(retry_after))
            return
        time.sleep(0.05)  # the server's fixed latency, so requests overlap when the client lets them
        traffic.leave(conn)
        answer(conn)

    prompts = [f"p{i}" for i in range(12)]
    items = run(serve(handler), prompts, concurrency=cap)
    assert sorted(item.index for item in items) == list(range(12)) and all(item.ok for item in items)
    assert traffic.count("429") == cap and traffic.count("answer") == 12
    last_429 = max(t for kind, _, _, t in traffic.events if kind == "429")
    after = [event for event in traffic.events if event[3] > last_429]
    assert after[0][0] == "arrive" and after[0][3] - last_429 >= retry_after
    first_answer = next(i for i, event in enumerate(after) if event[0] == "answer")
    assert [kind for kind, *_ in after[:first_answer]] == ["arrive", "arrive"]  # the window was halved: 4 -> 2


def test_an_input_rate_limited_every_time_ends_as_an_error(serve: Any) -> None:
    sent: list[str] = []

    def handler(conn: RawConnection) -> None:
        sent.append(prompt_of(conn))
        too_many(conn, "0")

    items = run(serve(handler), ["a", "b"], concurrency=2)
    assert sorted(item.index for item in items) == [0, 1]
    assert all(isinstance(item.error, RateLimitError) for item in items)
    assert sent.count("a") == sent.count("b") > 1  # sent again by the batch before it gave up


def test_a_429_absorbed_by_the_transports_retry_never_reaches_the_batch(serve: Any) -> None:
    seen: list[str] = []

    def handler(conn: RawConnection) -> None:
        seen.append(prompt_of(conn))
        if len(seen) == 1:
            too_many(conn, "0")
        else:
            answer(conn)

    items = run(serve(handler, max_retries=2), ["only"])
    assert [item.value for item in items] == [{"echo": "only"}] and len(seen) == 2


def test_breaking_out_stops_new_requests_interrupts_those_in_flight_and_ends_every_thread(serve: Any) -> None:
    traffic = Traffic()
    pulled = 0

    def handler(conn: RawConnection) -> None:
        traffic.arrive(conn)
        if prompt_of(conn) in ("p0", "after"):
            traffic.wait_for_arrivals(4)  # p0 is answered once p1-p3 are in flight too
            traffic.leave(conn)
            answer(conn)
        else:
            traffic.leave(conn, "gone" if conn.wait_for_disconnect(HOLD_LIMIT) else "held too long")

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield f"p{pulled - 1}"

    client = serve(handler)
    for item in client.generate_many(endless(), model=MODEL, response_format=SCHEMA, concurrency=4):
        assert item.input == "p0"
        break
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("dottxt-batch")]
    assert pulled <= 4 + 1  # the window's worth, plus the one that finished
    with traffic.cond:
        traffic.cond.wait_for(lambda: traffic.in_flight == 0, HOLD_LIMIT)
    assert traffic.count("held too long") == 0 and traffic.count("gone") == traffic.arrived - 1 > 0
    pulled_at_break = pulled
    assert run(client, ["after"])[0].value == {"echo": "after"}  # the client still works
    assert pulled == pulled_at_break


def test_an_error_in_the_inputs_iterable_is_raised_to_the_loop(serve: Any) -> None:
    def inputs() -> Iterator[str]:
        yield "a"
        raise LookupError("the source broke")

    client = serve(answer)
    with pytest.raises(LookupError, match="the source broke"):
        run(client, inputs(), concurrency=1)


def test_system_message_comes_first_and_arguments_are_checked_before_anything_is_sent(serve: Any) -> None:
    bodies: list[Any] = []

    def handler(conn: RawConnection) -> None:
        bodies.append(conn.json)
        answer(conn)

    client = serve(handler)
    run(client, ["hi"], system="be brief", seed=7, temperature=0.5)
    assert bodies[0]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (bodies[0]["seed"], bodies[0]["temperature"]) == (7, 0.5)
    with pytest.raises(ValueError):
        client.generate_many(["x"], model=MODEL, response_format=SCHEMA, concurrency=0)
    with pytest.raises(InvalidSchemaError):
        client.generate_many(["x"], model=MODEL, response_format=[1, 2])
    assert len(bodies) == 1


def test_a_pickled_client_keeps_its_configuration_and_makes_its_own_connections(gateway: FakeGateway) -> None:
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, timeout=(2.0, 5.0), max_retries=1) as client:
        copy = pickle.loads(pickle.dumps(client))
    with copy:
        assert (copy.base_url, copy.timeout, copy.max_retries) == (gateway.base_url, (2.0, 5.0), 1)
        items = list(copy.generate_many(["a", "b"], model=MODEL, response_format=SCHEMA))
    assert sorted(item.index for item in items) == [0, 1] and all(item.ok for item in items)
    assert "test-key" not in repr(copy)


# --------------------------------------------------------------------------- dottxt batch


@pytest.fixture
def folder(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """For in-process `dottxt batch` runs against the gateway: a folder holding schema.json."""
    monkeypatch.setenv("DOTTXT_BASE_URL", gateway.base_url)
    monkeypatch.setenv("DOTTXT_API_KEY", TEST_KEY)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    return tmp_path


def write_lines(path: Path, *values: Any) -> None:
    """One JSON value per line (a string is a prompt line)."""
    path.write_text("".join(json.dumps(value) + "\n" for value in values))


def read_output(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def batch_args(folder: Path, *extra: str, model: str = MODEL) -> list[str]:
    files = [str(folder / "in.jsonl"), "-o", str(folder / "out.jsonl")]
    return ["batch", "-m", model, "-s", str(folder / "schema.json"), *files, *extra]


def test_batch_writes_one_line_per_input_and_exits_0(folder: Path, gateway: FakeGateway) -> None:
    third = {"input": [{"role": "user", "content": "third"}]}
    write_lines(folder / "in.jsonl", "first prompt", {"id": "two", "input": "second"}, third)
    assert main(batch_args(folder, "--concurrency", "2")) == 0
    lines = read_output(folder / "out.jsonl")
    assert sorted(str(line["id"]) for line in lines) == ["1", "3", "two"]
    assert all(set(line) == {"id", "result"} and "echo" in line["result"] for line in lines)
    assert len(gateway.requests) == 3


def test_batch_resume_sends_only_the_missing_ids(folder: Path, gateway: FakeGateway) -> None:
    write_lines(folder / "in.jsonl", *[{"id": f"r{i}", "input": f"prompt {i}"} for i in range(5)])
    (folder / "out.jsonl").write_text(
        '{"id": "r1", "result": {"echo": "x"}}\n{"id": "r3", "error": {"type": "X", "message": "y"}}\n{"id": "r4", "re'
    )  # the last line was cut off mid-write: it is no finished input
    assert main(batch_args(folder)) == 1  # r3 failed in the earlier run
    sent = sorted(request.json["messages"][-1]["content"] for request in gateway.requests)
    assert sent == ["prompt 0", "prompt 2", "prompt 4"]
    assert sorted(line["id"] for line in read_output(folder / "out.jsonl")) == ["r0", "r1", "r2", "r3", "r4"]
    gateway.requests.clear()
    assert main(batch_args(folder)) == 1 and gateway.requests == []


def test_batch_failed_inputs_are_in_the_output_and_exit_1(folder: Path, gateway: FakeGateway) -> None:
    write_lines(folder / "in.jsonl", "only")
    gateway.enqueue_raw("not json")
    assert main(batch_args(folder)) == 1
    [line] = read_output(folder / "out.jsonl")
    assert line["id"] == 1 and line["error"]["type"] == "InvalidOutputError" and line["error"]["message"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "array"),
        ('{"id": 1}', "no 'input'"),
        ('{"input": 5}', "'input'"),
        ('""', "empty"),
        ('{"id": "a", "input": "again"}', "repeats the id"),
    ],
)
def test_batch_bad_input_line_exits_2_naming_the_line(
    folder: Path, gateway: FakeGateway, capsys: pytest.CaptureFixture[str], line: str, says: str
) -> None:
    (folder / "in.jsonl").write_text('{"id": "a", "input": "fine"}\n\n' + line + "\n")
    assert main(batch_args(folder)) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and says in err and len(err.strip().splitlines()) == 1
    assert gateway.requests == []


def test_batch_unknown_model_stops_the_run_without_writing_failures(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(folder / "in.jsonl", "a", "b")
    assert main(batch_args(folder, model="no/such-model")) == 1
    assert "dottxt models" in capsys.readouterr().err
    assert read_output(folder / "out.jsonl") == []  # a rerun with the right model sends every input


def test_batch_json_summary_and_no_progress_bar_off_a_terminal(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(folder / "in.jsonl", "a", "b")
    assert main(["--json", *batch_args(folder)]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["status"], summary["inputs"], summary["succeeded"], summary["failed"]) == ("ok", 2, 2, 0)
    assert err == ""


def test_batch_ctrl_c_keeps_complete_lines_exits_130_and_a_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server answers p0 and holds the rest; Ctrl-C; the rerun sends only what is missing."""
    traffic = Traffic()
    release = threading.Event()

    def handler(conn: RawConnection) -> None:
        traffic.arrive(conn)
        if prompt_of(conn) == "p0" or release.is_set():
            traffic.leave(conn)
            answer(conn)
        else:
            traffic.leave(conn, "gone" if conn.wait_for_disconnect(HOLD_LIMIT) else "held too long")

    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    prompts = [f"p{i}" for i in range(6)]
    write_lines(tmp_path / "in.jsonl", *prompts)
    with RawServer(handler) as server:
        env = cli_env(tmp_path, base_url=server.base_url)
        process = popen_cli(
            batch_args(tmp_path, "--concurrency", "3"), env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            traffic.wait_for_arrivals(4)  # p0 answered, and its slot taken by the next input
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 130, err
        text = (tmp_path / "out.jsonl").read_text()
        assert text == "" or text == '{"id": 1, "result": {"echo": "p0"}}\n'
        with traffic.cond:
            traffic.cond.wait_for(lambda: traffic.in_flight == 0, HOLD_LIMIT)
        assert traffic.count("held too long") == 0
        release.set()
        monkeypatch.setenv("DOTTXT_BASE_URL", server.base_url)
        monkeypatch.setenv("DOTTXT_API_KEY", TEST_KEY)
        assert main(batch_args(tmp_path)) == 0
    lines = read_output(tmp_path / "out.jsonl")
    assert sorted(line["id"] for line in lines) == [1, 2, 3, 4, 5, 6]
    assert all(line["result"] == {"echo": prompts[line["id"] - 1]} for line in lines)
