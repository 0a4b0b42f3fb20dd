"""The incremental JSON parser behind patch_source="sse" (SPEC section 10)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dottxt import DotTxtError, StreamDecodeError
from dottxt import _incremental as incremental
from dottxt._incremental import IncrementalJSONParser
from dottxt._patch import apply_op, ops_from_document

keys = st.text(alphabet=st.sampled_from('ab/~0 é😀-"\\\n'), max_size=6) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)
dump_styles = st.fixed_dictionaries(
    {
        "indent": st.sampled_from([None, 0, 2, "\t", "\r\n "]),
        "separators": st.sampled_from([None, (",", ":"), (" , ", " : "), (",\n", ":\t")]),
        "ensure_ascii": st.booleans(),
    }
)


def typed(ops: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Ops as comparable tuples that also tell 1, 1.0 and True apart."""
    return [(op["op"], op["path"], type(op["value"]), op["value"]) for op in ops]


def parse(pieces: list[str] | str) -> list[dict[str, Any]]:
    parser = IncrementalJSONParser()
    ops: list[dict[str, Any]] = []
    for piece in pieces:
        ops += parser.feed(piece)
    return ops + parser.close()


def expected_ops(text: str) -> list[tuple[Any, ...]]:
    return typed(ops_from_document(json.loads(text)))


def split_at(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def documents_in_pieces(draw: st.DrawFn) -> tuple[str, list[str]]:
    style: dict[str, Any] = draw(dump_styles)
    text = json.dumps(draw(json_values), **style)
    text = draw(st.sampled_from(["", " ", "\n", " \t\r\n"])) + text + draw(st.sampled_from(["", "\n", "  "]))
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=25))
    return text, split_at(text, cuts)


# --- the op sequence ----------------------------------------------------------


@settings(max_examples=300)
@given(documents_in_pieces())
def test_any_split_gives_the_gateway_op_sequence(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    assert typed(parse(pieces)) == expected_ops(text)


@given(json_values, st.booleans())
def test_one_character_at_a_time(doc: Any, ensure_ascii: bool) -> None:
    text = json.dumps(doc, ensure_ascii=ensure_ascii, indent=1)
    assert typed(parse(list(text))) == expected_ops(text)


@given(json_values)
def test_folding_the_ops_rebuilds_what_json_loads_returns(doc: Any) -> None:
    text = json.dumps(doc)
    rebuilt = None
    for op in parse([text[i : i + 3] for i in range(0, len(text), 3)]):
        rebuilt = apply_op(rebuilt, op)
    assert rebuilt == json.loads(text)


def test_a_typical_document() -> None:
    text = '{"intent": "refund", "steps": [1, 2.5, true, null, {"a/b": "~"}], "n": -0, "e": []}'
    assert parse([text]) == [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/intent", "value": "refund"},
        {"op": "add", "path": "/steps", "value": []},
        {"op": "add", "path": "/steps/0", "value": 1},
        {"op": "add", "path": "/steps/1", "value": 2.5},
        {"op": "add", "path": "/steps/2", "value": True},
        {"op": "add", "path": "/steps/3", "value": None},
        {"op": "add", "path": "/steps/4", "value": {}},
        {"op": "add", "path": "/steps/4/a~1b", "value": "~"},
        {"op": "add", "path": "/n", "value": 0},
        {"op": "add", "path": "/e", "value": []},
    ]


def test_each_op_is_a_fresh_dict_with_fresh_containers() -> None:
    ops = parse(['{"a": {}, "b": [], "c": {}}'])
    assert len({id(op) for op in ops}) == len(ops)
    assert len({id(op["value"]) for op in ops}) == len(ops)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\u00e9"', "é"),
        ('"\\ud83d\\ude00"', "😀"),
        ('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"', 'a"b\\c/d\b\f\n\r\t'),
        ('"\\ud83d"', "\ud83d"),  # a lone surrogate, as json.loads keeps it
        ('"\\ud83d\\u0041"', "\ud83dA"),
        ('"😀 raw"', "😀 raw"),
    ],
)
def test_escapes_split_at_every_position(text: str, value: str) -> None:
    assert json.loads(text) == value
    for cut in range(len(text) + 1):
        for second_cut in range(cut, len(text) + 1):
            ops = parse([text[:cut], text[cut:second_cut], text[second_cut:]])
            assert ops == [{"op": "add", "path": "", "value": value}]


def test_escaped_keys_split_at_every_position() -> None:
    text = '{"a\\/b\\u007e": 1}'
    expected = [{"op": "add", "path": "", "value": {}}, {"op": "add", "path": "/a~1b~0", "value": 1}]
    for cut in range(len(text) + 1):
        assert parse([text[:cut], text[cut:]]) == expected


def test_whitespace_between_tokens_is_ignored() -> None:
    text = ' \t\r\n{ \t\r\n"a" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n"x" \t\r\n] \t\r\n} \t\r\n'
    assert typed(parse([text])) == expected_ops(text)
    assert typed(parse(list(text))) == expected_ops(text)


@pytest.mark.parametrize("text", ["0", "-12", "3.5e-2", " 7 ", '"s"', "true", "false", "null", "[]", "{}"])
def test_scalar_and_empty_roots(text: str) -> None:
    assert typed(parse([text])) == expected_ops(text)


def test_duplicate_keys_give_one_op_per_occurrence_and_fold_like_json_loads() -> None:
    text = '{"a": 1, "b": {"x": 1}, "a": 2, "b": {"y": 2}}'
    ops = parse([text])
    assert [op["path"] for op in ops] == ["", "/a", "/b", "/b/x", "/a", "/b", "/b/y"]
    doc = None
    for op in ops:
        doc = apply_op(doc, op)
    assert doc == json.loads(text)
    assert list(doc) == list(json.loads(text))


def test_numbers_are_typed_as_json_loads_types_them() -> None:
    text = "[0, -0, 1, -1, 10, 1.0, -0.0, 1e2, 1E2, 1e-2, 1.5E+3, 12345678901234567890123, 1e400, -1e400]"
    ops = parse([text])
    assert typed(ops) == expected_ops(text)
    assert ops[-2]["value"] == float("inf")


# --- when ops are emitted -----------------------------------------------------


def test_containers_are_seeded_as_soon_as_they_open() -> None:
    parser = IncrementalJSONParser()
    assert parser.feed("{") == [{"op": "add", "path": "", "value": {}}]
    assert parser.feed('"steps": [') == [{"op": "add", "path": "/steps", "value": []}]
    assert parser.feed("{") == [{"op": "add", "path": "/steps/0", "value": {}}]


def test_a_string_is_emitted_at_its_closing_quote() -> None:
    parser = IncrementalJSONParser()
    parser.feed('{"intent": "ref')
    assert parser.feed("und") == []
    assert parser.feed('", "reply": "') == [{"op": "add", "path": "/intent", "value": "refund"}]


def test_a_number_is_emitted_at_the_character_that_ends_it() -> None:
    parser = IncrementalJSONParser()
    parser.feed("[12")
    assert parser.feed("3") == []
    assert parser.feed("]") == [{"op": "add", "path": "/0", "value": 123}]


def test_a_root_number_is_emitted_by_close() -> None:
    parser = IncrementalJSONParser()
    assert parser.feed("42") == []
    assert parser.close() == [{"op": "add", "path": "", "value": 42}]


def test_literals_are_emitted_at_their_last_letter() -> None:
    parser = IncrementalJSONParser()
    parser.feed("[tr")
    assert parser.feed("u") == []
    assert parser.feed("e") == [{"op": "add", "path": "/0", "value": True}]


# --- invalid JSON -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ('{"reply": "unterminated', 23, "closing '\"'"),
        ("[tru e]", 4, "expected 'true'"),
        ("nul", 3, "'null'"),
        ("[1, 2,]", 6, "expected a value"),
        ('{"a": 1,}', 8, "expected a string key"),
        ("01", 0, "invalid number '01'"),
        ("[-01]", 1, "invalid number '-01'"),
        ("[1.]", 1, "invalid number"),
        ("[.5]", 1, "expected a value"),
        ("[1e]", 1, "invalid number"),
        ("[+1]", 1, "expected a value"),
        ("[-]", 1, "invalid number '-'"),
        ('{"a": 1} x', 9, "after the end"),
        ("[1] [2]", 4, "after the end"),
        ('"a\nb"', 2, "control character"),
        ('"tab\there"', 4, "control character"),
        ('"\\x"', 1, "invalid escape"),
        ('"\\u12G4"', 2, "uXXXX"),
        ('{"a" 1}', 5, "expected ':'"),
        ('{"a": 1 "b": 2}', 8, "expected ',' or '}'"),
        ("[1 2]", 3, "expected ',' or ']'"),
        ("[1}", 2, "expected ',' or ']'"),
        ('{"a": 1]', 7, "expected ',' or '}'"),
        ("{1: 2}", 1, "string key"),
        ("{'a': 1}", 1, "string key"),
        ('{"a": [1, {"b": 2}', 18, "expected ',' or ']'"),
        ("", 0, "input is empty"),
        ("  \n", 3, "expected a value"),
        ("]", 0, "expected a value"),
        ("\ufeff{}", 0, "expected a value"),
        ("NaN", 0, "not JSON"),
        ("[Infinity]", 1, "not JSON"),
        ("[-Infinity]", 1, "not JSON"),
    ],
)
def test_invalid_json_raises_with_the_position(text: str, position: int, fragment: str) -> None:
    for pieces in ([text], list(text)):
        with pytest.raises(StreamDecodeError) as info:
            parse(pieces)
        message = str(info.value)
        assert f"position {position}:" in message
        assert fragment in message
        assert isinstance(info.value, DotTxtError)


def test_error_position_counts_every_piece_fed() -> None:
    parser = IncrementalJSONParser()
    parser.feed('{"a": ')
    parser.feed('"b", ')
    with pytest.raises(StreamDecodeError, match="position 11:"):
        parser.feed("?")


def test_ops_completed_before_an_error_are_returned_and_the_error_follows() -> None:
    parser = IncrementalJSONParser()
    ops = parser.feed('{"a": 1, "b": "x" oops')
    assert [op["path"] for op in ops] == ["", "/a", "/b"]
    with pytest.raises(StreamDecodeError, match="position 18:"):
        parser.feed("}")
    with pytest.raises(StreamDecodeError, match="position 18:"):
        parser.close()


def test_a_failed_close_keeps_failing() -> None:
    parser = IncrementalJSONParser()
    parser.feed("[1")
    with pytest.raises(StreamDecodeError, match="end of input"):
        parser.close()
    with pytest.raises(StreamDecodeError, match="end of input"):
        parser.close()


def test_feeding_after_close_is_an_error() -> None:
    parser = IncrementalJSONParser()
    parser.feed("{}")
    assert parser.close() == []
    with pytest.raises(StreamDecodeError, match="after close"):
        parser.feed(" ")


# --- accepts exactly what json.loads accepts ------------------------------------


TRICKY = [
    "",
    " ",
    "0",
    "-0",
    "-",
    "01",
    "1.",
    ".1",
    "1.0",
    "1e5",
    "1E+5",
    "1e-5",
    "1e",
    "1e+",
    "-01",
    "00",
    "0x1",
    "1_000",
    "+1",
    "1.5e3.2",
    "2.",
    "0e0",
    "-0.0e-0",
    "1ee2",
    "1e+-2",
    "--1",
    "true",
    "tru",
    "truee",
    "True",
    "null",
    "nul",
    "nulll",
    "false ",
    " false",
    "[true false]",
    '""',
    '"',
    '"\\"',
    '"\\\\"',
    '"\\/"',
    '"\\u0041"',
    '"\\u004"',
    '"\\u004g"',
    '"\\U0041"',
    '"\\ud83d\\ude00"',
    '"\\ud83d"',
    '"\\ude00\\ud83d"',
    '"\\x"',
    '"\t"',
    '"\x7f"',
    '"\x1f"',
    '"\u2028"',
    '"\\u0000"',
    '"\\ud800\\"',
    '"a\\',
    '"\\u00e9',
    '"\'"',
    "'a'",
    "[]",
    "[",
    "]",
    "[,]",
    "[1,]",
    "[,1]",
    "[1 2]",
    "[1,,2]",
    "[[]]",
    "[[]",
    "[]]",
    "[] []",
    "[1,\n2]",
    "{}",
    "{",
    "}",
    '{"a"}',
    '{"a":}',
    '{"a" 1}',
    '{"a":1,}',
    "{,}",
    "{1:2}",
    "{'a':1}",
    '{"a":1 "b":2}',
    '{"a":1}}',
    '{"a":[}',
    '{"a":{"b":null}}',
    '{"a":1,"a":2}',
    '{"a":[1],"b":0,"a":{}}',
    '{"":""}',
    '{"a"::1}',
    "\ufeff{}",
    "{}\x00",
    " \t\n\r[ \t\n\r1 \t\n\r] \t\n\r",
    "\x0b1",
    "\xa01",
    "1 1",
    '"a" "b"',
    "[1]x",
    '{"a":1}//',
    "[1e400]",
    "[-1e400]",
    "[1.7976931348623157e309]",
    "[" + "1" * 5000 + "]",
    "[" * 50 + "]" * 50,
    "[" * 50 + "]" * 49,
    '{"a":[{"b":[]}]}',
]


def json_loads_outcome(text: str) -> tuple[bool, str | None]:
    try:
        return True, repr(json.loads(text))
    except ValueError:
        return False, None


def parser_outcome(pieces: list[str]) -> tuple[bool, str | None]:
    """Whether the parser accepts the text, and the document its ops fold to (repr: types matter)."""
    try:
        ops = parse(pieces)
    except StreamDecodeError:
        return False, None
    doc = None
    for op in ops:
        doc = apply_op(doc, op)
    return True, repr(doc)


@pytest.mark.parametrize("text", TRICKY)
def test_accepts_exactly_what_json_loads_accepts(text: str) -> None:
    expected = json_loads_outcome(text)
    assert parser_outcome([text]) == expected
    assert parser_outcome(list(text)) == expected


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[NaN]", '{"a": Infinity}', "[1, -Infinity]"])
def test_nan_and_infinity_are_rejected_although_json_loads_accepts_them(text: str) -> None:
    json.loads(text)
    with pytest.raises(StreamDecodeError, match="not JSON"):
        parse([text])


@settings(max_examples=500)
@given(st.text(alphabet='[]{}",:0123456789.eE+-truefalsn \t\n\\/u\x01', max_size=20), st.data())
def test_random_json_like_text_matches_json_loads(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=6))
    assert parser_outcome(split_at(text, cuts)) == json_loads_outcome(text)


@settings(max_examples=300)
@given(json_values, st.data())
def test_one_character_mutations_match_json_loads(doc: Any, data: st.DataObject) -> None:
    text = json.dumps(doc)
    at = data.draw(st.integers(0, len(text)))
    insert = data.draw(
        st.sampled_from(['"', "\\", ",", ":", "[", "]", "{", "}", "0", "-", ".", "e", " ", "\n", "x", ""])
    )
    drop = data.draw(st.integers(0, 1))
    mutated = text[:at] + insert + text[at + drop :]
    cuts = data.draw(st.lists(st.integers(0, len(mutated)), max_size=6))
    assert parser_outcome(split_at(mutated, cuts)) == json_loads_outcome(mutated)


def test_nesting_deeper_than_json_loads_can_handle_up_to_the_documented_limit() -> None:
    depth = incremental.MAX_DEPTH
    with pytest.raises(RecursionError):
        json.loads("[" * depth + "]" * depth)
    ops = parse(["[" * depth, "]" * depth])
    assert len(ops) == depth
    assert ops[-1] == {"op": "add", "path": "/0" * (depth - 1), "value": []}


def test_nesting_past_the_limit_is_a_clear_error_not_quadratic_memory() -> None:
    with pytest.raises(StreamDecodeError, match="nested deeper than"):
        parse(["[" * (incremental.MAX_DEPTH + 1)])


# --- linear time ----------------------------------------------------------------


class CountingSearch:
    """Wraps a compiled regex and counts the characters its searches examine."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.scanned = 0

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        match = self.pattern.search(text, pos)
        self.scanned += (match.start() + 1 if match else len(text)) - pos
        return match


def test_a_1mb_string_in_4_char_pieces_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingSearch(incremental._STRING_STOP)
    monkeypatch.setattr(incremental, "_STRING_STOP", counter)
    value = ('lorem ipsum \\n \\"quoted\\" \\u00e9 ' * 40_000)[: 1 << 20]
    text = '{"reply": "' + value + '"}'
    parser = IncrementalJSONParser()
    ops: list[dict[str, Any]] = []
    for i in range(0, len(text), 4):
        ops += parser.feed(text[i : i + 4])
    ops += parser.close()
    assert ops[1] == {"op": "add", "path": "/reply", "value": json.loads(text)["reply"]}
    # Each character is examined at most once (escaped ones are skipped): nothing is ever re-scanned.
    assert len(value) // 2 <= counter.scanned <= len(text)


def test_a_1mb_document_of_records_in_4_char_pieces() -> None:
    doc = {"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"], "ok": i % 2 == 0} for i in range(16_000)]}
    text = json.dumps(doc)
    assert len(text) > 1_000_000
    ops = parse([text[i : i + 4] for i in range(0, len(text), 4)])
    assert typed(ops) == typed(ops_from_document(doc))


# --- deltas wholly inside a string (the fast path) -----------------------------

long_strings = st.text(alphabet=st.sampled_from('ab é😀 "\\\n\t/u'), min_size=20, max_size=200)


@settings(max_examples=300)
@given(st.lists(long_strings, min_size=1, max_size=4), st.integers(1, 8), st.data())
def test_text_fed_in_small_pieces_gives_the_ops_of_the_whole_text(
    values: list[str], size: int, data: st.DataObject
) -> None:
    # Long strings in token-sized pieces: most pieces fall wholly inside a string.
    text = json.dumps({"reply": values, "n": 1}, ensure_ascii=data.draw(st.booleans()))
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert typed(parse(pieces)) == typed(parse([text])) == expected_ops(text)


@pytest.mark.parametrize("size", [1, 3, 4, 7])
def test_a_raw_control_character_inside_a_string_piece_is_refused_at_its_position(size: int) -> None:
    text = '{"a": "' + "x" * 30 + "\x01" + 'y"}'
    parser = IncrementalJSONParser()
    with pytest.raises(StreamDecodeError, match=f"position {text.index(chr(1))}: raw control character"):
        for i in range(0, len(text), size):
            parser.feed(text[i : i + size])
