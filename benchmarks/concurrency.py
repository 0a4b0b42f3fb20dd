"""Many background streams on one client vs the same streams read one after another.

A FakeGateway runs in a child process (so its threads and memory are not
counted) and answers every patch stream with the same 50-op document. For
N = 1, 50, 200 we time N `stream_in_background` streams running at once on one
`DotTxt`, against the naive baseline of the same N streams read sequentially
with plain `client.stream(...)` in one thread. Two pacings: ops sent back to
back (pure SDK overhead, CPU-bound), and 1 ms between ops (a model producing
tokens, where waiting dominates). Reported: wall time, events per second, the
ratio to the baseline, the process's peak RSS (ru_maxrss, only ever grows) and
SDK threads still alive once every result() has returned / after join.

Then cancel latency: streams stalled mid-body by an in-process gateway are
cancelled; reported is the time from cancel() until the worker thread has
ended (tests/test_background.py checks that the server sees the disconnect).

Run: python benchmarks/concurrency.py   (about half a minute)
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import resource
import statistics
import sys
import threading
import time
from typing import Any

from dottxt import DotTxt
from dottxt.testing import FakeGateway

KEY = "bench-key"
MODEL = "dottxt/fake-model"
N_VALUES = (1, 50, 200)
PACINGS = (0.0, 0.001)
# All required, no optional parts: the gateway's generated document is the same 50 ops every time.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 5, "maxLength": 20},
        "items": {"type": "array", "items": {"type": "integer"}, "minItems": 47, "maxItems": 47},
    },
    "required": ["title", "items"],
    "additionalProperties": False,
}


def serve(op_delay: float, conn: multiprocessing.connection.Connection) -> None:
    """Child process: run a FakeGateway until told to stop."""
    with FakeGateway(api_key=KEY, op_delay=op_delay) as gateway:
        conn.send(gateway.base_url)
        conn.recv()


def peak_rss_mb() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024


def sdk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dottxt-")]


def sequential(client: DotTxt, n: int) -> tuple[float, int]:
    """Baseline: n plain streams, one after another, in this thread."""
    events = 0
    start = time.perf_counter()
    for _ in range(n):
        with client.stream(model=MODEL, response_format=SCHEMA, input="go", seed=1) as stream:
            for _event in stream:
                events += 1
            stream.result()
    return time.perf_counter() - start, events


def concurrent(client: DotTxt, n: int) -> tuple[float, int, int, int]:
    """n background streams at once; (seconds, events, threads alive at the end, after join)."""
    counts = [0] * n

    def counter(i: int) -> Any:
        def on_event(event: object) -> None:
            counts[i] += 1

        return on_event

    start = time.perf_counter()
    streams = [
        client.stream_in_background(model=MODEL, response_format=SCHEMA, input="go", seed=1, on_event=counter(i))
        for i in range(n)
    ]
    for bg in streams:
        bg.result(timeout=120)
    elapsed = time.perf_counter() - start
    alive_at_end = len(sdk_threads())
    for bg in streams:
        bg.join(5)
    return elapsed, sum(counts), alive_at_end, len(sdk_threads())


def bench_pacing(op_delay: float) -> None:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(op_delay, child))
    process.start()
    base_url = parent.recv()
    try:
        with DotTxt(api_key=KEY, base_url=base_url, max_retries=0) as client:
            ops = sum(1 for _ in client.stream(model=MODEL, response_format=SCHEMA, input="go", seed=1))
            print(f"\npacing: {op_delay * 1000:g} ms between ops, {ops} ops per stream")
            print(
                f"{'N':>4} | {'sequential s':>12} {'ev/s':>9} | {'background s':>12} {'ev/s':>9} | "
                f"{'speed-up':>8} | {'peak RSS MB':>11} | {'threads alive: end / joined':>27}"
            )
            for n in N_VALUES:
                seq_s, seq_events = sequential(client, n)
                con_s, con_events, alive, joined = concurrent(client, n)
                assert seq_events == con_events == n * ops, (seq_events, con_events)
                print(
                    f"{n:>4} | {seq_s:>12.3f} {seq_events / seq_s:>9.0f} | {con_s:>12.3f} "
                    f"{con_events / con_s:>9.0f} | {seq_s / con_s:>7.1f}x | {peak_rss_mb():>11.1f} | "
                    f"{alive:>13} / {joined}"
                )
    finally:
        parent.send("stop")
        process.join(10)


def bench_cancel(n: int = 50) -> None:
    """cancel() on streams blocked reading a silent server: time until the worker thread has ended."""
    latencies = []
    with FakeGateway(api_key=KEY) as gateway, DotTxt(api_key=KEY, base_url=gateway.base_url) as client:
        document = {"title": "stalled", "items": [1, 2, 3]}
        for _ in range(n):
            gateway.enqueue(document)
            gateway.stall_next_after(2)
            bg = client.stream_in_background(model=MODEL, response_format=SCHEMA, input="go")
            bg.queue.get(timeout=10)
            bg.queue.get(timeout=10)  # two ops in: the worker now waits on a silent socket
            start = time.perf_counter()
            bg.cancel()
            bg.join(10)
            latencies.append(time.perf_counter() - start)
            assert bg.cancelled() and bg.queue.get(timeout=10) is None
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"\ncancel() during a stall -> worker thread ended ({n} streams): median {statistics.median(ms):.2f} ms, "
        f"max {ms[-1]:.2f} ms (bound: 100 ms)"
    )


def main() -> None:
    print(f"dottxt concurrency benchmark (python {sys.version.split()[0]}); baseline = sequential client.stream")
    started = time.perf_counter()
    for op_delay in PACINGS:
        bench_pacing(op_delay)
    bench_cancel()
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
