"""SSE framing and chat-chunk decoding, as patch_source="sse" and chat streams read them."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dottxt import PatchStreamError, StreamDecodeError
from dottxt._decoders import SSEDecoder, chunk_payload

BODY = (
    b": keep-alive\r\n\r\n"
    b'data: {"a": 1}\n\n'
    b"event: message\r\ndata: first line\r\ndata:second line\r\n\r\n"
    b"id: 7\ndata\n\n"
    b"data:  two spaces\n\n"
    b"data: cr\r\n\n"
    b"data: caf\xc3\xa9 \xff end\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = ['{"a": 1}', "first line\nsecond line", "", " two spaces", "cr", "café \ufffd end", "[DONE]"]


def events_of(reads: list[bytes], max_line_bytes: int = 1 << 20) -> list[str]:
    decoder = SSEDecoder(max_line_bytes)
    events = [event for data in reads for event in decoder.feed(data)]
    return events + decoder.finish()


def test_events_of_a_body_read_whole() -> None:
    assert events_of([BODY]) == EVENTS


def test_events_read_one_event_per_read_or_one_byte_per_read_are_the_same() -> None:
    per_event = [part + b"\n\n" for part in BODY.split(b"\n\n") if part]
    assert events_of(per_event) == EVENTS
    assert events_of([BODY[i : i + 1] for i in range(len(BODY))]) == EVENTS


@settings(max_examples=300)
@given(st.lists(st.integers(0, len(BODY)), max_size=12))
def test_any_split_of_the_body_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(BODY)]
    assert events_of([BODY[a:b] for a, b in itertools.pairwise(bounds)]) == EVENTS


def test_a_last_event_without_its_blank_line_comes_out_at_finish() -> None:
    assert events_of([b"data: x\n\ndata: y\n"]) == ["x", "y"]
    assert events_of([b"data: x\n\ndata: y"]) == ["x", "y"]


def test_a_line_over_the_limit_is_refused_even_when_it_arrives_whole() -> None:
    with pytest.raises(StreamDecodeError, match="longer than the limit of 10 bytes"):
        events_of([b"data: 0123456789\n\n"], max_line_bytes=10)


def test_many_short_lines_in_one_read_may_exceed_the_line_limit_together() -> None:
    assert events_of([b"data: a\n\ndata: b\n\ndata: c\n\n"], max_line_bytes=10) == ["a", "b", "c"]


# --- chunk_payload: strict JSON, whatever decoder reads it ---------------------

CHUNK = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "ab"}}]}


def refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict(text: str) -> Any:
    """What strict JSON makes of `text` (json.loads without NaN/Infinity): the value, or "error"."""
    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return "error"


def payload_or_error(text: str) -> Any:
    try:
        return chunk_payload(text, 200, None)
    except StreamDecodeError:
        return "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (json.dumps(CHUNK), CHUNK),
        ('{"a": "\\ud800"}', {"a": "\ud800"}),  # a lone surrogate: json.loads keeps it, so do we
        ('{"a": 1, "a": 2}', {"a": 2}),
        ('{"a": 1e400}', {"a": float("inf")}),
        ('{"a": ' + "[" * 300 + "]" * 300 + "}", json.loads('{"a": ' + "[" * 300 + "]" * 300 + "}")),
        (" \n{} ", {}),
        ("[DONE]", None),
        ("  [DONE] ", None),
    ],
)
def test_a_chunk_decodes_as_json_loads_decodes_it(text: str, expected: Any) -> None:
    assert chunk_payload(text, 200, None) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"a": "\x01"}',
        "{} x",
        "[1, 2]",
        '"text"',
        "\ufeff{}",
        "",
    ],
)
def test_anything_else_is_a_stream_decode_error_never_a_raw_exception(text: str) -> None:
    with pytest.raises(StreamDecodeError):
        chunk_payload(text, 200, None)


@settings(max_examples=500)
@given(st.text(alphabet='{}[]",:0123456789.eE+-truefalsnNIy \t\n\\/ud8\x01\ufeff', max_size=24), st.booleans())
def test_random_json_like_text_is_accepted_exactly_when_strict_json_accepts_an_object(text: str, brace: bool) -> None:
    text = "{" + text if brace else text
    expected = strict(text)
    if not isinstance(expected, dict):
        expected = None if text.strip() == "[DONE]" else "error"
    assert repr(payload_or_error(text)) == repr(expected)


def test_an_error_event_is_the_servers_error() -> None:
    with pytest.raises(PatchStreamError, match="overloaded"):
        chunk_payload('{"error": {"message": "overloaded"}}', 200, "req-1")
