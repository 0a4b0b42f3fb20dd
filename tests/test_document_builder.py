"""The document builder: ops -> live document -> events whose snapshots are cut when read.

Costs are asserted as operation counts (values copied, ops replayed), never wall-clock time.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import dottxt._events
from dottxt import PatchError
from dottxt._events import DocumentBuilder, PatchEvent
from dottxt._patch import apply_op, ops_from_document
from tests.test_patch import count_values


def build(ops: list[dict[str, Any]]) -> tuple[DocumentBuilder, list[PatchEvent]]:
    builder = DocumentBuilder()
    return builder, [builder.apply(op) for op in ops]


def expected_snapshots(ops: list[dict[str, Any]]) -> list[Any]:
    """The document after each op, by the general RFC 6902 applier on a fresh copy each time."""
    doc: Any = None
    out = []
    for op in ops:
        doc = apply_op(copy.deepcopy(doc), op)
        out.append(copy.deepcopy(doc))
    return out


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts what snapshot reads cost: values copied, and ops applied (a replay would apply some)."""
    counts = {"copied": 0, "applied": 0}
    real_copy, real_prefix, real_apply = dottxt._events.copy_json, dottxt._events.copy_prefix, dottxt._events.apply_op

    def copy_json(value: Any) -> Any:
        out = real_copy(value)
        counts["copied"] += count_values(out)
        return out

    def copy_prefix(root: Any, count: int) -> tuple[Any, int]:
        out = real_prefix(root, count)
        counts["copied"] += out[1]
        return out

    def apply(doc: Any, op: dict[str, Any]) -> Any:
        counts["applied"] += 1
        return real_apply(doc, op)

    monkeypatch.setattr(dottxt._events, "copy_json", copy_json)
    monkeypatch.setattr(dottxt._events, "copy_prefix", copy_prefix)
    monkeypatch.setattr(dottxt._events, "apply_op", apply)
    yield counts


def records(n: int) -> dict[str, Any]:
    return {"intent": "billing", "steps": [{"id": i, "title": f"step {i}", "tags": ["a", "b"]} for i in range(n)]}


# --------------------------------------------------------------------------- snapshots


def test_every_snapshot_of_a_gateway_stream_read_newest_first_is_right_and_costs_its_size(
    work: dict[str, int],
) -> None:
    ops = ops_from_document(records(40))
    _, events = build(ops)
    work.update(copied=0, applied=0)
    expected = expected_snapshots(ops)
    for event, want in reversed(list(zip(events, expected, strict=True))):
        assert event.snapshot == want
    assert work["applied"] == 0  # no replay of the history
    assert work["copied"] == sum(count_values(s) for s in expected)  # each read copies its own snapshot, no more


def test_reading_old_snapshots_costs_the_document_not_the_history(work: dict[str, int]) -> None:
    """A document of constant size, rewritten by many ops: the cost per read does not grow with the ops."""

    def cost_per_read(n: int) -> float:
        ops = [{"op": "add", "path": "", "value": {}}, {"op": "add", "path": "/items", "value": [1, 2, 3]}]
        ops += [{"op": "replace", "path": f"/items/{i % 3}", "value": i} for i in range(n)]
        _, events = build(ops)
        work.update(copied=0, applied=0)
        for event in reversed(events):
            assert len(event.snapshot.get("items", ())) in (0, 3)
        assert work["applied"] == 0
        return work["copied"] / len(events)

    assert cost_per_read(2000) <= cost_per_read(200) * 1.01


def test_iterating_copies_nothing_for_the_gateway_op_sequence(work: dict[str, int]) -> None:
    build(ops_from_document(records(50)))
    assert work["copied"] == 0
    assert work["applied"] == 1  # the root, which starts the document


def test_a_snapshot_is_an_independent_copy_whenever_read() -> None:
    builder, events = build(ops_from_document({"a": {"b": [1, 2]}}))
    events[2].snapshot["a"]["b"].append("mine")
    assert events[2].snapshot == {"a": {"b": ["mine"]}}  # the reader's own copy, made once
    assert events[3].snapshot == {"a": {"b": [1]}}
    assert builder.document() == {"a": {"b": [1, 2]}}
    builder.document()["a"]["b"].clear()
    assert events[4].snapshot == builder.document() == {"a": {"b": [1, 2]}}


# --------------------------------------------------------------------------- ops a gateway never sends


def escape(key: str | int) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def resolve(doc: Any, pointer: str) -> Any:
    for segment in pointer.split("/")[1:]:
        segment = segment.replace("~1", "/").replace("~0", "~")
        doc = doc[int(segment)] if isinstance(doc, list) else doc[segment]
    return doc


def containers(node: Any, pointer: str = "") -> Iterator[str]:
    """The pointers of every container in `node`, in document order."""
    yield pointer
    for key, child in list(node.items() if isinstance(node, dict) else enumerate(node)):
        if isinstance(child, (dict, list)):
            yield from containers(child, f"{pointer}/{escape(key)}")


def random_ops(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """A valid RFC 6902 op sequence mixing in-order adds with every other kind of op."""
    doc: Any = {}
    ops: list[dict[str, Any]] = [{"op": "add", "path": "", "value": {}}]
    values = [1, "s", None, True, {}, [], {"k": [1, {"x": 2}]}, ["p", ["q"]]]
    for _ in range(n):
        pointers = list(containers(doc))
        members = [
            f"{p}/{escape(k)}"
            for p in pointers
            for k in (lambda c: c.keys() if isinstance(c, dict) else range(len(c)))(resolve(doc, p))
        ]
        kind = rng.choice(["add", "add", "add", "add", "replace", "remove", "move", "copy", "test"])
        value = copy.deepcopy(rng.choice(values))
        op: dict[str, Any]
        if kind == "add" or not members:
            pointer = rng.choice(pointers)
            parent = resolve(doc, pointer)
            if isinstance(parent, dict):
                key = rng.choice(["a", "b", "c/d", "~e", "-", ""])
            else:
                key = rng.choice(["-", str(len(parent)), str(rng.randint(0, len(parent)))])
            op = {"op": "add", "path": f"{pointer}/{escape(key)}", "value": value}
        elif kind == "replace":
            op = {"op": kind, "path": rng.choice(members), "value": value}
        elif kind == "test":
            target = rng.choice(members)
            op = {"op": kind, "path": target, "value": copy.deepcopy(resolve(doc, target))}
        elif kind == "remove":
            op = {"op": kind, "path": rng.choice(members)}
        else:
            source = rng.choice(members)
            pointer = rng.choice([p for p in pointers if not (p + "/").startswith(source + "/")])
            key = "moved" if isinstance(resolve(doc, pointer), dict) else "-"
            op = {"op": kind, "from": source, "path": f"{pointer}/{key}"}
        try:
            doc = apply_op(copy.deepcopy(doc), op)
        except PatchError:  # a move whose target the removal shifted: not a valid op here
            continue
        ops.append(op)
    return ops


@pytest.mark.parametrize("seed", range(40))
def test_old_snapshots_stay_right_after_any_rfc6902_ops(seed: int) -> None:
    ops = random_ops(random.Random(seed), 40)
    builder, events = build(ops)
    expected = expected_snapshots(ops)
    order = list(range(len(events)))
    random.Random(seed).shuffle(order)
    for i in order:
        assert events[i].snapshot == expected[i], (i, ops[i])
    assert builder.document() == expected[-1]
    assert builder.count == len(ops)


def test_adds_away_from_the_end_of_the_document_keep_every_snapshot() -> None:
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a", "value": {}},
        {"op": "add", "path": "/b", "value": []},
        {"op": "add", "path": "/a/x", "value": 1},  # back into a closed container
        {"op": "add", "path": "/b/-", "value": "y"},
        {"op": "add", "path": "/b/0", "value": "before"},  # an insert in the middle
        {"op": "add", "path": "/a/x", "value": 2},  # a replacement by add
        {"op": "add", "path": "", "value": ["new root"]},
        {"op": "add", "path": "/-", "value": {"k": []}},
        {"op": "add", "path": "/1/k/-", "value": 3},  # into the last container of a non-empty value
    ]
    _, events = build(ops)
    assert [e.snapshot for e in reversed(events)] == list(reversed(expected_snapshots(ops)))
    assert events[-1].path == (1, "k", 0)


# --------------------------------------------------------------------------- pointers


def test_escaped_keys_and_dash_appends() -> None:
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a~1b", "value": {}},
        {"op": "add", "path": "/a~1b/~0c", "value": []},
        {"op": "add", "path": "/a~1b/~0c/-", "value": {}},
        {"op": "add", "path": "/a~1b/~0c/0/-", "value": "dash key"},  # '-' in an object is a key
        {"op": "add", "path": "/a~1b/~0c/-", "value": []},
        {"op": "add", "path": "/a~1b/~0c/1/-", "value": 7},
        {"op": "add", "path": "/", "value": "empty key"},
    ]
    builder, events = build(ops)
    assert builder.document() == {"a/b": {"~c": [{"-": "dash key"}, [7]]}, "": "empty key"}
    assert [e.path for e in events] == [
        (),
        ("a/b",),
        ("a/b", "~c"),
        ("a/b", "~c", 0),
        ("a/b", "~c", 0, "-"),
        ("a/b", "~c", 1),
        ("a/b", "~c", 1, 0),
        ("",),
    ]
    assert events[4].field == "a~1b/~0c/0/-"
    assert events[5].snapshot == {"a/b": {"~c": [{"-": "dash key"}, []]}}


@pytest.mark.parametrize(
    ("pointer", "fragment"),
    [
        ("/xs/5", "out of range"),
        ("/xs/01", "not an array index"),
        ("/xs/-/a", "'-'"),
        ("/a/b", "does not exist"),
        ("/n/x", "number"),
        ("/bad~2", "'~' must be followed"),
        ("xs", "start with '/'"),
    ],
)
def test_an_op_that_cannot_apply_raises_and_changes_nothing(pointer: str, fragment: str) -> None:
    builder, _ = build(ops_from_document({"xs": [1, 2], "n": 1}))
    before, count = builder.document(), builder.count
    with pytest.raises(PatchError, match=fragment):
        builder.apply({"op": "add", "path": pointer, "value": 0})
    assert (builder.document(), builder.count) == (before, count)
    assert builder.apply({"op": "add", "path": "/xs/-", "value": 3}).snapshot == {"xs": [1, 2, 3], "n": 1}


def test_a_huge_pointer_is_shortened_in_the_error() -> None:
    builder, _ = build([{"op": "add", "path": "", "value": {}}])
    pointer = "/x" * 100_000
    with pytest.raises(PatchError) as info:
        builder.apply({"op": "add", "path": pointer, "value": 1})
    assert len(str(info.value)) < 300
    with pytest.raises(PatchError) as info:
        apply_op({}, {"op": "test", "path": "", "value": "v" * 1_000_000})
    assert len(str(info.value)) < 300


# --------------------------------------------------------------------------- depth and memory


def test_a_document_thousands_of_levels_deep() -> None:
    depth = 3000
    ops = [{"op": "add", "path": "", "value": {}}]
    pointer = ""
    for level in range(depth):
        if level % 2:
            pointer += "/0"
            ops.append({"op": "add", "path": pointer, "value": {}})
        else:
            pointer += "/k"
            ops.append({"op": "add", "path": pointer, "value": []})
    ops.append({"op": "add", "path": pointer + "/leaf", "value": "bottom"})
    ops.append({"op": "add", "path": "/after", "value": 1})  # closes every level at once
    builder, events = build(ops)
    document = builder.document()
    assert events[-2].path[-1] == "leaf" and len(events[-2].path) == depth + 1
    node = events[-2].snapshot
    for segment in events[-2].path[:-1]:
        node = node[segment]
    assert node == {"leaf": "bottom"}
    assert events[1500].snapshot is not None and "after" not in events[-2].snapshot
    assert events[-1].snapshot.keys() == document.keys() == {"k", "after"}
    builder.apply({"op": "replace", "path": "/after", "value": 2})  # the general path copies the document
    assert builder.document()["after"] == 2


def test_memory_stays_near_the_document_over_a_long_stream() -> None:
    """Many ops rewriting a small document: memory follows the document, not the ops received."""
    ops = ops_from_document({"text": "", "n": 0})
    tracemalloc.start()
    try:
        builder, _ = build(ops)
        for i in range(20_000):
            builder.apply({"op": "replace", "path": "/text", "value": f"{i:08d}" * 8})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200_000


def test_memory_of_a_growing_document_is_near_json_loads_of_it() -> None:
    doc = records(5000)
    text = json.dumps(doc)
    ops = ops_from_document(doc)
    tracemalloc.start()
    try:
        loaded = json.loads(text)
        baseline = tracemalloc.get_traced_memory()[0]
        del loaded
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        builder = DocumentBuilder()
        for op in ops:
            builder.apply(op)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * baseline  # generous: about 1.0x measured (repeated keys shared, as json.loads shares them)


# --------------------------------------------------------------------------- events as values


def test_streamed_events_copy_and_pickle_as_plain_events() -> None:
    ops = [*ops_from_document({"a": [1, 2]}), {"op": "remove", "path": "/a/0"}]
    _, events = build(ops)
    for event in (copy.copy(events[2]), copy.deepcopy(events[2]), pickle.loads(pickle.dumps(events[2]))):
        assert event == PatchEvent({"op": "add", "path": "/a/0", "value": 1}, {"a": [1]})
        assert (event.field, event.path, event.value, event.is_leaf) == ("a/0", ("a", 0), 1, True)
    assert events[-1].path == ("a", 0) and events[-1].snapshot == {"a": [2]}


def test_an_op_value_is_never_aliased() -> None:
    value = {"k": [1, {"x": 2}]}
    builder, events = build([{"op": "add", "path": "", "value": {}}, {"op": "add", "path": "/v", "value": value}])
    builder.apply({"op": "add", "path": "/v/k/-", "value": 3})
    assert value == {"k": [1, {"x": 2}]}
    assert events[1].op["value"] is value
    assert events[1].snapshot == {"v": {"k": [1, {"x": 2}]}}
    assert builder.document() == {"v": {"k": [1, {"x": 2}, 3]}}
