"""JSON Pointer / JSON Patch behaviour the patch stream relies on (RFC 6901, RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dottxt import DotTxtError, PatchError
from dottxt._patch import (
    apply_add,
    apply_op,
    decode_path,
    escape_segment,
    format_pointer,
    ops_from_document,
    parse_pointer,
)

# Keys deliberately include the two characters RFC 6901 escapes.
keys = st.text(alphabet=st.sampled_from("ab/~0 é😀-"), max_size=6) | st.text(max_size=8)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)


def count_values(doc: Any) -> int:
    if isinstance(doc, dict):
        return 1 + sum(count_values(v) for v in doc.values())
    if isinstance(doc, list):
        return 1 + sum(count_values(v) for v in doc)
    return 1


# --- pointers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "segments"),
    [
        ("", []),
        ("/", [""]),
        ("/a", ["a"]),
        ("/a/0/b", ["a", "0", "b"]),
        ("/a~1b/~0c", ["a/b", "~c"]),
        ("/~01", ["~1"]),  # ~0 is decoded after ~1, so this is "~1" and not "/"
        ("/~10", ["/0"]),
        ("//", ["", ""]),
        ('/ /%/\\/"', [" ", "%", "\\", '"']),
        ("/é/😀", ["é", "😀"]),
    ],
)
def test_parse_pointer(pointer: str, segments: list[str]) -> None:
    assert parse_pointer(pointer) == segments


@pytest.mark.parametrize("pointer", ["a", "a/b", " /a", "#/a", "/a~", "/a~2", "/~x/b", "/ok/~"])
def test_parse_pointer_rejects_invalid_pointers(pointer: str) -> None:
    with pytest.raises(PatchError) as info:
        parse_pointer(pointer)
    assert repr(pointer) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DotTxtError)


def test_parse_pointer_without_leading_slash_says_so() -> None:
    with pytest.raises(PatchError, match="start with '/'"):
        parse_pointer("steps/0")


def test_parse_pointer_result_can_be_mutated_without_affecting_later_calls() -> None:
    first = parse_pointer("/x/y")
    first.append("z")
    assert parse_pointer("/x/y") == ["x", "y"]


@pytest.mark.parametrize(
    ("key", "escaped"), [("a", "a"), ("a/b", "a~1b"), ("~", "~0"), ("~/", "~0~1"), ("/~1", "~1~01"), ("", "")]
)
def test_escape_segment(key: str, escaped: str) -> None:
    assert escape_segment(key) == escaped


def test_format_pointer_turns_indices_into_segments() -> None:
    assert format_pointer(["steps", 0, "a/b"]) == "/steps/0/a~1b"
    assert format_pointer([]) == ""


@given(st.lists(keys))
def test_format_and_parse_pointer_round_trip(segments: list[str]) -> None:
    pointer = format_pointer(segments)
    assert parse_pointer(pointer) == segments
    assert format_pointer(parse_pointer(pointer)) == pointer


# --- apply_add ----------------------------------------------------------------


def test_add_at_root_replaces_the_document() -> None:
    assert apply_add(None, "", {}) == {}
    assert apply_add({"old": 1}, "", [1]) == [1]
    assert apply_add([1], "", 5) == 5


def test_add_sets_object_members_in_place_and_returns_the_root() -> None:
    doc: dict[str, Any] = {"a": {}}
    assert apply_add(doc, "/a/b", 1) is doc
    apply_add(doc, "/a/b", 2)  # an existing member is replaced
    apply_add(doc, "/a~1b", 3)
    apply_add(doc, "/~0", 4)
    apply_add(doc, "/", 5)  # the empty key
    assert doc == {"a": {"b": 2}, "a/b": 3, "~": 4, "": 5}


def test_add_into_lists_appends_and_inserts() -> None:
    doc: dict[str, Any] = {"xs": []}
    apply_add(doc, "/xs/-", "c")
    apply_add(doc, "/xs/0", "a")
    apply_add(doc, "/xs/1", "b")
    apply_add(doc, "/xs/3", "d")  # index == length appends
    assert doc == {"xs": ["a", "b", "c", "d"]}


def test_add_inserts_the_value_object_itself() -> None:
    doc: dict[str, Any] = {}
    child: list[int] = []
    apply_add(doc, "/c", child)
    apply_add(doc, "/c/-", 1)
    assert child == [1]


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        ({"xs": [1, 2]}, "/xs/3", "out of range"),
        ({"xs": [1, 2]}, "/xs/01", "not an array index"),
        ({"xs": [1, 2]}, "/xs/-1", "not an array index"),
        ({"xs": [1, 2]}, "/xs/+1", "not an array index"),
        ({"xs": [1, 2]}, "/xs/ 1", "not an array index"),
        ({"xs": [1, 2]}, "/xs/x", "not an array index"),
        ({"xs": [1, 2]}, "/xs/\u0661", "not an array index"),  # a non-ASCII digit
        ({"xs": [1, 2]}, "/xs/99999999999999999999999", "out of range"),
        ({"a": {}}, "/missing/b", "'missing' does not exist"),
        ({"xs": [1]}, "/xs/5/b", "out of range"),
        ({"xs": [[]]}, "/xs/-/b", "'-'"),
        ({"a": 1}, "/a/b", "number"),
        ({"a": "s"}, "/a/0", "string"),
        ({"a": None}, "/a/b", "null"),
        (None, "/a", "null"),
        (True, "/a", "boolean"),
        ({}, "a", "start with '/'"),
    ],
)
def test_add_errors_name_the_failing_segment(doc: Any, path: str, fragment: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError) as info:
        apply_add(doc, path, "v")
    message = str(info.value)
    assert fragment in message
    assert repr(path) in message
    assert doc == before


# --- apply_op: RFC 6902 semantics ---------------------------------------------


def test_op_add_object_member() -> None:
    assert apply_op({"x": 1}, {"op": "add", "path": "/y", "value": [2]}) == {"x": 1, "y": [2]}


def test_op_add_array_element_shifts_the_rest() -> None:
    assert apply_op({"xs": ["a", "c"]}, {"op": "add", "path": "/xs/1", "value": "b"}) == {"xs": ["a", "b", "c"]}


def test_op_add_whole_array_value_is_one_element() -> None:
    doc = apply_op({"xs": [1]}, {"op": "add", "path": "/xs/-", "value": [2, 3]})
    assert doc == {"xs": [1, [2, 3]]}


def test_op_add_to_a_missing_parent_fails() -> None:
    with pytest.raises(PatchError, match="does not exist"):
        apply_op({"a": 1}, {"op": "add", "path": "/b/c", "value": 1})


def test_op_add_ignores_unrecognised_members() -> None:
    assert apply_op({}, {"op": "add", "path": "/a", "value": 1, "note": "extra"}) == {"a": 1}


def test_op_add_copies_the_value_so_the_op_is_never_changed() -> None:
    op = {"op": "add", "path": "/a", "value": {"b": []}}
    doc = apply_op({}, op)
    doc = apply_op(doc, {"op": "add", "path": "/a/b/-", "value": 1})
    assert op["value"] == {"b": []}
    assert doc == {"a": {"b": [1]}}


def test_op_remove_member_and_element() -> None:
    doc = {"a": 1, "b": 2, "xs": [1, 2, 3]}
    doc = apply_op(doc, {"op": "remove", "path": "/a"})
    doc = apply_op(doc, {"op": "remove", "path": "/xs/1"})
    assert doc == {"b": 2, "xs": [1, 3]}


@pytest.mark.parametrize("path", ["/missing", "/xs/3", "/xs/-", ""], ids=["key", "index", "dash", "root"])
def test_op_remove_requires_an_existing_target(path: str) -> None:
    with pytest.raises(PatchError):
        apply_op({"xs": [1, 2, 3]}, {"op": "remove", "path": path})


def test_op_replace() -> None:
    doc = apply_op({"a": 1, "xs": [1, 2]}, {"op": "replace", "path": "/a", "value": {"n": 0}})
    doc = apply_op(doc, {"op": "replace", "path": "/xs/1", "value": 9})
    assert doc == {"a": {"n": 0}, "xs": [1, 9]}
    assert apply_op(doc, {"op": "replace", "path": "", "value": "root"}) == "root"


@pytest.mark.parametrize("path", ["/missing", "/xs/2", "/xs/-"])
def test_op_replace_requires_an_existing_target(path: str) -> None:
    with pytest.raises(PatchError):
        apply_op({"xs": [1, 2]}, {"op": "replace", "path": path, "value": 0})


def test_op_move_value_between_objects() -> None:
    doc = {"a": {"x": 1, "y": 2}, "b": {}}
    doc = apply_op(doc, {"op": "move", "from": "/a/x", "path": "/b/z"})
    assert doc == {"a": {"y": 2}, "b": {"z": 1}}


def test_op_move_array_element_removes_then_adds() -> None:
    doc = {"xs": ["a", "b", "c", "d"]}
    doc = apply_op(doc, {"op": "move", "from": "/xs/1", "path": "/xs/3"})
    assert doc == {"xs": ["a", "c", "d", "b"]}


def test_op_move_to_the_same_location_changes_nothing() -> None:
    assert apply_op({"a": [1]}, {"op": "move", "from": "/a", "path": "/a"}) == {"a": [1]}


@pytest.mark.parametrize(("source", "target"), [("/a", "/a/b"), ("/a", "/a/b/c"), ("", "/a")])
def test_op_move_into_its_own_child_fails(source: str, target: str) -> None:
    doc: dict[str, Any] = {"a": {"b": {}}}
    with pytest.raises(PatchError, match="own child"):
        apply_op(doc, {"op": "move", "from": source, "path": target})
    assert doc == {"a": {"b": {}}}


def test_op_move_to_a_sibling_with_a_common_prefix_is_allowed() -> None:
    assert apply_op({"a": 1}, {"op": "move", "from": "/a", "path": "/ab"}) == {"ab": 1}


def test_op_move_failure_leaves_the_document_unchanged() -> None:
    doc = {"xs": [1, 2, 3], "o": {}}
    with pytest.raises(PatchError):
        apply_op(doc, {"op": "move", "from": "/xs/0", "path": "/nope/x"})
    assert doc == {"xs": [1, 2, 3], "o": {}}


def test_op_move_from_a_missing_location_fails() -> None:
    with pytest.raises(PatchError, match="does not exist"):
        apply_op({"a": 1}, {"op": "move", "from": "/b", "path": "/c"})


def test_op_copy_makes_an_independent_copy() -> None:
    doc = apply_op({"a": {"xs": [1]}}, {"op": "copy", "from": "/a", "path": "/b"})
    doc["b"]["xs"].append(2)
    assert doc == {"a": {"xs": [1]}, "b": {"xs": [1, 2]}}


def test_op_copy_from_a_missing_location_fails() -> None:
    with pytest.raises(PatchError):
        apply_op({"a": 1}, {"op": "copy", "from": "/b", "path": "/c"})


@pytest.mark.parametrize(
    ("doc", "path", "value"),
    [
        ({"a": 1}, "/a", 1.0),
        ({"a": {"x": [1, "s", None, True]}}, "/a", {"x": [1.0, "s", None, True]}),
        ({"a/b": "v"}, "/a~1b", "v"),
        ({"~": 0}, "/~0", 0),
        ({"a": 1}, "", {"a": 1}),
        ({"xs": [1, 2]}, "/xs/1", 2),
        ({"a": None}, "/a", None),
    ],
)
def test_op_test_passes_on_json_equal_values(doc: Any, path: str, value: Any) -> None:
    assert apply_op(doc, {"op": "test", "path": path, "value": value}) is doc


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        (1, True),
        (True, 1),
        (0, False),
        (0, None),
        ("10", 10),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 1, "b": 2}),
        ({"a": 1}, {"b": 1}),
        ([1], 1),
        ("", None),
    ],
)
def test_op_test_fails_on_different_json_values(actual: Any, expected: Any) -> None:
    with pytest.raises(PatchError, match="test failed"):
        apply_op({"v": actual}, {"op": "test", "path": "/v", "value": expected})


def test_op_test_on_a_missing_location_fails() -> None:
    with pytest.raises(PatchError):
        apply_op({}, {"op": "test", "path": "/a", "value": None})


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        ({"op": "frobnicate", "path": "/a"}, "unknown patch operation 'frobnicate'"),
        ({"path": "/a", "value": 1}, "unknown patch operation None"),
        ({"op": "add", "value": 1}, "'path'"),
        ({"op": "add", "path": "/a"}, "'value'"),
        ({"op": "replace", "path": "/a"}, "'value'"),
        ({"op": "test", "path": "/a"}, "'value'"),
        ({"op": "move", "path": "/a"}, "'from'"),
        ({"op": "copy", "path": "/a"}, "'from'"),
        ({"op": "add", "path": 3, "value": 1}, "JSON Pointer string"),
        ({"op": "add", "path": "a", "value": 1}, "start with '/'"),
    ],
)
def test_op_errors(op: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PatchError) as info:
        apply_op({"a": 1}, op)
    assert fragment in str(info.value)


def test_op_must_be_an_object() -> None:
    with pytest.raises(PatchError, match="JSON object"):
        apply_op({}, ["add", "/a", 1])  # type: ignore[arg-type]


def test_op_add_accepts_null_value() -> None:
    assert apply_op({}, {"op": "add", "path": "/a", "value": None}) == {"a": None}


# --- decode_path ---------------------------------------------------------------


def test_decode_path_uses_ints_only_below_lists() -> None:
    doc = {"steps": [{"0": "x"}], "address": {"city": "Paris"}, "a/b": {"~": 1}}
    assert decode_path(doc, "/steps/0") == ("steps", 0)
    assert decode_path(doc, "/steps/0/0") == ("steps", 0, "0")
    assert decode_path(doc, "/address/city") == ("address", "city")
    assert decode_path(doc, "/a~1b/~0") == ("a/b", "~")
    assert decode_path(doc, "") == ()
    assert decode_path(doc, ["steps", "0"]) == ("steps", 0)


def test_decode_path_resolves_dash_to_the_index_appended_at() -> None:
    doc = {"xs": ["a", "b"]}
    doc = apply_op(doc, {"op": "add", "path": "/xs/-", "value": "c"})
    assert decode_path(doc, "/xs/-") == ("xs", 2)


def test_decode_path_works_after_a_remove() -> None:
    doc = apply_op({"xs": [1, 2, 3]}, {"op": "remove", "path": "/xs/2"})
    assert decode_path(doc, "/xs/2") == ("xs", 2)


@pytest.mark.parametrize("path", ["/a/b", "/xs/-/b", "/xs/5/b", "/xs/01", "/missing/b"])
def test_decode_path_fails_where_the_path_cannot_exist(path: str) -> None:
    with pytest.raises(PatchError):
        decode_path({"a": 1, "xs": [{"b": 1}]}, path)


# --- ops_from_document ------------------------------------------------------------


def test_ops_for_a_nested_document() -> None:
    doc = {"intent": "refund", "steps": ["a", {"x/y": None}], "empty": {}, "n": 0}
    assert ops_from_document(doc) == [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/intent", "value": "refund"},
        {"op": "add", "path": "/steps", "value": []},
        {"op": "add", "path": "/steps/0", "value": "a"},
        {"op": "add", "path": "/steps/1", "value": {}},
        {"op": "add", "path": "/steps/1/x~1y", "value": None},
        {"op": "add", "path": "/empty", "value": {}},
        {"op": "add", "path": "/n", "value": 0},
    ]


@pytest.mark.parametrize("root", [None, 0, 1.5, "s", True, [], {}])
def test_ops_for_trivial_roots(root: Any) -> None:
    assert ops_from_document(root) == [{"op": "add", "path": "", "value": root}]


def test_ops_for_a_list_root_and_nested_lists() -> None:
    assert ops_from_document([[1], []]) == [
        {"op": "add", "path": "", "value": []},
        {"op": "add", "path": "/0", "value": []},
        {"op": "add", "path": "/0/0", "value": 1},
        {"op": "add", "path": "/1", "value": []},
    ]


def test_ops_are_fresh_dicts_that_do_not_alias_the_document() -> None:
    doc = {"a": {"b": [1]}}
    ops = ops_from_document(doc)
    assert len({id(op) for op in ops}) == len(ops)
    assert all(op["value"] is not doc["a"] for op in ops)
    for op in ops:
        if isinstance(op["value"], (dict, list)):
            assert not op["value"]


def test_ops_handle_deep_nesting_without_recursion_limits() -> None:
    doc: Any = 0
    for _ in range(5000):
        doc = [doc]
    ops = ops_from_document(doc)
    assert len(ops) == 5001
    assert ops[-1] == {"op": "add", "path": "/0" * 5000, "value": 0}


@given(json_values)
def test_folding_the_gateway_ops_rebuilds_the_document(doc: Any) -> None:
    ops = ops_from_document(doc)
    assert len(ops) == count_values(doc)
    rebuilt = None
    for op in ops:
        assert set(op) == {"op", "path", "value"} and op["op"] == "add"
        rebuilt = apply_add(rebuilt, op["path"], op["value"])
    assert rebuilt == doc
    assert repr(rebuilt) == repr(doc)  # same types too (1 vs 1.0 vs True)


@given(json_values)
def test_apply_op_on_gateway_ops_rebuilds_the_document_and_decodes_paths(doc: Any) -> None:
    rebuilt = None
    for op in ops_from_document(doc):
        rebuilt = apply_op(rebuilt, op)
        path = decode_path(rebuilt, op["path"])
        assert format_pointer(path) == op["path"]
    assert rebuilt == doc
