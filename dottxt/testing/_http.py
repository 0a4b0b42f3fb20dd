"""The fake gateway's HTTP side: the server classes and the request handler (routing, auth, errors, streaming).

`Handler` reads a request, records it, checks it like the real gateway (key, model,
`response_format`, parameters) and writes what `_replies` shapes; `FakeGateway` owns
the sockets and threads and tells the handler what to answer.
"""

from __future__ import annotations

import hmac
import json
import logging
import selectors
import socket
import socketserver
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ._documents import DocumentGenerationError
from ._prompt import last_user_text
from ._replies import (
    Failure,
    Item,
    Raw,
    Replay,
    Reply,
    StreamFault,
    check_response_format,
    completion_body,
    model_record,
    patch_items,
    sse_items,
    tokens,
)

if TYPE_CHECKING:
    from ._gateway import FakeGateway

__all__ = ["RecordedRequest", "Server", "Server6", "Handler"]

_log = logging.getLogger("dottxt.testing")


class _Headers(dict[str, str]):
    """A dict of request headers whose lookups ignore case (keys are stored lower-case)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the gateway received it (headers look up case-insensitively)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    body: bytes = b""


class Server(HTTPServer):
    """The HTTP server; `FakeGateway` runs its accept loop and connection threads itself."""

    request_queue_size = 128  # 32 clients connecting at once must not hit a full backlog
    gateway: FakeGateway

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup (socket.getfqdn), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class Server6(Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    """Handles the requests of one connection (keep-alive) for the gateway."""

    protocol_version = "HTTP/1.1"
    server: Server
    request_id = ""
    _chunked = True

    def handle_one_request(self) -> None:
        self.request_id = ""
        super().handle_one_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        """Every response, even the base class's own errors, carries an x-request-id."""
        super().send_response(code, message)
        if not self.request_id:
            self.request_id = self.gw._next_id("req_fake_")
        self.send_header("x-request-id", self.request_id)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    # -- plumbing

    @property
    def gw(self) -> FakeGateway:
        return self.server.gateway

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _start(self, status: int, content_type: str, headers: Mapping[str, str] = {}) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)

    def _send_body(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}) -> None:
        self._start(status, content_type, headers)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_body(status, body, "application/json", headers)

    def _error(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] = {},
    ) -> None:
        """An OpenAI-style error response."""
        error = {"message": message, "type": type, "param": param, "code": code}
        self._send_json(status, {"error": error}, headers)

    # -- routing

    def _route(self, method: str) -> None:
        gw = self.gw
        self.request_id = gw._next_id("req_fake_")
        raw = self._read_body()
        try:
            data = json.loads(raw) if raw else None
            bad_json = False
        except ValueError:
            data, bad_json = None, True
        path = urlsplit(self.path).path
        gw._record(RecordedRequest(method, path, _Headers(self.headers.items()), data, raw))

        failure = gw._pop_failure()
        if failure is not None:
            self._send_failure(failure)
            return
        route = path.rstrip("/")
        if route == "/v1/models" or route.startswith("/v1/models/"):
            if method != "GET":
                self._error(405, f"Method {method} not allowed on {path}", code="method_not_allowed")
            elif self._authorized():
                # OpenAI's SDK sends `dottxt/fake-model` as `dottxt%2Ffake-model`
                self._models(unquote(route[len("/v1/models/") :]) if route != "/v1/models" else None)
        elif route == "/v1/chat/completions":
            if method != "POST":
                self._error(405, f"Method {method} not allowed on {path}", code="method_not_allowed")
            elif self._authorized():
                self._chat(data, bad_json)
        else:
            self._error(404, f"Unknown endpoint {method} {path}", code="unknown_url")

    def _send_failure(self, failure: Failure) -> None:
        body = failure.body
        if body is None:
            self._error(
                failure.status,
                f"Injected failure: HTTP {failure.status}",
                type="server_error" if failure.status >= 500 else "invalid_request_error",
                code="injected_failure",
                headers=failure.headers,
            )
        elif isinstance(body, (str, bytes)):
            data = body.encode("utf-8") if isinstance(body, str) else body
            try:
                json.loads(data)
                content_type = "application/json"
            except ValueError:
                content_type = "text/plain; charset=utf-8"
            self._send_body(failure.status, data, content_type, failure.headers)
        else:
            self._send_json(failure.status, body, failure.headers)

    def _authorized(self) -> bool:
        key = self.gw.api_key
        if key is None:
            return True
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._error(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
            return False
        if not hmac.compare_digest(token.strip().encode(), key.encode()):
            self._error(401, "Incorrect API key provided.", code="invalid_api_key")
            return False
        return True

    def _models(self, model_id: str | None) -> None:
        if model_id is None:
            self._send_json(200, {"object": "list", "data": [model_record(m) for m in self.gw.models]})
        elif model_id in self.gw.models:
            self._send_json(200, model_record(model_id))
        else:
            self._model_not_found(model_id)

    def _model_not_found(self, model_id: str, param: str | None = None) -> None:
        message = f"The model `{model_id}` does not exist or you do not have access to it."
        self._error(404, message, code="model_not_found", param=param)

    # -- chat completions

    def _chat(self, data: Any, bad_json: bool) -> None:
        if bad_json or not isinstance(data, dict):
            self._error(400, "The request body must be a JSON object.")
            return
        model = data.get("model")
        if not isinstance(model, str) or not model:
            self._error(400, "You must provide a model parameter.", param="model")
            return
        if model not in self.gw.models:
            self._model_not_found(model, param="model")
            return
        schema, problem = check_response_format(data.get("response_format"))
        if problem is not None:
            self._error(400, problem, param="response_format", code="invalid_response_format")
            return
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "'messages' must be a non-empty list of messages.", param="messages")
            return
        stream = data.get("stream", False)
        if stream not in (False, None, True, "patch"):
            self._error(400, f"'stream' must be true, false or \"patch\", not {stream!r}.", param="stream")
            return
        max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            self._error(400, "'max_tokens' must be a positive integer.", param="max_tokens")
            return

        request_seed = data.get("seed")
        try:
            queued = self.gw._next_reply(schema, request_seed, last_user_text(messages))
        except DocumentGenerationError as exc:
            self._error(400, f"Cannot generate a document for this response_format: {exc}", param="response_format")
            return
        stream_options = data.get("stream_options")
        reply = Reply(
            model=model,
            document=None if isinstance(queued, (Raw, Replay)) else queued,
            raw=queued.text if isinstance(queued, Raw) else None,
            replay=queued if isinstance(queued, Replay) else None,
            max_tokens=max_tokens,
            request_seed=request_seed,
            include_usage=isinstance(stream_options, dict) and bool(stream_options.get("include_usage")),
            prompt_tokens=sum(tokens(json.dumps(m.get("content", ""))) + 3 for m in messages if isinstance(m, dict)),
            fault=self.gw._pop_stream_fault() if stream in (True, "patch") else None,
            ascii_json=self.gw.ascii_json,
        )
        if stream is True:
            self._sse(reply)
        elif stream == "patch":
            self._patch(reply)
        else:
            self._plain(reply)

    def _begin_stream(self, content_type: str) -> None:
        self._start(200, content_type, {"Cache-Control": "no-cache"})
        self._chunked = self.gw.stream_framing == "chunked"
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _write(self, data: bytes) -> None:
        """One piece of a streamed body, sent at once as its own chunk."""
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)

    def _end_stream(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Abort the connection without ending the body: the client sees it cut short."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _stall(self) -> None:
        """Go silent until the client disconnects or the gateway closes, then drop."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.connection, selectors.EVENT_READ)
            sel.select()  # readable at EOF: the client left, or close() shut the socket down
        self._drop()

    def _pace(self, seconds: float) -> bool:
        """Wait `seconds` (0 = none); False when the gateway closed meanwhile."""
        if seconds <= 0:
            return not self.gw._closed.is_set()
        return not self.gw._closed.wait(seconds)

    def _run_stream(self, items: Sequence[Item], fault: StreamFault | None, trailer: bytes, error_line: str) -> None:
        """Write `items` (data, delay before it) applying `fault`, then `trailer` and the end.

        `error_line` is the template (`{}`: the error JSON) of an "error" fault's last line.
        """
        for i, (data, delay) in enumerate(items):
            if fault is not None and i == fault.after:
                break
            if not self._pace(delay):
                self._drop()
                return
            self._write(data)
        if fault is None:
            if trailer:
                self._write(trailer)
            self._end_stream()
        elif fault.kind == "cut":
            self._drop()
        elif fault.kind == "stall":
            self._stall()
        else:
            payload = {"error": {"message": fault.message, "type": "server_error", "code": None}}
            self._write(error_line.format(json.dumps(payload, ensure_ascii=False)).encode("utf-8"))
            self._end_stream()

    # -- the three reply shapes

    def _plain(self, reply: Reply) -> None:
        self._send_json(200, completion_body(reply, self.gw._next_id("chatcmpl-fake")))

    def _patch(self, reply: Reply) -> None:
        items = patch_items(reply, self.gw.op_delay)
        self._begin_stream("application/x-ndjson")
        self._run_stream(items, reply.fault, b"", "{}\n")

    def _sse(self, reply: Reply) -> None:
        gw = self.gw
        items = sse_items(reply, completion_id=gw._next_id("chatcmpl-fake"), seed=gw.seed, op_delay=gw.op_delay)
        self._begin_stream("text/event-stream; charset=utf-8")
        self._run_stream(items, reply.fault, b"data: [DONE]\n\n", "data: {}\n\n")
