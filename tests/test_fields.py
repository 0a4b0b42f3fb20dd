"""Finished values (SPEC section 11): `completed()`, `on_done`, typed per path, delivered on time, early abort.

The servers here hold the next op back until the test has seen the FieldDone it
expects, so a value reported only at the end (or late) shows up as a hold that
timed out, recorded in `Drip.late`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Annotated, Any, Literal, Optional

import pydantic
import pytest

from dottxt import AsyncDotTxt, FieldDone, InvalidOutputError
from tests.conftest import MODEL, WAIT, RawClients
from tests.models import Movie, Point, Step
from tests.rawserver import RawConnection, ndjson


class Plan(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[Step]
    reply: str


class CheckedStep(pydantic.BaseModel):
    title: str
    done: bool

    @pydantic.field_validator("title")
    @classmethod
    def not_bad(cls, value: str) -> str:
        if value == "bad":
            raise ValueError("a bad title")
        return value


class CheckedPlan(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[CheckedStep]
    reply: str


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


#: A Plan as the gateway sends it; the indices of the ops that finish each step.
PLAN_OPS = [
    add("", {}),
    add("/intent", "billing"),
    add("/steps", []),
    add("/steps/0", {}),
    add("/steps/0/title", "refund"),
    add("/steps/0/done", True),
    add("/steps/1", {}),  # 6: finishes steps/0
    add("/steps/1/title", "apologise"),
    add("/steps/1/done", False),
    add("/reply", "Done."),  # 9: finishes steps/1 and steps
]


class Drip:
    """Sends one op per chunk; after each op in `holds` waits until the test calls `seen()` (late ones recorded).

    With `hangup_after`, it stops after that op and waits for the client to hang up, sending nothing more.
    """

    def __init__(self, ops: list[dict[str, Any]], holds: set[int] = frozenset(), *, hangup_after: int = -1) -> None:  # type: ignore[assignment]
        self.ops, self.holds, self.hangup_after = ops, holds, hangup_after
        self.go = threading.Semaphore(0)
        self.late: list[int] = []
        self.sent = 0
        self.hung_up = threading.Event()

    def seen(self, *_: object) -> None:
        self.go.release()

    def __call__(self, conn: RawConnection) -> None:
        conn.head()
        for index, op in enumerate(self.ops):
            conn.chunk(ndjson(op))
            self.sent = index + 1
            if index == self.hangup_after:
                if conn.wait_for_disconnect(WAIT):
                    self.hung_up.set()
                return
            if index in self.holds and not self.go.acquire(timeout=WAIT):
                self.late.append(index)
        conn.end()


def stream_of(raw: RawClients, drip: Drip, response_format: Any = Plan, **kwargs: Any) -> Any:
    return raw(drip, **kwargs).stream(model=MODEL, response_format=response_format, input="x")


def seen_on_time(stream: Any, drip: Drip, *patterns: str) -> list[FieldDone]:
    """Every FieldDone of `completed(*patterns)`, letting the server go on after each one."""
    dones = []
    for done in stream.completed(*patterns):
        dones.append(done)
        drip.seen()
    return dones


# --------------------------------------------------------------------------- completed(): on time, typed


def test_each_step_arrives_typed_the_moment_the_next_op_finishes_it(raw: RawClients) -> None:
    drip = Drip(PLAN_OPS, holds={6, 9})
    with stream_of(raw, drip) as stream:
        dones = seen_on_time(stream, drip, "steps/*")
        assert stream.result() == Plan.model_validate(_document(PLAN_OPS))  # read nothing more
    assert drip.late == []
    assert [(d.field, d.path) for d in dones] == [("steps/0", ("steps", 0)), ("steps/1", ("steps", 1))]
    assert dones[0].value == Step(title="refund", done=True) and isinstance(dones[0].value, Step)
    assert dones[1].raw == {"title": "apologise", "done": False}


def test_a_leaf_is_finished_when_its_op_arrives(raw: RawClients) -> None:
    drip = Drip(PLAN_OPS, holds={1, 4})
    with stream_of(raw, drip) as stream:
        fields = []
        for done in stream.completed("intent", "steps/*/title"):
            fields.append((done.field, done.value))
            drip.seen()
    assert drip.late == []
    assert fields == [("intent", "billing"), ("steps/0/title", "refund"), ("steps/1/title", "apologise")]


def test_no_patterns_reports_every_value_below_the_root_innermost_first(raw: RawClients) -> None:
    ops = [
        add("", {}),
        add("/a", {}),
        add("/a/b", []),
        add("/a/b/0", 1),
        add("/c", "x"),
        add("/d", {}),
        add("/d/e", []),
    ]
    with stream_of(raw, Drip(ops), {"type": "object"}) as stream:
        fields = [done.field for done in stream.completed()]
    # a/b and a finish at /c; d/e and d at the end, innermost first; the root never.
    assert fields == ["a/b/0", "a/b", "a", "c", "d/e", "d"]


def test_raw_is_an_independent_copy(raw: RawClients) -> None:
    with stream_of(raw, Drip(PLAN_OPS), {"type": "object"}) as stream:
        for done in stream.completed("steps"):
            done.raw.append("mutated")
            assert done.value is done.raw  # a JSON Schema: no declared type, the JSON itself
        assert stream.result()["steps"] == [{"title": "refund", "done": True}, {"title": "apologise", "done": False}]


def test_escaped_keys_and_dict_values(raw: RawClients) -> None:
    class Labels(pydantic.BaseModel):
        labels: dict[str, Point]

    ops = [add("", {}), add("/labels", {}), add("/labels/a~1b", {}), add("/labels/a~1b/x", 1), add("/labels/a~1b/y", 2)]
    ops += [add("/labels/~0c", {}), add("/labels/~0c/x", 3), add("/labels/~0c/y", 4)]
    drip = Drip(ops, holds={5})
    with stream_of(raw, drip, Labels) as stream:
        dones = seen_on_time(stream, drip, "labels/*")
    assert drip.late == []
    assert [(d.field, d.path, d.value) for d in dones] == [
        ("labels/a~1b", ("labels", "a/b"), Point(1, 2)),
        ("labels/~0c", ("labels", "~c"), Point(3, 4)),
    ]


def test_arrays_of_arrays(raw: RawClients) -> None:
    class Grid(pydantic.BaseModel):
        grid: list[list[int]]

    ops = [add("", {}), add("/grid", []), add("/grid/0", []), add("/grid/0/0", 1), add("/grid/0/1", 2)]
    ops += [add("/grid/1", []), add("/grid/1/0", 3)]
    drip = Drip(ops, holds={4, 5})
    with stream_of(raw, drip, Grid) as stream:
        dones = []
        for done in stream.completed("grid/*", "grid/0/1"):
            dones.append((done.field, done.value))
            drip.seen()
    assert drip.late == []
    assert dones == [("grid/0/1", 2), ("grid/0", [1, 2]), ("grid/1", [3])]


def test_appends_report_the_index_they_landed_at(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/-", {"title": "a", "done": True})]
    ops += [add("/steps/-", {}), add("/steps/1/title", "b"), add("/steps/1/done", False), add("/reply", "ok")]
    drip = Drip(ops, holds={4, 7})
    with stream_of(raw, drip) as stream:
        dones = seen_on_time(stream, drip, "steps/*")
    assert drip.late == []
    assert [(d.field, d.path, d.value) for d in dones] == [
        ("steps/0", ("steps", 0), Step(title="a", done=True)),
        ("steps/1", ("steps", 1), Step(title="b", done=False)),
    ]


@dataclasses.dataclass
class Box:
    point: Point
    label: Optional[str]  # noqa: UP045 - the Optional spelling is what is being tested


class Kinds(pydantic.BaseModel):
    box: Box
    movie: Movie
    pair: tuple[int, Point]
    many: tuple[Point, ...]
    tags: set[str]
    scores: dict[str, Point]
    maybe: Optional[Step]  # noqa: UP045
    sized: Annotated[list[Step], pydantic.Field(min_length=1)]
    free: Any


KINDS = {
    "box": {"point": {"x": 1, "y": 2}, "label": None},
    "movie": {"title": "Up", "year": 2009},
    "pair": [7, {"x": 3, "y": 4}],
    "many": [{"x": 5, "y": 6}],
    "tags": ["a", "b"],
    "scores": {"k": {"x": 8, "y": 9}},
    "maybe": {"title": "t", "done": True},
    "sized": [{"title": "s", "done": False}],
    "free": {"anything": [1]},
}


def test_every_kind_of_typed_path(raw: RawClients) -> None:
    from dottxt.testing import ops_from_document

    with stream_of(raw, Drip(ops_from_document(KINDS)), Kinds) as stream:
        values = {done.field: done.value for done in stream.completed()}
    assert values["box"] == Box(Point(1, 2), None) and values["box/point"] == Point(1, 2)
    assert values["box/label"] is None
    assert values["movie"] == {"title": "Up", "year": 2009} and values["movie/year"] == 2009
    assert values["pair"] == (7, Point(3, 4)) and values["pair/1"] == Point(3, 4) and values["pair/0"] == 7
    assert values["many/0"] == Point(5, 6)
    assert values["tags"] == {"a", "b"}
    assert values["scores/k"] == Point(8, 9)
    assert values["maybe"] == Step(title="t", done=True)
    assert values["sized/0"] == Step(title="s", done=False)
    assert values["free"] == {"anything": [1]} and values["free/anything/0"] == 1


def test_a_container_closed_by_an_op_out_of_order_is_finished_then(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/0", {"title": "a", "done": True})]
    ops += [{"op": "replace", "path": "/intent", "value": "technical"}, add("/reply", "ok")]
    drip = Drip(ops, holds={4})
    with stream_of(raw, drip) as stream:
        fields = []
        for done in stream.completed("steps", "steps/*"):
            fields.append(done.field)
            drip.seen()
        assert stream.result().intent == "technical"
    assert drip.late == []
    assert fields == ["steps/0", "steps"]  # each once, at the replace


def test_patterns_must_be_strings(raw: RawClients) -> None:
    with stream_of(raw, Drip(PLAN_OPS)) as stream, pytest.raises(TypeError, match="field strings"):
        stream.completed(3)


# --------------------------------------------------------------------------- early abort


def test_a_reported_value_that_fails_validation_hangs_up_before_the_rest_is_sent(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/0", {}), add("/steps/0/title", "bad")]
    ops += [add("/steps/0/done", True), add("/steps/1", {}), add("/steps/1/title", "fine"), add("/reply", "never")]
    drip = Drip(ops, hangup_after=6)
    with stream_of(raw, drip, CheckedPlan) as stream:
        seen = []
        with pytest.raises(InvalidOutputError) as info:
            for done in stream.completed("intent", "steps/*"):
                seen.append(done.field)
        assert drip.hung_up.wait(WAIT)
        with pytest.raises(InvalidOutputError):
            stream.result()  # the same failure; nothing more is read
    assert seen == ["intent"]
    assert drip.sent == 7  # the rest was never sent
    assert info.value.field == "steps/0"
    assert "a bad title" in str(info.value)
    assert info.value.document["steps"][0] == {"title": "bad", "done": True}


def test_a_leaf_field_validator_of_the_parent_model_runs(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/0", {}), add("/steps/0/title", "bad")]
    ops += [add("/steps/0/done", True)]
    drip = Drip(ops, hangup_after=4)
    with stream_of(raw, drip, CheckedPlan) as stream, pytest.raises(InvalidOutputError) as info:
        list(stream.completed("steps/*/title"))
    assert drip.hung_up.wait(WAIT)
    assert info.value.field == "steps/0/title"


def test_plain_iteration_validates_nothing_until_result(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/0", {"title": "bad", "done": True})]
    ops += [add("/reply", "r")]
    with stream_of(raw, Drip(ops), CheckedPlan) as stream:
        assert len(list(stream)) == len(ops)
        with pytest.raises(InvalidOutputError) as info:
            stream.result()
    assert info.value.field is None


# --------------------------------------------------------------------------- patch_source="sse"


def test_sse_source_reports_finished_values_on_time(raw: RawClients) -> None:
    pieces = [
        '{"intent": "billing", "steps": [{"title": "refund", "done": true}',
        ', {"title"',
        ': "b", "done": false}',
    ]
    pieces += ['], "reply": "ok"}']
    go = threading.Semaphore(0)
    late: list[int] = []

    def handler(conn: RawConnection) -> None:
        conn.head(headers={"Content-Type": "text/event-stream"})
        for index, piece in enumerate(pieces):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            conn.chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            if index in (1, 3) and not go.acquire(timeout=WAIT):
                late.append(index)
        conn.chunk(b"data: [DONE]\n\n")
        conn.end()

    with raw(handler, patch_source="sse").stream(model=MODEL, response_format=Plan, input="x") as stream:
        values = []
        for done in stream.completed("steps/*"):
            values.append(done.value)
            go.release()
        assert stream.result().reply == "ok"
    assert late == []
    assert values == [Step(title="refund", done=True), Step(title="b", done=False)]


# --------------------------------------------------------------------------- background and async twins


def test_on_done_runs_on_the_worker_in_wire_order_with_the_other_callbacks(raw: RawClients) -> None:
    drip = Drip(PLAN_OPS, holds={6, 9})
    log: list[str] = []

    def on_done(done: FieldDone) -> None:
        log.append(f"done {done.field} {type(done.value).__name__}")
        drip.seen()

    client = raw(drip)
    with client.stream_in_background(
        model=MODEL,
        response_format=Plan,
        input="x",
        on_event=lambda event: log.append(f"event {event.field}"),
        on_field={"steps/*": lambda event: log.append(f"field {event.field}")},
        on_done={"steps/*": on_done, "steps": lambda done: log.append(f"done {done.field}")},
        on_complete=lambda plan: log.append(f"complete {type(plan).__name__}"),
    ) as background:
        assert isinstance(background.result(WAIT), Plan)
    assert drip.late == []
    assert log[log.index("event steps/1") :][:3] == ["event steps/1", "field steps/1", "done steps/0 Step"]
    assert log[-4:] == ["event reply", "done steps/1 Step", "done steps", "complete Plan"]


def test_on_done_early_abort_goes_to_on_error_and_hangs_up(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/0", {"title": "bad", "done": True})]
    ops += [add("/steps/1", {}), add("/reply", "never")]
    drip = Drip(ops, hangup_after=4)
    errors: list[BaseException] = []
    client = raw(drip)
    with client.stream_in_background(
        model=MODEL, response_format=CheckedPlan, input="x", on_done={"steps/*": print}, on_error=errors.append
    ) as background:
        with pytest.raises(InvalidOutputError) as info:
            background.result(WAIT)
    assert drip.hung_up.wait(WAIT)
    assert errors == [info.value] and info.value.field == "steps/0"


def test_async_completed_is_the_twin(raw: RawClients) -> None:
    drip = Drip(PLAN_OPS, holds={6, 9})
    client = raw(drip)

    async def main() -> list[Any]:
        async with AsyncDotTxt(api_key="k", base_url=client.base_url, max_retries=0) as aclient:
            async with aclient.stream(model=MODEL, response_format=Plan, input="x") as stream:
                values = []
                async for done in stream.completed("steps/*"):
                    values.append(done.value)
                    drip.seen()
                plan = await stream.result()
        assert isinstance(plan, Plan)
        return values

    assert asyncio.run(main()) == [Step(title="refund", done=True), Step(title="apologise", done=False)]
    assert drip.late == []


def test_async_completed_early_abort(raw: RawClients) -> None:
    ops = [add("", {}), add("/intent", "billing"), add("/steps", []), add("/steps/0", {"title": "bad", "done": True})]
    ops += [add("/steps/1", {}), add("/reply", "never")]
    drip = Drip(ops, hangup_after=4)
    client = raw(drip)

    async def main() -> InvalidOutputError:
        async with AsyncDotTxt(api_key="k", base_url=client.base_url, max_retries=0) as aclient:
            stream = aclient.stream(model=MODEL, response_format=CheckedPlan, input="x")
            with pytest.raises(InvalidOutputError) as info:
                async for _ in stream.completed("steps/*"):
                    pass
            await stream.aclose()
            return info.value

    error = asyncio.run(main())
    assert drip.hung_up.wait(WAIT)
    assert error.field == "steps/0"


def test_field_done_is_a_frozen_dataclass() -> None:
    done = FieldDone("steps/0", ("steps", 0), Step(title="a", done=True), {"title": "a", "done": True})
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.field = "x"  # type: ignore[misc]
    assert done == FieldDone("steps/0", ("steps", 0), Step(title="a", done=True), {"title": "a", "done": True})


def _document(ops: list[dict[str, Any]]) -> Any:
    from dottxt import apply_op

    document: Any = None
    for op in ops:
        document = apply_op(document, op)
    return document
