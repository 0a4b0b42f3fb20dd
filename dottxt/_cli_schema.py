"""The one schema loader behind `-s/--schema` (generate, stream, batch) and `dottxt schema check/show`.

`-s` takes a JSON Schema file, inline JSON (an argument starting with `{`), or the
concise syntax of Simon Willison's `llm`: `"intent, urgency, reply"`,
`"name, age int, bio: one sentence"` (fields separated by commas, or by newlines when
there are any; types `str` (default), `int`, `float`, `bool`; `: description`).
Standard library only at the top: `_cli` imports this module when a command needs a schema.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ._cli_common import CLIError

__all__ = ["SCHEMA_HELP", "load_schema", "concise_schema", "describe_source"]

#: -s/--schema help, shared by generate, stream and batch.
SCHEMA_HELP = (
    "the schema the output must match: a JSON Schema file, inline JSON ('{...}'), "
    "or fields like 'name, age int, bio: one sentence' (types str, int, float, bool)"
)

_CONCISE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_FIELD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\s+(?P<type>\S+))?$")
#: An argument that names a file, not fields: a path separator or a file extension such as `.json`.
_LOOKS_LIKE_PATH = re.compile(r"[/\\]|\.[A-Za-z0-9]+$")


def concise_schema(text: str) -> dict[str, Any]:
    """The JSON Schema for `llm`'s concise syntax; a CLIError naming the field that cannot be read.

    Every field is required, in the order given (the order fields stream in).
    """
    separator = "\n" if "\n" in text.strip() else ","
    properties: dict[str, Any] = {}
    for part in text.split(separator):
        spec, colon, description = part.partition(":")
        spec = spec.strip()
        if not spec:
            if colon or description.strip():
                raise CLIError(f"concise schema: {part.strip()!r} has a description but no field name")
            continue
        match = _FIELD.match(spec)
        if match is None:
            raise CLIError(
                f"concise schema: cannot read the field {spec!r}; write `name`, `name type` or `name type: description`"
            )
        name, type_name = match["name"], match["type"] or "str"
        if type_name not in _CONCISE_TYPES:
            raise CLIError(
                f"concise schema: field {name!r} has unknown type {type_name!r} (use str, int, float or bool)"
            )
        if name in properties:
            raise CLIError(f"concise schema: field {name!r} is given twice")
        field: dict[str, Any] = {"type": _CONCISE_TYPES[type_name]}
        if description.strip():
            field["description"] = description.strip()
        properties[name] = field
    if not properties:
        raise CLIError("concise schema: no fields given (e.g. -s 'intent, urgency, reply')")
    return {"type": "object", "properties": properties, "required": list(properties)}


def describe_source(spec: str) -> str:
    """How `spec` is read, for messages: `inline JSON`, `the concise schema`, or `schema file NAME`."""
    text = spec.strip()
    if text.startswith("{"):
        return "inline JSON"
    if os.path.exists(spec) or not text or (not re.search(r"[,:\n]", text) and _LOOKS_LIKE_PATH.search(text)):
        return f"schema file {spec}"
    return "the concise schema"


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise CLIError(f"schema file not found: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"schema file {path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise CLIError(f"schema file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise CLIError(f"cannot read schema file {path}: {exc.strerror or exc}") from None


def _parse_json(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise CLIError(f"{where} holds {kind}, not a JSON Schema object")
    return data


def load_schema(spec: str) -> dict[str, Any]:
    """The checked JSON Schema that `-s SPEC` means; a CLIError saying what is wrong (and where) otherwise."""
    source = describe_source(spec)
    if source == "inline JSON":
        data = _parse_json(spec, "the inline schema")
    elif source == "the concise schema":
        data = concise_schema(spec)
    else:
        data = _parse_json(_read_file(spec), f"schema file {spec}")
    from ._errors import InvalidSchemaError
    from ._schemas import normalize_schema

    try:
        return normalize_schema(data)
    except InvalidSchemaError as exc:
        where = spec if source.startswith("schema file") else source
        raise CLIError(f"{where}: {exc}") from None
