"""generate_many throughput against a fake API with a fixed latency, at concurrency 1, 8 and 32.

A threaded HTTP server in a child process (so its threads do not compete with
the client's for the GIL) answers every chat completion after exactly LATENCY
seconds. With a fixed latency the best any client can do is `concurrency /
LATENCY` requests per second; reported is the measured rate and its ratio to
that ideal (1.00 = no overhead at all), and the client process's CPU time
per request: once concurrency / LATENCY exceeds 1 / (CPU per request), the
client (one process, one GIL) is the bottleneck, not the window. Each run sends
N inputs through one `DotTxt`; a short warm-up run opens the connections first.

Run: python benchmarks/batch_throughput.py   (about 15 s)
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dottxt import DotTxt

N = 1000
LATENCY = 0.010  # seconds per request, as a model would take
CONCURRENCY = (1, 8, 32)
MODEL = "dottxt/fake-model"
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}


class _Handler(BaseHTTPRequestHandler):
    """Every POST: wait LATENCY, then a chat completion echoing the prompt (keep-alive)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, with no delayed-ACK stall

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(LATENCY)
        content = json.dumps({"echo": body["messages"][-1]["content"]})
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        payload = json.dumps({"id": "b", "object": "chat.completion", "model": MODEL, "choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(conn: multiprocessing.connection.Connection) -> None:
    """Child process: serve until told to stop."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    conn.send(f"http://127.0.0.1:{server.server_address[1]}/v1")
    with server:
        import threading

        threading.Thread(target=server.serve_forever, daemon=True).start()
        conn.recv()
        server.shutdown()


def measure(client: DotTxt, n: int, concurrency: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to get n items, checking every one succeeded."""
    prompts = [f"prompt {i}" for i in range(n)]
    start, cpu = time.perf_counter(), time.process_time()
    items = list(client.generate_many(prompts, model=MODEL, response_format=SCHEMA, concurrency=concurrency))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(items) == n and all(item.ok and item.value == {"echo": item.input} for item in items)
    return seconds, cpu


def main() -> None:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=serve, args=(child,), daemon=True)
    process.start()
    base_url = parent.recv()
    print(f"{N} inputs, fixed latency {LATENCY * 1000:.0f} ms per request")
    print(f"{'concurrency':>11}  {'seconds':>8}  {'req/s':>8}  {'ideal req/s':>11}  {'ratio':>5}  client CPU/request")
    try:
        with DotTxt(api_key="bench", base_url=base_url, max_retries=0) as client:
            for concurrency in CONCURRENCY:
                measure(client, concurrency * 2, concurrency)  # warm-up: the connections exist
                seconds, cpu = measure(client, N, concurrency)
                rate, ideal = N / seconds, concurrency / LATENCY
                row = f"{concurrency:>11}  {seconds:>8.2f}  {rate:>8.0f}  {ideal:>11.0f}  {rate / ideal:>5.2f}"
                print(f"{row}  {cpu / N * 1000:.2f} ms")
    finally:
        parent.send("stop")
        process.join(10)


if __name__ == "__main__":
    main()
