"""Memory and snapshot cost of the document a patch stream builds, against the document itself.

Method (all in one run, ratios printed against targets from issues 18 and 19):
- peak memory: tracemalloc peak while iterating a PatchStream over an in-memory
  body (events dropped as they come), against the tracemalloc peak of
  `json.loads` of the final document's JSON text (json.loads shares repeated
  keys, the builder does not);
- a long stream building a small document: many `replace` ops rewriting a
  ~1 KB document; peak against the same document from json.loads (memory must
  follow the document, not the bytes received);
- snapshot on every event: CPU time (process_time, best of 3) of iterating and
  reading every event's snapshot, over growing op counts; the scaling exponent
  is the log-log slope (2 when each read is O(document) and the document grows
  with the ops; a replay of the history would show 3). Then the same for
  snapshots of a constant-size document read newest-first after the stream
  ended: O(document) per read makes it linear (exponent 1).

Run: python benchmarks/document_memory.py
"""

from __future__ import annotations

import gc
import json
import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from stream_throughput import body_of, document, patch_stream

from dottxt._patch import ops_from_document


def peak_of(fn: Callable[[], object]) -> int:
    """Peak bytes Python allocated while `fn()` ran (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def drain(body: bytes) -> Any:
    """Iterate a stream over `body`, dropping the events; return the stream (its `.document` makes a copy)."""
    stream = patch_stream(body)
    for _ in stream:
        pass
    return stream


def small_document_body(target_bytes: int) -> tuple[bytes, Any]:
    """A stream of about `target_bytes` whose ops keep rewriting a ~1 KB document."""
    doc = {"title": "x" * 100, "notes": ["n" * 100 for _ in range(5)], "status": "draft"}
    ops = ops_from_document(doc)
    head = b"".join(json.dumps(op).encode() + b"\n" for op in ops)
    lines = [
        json.dumps({"op": "replace", "path": f"/notes/{i % 5}", "value": f"{i:08d}" * 12}).encode() + b"\n"
        for i in range(5)
    ]
    repeat = max(1, (target_bytes - len(head)) // sum(map(len, lines)))
    body = head + b"".join(lines) * repeat
    return body, drain(body).document


def cpu_time(fn: Callable[[], object], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def exponent(points: list[tuple[int, float]]) -> float:
    (n0, t0), (n1, t1) = points[0], points[-1]
    return math.log(t1 / t0) / math.log(n1 / n0)


def read_every_snapshot(body: bytes) -> None:
    for event in patch_stream(body):
        event.snapshot  # noqa: B018 - reading it is the point


def read_snapshots_newest_first(body: bytes) -> None:
    events = list(patch_stream(body))
    for event in reversed(events):
        event.snapshot  # noqa: B018


def constant_document_body(n_ops: int) -> bytes:
    ops = ops_from_document({"items": [0, 1, 2, 3, 4], "label": "constant"})
    ops += [{"op": "replace", "path": f"/items/{i % 5}", "value": i} for i in range(n_ops - len(ops))]
    return b"".join(json.dumps(op).encode() + b"\n" for op in ops)


def against_loads(title: str, body: bytes, text: str, target: str) -> None:
    """Print the peak of draining `body` against the peak of `json.loads(text)`, the document it builds."""
    loads_peak = peak_of(lambda: json.loads(text))
    ours_peak = peak_of(lambda: drain(body))
    n_ops = body.count(b"\n")
    print(f"{title}: {len(body) / 1e6:.1f} MB of NDJSON ({n_ops} ops), a {len(text):,} B document")
    print(f"  json.loads of the document  {loads_peak / 1e3:10.1f} KB")
    print(f"  PatchStream, peak           {ours_peak / 1e3:10.1f} KB   ratio {ours_peak / loads_peak:.2f}x ({target})")


def main() -> None:
    doc = document(100_000)
    against_loads("peak memory, events dropped as they come", body_of(doc), json.dumps(doc), "target <= 1.5x")
    body, small = small_document_body(50_000_000)
    against_loads(
        "a long stream building a small document", body, json.dumps(small), "target: a few MB, whatever the length"
    )

    print("snapshot read on every event as it arrives (the document grows with the ops)")
    points = []
    for size in (1_000, 2_000, 4_000, 8_000):
        b = body_of(document(size))
        t = cpu_time(lambda b=b: read_every_snapshot(b))
        points.append((size, t))
        print(f"  {size:>6} ops  {t * 1e3:9.1f} ms")
    print(f"  scaling exponent: {exponent(points):.2f} (O(document) per read: 2; a replay of history: 3)")

    print("snapshots read newest-first after the stream ended (a document of constant size)")
    points = []
    for size in (2_000, 4_000, 8_000, 16_000):
        b = constant_document_body(size)
        t = cpu_time(lambda b=b: read_snapshots_newest_first(b))
        points.append((size, t))
        print(f"  {size:>6} ops  {t * 1e3:9.1f} ms")
    print(f"  scaling exponent: {exponent(points):.2f} (target ~1: O(document) per read, never the history)")


if __name__ == "__main__":
    main()
