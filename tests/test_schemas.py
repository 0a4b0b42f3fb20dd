"""normalize_schema and build_response_format: every documented kind of response format, and clear refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import pytest

from dottxt import InvalidSchemaError, build_response_format, normalize_schema
from tests.models import Color, Movie, Plan, Point


def _genson_builder() -> Any:
    genson = pytest.importorskip("genson")
    builder = genson.SchemaBuilder()
    builder.add_object({"name": "x", "tags": ["a"]})
    return builder


@pytest.mark.parametrize(
    ("make", "check"),
    [
        (lambda: {"type": "object", "properties": {"n": {"type": "integer"}}}, lambda s: s["properties"]["n"]),
        (lambda: '{"type": "array", "items": {"type": "string"}}', lambda s: s["items"] == {"type": "string"}),
        (_genson_builder, lambda s: s["properties"]["tags"]["type"] == "array"),
        (lambda: Plan, lambda s: s["properties"]["intent"]["enum"] == ["billing", "technical"]),
        (lambda: Point, lambda s: s["required"] == ["x", "y"]),
        (lambda: Movie, lambda s: s["properties"]["year"]["type"] == "integer"),
        (lambda: Color, lambda s: s["enum"] == ["red", "green"]),
        (lambda: Literal["a", "b"], lambda s: s["enum"] == ["a", "b"]),
        (lambda: Union[int, str], lambda s: s["anyOf"] == [{"type": "integer"}, {"type": "string"}]),  # noqa: UP007
        (lambda: int | str, lambda s: s["anyOf"] == [{"type": "integer"}, {"type": "string"}]),
        (lambda: Optional[Point], lambda s: {"type": "null"} in s["anyOf"]),  # noqa: UP045
        (lambda: list[Point], lambda s: s["type"] == "array" and "Point" in s["$defs"]),
        (lambda: dict[str, int], lambda s: s["additionalProperties"] == {"type": "integer"}),
        (lambda: tuple[int, str], lambda s: s["prefixItems"] == [{"type": "integer"}, {"type": "string"}]),
    ],
    ids=[
        "dict",
        "json-string",
        "genson",
        "basemodel",
        "dataclass",
        "typeddict",
        "enum",
        "literal",
        "union",
        "union-operator",
        "optional",
        "list",
        "dict-type",
        "tuple",
    ],
)
def test_normalize_schema_accepts_every_documented_input(make: Callable[[], Any], check: Callable[[Any], Any]) -> None:
    schema = normalize_schema(make())
    assert isinstance(schema, dict)
    assert check(schema)


def test_structural_tags_pass_through_unchecked() -> None:
    tag = {"type": "structural-tag", "structures": [{"begin": "<x>", "schema": {"type": "banana"}}], "triggers": []}
    assert normalize_schema(tag) == tag
    assert normalize_schema(json.dumps(tag)) == tag


def test_build_response_format_shape() -> None:
    assert build_response_format({"type": "string"}) == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "string"}},
    }
    assert build_response_format(Point, name="point") == {
        "type": "json_schema",
        "json_schema": {"name": "point", "schema": normalize_schema(Point)},
    }


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ([{"type": "string"}], "list instance"),
        (print, "callable"),
        (lambda: None, "callable"),
        ('{"type": "object",', "not valid JSON"),
        ({"type": "object", "properties": {"n": {"type": "integr"}}}, "properties/n/type"),
        ({"type": "array", "minItems": "two"}, "minItems"),
    ],
)
def test_everything_else_is_an_invalid_schema_error_saying_what_was_wrong(bad: Any, fragment: str) -> None:
    for convert in (normalize_schema, build_response_format):
        with pytest.raises(InvalidSchemaError) as info:
            convert(bad)
        assert fragment in str(info.value)
