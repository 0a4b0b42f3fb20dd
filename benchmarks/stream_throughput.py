"""Per-op cost of the patch stream, from memory: bytes -> lines -> ops -> events.

Compares iterating a PatchStream over an in-memory body with two baselines in
the same run: `json.loads` per line (the floor: decoding alone) and a naive
stream that deep-copies the whole document after every op (what "a snapshot
per event" costs when done eagerly). Then the scaling exponent from 1k to 100k
ops: the log-log slope of time against op count (1.0 is linear). Times are CPU
time of this process (process_time), best of several runs, so that other load
on the machine disturbs the ratios less. Memory: benchmarks/document_memory.py.

Run: python benchmarks/stream_throughput.py
"""

from __future__ import annotations

import copy
import io
import json
import math
import statistics
import time
from collections.abc import Callable

import requests

from dottxt._patch import apply_add, ops_from_document
from dottxt._schemas import OutputSchema
from dottxt._streaming import PatchStream
from dottxt._transport import Transport

OUTPUT = OutputSchema({"type": "object"})
TRANSPORT = Transport(api_key="benchmark", base_url="http://127.0.0.1:9")  # never used to send: the body is in memory


def document(n_ops: int) -> dict:
    """A realistic document of about n_ops ops: a few header fields, then records of 4 values each."""
    records = max(1, (n_ops - 5) // 4)
    return {
        "intent": "billing",
        "urgency": "high",
        "steps": [{"id": i, "title": f"step {i}", "done": i % 2 == 0} for i in range(records)],
    }


def body_of(doc: dict) -> bytes:
    return b"".join(json.dumps(op).encode() + b"\n" for op in ops_from_document(doc))


def patch_stream(body: bytes) -> PatchStream[object]:
    """A PatchStream reading `body` from memory, as if it came over HTTP."""
    response = requests.Response()
    response.status_code = 200
    response.raw = io.BytesIO(body)
    return PatchStream(TRANSPORT, lambda cancel: response, output=OUTPUT)


def ours(body: bytes) -> int:
    return sum(1 for _ in patch_stream(body))


def loads_per_line(body: bytes) -> int:
    count = 0
    for line in body.split(b"\n"):
        if line:
            json.loads(line)
            count += 1
    return count


def deepcopy_per_op(body: bytes) -> int:
    doc = None
    snapshots = 0
    for line in body.split(b"\n"):
        if line:
            op = json.loads(line)
            doc = apply_add(doc, op["path"], op["value"])
            copy.deepcopy(doc)
            snapshots += 1
    return snapshots


def best_of(fn: Callable[[bytes], int], body: bytes, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn(body)
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    body = body_of(document(64_000))
    n = loads_per_line(body)
    assert ours(body) == n
    t_ours, t_loads = math.inf, math.inf
    for _ in range(5):  # interleaved, so that a change in the machine's load hits both
        t_ours = min(t_ours, best_of(ours, body, 1))
        t_loads = min(t_loads, best_of(loads_per_line, body, 1))
    print(f"64k-op stream ({n} ops, {len(body) / 1e6:.2f} MB)")
    print(f"  json.loads per line     {t_loads / n * 1e6:8.2f} us/op")
    ratio = t_ours / t_loads
    print(f"  PatchStream             {t_ours / n * 1e6:8.2f} us/op   ratio vs loads: {ratio:.2f}x (target <= 1.2x)")
    print(f"  PatchStream throughput  {n / t_ours / 1e6:.2f} M ops/s, {len(body) / t_ours / 1e6:.0f} MB/s")
    small = body_of(document(2_000))
    t_small, t_naive = best_of(ours, small, 3), best_of(deepcopy_per_op, small, 1)
    print(f"  deep copy per op (2k ops: quadratic) is {t_naive / t_small:.0f}x slower than PatchStream")

    sizes = [1_000, 10_000, 100_000]
    timings = []
    print("scaling (PatchStream, events not snapshotted)")
    for size in sizes:
        b = body_of(document(size))
        count = loads_per_line(b)
        t = statistics.median(best_of(ours, b, 3) for _ in range(3))
        timings.append((count, t))
        print(f"  {count:>7} ops  {t * 1e3:8.2f} ms  {t / count * 1e6:6.2f} us/op")
    (n0, t0), (n1, t1) = timings[0], timings[-1]
    exponent = math.log(t1 / t0) / math.log(n1 / n0)
    print(f"  scaling exponent 1k -> 100k: {exponent:.3f} (target <= 1.03)")


if __name__ == "__main__":
    main()
