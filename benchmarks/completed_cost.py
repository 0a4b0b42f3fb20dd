"""What tracking finished values costs: iterating a PatchStream with and without `completed()`.

One in-memory body (no network), read three ways in the same run: plain
iteration (`for event in stream`), `completed()` with a few patterns (the
usual use: `"intent"`, `"steps/*"`, `"reply"`; untyped, a JSON Schema), and
the same patterns typed (a Pydantic response_format, so every reported value
is validated as its declared type). Also `completed()` with no patterns
(every value reported), and a few patterns that match only a few values
(what tracking itself costs, apart from making FieldDones). Times are CPU time (process_time), best of several
runs; the ratios are against plain iteration. Target: <= 1.3x with a few
patterns, untyped. `steps/*` reports one value per 4 ops here (records of
3 short fields), so its row is mostly the cost of making 25,000 FieldDones.

Run from a checkout: PYTHONPATH=. python benchmarks/completed_cost.py
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import requests

from dottxt._patch import ops_from_document
from dottxt._schemas import OutputSchema
from dottxt._streaming import PatchStream
from dottxt._transport import CancelToken, Transport

PATTERNS = ("intent", "steps/*", "reply")


class Step(pydantic.BaseModel):
    id: int
    title: str
    done: bool


class Plan(pydantic.BaseModel):
    intent: str
    steps: list[Step]
    reply: str


def document(records: int) -> dict[str, Any]:
    """About 4 ops per record: a header field, then records of 3 values each, then a reply."""
    steps = [{"id": i, "title": f"step {i}", "done": i % 2 == 0} for i in range(records)]
    return {"intent": "billing", "steps": steps, "reply": "We refunded you."}


class _Body(io.BytesIO):
    """A response body from memory, released like a pooled connection."""

    def release_conn(self) -> None:
        pass


def stream_of(body: bytes, transport: Transport, response_format: Any) -> PatchStream[Any]:
    """A PatchStream reading `body` from memory, as if it came over HTTP."""

    def send(cancel: CancelToken) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.raw = _Body(body)
        return response

    return PatchStream(transport, send, output=OutputSchema(response_format))


def plain(stream: PatchStream[Any]) -> Iterator[Any]:
    return iter(stream)


def patterns(stream: PatchStream[Any]) -> Iterator[Any]:
    return stream.completed(*PATTERNS)


def scalars(stream: PatchStream[Any]) -> Iterator[Any]:
    return stream.completed("intent", "reply", "summary/*")


def every(stream: PatchStream[Any]) -> Iterator[Any]:
    return stream.completed()


def best_of(
    read: Callable[[PatchStream[Any]], Iterator[Any]], make: Callable[[], PatchStream[Any]], repeat: int
) -> float:
    times = []
    for _ in range(repeat):
        stream = make()
        start = time.process_time()
        for _ in read(stream):
            pass
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    transport = Transport(api_key="k", base_url="http://127.0.0.1:9")
    doc = document(25_000)
    ops = ops_from_document(doc)
    body = b"".join(json.dumps(op).encode() + b"\n" for op in ops)
    print(f"{len(ops)} ops, {len(body) / 1e6:.1f} MB, best of 7 (CPU time)")
    untyped = {"type": "object"}
    base = best_of(plain, lambda: stream_of(body, transport, untyped), 7)
    rows = [
        ("plain iteration", plain, untyped),
        ("completed('intent', 'reply', 'summary/*')", scalars, untyped),
        (f"completed{PATTERNS}", patterns, untyped),
        (f"completed{PATTERNS}, typed (Plan)", patterns, Plan),
        ("completed() (every value)", every, untyped),
    ]
    for name, read, response_format in rows:
        seconds = best_of(read, lambda rf=response_format: stream_of(body, transport, rf), 7)
        print(f"  {name:52} {seconds * 1e3:8.1f} ms  {seconds / len(ops) * 1e6:5.2f} us/op  {seconds / base:4.2f}x")
    transport.close()


if __name__ == "__main__":
    main()
