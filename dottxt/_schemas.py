"""Schemas: turn whatever the user passes as `response_format` into a JSON Schema, and
validate the model's output against it, returning it typed as the user asked.
"""

from __future__ import annotations

import functools
import json
import typing
import urllib.parse
from collections.abc import Mapping
from typing import Any, Generic, TypeVar, cast

import jsonschema
import pydantic
from jsonschema import Draft202012Validator

from ._errors import InvalidOutputError, InvalidSchemaError
from ._lines import loads

__all__ = ["normalize_schema", "build_response_format", "OutputSchema"]

_STRUCTURAL_TAG = "structural-tag"

T = TypeVar("T")


def normalize_schema(response_format: Any) -> dict[str, Any]:
    """Return the JSON Schema (a dict) for any `response_format` input.

    Accepts a JSON Schema dict, a JSON string holding one, an object with
    `to_json()` (a genson SchemaBuilder), or any type Pydantic's TypeAdapter
    accepts. A root `{"type": "structural-tag"}` passes through unchecked.
    Anything else raises InvalidSchemaError saying what was wrong.
    """
    schema, _adapter = _resolve(response_format)
    return schema


def build_response_format(response_format: Any, name: str = "response") -> dict[str, Any]:
    """Wrap the schema in the OpenAI-style `response_format` the chat endpoint expects."""
    if not isinstance(name, str) or not name:
        raise TypeError("name must be a non-empty string")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": normalize_schema(response_format)}}


def _resolve(response_format: Any) -> tuple[dict[str, Any], pydantic.TypeAdapter[Any] | None]:
    """The JSON Schema for an input, and the TypeAdapter that types the output (None for plain schemas).

    A schema nested deeper than the checks can walk is an InvalidSchemaError, never a RecursionError.
    """
    try:
        return _resolve_any(response_format)
    except RecursionError:
        raise InvalidSchemaError(
            "the schema is nested too deeply to check; name the repeated parts in $defs and point at them with $ref"
        ) from None


def _resolve_any(response_format: Any) -> tuple[dict[str, Any], pydantic.TypeAdapter[Any] | None]:
    if isinstance(response_format, Mapping):
        return _check_schema_dict(dict(response_format)), None
    if isinstance(response_format, (str, bytes, bytearray)):
        return _check_schema_dict(_loads_schema(response_format, "the JSON string")), None
    to_json = getattr(response_format, "to_json", None)
    if callable(to_json) and not isinstance(response_format, type):
        try:
            text = to_json()
        except Exception as exc:
            raise InvalidSchemaError(f"{type(response_format).__name__}.to_json() failed: {exc}") from exc
        if not isinstance(text, (str, bytes, bytearray)):
            raise InvalidSchemaError(
                f"{type(response_format).__name__}.to_json() returned {type(text).__name__}, not a JSON string"
            )
        return _check_schema_dict(_loads_schema(text, f"{type(response_format).__name__}.to_json()")), None
    if _is_type_like(response_format):
        adapter = type_adapter(response_format)
        try:
            schema = adapter.json_schema()
        except Exception as exc:  # pydantic raises several kinds for types it cannot describe
            raise InvalidSchemaError(f"cannot build a JSON Schema for {_type_name(response_format)}: {exc}") from exc
        return schema, adapter
    raise InvalidSchemaError(_unsupported_message(response_format))


def _unsupported_message(value: Any) -> str:
    kind = type(value).__name__
    if isinstance(value, (list, tuple, set)):
        return (
            f"response_format got a {kind} instance; pass a type such as list[int] "
            "or a JSON Schema dict such as {'type': 'array'}"
        )
    if callable(value):
        return f"response_format got a callable ({getattr(value, '__name__', kind)}); pass a type or a JSON Schema"
    if value is None:
        return "response_format is required: pass a Pydantic model, a type, or a JSON Schema"
    return (
        f"response_format got a {kind} instance ({value!r:.60}); expected a JSON Schema dict or string, "
        "an object with to_json(), or a type such as a Pydantic model"
    )


def _loads_schema(text: str | bytes | bytearray, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidSchemaError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidSchemaError(f"{what} holds a JSON {type(data).__name__}, not a JSON Schema object")
    return data


def _check_schema_dict(schema: dict[str, Any]) -> dict[str, Any]:
    """Unwrap an already-wrapped response_format, then check against the Draft 2020-12 metaschema."""
    if schema.get("type") == "json_schema" and isinstance(schema.get("json_schema"), Mapping):
        inner = schema["json_schema"].get("schema")
        if not isinstance(inner, Mapping):
            raise InvalidSchemaError("response_format['json_schema'] has no 'schema' object")
        schema = dict(inner)
    if schema.get("type") == _STRUCTURAL_TAG:
        return schema
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidSchemaError(f"invalid JSON Schema at {where}: {exc.message}") from exc
    _check_local_refs(schema)
    return schema


_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})  # hold values, not schemas


def _check_local_refs(schema: dict[str, Any]) -> None:
    """Refuse a `$ref` to a `#/...` location the schema does not have (the metaschema cannot tell)."""
    refs: list[tuple[str, str]] = []
    nested_ids = False

    def walk(node: Any, where: str) -> None:
        nonlocal nested_ids
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
                    refs.append((value, where or "(root)"))
                elif key == "$id" and where:
                    nested_ids = True  # refs below resolve against another base: leave them be
                elif key not in _DATA_KEYWORDS:
                    walk(value, f"{where}/{key}" if where else key)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}/{index}")

    walk(schema, "")
    if nested_ids:
        return
    for ref, where in refs:
        node: Any = schema
        for raw in ref[2:].split("/"):
            segment = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and segment in node:
                node = node[segment]
            elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
            else:
                raise InvalidSchemaError(f"invalid JSON Schema at {where}: $ref {ref!r} points to nothing")


def _is_type_like(value: Any) -> bool:
    """True for classes and typing constructs (list[int], Literal[...], X | None, Annotated, NewType...)."""
    if isinstance(value, type) or typing.get_origin(value) is not None:
        return True
    return type(value).__module__ in {"typing", "typing_extensions"}


def _type_name(value: Any) -> str:
    return getattr(value, "__name__", None) or repr(value)


def type_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return _cached_adapter(tp)
    except TypeError:  # unhashable typing construct: build it uncached
        return _new_adapter(tp)


@functools.lru_cache(maxsize=256)
def _cached_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return _new_adapter(tp)


def _new_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return pydantic.TypeAdapter(tp)
    except Exception as exc:
        raise InvalidSchemaError(f"cannot build a JSON Schema for {_type_name(tp)}: {exc}") from exc


class OutputSchema(Generic[T]):
    """One response_format, resolved once: its JSON Schema, and how to validate and type the output (a `T`)."""

    def __init__(self, response_format: Any, *, name: str = "response") -> None:
        self.source = response_format
        self.schema, self._adapter = _resolve(response_format)
        self.response_format: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": self.schema},
        }
        self._validator: Draft202012Validator | None = None

    @property
    def is_typed(self) -> bool:
        """True when the output is returned as a Python type (a Pydantic model, a dataclass...)."""
        return self._adapter is not None

    def parse_json(self, text: str | None, *, model: str | None = None, finish_reason: str | None = None) -> T:
        """Decode and validate the model's text output (what `generate` returns)."""
        if text is None:
            raise InvalidOutputError(
                _output_message("the response has no message content", finish_reason),
                model=model,
                finish_reason=finish_reason,
            )
        try:
            document = loads(text)
        except ValueError as exc:
            raise self._mismatch(exc, f"is not valid JSON ({exc})", model, finish_reason, text, None) from exc
        return self.validate(document, model=model, finish_reason=finish_reason, raw_output=text)

    def validate(
        self,
        document: Any,
        *,
        model: str | None = None,
        finish_reason: str | None = None,
        raw_output: str | None = None,
    ) -> T:
        """Validate a decoded document; return it typed (a model instance, dataclass, ...) or as is.

        Every format alike refuses a lone UTF-16 surrogate (text that cannot be
        encoded) and a document nested deeper than validation can walk.
        """
        try:
            text = raw_output if raw_output is not None else json.dumps(document)
            if self._adapter is not None:
                try:
                    return cast(T, self._adapter.validate_json(text))
                except pydantic.ValidationError as exc:
                    raise self._mismatch(
                        exc,
                        f"does not match the schema {first_pydantic_error(exc)}",
                        model,
                        finish_reason,
                        text,
                        document,
                    ) from exc
            json.dumps(document, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError for a lone surrogate
            return cast(T, self._validate_schema(document, model, finish_reason, text))
        except (UnicodeError, RecursionError) as exc:
            why = "holds a lone UTF-16 surrogate" if isinstance(exc, UnicodeError) else "is nested too deeply"
            raise self._mismatch(
                exc, f"does not match the schema (it {why})", model, finish_reason, "", document
            ) from None

    def _validate_schema(self, document: Any, model: str | None, finish_reason: str | None, raw: str) -> Any:
        if self.schema.get("type") == _STRUCTURAL_TAG:
            return document
        if self._validator is None:
            self._validator = Draft202012Validator(self.schema)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(document))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise self._mismatch(
                error, f"does not match the schema at {where}: {error.message}", model, finish_reason, raw, document
            )
        return document

    @staticmethod
    def _mismatch(
        exc: Exception, detail: str, model: str | None, finish_reason: str | None, raw: str, document: Any
    ) -> InvalidOutputError:
        return InvalidOutputError(
            _output_message(f"model output {detail}", finish_reason),
            model=model,
            raw_output=raw,
            finish_reason=finish_reason,
            original_error=exc,
            document=document,
        )


def first_pydantic_error(exc: pydantic.ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = "/".join(str(p) for p in first.get("loc", ())) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"at {where}: {first.get('msg', 'invalid')}{more}"


def _output_message(detail: str, finish_reason: str | None) -> str:
    if finish_reason == "length":
        return f"output was truncated (finish_reason='length'; raise max_tokens): {detail}"
    return detail
