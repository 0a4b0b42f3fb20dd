"""Every script in examples/ runs against a FakeGateway and prints what its docstring promises.

The command-line examples run as subprocesses (`sys.executable examples/x.py`), all
at once in a module fixture, each against its own gateway with the documents it
needs queued, so the whole file costs about as much as its slowest script. The
Flask app is driven in-process with Flask's test client; the Django file in a
subprocess (its `settings.configure` must run once per process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dottxt import DotTxt, apply_add
from dottxt.testing import FakeGateway, RecordedRequest, ops_from_document
from tests.conftest import TEST_KEY
from tests.rawserver import RawConnection, RawServer, ndjson

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL = "dottxt/fake-model"
TIMEOUT = 60.0  # per script; they take well under a second each

# --------------------------------------------------------------------------- documents the gateway replies with

ITINERARY = {
    "destination": "Lisbon",
    "days": [
        {"title": "Alfama and the old trams", "activities": ["Ride tram 28", "Pastéis de nata in Belém"]},
        {"title": "Markets", "activities": ["Lunch at the Ribeira market"]},
    ],
    "budget": {"currency": "EUR", "total": 420},
}

REPLY = (
    "Hi, I'm sorry your team is locked out on launch day. The suspension came from the declined renewal; "
    "I have lifted it for 72 hours so you can keep working, and our billing team will call you within the hour "
    "to sort out the card. You will not lose any data."
)
TICKET = {"intent": "billing", "urgency": "critical", "reply": REPLY}

AGENT_REPLY = "Hi, you're right: you were billed twice for March. We have refunded the duplicate $49 to your card."
AGENT_TURN = {
    "proposed_action": "refund",
    "amount_usd": 49.0,
    "justification": "Duplicate charge on the March invoice.",
    "reply": AGENT_REPLY,
}

PLAN = {
    "goal": "Decide whether to move CI to a hosted service",
    "steps": [
        {"question": "What do hosted CI services cost for 12 users?"},
        {"question": "How long do our current builds take on self-hosted runners?"},
        {"question": "Which of our jobs need special hardware?"},
    ],
    "deliverable": "A one-page recommendation with costs",
}

ORDER = {
    "customer": {"name": "Ana Souza", "email": "ana@example.org"},
    "items": [{"sku": "A-113", "quantity": 2}, {"sku": "B-7", "quantity": 1}],
    "gift_note": "Happy housewarming!",
}

INVOICE = {
    "vendor": "ACME Cloud Ltd",
    "issued_on": "2024-05-02",
    "currency": "EUR",
    "items": [
        {"description": "Compute (April)", "amount": 412.5},
        {"description": "Object storage", "amount": 38.2},
        {"description": "Support plan", "amount": 99.0},
    ],
}
REVIEW = {"sentiment": "neutral", "score": 0.1, "topics": ["battery", "charger", "case"]}
RECIPE = {
    "title": "Pantry tomato soup",
    "servings": 4,
    "ingredients": ["canned tomatoes", "onion", "stock"],
    "steps": ["Soften the onion", "Add tomatoes and stock", "Blend"],
}
SIGNUP = {"name": "Priya Raman", "email": "priya@example.net", "plan": "team"}
CITY = {"city": "Lisbon", "country": "Portugal", "population": 545000, "coastal": True}
VERDICT = {"label": "spam", "reason": "Promises easy money and points to a profile link."}
WEATHER = {"city": "Seville", "condition": "sunny", "high_celsius": 36}

# --------------------------------------------------------------------------- running the scripts


@dataclass(frozen=True)
class Scenario:
    """One run of a script: what the gateway replies, what stdin says, extra env."""

    script: str
    documents: tuple[Any, ...] = ()
    stdin: str = ""
    op_delay: float = 0.0
    models: tuple[str, ...] = (MODEL,)
    env: tuple[tuple[str, str], ...] = ()
    argv: tuple[str, ...] = ()  # replaces `python examples/<script>` when set


@dataclass
class Outcome:
    scenario: Scenario
    returncode: int
    stdout: str
    stderr: str
    requests: list[RecordedRequest] = field(default_factory=list)
    seconds: float = 0.0

    def __repr__(self) -> str:  # keeps pytest's failure reports short; check() shows stderr
        return f"<Outcome {self.scenario.script} exit {self.returncode}>"

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def check(self) -> Outcome:
        assert self.returncode == 0, f"{self.scenario.script} exited {self.returncode}:\n{self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr
        return self


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


#: Reads the Django example's view through django.test.Client and prints the streamed body.
DJANGO_DRIVER = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("django_stream_view", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["django_stream_view"] = module  # ROOT_URLCONF names this module
spec.loader.exec_module(module)
from django.test import Client

response = Client().get("/triage", {"message": "I was charged twice"})
head = {"status": response.status_code, "streaming": response.streaming,
        "content_type": response["Content-Type"], "cache_control": response["Cache-Control"]}
print(json.dumps(head), flush=True)
limit = int(sys.argv[2])  # chunks to read before hanging up; 0 = all of them
for count, chunk in enumerate(response.streaming_content, 1):
    sys.stdout.write(chunk.decode())
    sys.stdout.flush()
    if count == limit:
        break
response.close()  # what the WSGI server does when the browser goes away
print("\nCLOSED", flush=True)
sys.stdin.readline()  # stay alive until the test has looked at the upstream connection
"""

SCENARIOS: dict[str, Scenario] = {
    "stream_field_printer": Scenario("stream_field_printer.py", (ITINERARY,), op_delay=0.002),
    "stream_field_printer_async": Scenario("stream_field_printer_async.py", (ITINERARY,), op_delay=0.002),
    "stream_early_routing": Scenario("stream_early_routing.py", (TICKET,), op_delay=0.02),
    "stream_early_routing_async": Scenario("stream_early_routing_async.py", (TICKET,), op_delay=0.02),
    "stream_hitl_approval[y]": Scenario("stream_hitl_approval.py", (AGENT_TURN,), "y\n", op_delay=0.02),
    "stream_hitl_approval[n]": Scenario("stream_hitl_approval.py", (AGENT_TURN,), "n\n", op_delay=0.02),
    "stream_hitl_approval_async[y]": Scenario("stream_hitl_approval_async.py", (AGENT_TURN,), "y\n", op_delay=0.02),
    "stream_hitl_approval_async[n]": Scenario("stream_hitl_approval_async.py", (AGENT_TURN,), "n\n", op_delay=0.02),
    "stream_fanout": Scenario("stream_fanout.py", (PLAN,), op_delay=0.01),
    "stream_fanout_async": Scenario("stream_fanout_async.py", (PLAN,), op_delay=0.01),
    "stream_reconstruct": Scenario("stream_reconstruct.py", (ORDER,)),
    "stream_reconstruct_async": Scenario("stream_reconstruct_async.py", (ORDER,)),
    "generate_pydantic": Scenario("generate_pydantic.py", (INVOICE,)),
    "generate_json_schema": Scenario("generate_json_schema.py", (REVIEW,)),
    "generate_dataclass": Scenario("generate_dataclass.py", (RECIPE,)),
    "generate_typed_dict": Scenario("generate_typed_dict.py", (SIGNUP,)),
    "generate_genson": Scenario("generate_genson.py", (CITY,)),
    "list_messages_input": Scenario("list_messages_input.py", (VERDICT,)),
    "list_models": Scenario("list_models.py", models=(MODEL, "openai/gpt-oss-20b")),
    "list_models[unknown]": Scenario(
        "list_models.py", models=(MODEL,), env=(("DOTTXT_MODEL", "someone/retired-model"),)
    ),
    "openai_chat_completions": Scenario("openai_chat_completions.py", (WEATHER,)),
}
if _have("django"):
    SCENARIOS["django_stream_view"] = Scenario(
        "django_stream_view.py",
        (TICKET,),
        stdin="\n",
        argv=("-c", DJANGO_DRIVER, str(EXAMPLES / "django_stream_view.py"), "0"),
    )


def _env(base_url: str, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOTTXT_", "DJANGO_"))}
    env.update(
        DOTTXT_BASE_URL=base_url,
        DOTTXT_API_KEY=TEST_KEY,
        DOTTXT_MODEL=MODEL,
        XDG_CONFIG_HOME=str(EXAMPLES / "no-such-config-dir"),  # never read a real `dottxt login` key
        PYTHONIOENCODING="utf-8",
        PYTHONUNBUFFERED="1",
        # The checkout's dottxt, as the in-process tests use, even when an older copy is installed.
        PYTHONPATH=os.pathsep.join(filter(None, [str(EXAMPLES.parent), os.environ.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def _run(scenario: Scenario) -> Outcome:
    with FakeGateway(api_key=TEST_KEY, models=scenario.models, op_delay=scenario.op_delay) as gateway:
        for document in scenario.documents:
            gateway.enqueue(document)
        argv = list(scenario.argv) or [str(EXAMPLES / scenario.script)]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, *argv],
            input=scenario.stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=_env(gateway.base_url, scenario.env),
            timeout=TIMEOUT,
        )
        seconds = time.monotonic() - started
        requests = list(gateway.requests)
    return Outcome(scenario, proc.returncode, proc.stdout, proc.stderr, requests, seconds)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Every scenario, run concurrently; the pool and every gateway are closed before tests look."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {name: pool.submit(_run, scenario) for name, scenario in SCENARIOS.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_example_is_exercised() -> None:
    """A new example without a test fails here instead of going silently untested."""
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    covered = {scenario.script for scenario in SCENARIOS.values()} | {"flask_stream_relay.py", "django_stream_view.py"}
    covered |= {"batch_dask.py"}  # needs a Dask cluster: run by tests/test_batch_dask.py
    assert scripts - covered == set()
    assert {"stream_fanout.py", "stream_fanout_async.py", "flask_stream_relay.py"} <= scripts


def test_every_example_has_a_docstring_and_reads_the_model_from_the_environment() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert source.startswith('"""'), f"{path.name} has no module docstring"
        docstring = source.split('"""', 2)[1]
        assert "watch for" in docstring.lower(), f"{path.name}: the docstring does not say what to watch for"
        if path.name != "list_models.py":
            assert 'os.environ.get("DOTTXT_MODEL")' in source, f"{path.name} ignores DOTTXT_MODEL"


# --------------------------------------------------------------------------- streaming examples


def _leaf_lines(lines: list[str]) -> list[tuple[str, Any]]:
    """The `field  <json>` lines printed before the blank line."""
    pairs = []
    for line in lines:
        if not line:
            break
        name, value = line.split(maxsplit=1)
        pairs.append((name, json.loads(value)))
    return pairs


def _ms(line: str) -> float:
    match = re.match(r"\s*(\d+) ms ", line)
    assert match, f"no millisecond stamp in {line!r}"
    return float(match.group(1))


def _index(lines: list[str], fragment: str) -> int:
    hits = [i for i, line in enumerate(lines) if fragment in line]
    assert hits, f"no line contains {fragment!r}:\n" + "\n".join(lines)
    return hits[0]


@pytest.mark.parametrize("name", ["stream_field_printer", "stream_field_printer_async"])
def test_field_printer_prints_every_leaf_in_wire_order(outcomes: dict[str, Outcome], name: str) -> None:
    out = outcomes[name].check()
    expected = [
        (op["path"][1:], op["value"])
        for op in ops_from_document(ITINERARY)
        if op["path"] and not isinstance(op["value"], (dict, list))
    ]
    assert _leaf_lines(out.lines) == expected
    assert out.lines[-1] == "done: 2 day(s) in Lisbon, budget 420 EUR"


@pytest.mark.parametrize("name", ["stream_early_routing", "stream_early_routing_async"])
def test_early_routing_routes_before_the_reply_lands(outcomes: dict[str, Outcome], name: str) -> None:
    lines = outcomes[name].check().lines
    routed = _index(lines, "routed: intent=billing -> queue billing-team")
    paging = _index(lines, "paging: urgency is critical")
    reply = _index(lines, f"reply ({len(REPLY)} chars): {REPLY}")
    assert routed < paging < reply
    # The gateway paces the long reply (~0.25 s at this op_delay): its stamp is visibly later.
    assert _ms(lines[reply]) - _ms(lines[routed]) >= 50
    settled = re.fullmatch(r"routing was settled (\d+) ms before the reply was complete", lines[-1])
    assert settled and int(settled.group(1)) >= 50


@pytest.mark.parametrize("name", ["stream_hitl_approval[y]", "stream_hitl_approval_async[y]"])
def test_hitl_approved_executes_the_action_and_sends_the_reply(outcomes: dict[str, Outcome], name: str) -> None:
    out = outcomes[name].check()
    assert out.stdout.index("Agent proposes: refund $49.00. Approve? [y/N]") < out.stdout.index(AGENT_REPLY)
    assert "approved: executing refund of $49.00" in out.stdout
    assert f"reply sent to the customer:\n{AGENT_REPLY}" in out.stdout
    assert "received while you decided" in out.stdout


@pytest.mark.parametrize("name", ["stream_hitl_approval[n]", "stream_hitl_approval_async[n]"])
def test_hitl_declined_discards_the_reply(outcomes: dict[str, Outcome], name: str) -> None:
    out = outcomes[name].check()
    assert "Agent proposes: refund $49.00. Approve? [y/N]" in out.stdout
    assert "declined:" in out.stdout and "discarded" in out.stdout
    assert AGENT_REPLY not in out.stdout
    assert "executing" not in out.stdout


@pytest.mark.parametrize("name", ["stream_fanout", "stream_fanout_async"])
def test_fanout_starts_research_per_step_while_the_plan_streams(outcomes: dict[str, Outcome], name: str) -> None:
    out = outcomes[name].check()
    lines = out.lines
    complete = _index(lines, f"plan complete: 3 steps; deliverable: {PLAN['deliverable']}")
    for index, step in enumerate(PLAN["steps"]):
        assert _index(lines, f"step {index} arrived, research started: {step['question']}") < complete
        assert _index(lines, f"  [{index}] {step['question']}") > complete
    # One patch stream for the plan, then one generate call per step, all on the example's one client.
    chats = [r for r in out.requests if r.path == "/v1/chat/completions"]
    assert [r.json.get("stream") for r in chats] == ["patch", None, None, None]
    assert sum("researched" in line for line in lines) == 3


@pytest.mark.parametrize("name", ["stream_reconstruct", "stream_reconstruct_async"])
def test_reconstruct_folds_raw_ops_into_the_same_document(outcomes: dict[str, Outcome], name: str) -> None:
    lines = outcomes[name].check().lines
    blank = lines.index("")
    assert [json.loads(line) for line in lines[:blank]] == ops_from_document(ORDER)
    assert json.loads(lines[blank + 1].removeprefix("rebuilt: ")) == ORDER
    assert lines[blank + 2 :] == ["equals stream.document: True", "validates to stream.result(): True"]


# --------------------------------------------------------------------------- generate examples


def test_generate_pydantic_returns_a_typed_model(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["generate_pydantic"].check()
    assert out.lines[0] == "type: Invoice"
    assert out.lines[1] == "ACME Cloud Ltd, issued 2024-05-02 (date)"
    assert re.search(r"total\s+549\.70 EUR", out.stdout)


def test_generate_json_schema_returns_plain_json(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["generate_json_schema"].check()
    assert out.lines[0] == "type: dict"
    assert json.loads("\n".join(out.lines[1:])) == REVIEW


def test_generate_dataclass_returns_a_dataclass_instance(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["generate_dataclass"].check()
    assert out.lines[0].startswith("Recipe(title='Pantry tomato soup', servings=4, ingredients=[")
    assert "Pantry tomato soup: serves 4 (int)" in out.lines
    assert "  3. Blend" in out.lines


def test_generate_typed_dict_returns_a_dict(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["generate_typed_dict"].check()
    assert out.lines == ["type: dict", "  name: Priya Raman", "  email: priya@example.net", "  plan: team"]


def test_generate_genson_sends_the_inferred_schema(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["generate_genson"].check()
    inferred = json.loads(out.lines[0].removeprefix("inferred schema: "))
    sent = out.requests[-1].json["response_format"]["json_schema"]["schema"]
    assert sent["properties"] == inferred["properties"] and sorted(sent["required"]) == inferred["required"]
    assert json.loads(out.lines[1].removeprefix("answer: ")) == CITY


def test_list_messages_input_sends_the_conversation_unchanged(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["list_messages_input"].check()
    messages = out.requests[-1].json["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "Earn $500/day" in messages[-1]["content"]
    assert out.lines == ["label:  spam", f"reason: {VERDICT['reason']}"]


def test_list_models_marks_the_selected_model(outcomes: dict[str, Outcome]) -> None:
    assert outcomes["list_models"].check().lines == [f"{MODEL}  (selected by DOTTXT_MODEL)", "openai/gpt-oss-20b"]
    unknown = outcomes["list_models[unknown]"].check().lines
    assert unknown[0] == MODEL
    assert "DOTTXT_MODEL='someone/retired-model' is none of these" in unknown[-1]


def test_openai_chat_completions_passes_the_wrapped_response_format(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["openai_chat_completions"].check()
    body = out.requests[-1].json
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "weather"
    assert "stream" not in body
    assert json.loads(out.lines[1].removeprefix("content: ")) == WEATHER
    assert "parsed:  Weather(city='Seville', condition='sunny', high_celsius=36)" in out.lines
    assert "finish:  stop" in out.lines


# --------------------------------------------------------------------------- web relays


def _parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """(event name or None, decoded data) for each event of a text/event-stream body."""
    events: list[tuple[str | None, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].removeprefix(" "))
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def _fold(ops: list[dict[str, Any]]) -> Any:
    document: Any = None
    for op in ops:
        document = apply_add(document, op["path"], op["value"])
    return document


def _check_relay_body(text: str) -> None:
    events = _parse_sse(text)
    ops = [data for name, data in events if name == "op"]
    assert ops == ops_from_document(TICKET)  # one `op` event per op, in wire order
    assert _fold(ops) == TICKET
    assert events[-1] == ("done", TICKET)


class _Upstream:
    """A raw upstream that sends two ops, then waits for the SDK to hang up on it."""

    def __init__(self) -> None:
        self.disconnected = threading.Event()
        self.server = RawServer(self._handle)

    def _handle(self, conn: RawConnection) -> None:
        conn.head(200)
        conn.chunk(ndjson({"op": "add", "path": "", "value": {}}, {"op": "add", "path": "/intent", "value": "billing"}))
        if conn.wait_for_disconnect(timeout=10):
            self.disconnected.set()


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    up = _Upstream()
    with up.server:
        yield up


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import examples/<name>.py as a module (registered, as an import would, so Pydantic can resolve its types)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flask_relay(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    pytest.importorskip("flask")
    monkeypatch.setenv("DOTTXT_MODEL", MODEL)
    return _load("flask_stream_relay", monkeypatch)


def test_flask_relay_streams_each_op_as_a_server_sent_event(flask_relay: ModuleType, gateway: FakeGateway) -> None:
    gateway.enqueue(TICKET)
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url) as client:
        app = flask_relay.create_app(client)
        response = app.test_client().get("/triage", query_string={"message": "I was charged twice"})
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        _check_relay_body(response.get_data(as_text=True))
    assert gateway.requests[-1].json["messages"] == [{"role": "user", "content": "I was charged twice"}]


def test_flask_relay_forwards_ops_before_the_answer_ends_and_hangs_up_when_the_browser_leaves(
    flask_relay: ModuleType, upstream: _Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    # The upstream sends two ops and then nothing: both reach the browser anyway (nothing is
    # held back), and closing the browser's response closes the upstream connection.
    with DotTxt(api_key=TEST_KEY, base_url=upstream.server.base_url, timeout=10) as client:
        app = flask_relay.create_app(client)
        caplog.set_level("INFO", logger=app.logger.name)
        response = app.test_client().get("/triage", buffered=False)
        received = ""
        for chunk in response.response:
            received += chunk.decode() if isinstance(chunk, bytes) else chunk
            if len(_parse_sse(received)) == 2:
                break
        assert [data["path"] for _, data in _parse_sse(received)] == ["", "/intent"]
        assert not upstream.disconnected.is_set()
        response.close()  # what the WSGI server does when the browser disconnects
        assert upstream.disconnected.wait(5), "the upstream connection stayed open after the browser left"
    assert "browser left after 2 ops" in caplog.text


def test_flask_relay_reports_an_upstream_failure_as_an_error_event(
    flask_relay: ModuleType, gateway: FakeGateway
) -> None:
    gateway.fail_next(404)
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0) as client:
        response = flask_relay.create_app(client).test_client().get("/triage")
        events = _parse_sse(response.get_data(as_text=True))
    assert [name for name, _ in events] == ["error"]
    assert "404" in events[0][1]["message"]


def test_django_view_streams_each_op_as_a_server_sent_event(outcomes: dict[str, Outcome]) -> None:
    pytest.importorskip("django")
    out = outcomes["django_stream_view"].check()
    head = json.loads(out.lines[0])
    assert head == {
        "status": 200,
        "streaming": True,
        "content_type": "text/event-stream",
        "cache_control": "no-cache",
    }
    body = out.stdout.split("\n", 1)[1].rsplit("\nCLOSED", 1)[0]
    _check_relay_body(body)
    assert out.requests[-1].json["messages"] == [{"role": "user", "content": "I was charged twice"}]


def test_django_view_hangs_up_upstream_when_the_browser_leaves(upstream: _Upstream) -> None:
    pytest.importorskip("django")
    with subprocess.Popen(
        [sys.executable, "-c", DJANGO_DRIVER, str(EXAMPLES / "django_stream_view.py"), "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=_env(upstream.server.base_url),
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        try:
            lines = []
            for line in proc.stdout:  # ends at "CLOSED": the driver then waits for us
                lines.append(line)
                if line.startswith("CLOSED"):
                    break
            assert lines and lines[-1].startswith("CLOSED"), "".join(lines) + proc.stderr.read()  # type: ignore[union-attr]
            ops = [data for _, data in _parse_sse("".join(lines[1:-1]))]
            assert [op["path"] for op in ops] == ["", "/intent"]
            # The driver process is still alive, so only the view's close can have hung up.
            assert upstream.disconnected.wait(5), "the upstream connection stayed open after the browser left"
        finally:
            proc.stdin.write("\n")
            proc.stdin.close()
            proc.wait(TIMEOUT)
        assert proc.returncode == 0
