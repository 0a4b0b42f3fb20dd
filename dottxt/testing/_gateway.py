"""FakeGateway: a real loopback HTTP server that speaks the .txt API, for offline tests and demos.

It serves `GET /v1/models` and `POST /v1/chat/completions` in all three shapes (plain
JSON, `stream: true` SSE, `stream: "patch"` NDJSON ops), checks the key, the model and
the `response_format` like the real gateway, paces streams, records every request and
injects faults on demand. Standard library only (plus jsonschema for schema checks).

Reply documents: the next one queued with `enqueue()`, else one generated from the
request's schema by `generate_document`, seeded by (gateway seed, request `seed`,
schema), so the same request to a gateway with the same seed gets the same document.

`max_tokens`: the reply's JSON text costs one token per 4 characters. When it costs
more than `max_tokens`, the plain and SSE content is cut to `max_tokens * 4`
characters with `finish_reason: "length"`, and a patch stream sends only the ops whose
value is complete within those first `max_tokens * 4` characters of the text (never
all of them), then ends normally, leaving the document incomplete: that is how a
client sees "cut off by max_tokens".
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import selectors
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from ._documents import generate_document
from ._http import Handler, RecordedRequest, Server, Server6
from ._replies import Failure, Raw, StreamFault, json_copy, load_recording

__all__ = ["FakeGateway", "RecordedRequest"]

_log = logging.getLogger("dottxt.testing")

Framing = Literal["chunked", "close"]
_JOIN_TIMEOUT = 10.0  # seconds close() waits for each connection thread (they stop at once)


class FakeGateway:
    """A loopback .txt gateway on a real socket: `with FakeGateway() as gw: DotTxt(base_url=gw.base_url)`.

    Pacing: before each patch op the gateway waits `op_delay` seconds, a string value
    `op_delay * max(1, len(value) / 20)`, so early fields visibly arrive first; SSE
    waits `op_delay / 4` per content piece. close() interrupts any wait.
    `stream_framing` picks how streamed bodies are framed: "chunked" (default;
    keep-alive) or "close" (`Connection: close`, the body ends when the socket
    does). `ascii_json=True` sends reply JSON with `\\uXXXX` escapes (surrogate pairs
    included) instead of raw UTF-8.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Sequence[str] = ("dottxt/fake-model",),
        seed: int = 0,
        op_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_framing: Framing = "chunked",
        ascii_json: bool = False,
    ) -> None:
        if stream_framing not in ("chunked", "close"):
            raise ValueError(f"stream_framing must be 'chunked' or 'close', not {stream_framing!r}")
        self.api_key = api_key
        self.models: tuple[str, ...] = tuple(models)
        self.seed = seed
        self.op_delay = op_delay
        self.stream_framing: Framing = stream_framing
        self.ascii_json = ascii_json
        self.requests: list[RecordedRequest] = []

        self._lock = threading.Lock()
        self._closed = threading.Event()  # set once, by close(), under the lock
        self._queue: deque[Any] = deque()
        self._failures: deque[Failure] = deque()
        self._stream_faults: deque[StreamFault] = deque()
        self._connections: dict[socket.socket, threading.Thread] = {}
        #: How many TCP connections it has accepted: shows whether a client reuses its connections.
        self.connections_accepted = 0
        self._ids = itertools.count(1)

        server_cls = Server6 if ":" in host else Server
        self._server = server_cls((host, port), Handler)
        self._server.gateway = self
        self._server.socket.setblocking(False)
        self.host = host
        self.port: int = self._server.server_port
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name=f"FakeGateway:{self.port}", daemon=True)
        self._thread.start()

    # -- addresses

    @property
    def url(self) -> str:
        """`http://host:port`, without the `/v1` prefix."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass to `DotTxt(base_url=...)`: the URL ending in `/v1`."""
        return f"{self.url}/v1"

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "running"
        return f"<FakeGateway {self.base_url} {state}>"

    # -- scripting replies and faults

    def enqueue(self, document: Any) -> None:
        """Queue the next reply's document (FIFO): any JSON value, a string included.

        It is copied as JSON data when queued (a Pydantic model instance, dataclass
        or Enum is dumped like `generate` would parse it back), so changing
        `document` afterwards changes nothing; a value with no JSON form is a TypeError.
        """
        queued = json_copy(document)
        with self._lock:
            self._queue.append(queued)

    def enqueue_raw(self, text: str) -> None:
        """Queue the next reply as raw text, sent verbatim (FIFO, shared with `enqueue`).

        It is the message content of a plain or SSE reply (so tests can simulate
        invalid JSON from the model) and the body lines of a patch stream (so
        tests can hand-craft any line).
        """
        if not isinstance(text, str):
            raise TypeError(f"enqueue_raw takes a str, not {type(text).__name__}")
        with self._lock:
            self._queue.append(Raw(text))

    def replay(self, path: str) -> None:
        """Queue a recording made by `dottxt stream --record FILE` (FIFO, shared with `enqueue`).

        A patch stream sends the recorded ops with their recorded timing (`op_delay`
        does not apply); a plain or SSE request gets the document they build. A file
        that is not such a recording is a ValueError naming the line.
        """
        recording = load_recording(path)
        with self._lock:
            self._queue.append(recording)

    def fail_next(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        """The next request (any endpoint) gets `status`; calls queue up, one request each.

        `body` defaults to an OpenAI-style error; a dict/list is sent as JSON, a str
        or bytes as is. `headers` (e.g. `{"Retry-After": "1"}`) are added.
        """
        with self._lock:
            self._failures.append(Failure(status, body, dict(headers or {})))

    def cut_next_after(self, n: int) -> None:
        """The next stream (patch or SSE) sends `n` ops / events, then drops the connection.

        No terminating chunk is sent: with chunked framing clients see a protocol
        error; with close framing, an early end of the body. SSE events count from the
        role delta; `n` past the end sends everything but `[DONE]` / the last chunk.
        """
        self._add_stream_fault(StreamFault("cut", n))

    def stall_next_after(self, n: int) -> None:
        """The next stream sends `n` ops / events, then goes silent until the client leaves or close()."""
        self._add_stream_fault(StreamFault("stall", n))

    def error_next_after(self, n: int, message: str = "the gateway failed mid-stream") -> None:
        """The next stream sends `n` ops / events, then an `{"error": {"message": ...}}` line and ends."""
        self._add_stream_fault(StreamFault("error", n, message))

    def _add_stream_fault(self, fault: StreamFault) -> None:
        if fault.after < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._stream_faults.append(fault)

    # -- used by the handler threads

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids):06d}"

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _pop_failure(self) -> Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _pop_stream_fault(self) -> StreamFault | None:
        with self._lock:
            return self._stream_faults.popleft() if self._stream_faults else None

    def _next_reply(self, schema: Any, request_seed: Any, prompt: str) -> Any:
        """The next queued reply, else a document generated from the schema that follows `prompt`."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        material = f"{self.seed}|{request_seed!r}|{json.dumps(schema, sort_keys=True)}|{prompt}"
        return generate_document(schema, random.Random(material), prompt=prompt)

    # -- serving

    def _serve(self) -> None:
        """Accept loop: waits on the listening socket and the wake-up socket, never polls."""
        listener = self._server.socket
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed.is_set():
                ready = sel.select()
                if any(key.fileobj is self._wake_r for key, _ in ready):
                    return
                try:
                    conn, addr = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError:
                    if self._closed.is_set():
                        return
                    raise
                self._start_connection(conn, addr)

    def _start_connection(self, conn: socket.socket, addr: Any) -> None:
        conn.setblocking(True)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        thread = threading.Thread(
            target=self._handle_connection,
            args=(conn, addr),
            name=f"FakeGateway:{self.port}:conn",
            daemon=True,
        )
        with self._lock:
            if self._closed.is_set():
                conn.close()
                return
            self._connections[conn] = thread
            self.connections_accepted += 1
            thread.start()

    def _handle_connection(self, conn: socket.socket, addr: Any) -> None:
        try:
            Handler(conn, addr, self._server)
        except OSError as exc:  # the client went away, or close() shut the socket down
            _log.debug("connection from %s ended: %r", addr, exc)
        except Exception:
            _log.exception("FakeGateway: unexpected error on a connection from %s", addr)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
                try:
                    conn.close()
                except OSError:
                    pass

    # -- lifecycle

    def close(self) -> None:
        """Stop serving, cut every live connection (streams see EOF at once) and join all threads."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            # Under the lock: a connection thread closes its socket under it too, so
            # shutdown() never hits a closed (or reused) descriptor.
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._connections.values())
        self._wake_w.send(b"x")
        self._thread.join()
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
        with self._lock:  # only if a thread failed to finish in time: close its socket anyway
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._server.server_close()
        self._wake_r.close()
        self._wake_w.close()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until close() has been called (True), or `timeout` passed (False); for serve-until-Ctrl-C."""
        return self._closed.wait(timeout)

    def __enter__(self) -> FakeGateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
