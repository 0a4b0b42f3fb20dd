"""The schema -> document generator: valid, deterministic, readable documents for a broad corpus."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import random
import re
import uuid
from typing import Annotated, Any, Literal

import pydantic
import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict

from dottxt.testing import DocumentGenerationError, generate_document

SEEDS = range(8)

# --------------------------------------------------------------------------- Pydantic corpus


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"
    URGENT = "urgent"


class Level(enum.IntEnum):
    ONE = 1
    TWO = 2


class Address(BaseModel):
    street: str
    city: str
    postcode: Annotated[str, Field(pattern=r"^\d{5}$")]
    country: str = "FR"


class Person(BaseModel):
    name: str
    age: Annotated[int, Field(ge=0, le=130)]
    email: str | None = None
    address: Address
    previous: list[Address] = []


class Ticket(BaseModel):
    intent: Literal["billing", "technical", "other"]
    priority: Priority
    reply: str
    steps: list[str]
    confidence: Annotated[float, Field(ge=0, le=1)]


class Constrained(BaseModel):
    code: Annotated[str, Field(pattern=r"^[A-Z]{3}-\d{4}$")]
    short: Annotated[str, Field(min_length=2, max_length=6)]
    long: Annotated[str, Field(min_length=80)]
    exact: Annotated[str, Field(min_length=10, max_length=10)]
    count: Annotated[int, Field(gt=10, lt=20)]
    step: Annotated[int, Field(multiple_of=5, ge=-50, le=50)]
    ratio: Annotated[float, Field(gt=0, lt=0.001)]
    cents: Annotated[float, Field(multiple_of=0.01, ge=1, le=2)]
    tags: Annotated[list[str], Field(min_length=2, max_length=4)]
    level: Level


class TreeNode(BaseModel):
    value: int
    children: list[TreeNode] = []


class LinkedItem(BaseModel):
    label: str
    next: LinkedItem | None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: Annotated[int, Field(ge=1, le=9)]


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Owner(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    pets: list[Cat | Dog]


class Scalars(BaseModel):
    when: datetime.datetime
    day: datetime.date
    at: datetime.time
    wait: datetime.timedelta
    ident: uuid.UUID
    counts: dict[str, int]
    anything: Any
    pair: tuple[int, str]
    unique: frozenset[int]
    either: int | str | None


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str = "origin"


class Movie(TypedDict):
    title: str
    year: int
    rating: float


PYDANTIC_SCHEMAS: dict[str, dict[str, Any]] = {
    "pydantic nested models": Person.model_json_schema(),
    "pydantic ticket (enum, Literal, list)": Ticket.model_json_schema(),
    "pydantic constrained fields": Constrained.model_json_schema(),
    "pydantic recursive tree": TreeNode.model_json_schema(),
    "pydantic recursive linked list": LinkedItem.model_json_schema(),
    "pydantic discriminated union": Owner.model_json_schema(),
    "pydantic scalars": Scalars.model_json_schema(),
    "pydantic list[Model]": TypeAdapter(list[Address]).json_schema(),
    "pydantic Union": TypeAdapter(Cat | Dog | int).json_schema(),
    "pydantic Optional": TypeAdapter(Address | None).json_schema(),
    "pydantic dict[str, int]": TypeAdapter(dict[str, int]).json_schema(),
    "pydantic Enum": TypeAdapter(Priority).json_schema(),
    "pydantic Literal": TypeAdapter(Literal["yes", "no", 3]).json_schema(),
    "pydantic dataclass": TypeAdapter(Point).json_schema(),
    "pydantic TypedDict": TypeAdapter(Movie).json_schema(),
    "pydantic list[TypedDict]": TypeAdapter(list[Movie]).json_schema(),
}

# --------------------------------------------------------------------------- hand-written corpus

HAND_SCHEMAS: dict[str, Any] = {
    "empty schema": {},
    "true schema": True,
    "nullable type list": {"type": ["string", "null"]},
    "integer or string": {"type": ["integer", "string"], "minimum": 3},
    "mixed enum": {"enum": ["a", 1, None, {"k": [1, 2]}]},
    "typed enum filters options": {"type": "string", "enum": ["a", 1, "b"]},
    "const object": {"const": {"nested": [1, {"x": None}]}},
    "allOf merge": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer", "minimum": 5}}, "required": ["a"]},
            {"properties": {"a": {"maximum": 7}, "b": {"type": "string"}}, "required": ["b"]},
        ]
    },
    "oneOf integer vs number": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    "oneOf overlapping objects": {
        "oneOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
        ]
    },
    "anyOf with siblings": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
    },
    "tuple with prefixItems": {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}],
        "items": False,
    },
    "prefixItems then items": {
        "type": "array",
        "prefixItems": [{"const": "head"}],
        "items": {"type": "integer"},
        "minItems": 3,
        "maxItems": 5,
    },
    "draft-07 definitions and tuples": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"pos": {"type": "integer", "minimum": 1}},
        "type": "object",
        "properties": {
            "pair": {"type": "array", "items": [{"$ref": "#/definitions/pos"}, {"type": "string"}]},
            "n": {"$ref": "#/definitions/pos"},
            "strict": {
                "type": "array",
                "items": [{"type": "null"}],
                "additionalItems": False,
            },
        },
        "required": ["pair", "n", "strict"],
    },
    "additionalProperties schema beside properties": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id", "extra"],
        "additionalProperties": {"type": "string", "maxLength": 12},
    },
    "closed object with minProperties": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}},
        "additionalProperties": False,
        "minProperties": 3,
    },
    "maxProperties": {
        "type": "object",
        "properties": {k: {"type": "boolean"} for k in "abcdef"},
        "maxProperties": 2,
    },
    "open map with minProperties": {"type": "object", "minProperties": 4, "maxProperties": 5},
    "patterns": {
        "type": "object",
        "properties": {
            "zip": {"type": "string", "pattern": r"^\d{5}(-\d{4})?$"},
            "phone": {"type": "string", "pattern": r"^\+?[0-9]{7,12}$"},
            "name": {"type": "string", "pattern": r"^[A-Z][a-z]+(-[A-Z][a-z]+)*$"},
            "alt": {"type": "string", "pattern": r"^(foo|bar)baz$"},
            "hex": {"type": "string", "pattern": r"[a-f0-9]{8}"},
            "escaped": {"type": "string", "pattern": r"^v\d+\.\d+\.\d+$"},
            "negated": {"type": "string", "pattern": r"^[^aeiou\s]{3,5}$"},
            "lengthy": {"type": "string", "pattern": r"^[a-z]+$", "minLength": 4, "maxLength": 6},
        },
        "required": ["zip", "phone", "name", "alt", "hex", "escaped", "negated", "lengthy"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "tenth": {"type": "number", "multipleOf": 0.1, "minimum": 0, "maximum": 3},
            "seven": {"type": "integer", "multipleOf": 7, "minimum": 100, "maximum": 200},
            "negative": {"type": "integer", "maximum": -1000},
            "exclusive": {"type": "number", "exclusiveMinimum": 1.5, "exclusiveMaximum": 1.75},
            "big": {"type": "integer", "minimum": 10**12},
            "point": {"type": "number", "minimum": 2.5, "maximum": 2.5},
        },
        "required": ["tenth", "seven", "negative", "exclusive", "big", "point"],
    },
    "string lengths": {
        "type": "object",
        "properties": {
            "reply": {"type": "string", "maxLength": 5},
            "description": {"type": "string", "minLength": 300},
            "exact": {"type": "string", "minLength": 10, "maxLength": 10},
            "empty": {"type": "string", "maxLength": 0},
        },
        "required": ["reply", "description", "exact", "empty"],
    },
    "formats": {
        "type": "object",
        "properties": {
            f: {"type": "string", "format": f}
            for f in ("date-time", "date", "time", "email", "uuid", "uri", "hostname", "ipv4", "ipv6", "duration")
        },
        "required": ["date-time", "date", "uuid", "email"],
    },
    "arrays of objects with bounds": {
        "type": "array",
        "minItems": 2,
        "maxItems": 3,
        "items": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            "required": ["sku", "qty"],
        },
    },
    "recursive root ref": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "kids": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["name", "kids"],
    },
    "ref with sibling keywords": {
        "$defs": {"base": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}},
        "$ref": "#/$defs/base",
        "properties": {"b": {"type": "string"}},
        "required": ["b"],
    },
    "anchor ref": {
        "$defs": {"word": {"$anchor": "word", "type": "string", "minLength": 3}},
        "type": "array",
        "items": {"$ref": "#word"},
    },
    "escaped ref and keys": {
        "$defs": {"a/b": {"type": "integer"}, "c~d": {"type": "boolean"}},
        "type": "object",
        "properties": {"x/y": {"$ref": "#/$defs/a~1b"}, "m~n": {"$ref": "#/$defs/c~0d"}, "": {"type": "null"}},
        "required": ["x/y", "m~n", ""],
    },
    "true property schemas": {"type": "object", "properties": {"any": True, "also": {}}, "required": ["any", "also"]},
    "unique enum items": {
        "type": "array",
        "items": {"enum": ["red", "green", "blue"]},
        "uniqueItems": True,
        "minItems": 2,
    },
    "type inferred from keywords": {
        "properties": {"s": {"minLength": 2}, "n": {"minimum": 4}, "a": {"minItems": 1}},
        "required": ["s", "n", "a"],
    },
    "ticket triage (demo)": {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["refund", "bug", "question"]},
            "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
            "customer": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
                "required": ["name"],
            },
            "reply": {"type": "string"},
        },
        "required": ["intent", "urgency", "customer", "reply"],
        "additionalProperties": False,
    },
    "nested arrays": {
        "type": "array",
        "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "minItems": 1,
    },
}

CORPUS: dict[str, Any] = {**PYDANTIC_SCHEMAS, **HAND_SCHEMAS}


def validator(schema: Any) -> Any:
    cls = validator_for(schema, default=Draft202012Validator) if isinstance(schema, dict) else Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_corpus_is_broad() -> None:
    assert len(CORPUS) >= 30
    for schema in CORPUS.values():
        validator_for(schema, default=Draft202012Validator).check_schema(schema)


@pytest.mark.parametrize("name", list(CORPUS))
def test_documents_validate_over_seeds(name: str) -> None:
    schema = CORPUS[name]
    check = validator(schema)
    for seed in SEEDS:
        doc = generate_document(schema, seed)
        errors = [e.message for e in check.iter_errors(doc)]
        assert not errors, f"seed {seed}: {json.dumps(doc, ensure_ascii=False)[:300]}: {errors}"


@pytest.mark.parametrize("name", list(CORPUS))
def test_same_seed_same_document(name: str) -> None:
    schema = CORPUS[name]
    for seed in (0, 7):
        first = json.dumps(generate_document(schema, seed), ensure_ascii=False)
        assert json.dumps(generate_document(schema, random.Random(seed)), ensure_ascii=False) == first


def test_different_seeds_differ() -> None:
    schema = CORPUS["pydantic ticket (enum, Literal, list)"]
    docs = {json.dumps(generate_document(schema, seed)) for seed in range(5)}
    assert len(docs) == 5


def test_pydantic_models_accept_the_documents() -> None:
    for seed in SEEDS:
        Person.model_validate(generate_document(Person.model_json_schema(), seed))
        Owner.model_validate(generate_document(Owner.model_json_schema(), seed))
        Constrained.model_validate(generate_document(Constrained.model_json_schema(), seed))
        TypeAdapter(Point).validate_python(generate_document(TypeAdapter(Point).json_schema(), seed))


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part] if part else target
        schema = target
    return schema


def _assert_key_order(doc: Any, schema: dict[str, Any], root: dict[str, Any]) -> int:
    """Object keys appear in schema property order, recursively; returns how many objects it checked."""
    schema = _resolve(schema, root)
    checked = 0
    if isinstance(doc, dict) and "properties" in schema:
        props = list(schema["properties"])
        known = [k for k in doc if k in props]
        assert known == [k for k in props if k in doc]
        assert list(doc)[: len(known)] == known, "declared properties come first"
        checked += 1
        for key in known:
            checked += _assert_key_order(doc[key], schema["properties"][key], root)
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for item in doc:
            checked += _assert_key_order(item, schema["items"], root)
    return checked


@pytest.mark.parametrize("model", [Person, Ticket, Constrained, TreeNode])
def test_keys_follow_schema_property_order(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in SEEDS:
        assert _assert_key_order(generate_document(schema, seed), schema, schema) >= 1


def test_required_always_optional_mostly() -> None:
    schema = Person.model_json_schema()
    docs = [generate_document(schema, seed) for seed in range(40)]
    assert all({"name", "age", "address"} <= doc.keys() for doc in docs)
    with_email = sum("email" in doc for doc in docs)
    assert 20 <= with_email < 40, "optional fields appear most of the time, not always"


def test_long_text_fields_read_like_sentences() -> None:
    replies = [generate_document(Ticket.model_json_schema(), seed)["reply"] for seed in range(10)]
    for reply in replies:
        assert len(re.findall(r"[.!?]", reply)) >= 2, reply
        assert reply[0].isupper() or reply[0] == '"'
    assert any(not r.isascii() for r in replies), "some multi-byte UTF-8 shows up"


def test_recursion_is_bounded() -> None:
    def depth(node: dict[str, Any]) -> int:
        return 1 + max((depth(c) for c in node.get("children", [])), default=0)

    for seed in range(20):
        tree = generate_document(TreeNode.model_json_schema(), seed)
        assert depth(tree) <= 4
        TreeNode.model_validate(tree)

    for seed in range(20):
        item = generate_document(LinkedItem.model_json_schema(), seed)
        length = 0
        while item is not None:
            item, length = item["next"], length + 1
        assert length <= 4


def test_oneof_picks_a_branch_valid_for_it_alone() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    values = [generate_document(schema, seed) for seed in range(10)]
    assert all(isinstance(v, float) and not v.is_integer() for v in values)


def test_optional_is_mostly_present() -> None:
    schema = TypeAdapter(int | None).json_schema()
    values = [generate_document(schema, seed) for seed in range(40)]
    assert 0 < values.count(None) < 20


def test_structural_tag_gets_text() -> None:
    doc = generate_document({"type": "structural-tag", "structures": [], "triggers": []}, 1)
    assert isinstance(doc, str) and doc


@pytest.mark.parametrize(
    "schema",
    [False, {"$ref": "#/$defs/missing"}, {"$ref": "http://example.com/remote.json"}, {"not": {}, "allOf": [False]}],
)
def test_impossible_schemas_raise(schema: Any) -> None:
    with pytest.raises(DocumentGenerationError):
        generate_document(schema, 0)


def test_endless_recursion_raises() -> None:
    schema = {"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}
    with pytest.raises(DocumentGenerationError, match="infinitely deep"):
        generate_document(schema, 0)


def test_unsupported_pattern_is_best_effort() -> None:
    # A lookahead is beyond the pattern generator: it still returns a string, never raises.
    doc = generate_document({"type": "string", "pattern": "^(?=x)x+$"}, 0)
    assert isinstance(doc, str)


def test_draft7_schema_validates_with_its_own_draft() -> None:
    schema = HAND_SCHEMAS["draft-07 definitions and tuples"]
    for seed in SEEDS:
        Draft7Validator(schema).validate(generate_document(schema, seed))


def test_pydantic_version_is_2() -> None:
    assert int(pydantic.VERSION.split(".")[0]) >= 2
