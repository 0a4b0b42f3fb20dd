"""Memory and snapshot cost under a hostile stream (issue 19, SPEC section 5 "Costs and resources").

1. Bytes vs document: a stream of many bytes building a tiny document must stay within a few MB.
   - ndjson: `add` ops overwriting the same small key (every op valid, the document never grows);
   - sse:    `: keep-alive` comments between the content chunks of a small document.
   Each runs in a fresh subprocess under tracemalloc (RSS hides retained objects in the arenas start-up
   freed); printed: bytes received, the heap's peak while streaming, and its ratios to the document's size.
2. Snapshot on every event: reading `event.snapshot` as each event arrives, over a document of
   constant size, at N and 4N ops (linear: 4x), and the cost relative to not reading it; then
   reading the kept events' snapshots newest-first after the stream ended (issue 19 #19: must stay 4x).

The body is synthesised as it is read (never held whole), fed through the real PatchStream.

Run: python benchmarks/hostile_memory.py            (30 MB per stream, under a minute)
     python benchmarks/hostile_memory.py --gb       (1 GB per stream under tracemalloc: several minutes)
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure the tree this file is in

from dottxt._schemas import OutputSchema
from dottxt._streaming import PatchStream
from dottxt._transport import CancelToken, Transport

VALUE = "v" * 40


class Synth:
    """A response body made on the fly: `head`, then `block` repeated until `total` bytes, then `tail`."""

    def __init__(self, head: bytes, block: bytes, tail: bytes, total: int) -> None:
        self.parts = [head]
        self.block = block
        self.repeats = max(0, (total - len(head) - len(tail)) // len(block))
        self.tail = tail
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        if self.parts:
            self.sent += len(self.parts[0])
            return self.parts.pop()
        if self.repeats > 0:
            n = max(1, min(self.repeats, size // len(self.block)))
            self.repeats -= n
            data = self.block * n
        else:
            data, self.tail = self.tail, b""
        self.sent += len(data)
        return data

    read1 = read

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


def stream_over(body: Synth, patch_source: str) -> PatchStream[Any]:
    """A PatchStream reading `body` as if it came from a server."""
    transport = Transport(api_key="k", base_url="http://127.0.0.1:9/v1")
    response = requests.Response()
    response.status_code = 200
    response.raw = body

    def send(cancel: CancelToken) -> requests.Response:
        return response

    return PatchStream(transport, send, output=OutputSchema({"type": "object"}), sse=patch_source == "sse")


def ndjson_body(total: int) -> Synth:
    op = json.dumps({"op": "add", "path": "/k", "value": VALUE}).encode() + b"\n"
    return Synth(b'{"op":"add","path":"","value":{}}\n', op * 1000, b"", total)


def sse_body(total: int) -> Synth:
    def chunk(content: str) -> bytes:
        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}).encode() + b"\n\n"

    return Synth(chunk('{"k": '), b": keep-alive\n\n" * 1000, chunk(json.dumps(VALUE) + "}"), total)


def child(scenario: str, total: int) -> None:
    """Run one stream in this (fresh) process; print its figures as JSON."""
    body = (ndjson_body if scenario == "ndjson" else sse_body)(total)
    stream = stream_over(body, scenario)
    tracemalloc.start()
    start = time.perf_counter()
    events = sum(1 for _ in stream)
    document = stream.result()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    figures = {"bytes": body.sent, "events": events, "doc": len(json.dumps(document)), "peak": peak}
    print(json.dumps({**figures, "seconds": seconds}))


def memory(total: int) -> None:
    print(f"1. bytes vs document ({total / 1e6:.0f} MB per stream, each in a fresh process)")
    print(
        f"   {'stream':8} {'received':>10} {'events':>10} {'doc':>5} {'heap peak':>15} "
        f"{'peak/doc':>9} {'bytes/peak':>10} {'s':>6}"
    )
    for scenario in ("ndjson", "sse"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--bytes", str(total)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        f = json.loads(out)
        grown = max(1, f["peak"])
        print(
            f"   {scenario:8} {f['bytes'] / 1e6:>8.0f}MB {f['events']:>10} {f['doc']:>5} {grown / 1e6:>13.1f}MB "
            f"{grown / f['doc']:>9.0f} {f['bytes'] / grown:>10.0f} {f['seconds']:>6.1f}"
        )


def timed(run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def overwrite_stream(ops: int) -> PatchStream[Any]:
    """`ops` adds into a document of constant size: 20 keys, each overwritten in turn."""
    lines = [b'{"op":"add","path":"","value":{}}\n']
    lines += [json.dumps({"op": "add", "path": f"/k{i % 20}", "value": VALUE}).encode() + b"\n" for i in range(ops)]
    body = b"".join(lines)
    return stream_over(Synth(body, b"\n", b"", len(body)), "gateway")


def no_read(ops: int) -> None:
    for _ in overwrite_stream(ops):
        pass


def read_each(ops: int) -> None:
    for event in overwrite_stream(ops):
        _ = event.snapshot


def read_newest_first(ops: int) -> None:
    events = list(overwrite_stream(ops))
    for event in reversed(events):
        _ = event.snapshot


def snapshots(ops: int) -> None:
    print("2. snapshot cost, document of 20 keys, N and 4N ops (linear: 4.0x)")
    runs = {
        "no snapshot read": no_read,
        "snapshot on every event": read_each,
        "snapshots newest-first after the end": read_newest_first,
    }
    for name, run in runs.items():
        n = ops if run is not read_newest_first else ops // 5  # replaying history would take minutes at ops
        small = timed(functools.partial(run, n))
        large = timed(functools.partial(run, 4 * n))
        print(
            f"   {name:38} {n:>6}->{4 * n:<6} {small * 1e3:8.1f} ms -> {large * 1e3:8.1f} ms  = {large / small:5.1f}x"
        )
    ratio = timed(lambda: read_each(ops)) / timed(lambda: no_read(ops))
    print(f"   snapshot on every event / no snapshot read: {ratio:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", action="store_true", help="1 GB per stream instead of 30 MB")
    parser.add_argument("--bytes", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["ndjson", "sse"], help=argparse.SUPPRESS)
    parser.add_argument("--ops", type=int, default=5_000, help="ops of the smaller snapshot run")
    args = parser.parse_args()
    total = args.bytes or (1 << 30 if args.gb else 30 * 1000 * 1000)
    if args.child:
        child(args.child, total)
        return
    memory(total)
    snapshots(args.ops)


if __name__ == "__main__":
    main()
