"""`dottxt demo --web`: the ticket triage as a page, streamed over SSE from an in-process FakeGateway.

One stdlib HTTP server on 127.0.0.1 serves the page, its CSS and script, the
package's `dottxt-stream.js`, and `GET /triage?message=...` as `sse_events`
frames. When the browser leaves mid-stream, a watcher sees the socket close
and closes the upstream stream at once; each hang-up is put on `hangups`.
"""

from __future__ import annotations

import html
import itertools
import queue
import re
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._demo import TICKET, TRIAGE, SupportTicket
from . import JS_PATH, sse_events

__all__ = ["DEFAULT_WEB_OP_DELAY", "DemoServer", "HangUp", "serve", "triage_for"]

#: Seconds per op for the page: slower than the terminal demo, so a person can watch each card fill.
DEFAULT_WEB_OP_DELAY = 0.15
_MODEL = "dottxt/fake-model"
_KEY = "demo-key"  # the in-process gateway's own key: nothing real is ever sent anywhere
_HERE = Path(__file__).parent
_FILES = {
    "/": ("demo.html", "text/html; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/dottxt-stream.js": (JS_PATH.name, "text/javascript; charset=utf-8"),
}

# The demo's script: what the fake "model" answers for a message that is not the built-in ticket.
_INTENTS = (
    ("billing", ("charge", "refund", "invoice", "bill", "payment", "paid", "price", "card", "subscription")),
    ("technical", ("crash", "error", "bug", "slow", "broken", "fail", "load", "install", "app", "sync")),
    ("account", ("password", "login", "log in", "sign in", "locked", "account", "email", "username", "delete")),
)
_URGENCY = (
    ("critical", ("outage", "down for everyone", "data loss", "security", "hacked", "production")),
    ("high", ("urgent", "asap", "immediately", "locked out", "twice", "cannot", "can't", "crash")),
    ("low", ("love", "thanks", "great", "suggest", "idea", "would be nice")),
)
_REPLIES = {
    "billing": "I have looked at the charges on your account and passed this to our billing team with priority.",
    "technical": "I have reproduced the steps you describe and opened a ticket with our engineers.",
    "account": "I have checked your account and sent a secure link to the email address on file.",
    "feedback": "I have shared your note with the product team; this is exactly the kind of feedback we act on.",
}


def triage_for(message: str) -> dict[str, Any]:
    """The SupportTicket the demo's fake model writes for `message` (the built-in ticket gets TRIAGE)."""
    if message.strip() == TICKET:
        return dict(TRIAGE)
    text = message.lower()
    intent = next((name for name, words in _INTENTS if any(word in text for word in words)), "feedback")
    urgency = next((name for name, words in _URGENCY if any(word in text for word in words)), "medium")
    first = re.split(r"(?<=[.!?])\s", " ".join(message.split()), maxsplit=1)[0]
    quoted = first if len(first) <= 140 else first[:137].rstrip() + "..."
    reply = (
        f'Hi, thanks for reaching out. You wrote: "{quoted}" {_REPLIES[intent]} '
        "You will hear from us by email as soon as there is news, and you can reply to this message "
        "at any time to add details."
    )
    return {"intent": intent, "urgency": urgency, "reply": reply}


@dataclass(frozen=True)
class HangUp:
    """A browser that left mid-stream: how many frames it got, and whether the upstream was closed."""

    frames_sent: int
    upstream_closed: bool


class _HangUpWatch:
    """Waits (on its own thread) for the browser to close its socket, then calls `on_hang_up` once."""

    def __init__(self, connection: socket.socket, on_hang_up: Any) -> None:
        self._connection = connection
        self._on_hang_up = on_hang_up
        self._wake_r, self._wake_w = socket.socketpair()
        self.hung_up = False
        self._thread = threading.Thread(target=self._watch, name="dottxt-demo-hangup", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._connection, selectors.EVENT_READ, "browser")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                for key, _ in selector.select():
                    if key.data == "wake":
                        return
                    try:
                        gone = self._connection.recv(1, socket.MSG_PEEK) == b""
                    except OSError:
                        gone = True
                    if gone:
                        self.hung_up = True
                        self._on_hang_up()
                        return
                    selector.unregister(self._connection)  # a browser talking mid-stream: only wait for the end

    def stop(self) -> None:
        """End the watch and join its thread."""
        self._wake_w.send(b"x")
        self._thread.join()
        self._wake_r.close()
        self._wake_w.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every request thread
    demo: DemoServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL, not a line per request."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/triage":
            message = parse_qs(url.query).get("message", [""])[0].strip() or TICKET
            self.server.demo.stream_to(self, message)
            return
        entry = _FILES.get(url.path)
        if entry is None:
            self.send_error(404)
            return
        body = (_HERE / entry[0]).read_bytes()
        if url.path == "/":
            body = body.replace(b"__TICKET__", html.escape(TICKET).encode("utf-8"))
        self.send_response(200)
        self.send_header("Content-Type", entry[1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)


class DemoServer:
    """The web demo: an HTTP server on 127.0.0.1, a FakeGateway and a client, all in this process.

    `serve_forever()` for the CLI; in tests, `start()` serves on a thread. `close()`
    (or leaving the `with`) stops serving, ends live streams and joins every thread.
    """

    def __init__(self, *, port: int = 0, op_delay: float = DEFAULT_WEB_OP_DELAY) -> None:
        import requests

        from .._client import DotTxt
        from ..testing import FakeGateway

        #: One `HangUp` per browser that left before its stream ended.
        self.hangups: queue.Queue[HangUp] = queue.Queue()
        self._gateway = FakeGateway(api_key=_KEY, models=(_MODEL,), op_delay=op_delay)
        session = requests.Session()
        session.trust_env = False  # loopback: an HTTP(S)_PROXY from the environment must not be asked
        self._client = DotTxt(
            api_key=_KEY, base_url=self._gateway.base_url, max_retries=0, session=session, patch_source="gateway"
        )
        self._session = session
        self._enqueue_lock = threading.Lock()  # a reply is queued and taken by one request at a time
        self._live: set[Any] = set()
        self._live_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.demo = self

    @property
    def url(self) -> str:
        """The page's address, e.g. `http://127.0.0.1:8765/`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> DemoServer:
        """Serve on a background thread (for tests and embedding)."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="dottxt-demo-web", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until `close()` is called elsewhere or Ctrl-C."""
        self._httpd.serve_forever()

    def close(self) -> None:
        """Stop serving, close every live stream, then join all threads and close the gateway."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with self._live_lock:
            live = list(self._live)
        for frames in live:
            frames.close()
        self._httpd.server_close()
        self._client.close()
        self._session.close()
        self._gateway.close()

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stream_to(self, handler: BaseHTTPRequestHandler, message: str) -> None:
        """Answer one `/triage` request: the ticket's SSE frames, each written the moment it arrives."""
        with self._enqueue_lock:
            self._gateway.enqueue(triage_for(message))
            stream = self._client.stream(model=_MODEL, response_format=SupportTicket, input=message)
            frames = sse_events(stream)
            first = next(frames)  # the request is out and has taken the queued reply
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("X-Accel-Buffering", "no")
        handler.end_headers()
        with self._live_lock:
            self._live.add(frames)
        watch = _HangUpWatch(handler.connection, frames.close)
        sent, last, failed = 0, "", False
        try:
            for frame in itertools.chain([first], frames):
                handler.wfile.write(frame.encode("utf-8"))
                sent, last = sent + 1, frame
        except OSError:  # the browser left between two frames
            failed = True
        finally:
            watch.stop()
            frames.close()
            with self._live_lock:
                self._live.discard(frames)
        finished = last.startswith(("event: done", "event: error"))
        if (failed or watch.hung_up) and not finished:
            self.hangups.put(HangUp(frames_sent=sent, upstream_closed=stream.closed))


def serve(*, port: int = 0, op_delay: float | None = None, emit: Callable[[str], object] = print) -> None:
    """`dottxt demo --web`: print the page's URL, then serve it until Ctrl-C (KeyboardInterrupt propagates)."""
    with DemoServer(port=port, op_delay=DEFAULT_WEB_OP_DELAY if op_delay is None else op_delay) as demo:
        emit(f"Open {demo.url} in a browser to watch a ticket being triaged field by field (Ctrl-C to stop).")
        demo.serve_forever()
