"""Shared pytest fixtures and helpers: a FakeGateway and clients on it or on a RawServer, and a thread-leak guard."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dottxt import DotTxt, PatchEvent
from dottxt.testing import FakeGateway
from tests.rawserver import RawConnection, RawServer, ndjson

#: The key the `gateway` fixture expects (`DotTxt(api_key=TEST_KEY, base_url=gateway.base_url)`).
TEST_KEY = "test-key"

#: How long threads that are already finishing get to end before they count as leaked.
THREAD_GRACE_SECONDS = 2.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_thread_leaks: do not fail this test for threads it leaves running")


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves threads running; ones still finishing get a short join() grace."""
    before = set(threading.enumerate())
    yield
    if request.node.get_closest_marker("allow_thread_leaks"):
        return
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    leaked = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread.name)
    if leaked:
        pytest.fail(f"test left {len(leaked)} thread(s) running: {', '.join(sorted(leaked))}")


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A running FakeGateway that expects the key TEST_KEY; closed (threads joined) after the test."""
    with FakeGateway(api_key=TEST_KEY) as gw:
        yield gw


#: The model every FakeGateway serves unless told otherwise.
MODEL = "dottxt/fake-model"

#: A generous bound for things that happen in milliseconds: only a hang reaches it.
WAIT = 5.0

#: The prefix of the SDK's stream worker threads.
STREAM_THREAD = "dottxt-stream-"


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DOTTXT_* settings from the caller's shell and a private config directory (credentials)."""
    for name in ("DOTTXT_API_KEY", "DOTTXT_BASE_URL", "DOTTXT_PATCH_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[DotTxt]:
    """A DotTxt on the `gateway` fixture: no retries, 5 s timeouts."""
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, timeout=(5, 5)) as c:
        yield c


class RawClients:
    """Makes DotTxt clients of RawServers; `raw(handler, **kwargs)` starts a server running `handler`."""

    def __init__(self) -> None:
        self.opened: list[tuple[RawServer, DotTxt]] = []

    def __call__(self, handler: Callable[[RawConnection], None], **kwargs: Any) -> DotTxt:
        server = RawServer(handler)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", (5, 5))
        client = DotTxt(api_key="sk-test", base_url=server.base_url, **kwargs)
        self.opened.append((server, client))
        return client

    @property
    def server(self) -> RawServer:
        """The server of the client made last (to wait on what it saw)."""
        return self.opened[-1][0]

    def close(self) -> None:
        for server, client in self.opened:
            client.close()
            server.close()
        for server, _ in self.opened:
            assert not server.errors, server.errors


@pytest.fixture
def raw() -> Iterator[RawClients]:
    """Clients of RawServers, each server running the handler it was made with; all closed afterwards."""
    clients = RawClients()
    yield clients
    clients.close()


def drain(q: queue.Queue[PatchEvent | None]) -> list[PatchEvent]:
    """Every event up to the None sentinel, which must come (within WAIT seconds per item)."""
    events = []
    while (event := q.get(timeout=WAIT)) is not None:
        events.append(event)
    return events


def stream_threads() -> list[threading.Thread]:
    """The SDK's stream worker threads still running."""
    return [t for t in threading.enumerate() if t.name.startswith(STREAM_THREAD)]


def joined(threads: list[threading.Thread]) -> bool:
    """Join `threads`, WAIT seconds at most each; whether they all ended."""
    for thread in threads:
        thread.join(WAIT)
    return not any(thread.is_alive() for thread in threads)


class Stall:
    """A RawServer handler that answers with `ops` (NDJSON) or `sse` content deltas, or not at all, then stays silent.

    It records the request's arrival and the client's hang-up, which is the only thing that ends the exchange.
    """

    def __init__(self, ops: list[dict[str, Any]] | None = None, *, sse: list[str] | None = None) -> None:
        self.ops, self.sse = ops, sse
        self.arrived = threading.Event()
        self.disconnected = threading.Event()

    def __call__(self, conn: RawConnection) -> None:
        if self.ops is not None:
            conn.head()
            conn.chunk(ndjson(*self.ops))
        elif self.sse is not None:
            conn.head(headers={"Content-Type": "text/event-stream"})
            for piece in self.sse:
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                conn.chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self.arrived.set()
        if conn.wait_for_disconnect(30):
            self.disconnected.set()


class Busy:
    """A RawServer handler that answers every request 503 with `Retry-After: 30`; `answered` is set after the first."""

    def __init__(self) -> None:
        self.attempts = 0
        self.answered = threading.Event()

    def __call__(self, conn: RawConnection) -> None:
        self.attempts += 1
        conn.send(b"HTTP/1.1 503 Busy\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n")
        self.answered.set()


def free_port() -> int:
    """A loopback port nobody listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
