"""Connection reuse: does a stream read to its end hand its connection back for the next request?

Method: a FakeGateway behind a loopback TCP relay that counts the connections
it accepts (the gateway does not expose that). One DotTxt client runs 100
requests one after another through the relay, for each way of calling: a patch
stream iterated to its end (NDJSON, the default), the same with
patch_source="sse", `generate`, and `chat.completions.create(stream=True)`.
Counted: connections the relay accepted. Target (issue 18): 1 per 100 requests
for every path that reads its body to the end. Two controls show the count
tells reuse from no reuse: streams closed after their first event (their
bodies are unread, so each connection must be dropped) and a gateway framing
streams with `Connection: close` (each stream ends with its socket).

Run from the repository root: PYTHONPATH=. python benchmarks/connection_reuse.py
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Callable
from typing import Literal

import pydantic

from dottxt import DotTxt
from dottxt.testing import FakeGateway

REQUESTS = 100
KEY = "benchmark-key"
MODEL = "dottxt/fake-model"


class Reply(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[str]
    reply: str


class CountingRelay:
    """A loopback TCP relay to `target` that counts the connections clients open through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._run, name="CountingRelay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    sock = key.fileobj
                    if sock is self._wake_r:
                        for peer in list(self._peers):
                            peer.close()
                        return
                    if sock is self._listener:
                        self._accept(sel)
                    else:
                        assert isinstance(sock, socket.socket)
                        self._relay(sel, sock)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        upstream = socket.create_connection(self.target)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(sock, selectors.EVENT_READ)
        self._peers[client], self._peers[upstream] = upstream, client

    def _relay(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        """Forward what `sock` sent to its peer; when either side ends, end both."""
        peer = self._peers.get(sock)
        if peer is None:  # its pair was ended earlier in the same round of events
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, peer):
            sel.unregister(end)
            del self._peers[end]
            end.close()

    def close(self) -> None:
        self._wake_w.send(b"x")
        self._thread.join()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()


def stream_to_end(client: DotTxt) -> None:
    for _ in client.stream(model=MODEL, response_format=Reply, input="a ticket"):
        pass


def stream_first_event_only(client: DotTxt) -> None:
    with client.stream(model=MODEL, response_format=Reply, input="a ticket") as stream:
        next(iter(stream))


def generate(client: DotTxt) -> None:
    client.generate(model=MODEL, response_format=Reply, input="a ticket")


def chat_stream(client: DotTxt) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "reply", "schema": Reply.model_json_schema()}}
    messages = [{"role": "user", "content": "a ticket"}]
    for _ in client.chat.completions.create(model=MODEL, messages=messages, response_format=schema, stream=True):
        pass


def connections(
    call: Callable[[DotTxt], None], *, patch_source: Literal["gateway", "sse"] = "gateway", framing: str = "chunked"
) -> int:
    """Connections opened for REQUESTS sequential calls through one client."""
    with FakeGateway(api_key=KEY, stream_framing=framing) as gateway:  # type: ignore[arg-type]
        relay = CountingRelay((gateway.host, gateway.port))
        try:
            base_url = f"http://127.0.0.1:{relay.port}/v1"
            with DotTxt(api_key=KEY, base_url=base_url, patch_source=patch_source, max_retries=0) as client:
                for _ in range(REQUESTS):
                    call(client)
        finally:
            relay.close()
        return relay.accepted


def main() -> None:
    print(f"Connections opened for {REQUESTS} sequential requests through one client (a counting loopback relay)")
    cases: list[tuple[str, Callable[[], int]]] = [
        ("stream to its end (NDJSON patch stream)", lambda: connections(stream_to_end)),
        ('stream to its end, patch_source="sse"', lambda: connections(stream_to_end, patch_source="sse")),
        ("generate", lambda: connections(generate)),
        ("chat.completions.create(stream=True) to its end", lambda: connections(chat_stream)),
    ]
    missed = []
    for label, run in cases:
        opened = run()
        if opened > 1:
            missed.append(label)
        print(f"  {label:<56} {opened:>4}  target 1: {'OK' if opened <= 1 else 'MISSED'}")
    controls: list[tuple[str, Callable[[], int]]] = [
        ("control: stream closed after its first event", lambda: connections(stream_first_event_only)),
        ("control: streams framed with Connection: close", lambda: connections(stream_to_end, framing="close")),
    ]
    for label, run in controls:
        print(f"  {label:<56} {run():>4}  expected {REQUESTS}: no reuse is possible")
    verdict = f"MISSED for {', '.join(missed)}" if missed else "OK"
    print(f"target: a stream read to its end reuses its connection: {verdict}")


if __name__ == "__main__":
    main()
