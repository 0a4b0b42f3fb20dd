"""Latency from the server writing an op line to the event reaching the caller's loop, over loopback.

A raw socket server writes one op every few milliseconds, noting the time just
before each write; the client notes when each event arrives (same process,
same clock). Measured for a chunked body and a close-delimited one, for
`DotTxt.stream` and, as the naive baseline, `requests`' `iter_lines()`, which
waits to fill 512-byte reads before it hands over a line.

Run: python benchmarks/first_event_latency.py
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import requests

from dottxt import DotTxt

N_OPS = 300
GAP = 0.002  # seconds between lines: every line is on its own on the wire


def serve_once(chunked: bool, sent: list[float]) -> tuple[int, threading.Thread, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Connection: close\r\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n" + framing + b"\r\n")
            ops = [{"op": "add", "path": "", "value": {}}] + [
                {"op": "add", "path": f"/f{i}", "value": i} for i in range(N_OPS - 1)
            ]
            for op in ops:
                line = json.dumps(op).encode() + b"\n"
                payload = b"%x\r\n%s\r\n" % (len(line), line) if chunked else line
                sent.append(time.perf_counter())
                conn.sendall(payload)
                time.sleep(GAP)
            if chunked:
                conn.sendall(b"0\r\n\r\n")
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread, listener


def ours(port: int) -> Iterator[object]:
    with DotTxt(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
        yield from client.stream(model="m", response_format={"type": "object"}, input="x")


def naive_iter_lines(port: int) -> Iterator[object]:
    with requests.post(
        f"http://127.0.0.1:{port}/v1/chat/completions", json={"stream": "patch"}, stream=True, timeout=30
    ) as response:
        for line in response.iter_lines():
            if line:
                yield json.loads(line)


def measure(consumer: Callable[[int], Iterator[object]], chunked: bool) -> list[float]:
    sent: list[float] = []
    port, thread, _ = serve_once(chunked, sent)
    arrived = []
    for _ in consumer(port):
        arrived.append(time.perf_counter())
    thread.join()
    return [(a - s) * 1e3 for a, s in zip(arrived, sent, strict=True)]


def report(name: str, latencies: list[float]) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"  {name:34s} n={len(ordered):4d}  p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  max {ordered[-1]:7.3f} ms")
    return p99


def main() -> None:
    print(f"write-to-event latency over loopback, {N_OPS} ops {GAP * 1e3:.0f} ms apart (target p99 < 2 ms)")
    for chunked in (True, False):
        framing = "chunked" if chunked else "close-delimited"
        p99_ours = report(f"DotTxt.stream, {framing}", measure(ours, chunked))
        p99_naive = report(f"requests iter_lines, {framing}", measure(naive_iter_lines, chunked))
        print(f"  -> p99 ratio naive/ours: {p99_naive / p99_ours:.1f}x")


if __name__ == "__main__":
    main()
