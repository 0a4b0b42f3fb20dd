"""A loopback HTTP server that controls every byte, for tests the fake gateway cannot express:
UTF-8 split across reads, stalls, truncated chunked bodies, dropped connections.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[["RawConnection"], None]


class RawConnection:
    """One accepted connection: read the request, then write whatever bytes the test wants."""

    def __init__(self, sock: socket.socket, server: RawServer) -> None:
        self.sock = sock
        self.server = server
        self.method = ""
        self.path = ""
        self.headers: dict[str, str] = {}
        self.body: bytes = b""
        #: True for a handler that answers several requests on this connection (else it hangs up after one).
        self.keep_alive = False

    def read_request(self) -> None:
        """Read the request line, headers and a Content-Length body."""
        data = b""
        while b"\r\n\r\n" not in data:
            piece = self.sock.recv(65536)
            if not piece:
                return
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.path, _ = lines[0].split(" ", 2)
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(self.headers.get("content-length", "0"))
        while len(rest) < length:
            piece = self.sock.recv(65536)
            if not piece:
                break
            rest += piece
        self.body = rest

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: int = 200, headers: dict[str, str] | None = None, *, chunked: bool = True) -> None:
        """Send the status line and headers; chunked, or close-delimited when chunked=False."""
        all_headers = {"Content-Type": "application/x-ndjson", **(headers or {})}
        if chunked:
            all_headers["Transfer-Encoding"] = "chunked"
        if not (chunked and self.keep_alive):  # the server hangs up after this answer: say so, as HTTP asks
            all_headers.setdefault("Connection", "close")
        text = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        self.send(text.encode("latin-1"))

    def chunk(self, data: bytes) -> None:
        """Send one chunk of a chunked body."""
        self.send(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        """Send the terminating chunk."""
        self.send(b"0\r\n\r\n")

    def wait_for_disconnect(self, timeout: float = 5.0) -> bool:
        """True once the client closes its end (recv returns b"" or fails)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True


class RawServer:
    """Accepts connections on 127.0.0.1 and runs `handler(conn)` for each on its own thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.connections: list[RawConnection] = []
        self.errors: list[BaseException] = []
        self.handled = threading.Event()
        self.requested = threading.Event()  # a request has been read in full
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accept_thread = threading.Thread(target=self._accept, name="rawserver-accept", daemon=True)
        self._accept_thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._closing:
                sock.close()
                return
            conn = RawConnection(sock, self)
            self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="rawserver-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: RawConnection) -> None:
        try:
            conn.read_request()
            self.requested.set()
            self.handler(conn)
        except OSError:
            pass  # the client went away: what the test may be checking
        except BaseException as exc:  # surfaced by the test through .errors
            self.errors.append(exc)
        finally:
            self.handled.set()
            try:
                conn.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closing = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()  # wake accept()
        except OSError:
            pass
        self.listener.close()
        for conn in self.connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept_thread.join(5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def ndjson(*ops: dict[str, Any]) -> bytes:
    """Ops as NDJSON bytes, one per line."""
    return b"".join(json.dumps(op).encode() + b"\n" for op in ops)
