"""What the fake gateway answers, shaped but not sent: queued replies, faults, and the three reply shapes.

No I/O here: `_http` writes what these functions build. A reply's document comes from
`FakeGateway` (queued with `enqueue`, recorded with `replay`, or generated from the
schema and the prompt); this module turns it into a chat completion body, SSE chunk
events, or paced patch-op lines, applying `max_tokens` the way the gateway does.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .._patch import apply_op, ops_from_document

__all__ = [
    "Failure",
    "StreamFault",
    "Raw",
    "Replay",
    "Reply",
    "tokens",
    "truncate",
    "model_record",
    "json_copy",
    "check_response_format",
    "load_recording",
    "completion_body",
    "patch_items",
    "sse_items",
]

MODEL_CREATED = 1_700_000_000  # fixed, so model listings are reproducible
#: (bytes to send, seconds to wait before sending them): one item of a paced stream.
Item = tuple[bytes, float]


@dataclass(frozen=True)
class Failure:
    """A reply queued by fail_next(): the next request gets it, whatever it asked for."""

    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class StreamFault:
    """What the next stream does after `after` ops / events: drop the connection, go silent, or send an error."""

    kind: Literal["cut", "stall", "error"]
    after: int
    message: str = ""


@dataclass(frozen=True)
class Raw:
    """A queued raw reply: sent verbatim (invalid JSON on purpose, or hand-made patch lines)."""

    text: str


@dataclass(frozen=True)
class Replay:
    """A queued recording (`dottxt stream --record`): each op with its time in seconds since the request."""

    ops: tuple[tuple[float, dict[str, Any]], ...]

    def document(self) -> Any:
        """The document the ops build, for a plain or SSE request."""
        doc: Any = None
        for _, op in self.ops:
            doc = apply_op(doc, op)
        return doc


@dataclass(frozen=True)
class Reply:
    """What one chat request resolved to, ready to be written in the requested shape."""

    model: str
    document: Any = None
    raw: str | None = None
    replay: Replay | None = None
    max_tokens: int | None = None
    request_seed: Any = None
    include_usage: bool = False
    prompt_tokens: int = 0
    fault: StreamFault | None = None
    ascii_json: bool = False

    def text(self) -> str:
        """The message content of a plain or SSE reply."""
        if self.raw is not None:
            return self.raw
        document = self.replay.document() if self.replay is not None else self.document
        return json.dumps(document, ensure_ascii=self.ascii_json)

    def usage(self, content: str) -> dict[str, int]:
        completion = tokens(content)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def tokens(text: str) -> int:
    """The fake tokenizer: about four characters per token."""
    return math.ceil(len(text) / 4)


def truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """(content, finish_reason) for `max_tokens`."""
    if max_tokens is not None and tokens(text) > max_tokens:
        return text[: max_tokens * 4], "length"
    return text, "stop"


def _op_offsets(doc: Any) -> list[int]:
    """Per op of ops_from_document(doc): where in json.dumps(doc) its value is complete."""
    offsets: list[int] = []
    pos = 0

    def walk(value: Any) -> None:
        nonlocal pos
        if isinstance(value, (dict, list)):
            pos += 1
            offsets.append(pos)
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for i, (key, child) in enumerate(items):
                pos += 2 if i else 0
                if key is not None:
                    pos += len(json.dumps(key, ensure_ascii=False)) + 2
                walk(child)
            pos += 1
        else:
            pos += len(json.dumps(value, ensure_ascii=False))
            offsets.append(pos)

    walk(doc)
    return offsets


def model_record(model_id: str) -> dict[str, Any]:
    """A model as `GET /v1/models` lists it, owned by its id's `owner/` prefix (else "dottxt")."""
    owner = model_id.split("/", 1)[0] if "/" in model_id else "dottxt"
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": owner}


def _split_pieces(text: str, rng: random.Random) -> Iterator[str]:
    """Irregular token-sized pieces (1-8 characters) of `text`, split anywhere."""
    i = 0
    while i < len(text):
        n = rng.randint(1, 8)
        yield text[i : i + n]
        i += n


def json_copy(document: Any) -> Any:
    """A deep copy of `document` as plain JSON data (dict, list, str, int, float, bool, None)."""
    try:
        return json.loads(json.dumps(document, allow_nan=False))
    except (TypeError, ValueError):
        pass
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return json.loads(json.dumps(to_jsonable_python(document), allow_nan=False))
    except (TypeError, ValueError, PydanticSerializationError) as exc:
        raise TypeError(f"enqueue() needs a JSON document, not {type(document).__name__}: {exc}") from None


def check_response_format(response_format: Any) -> tuple[Any, str | None]:
    """(schema, None) for a usable response_format, else (None, the 400 message)."""
    expected = 'expected {"type": "json_schema", "json_schema": {"schema": {...}}}'
    if response_format is None:
        return (
            None,
            f"'response_format' is required: every completion is constrained by a JSON Schema ({expected}).",
        )
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None, f"Invalid 'response_format': {expected}."
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        return None, f"Invalid 'response_format': 'json_schema' must hold a 'schema' ({expected})."
    schema = spec["schema"]
    if not isinstance(schema, dict):
        return (
            None,
            f"Invalid 'response_format': the schema must be a JSON object, not {type(schema).__name__}.",
        )
    if schema.get("type") in ("structural-tag", "structural_tag"):
        return schema, None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the root"
        return None, f"Invalid JSON Schema in 'response_format' at {where}: {exc.message}"
    return schema, None


def load_recording(path: str) -> Replay:
    """The ops of a `dottxt stream --record FILE` recording; a ValueError naming the line that is wrong."""
    ops: list[tuple[float, dict[str, Any]]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: not JSON ({exc})") from None
            ms = entry.get("ms") if isinstance(entry, dict) else None
            op = entry.get("op") if isinstance(entry, dict) else None
            if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms < 0 or not isinstance(op, dict):
                raise ValueError(f'{path}, line {number}: expected {{"ms": <number >= 0>, "op": {{...}}}}')
            ops.append((ms / 1000.0, op))
    if not ops:
        raise ValueError(f"{path} holds no recorded ops")
    return Replay(tuple(ops))


def completion_body(reply: Reply, completion_id: str) -> dict[str, Any]:
    """A plain `chat.completion` for `reply`, cut by `max_tokens`."""
    content, finish = truncate(reply.text(), reply.max_tokens)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": reply.usage(content),
    }


def _op_line(op: dict[str, Any]) -> bytes:
    return (json.dumps(op, ensure_ascii=False) + "\n").encode("utf-8")


def patch_items(reply: Reply, op_delay: float) -> list[Item]:
    """The NDJSON lines of a patch stream with their pacing.

    Raw text goes line by line, `op_delay` apart; a recording keeps its own timing; a
    document's ops wait `op_delay` each (a string `op_delay * max(1, len / 20)`), and
    under `max_tokens` only the ops whose value is complete within the kept text are sent.
    """
    if reply.raw is not None:
        return [(line.encode("utf-8"), op_delay) for line in reply.raw.splitlines(keepends=True)]
    if reply.replay is not None:
        paced, before = [], 0.0
        for at, op in reply.replay.ops:
            paced.append((_op_line(op), max(0.0, at - before)))
            before = at
        return paced
    ops = ops_from_document(reply.document)
    if reply.max_tokens is not None:
        kept, finish = truncate(json.dumps(reply.document, ensure_ascii=False), reply.max_tokens)
        if finish == "length":  # only the ops whose value is complete within the kept text
            keep = sum(1 for offset in _op_offsets(reply.document) if offset <= len(kept))
            ops = ops[: min(keep, len(ops) - 1)]
    items: list[Item] = []
    for op in ops:
        value = op["value"]
        pace = op_delay * max(1.0, len(value) / 20) if isinstance(value, str) else op_delay
        items.append((_op_line(op), pace))
    return items


def sse_items(reply: Reply, *, completion_id: str, seed: int, op_delay: float) -> list[Item]:
    """The `data:` events of an SSE reply (role delta, content pieces, finish, usage), `op_delay / 4` per piece."""
    content, finish = truncate(reply.text(), reply.max_tokens)
    rng = random.Random(f"{seed}|split|{reply.request_seed!r}|{content}")
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": reply.model,
            "system_fingerprint": "fp_fake",
            "choices": [choice],
            **extra,
        }

    def event(payload: Any) -> bytes:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    items = [(event(chunk({"role": "assistant", "content": ""})), 0.0)]
    items += [(event(chunk({"content": piece})), op_delay / 4) for piece in _split_pieces(content, rng)]
    items.append((event(chunk({}, finish)), 0.0))
    if reply.include_usage:
        usage_chunk = chunk({}, usage=reply.usage(content))
        usage_chunk["choices"] = []
        items.append((event(usage_chunk), 0.0))
    return items
