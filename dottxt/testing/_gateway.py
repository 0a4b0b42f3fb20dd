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

import hmac
import itertools
import json
import logging
import math
import random
import selectors
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .._patch import ops_from_document
from ._documents import DocumentGenerationError, generate_document

__all__ = ["FakeGateway", "RecordedRequest"]

_log = logging.getLogger("dottxt.testing")

Framing = Literal["chunked", "close"]
_MODEL_CREATED = 1_700_000_000  # fixed, so model listings are reproducible
_JOIN_TIMEOUT = 10.0  # seconds close() waits for each connection thread (they stop at once)


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


@dataclass(frozen=True)
class _Failure:
    """A reply queued by fail_next(): the next request gets it, whatever it asked for."""

    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class _StreamFault:
    """What the next stream does after `after` ops / events: drop the connection, go silent, or send an error."""

    kind: Literal["cut", "stall", "error"]
    after: int
    message: str = ""


@dataclass(frozen=True)
class _Raw:
    """A queued raw reply: sent verbatim (invalid JSON on purpose, or hand-made patch lines)."""

    text: str


@dataclass(frozen=True)
class _Reply:
    """What one chat request resolved to, ready to be written in the requested shape."""

    model: str
    document: Any = None
    raw: str | None = None
    max_tokens: int | None = None
    request_seed: Any = None
    include_usage: bool = False
    prompt_tokens: int = 0
    fault: _StreamFault | None = None


def _tokens(text: str) -> int:
    """The fake tokenizer: about four characters per token."""
    return math.ceil(len(text) / 4)


def _truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """(content, finish_reason) for `max_tokens`."""
    if max_tokens is not None and _tokens(text) > max_tokens:
        return text[: max_tokens * 4], "length"
    return text, "stop"


def _op_offsets(doc: Any) -> list[int]:
    """Per op of ops_from_document(doc): where in json.dumps(doc) its value is complete."""
    offsets: list[int] = []
    pos = 0

    def walk(value: Any) -> None:
        nonlocal pos
        if isinstance(value, (dict, list)):
            pos += 1
            offsets.append(pos)
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for i, (key, child) in enumerate(items):
                pos += 2 if i else 0
                if key is not None:
                    pos += len(json.dumps(key, ensure_ascii=False)) + 2
                walk(child)
            pos += 1
        else:
            pos += len(json.dumps(value, ensure_ascii=False))
            offsets.append(pos)

    walk(doc)
    return offsets


def _model_record(model_id: str) -> dict[str, Any]:
    """A model as `GET /v1/models` lists it, owned by its id's `owner/` prefix (else "dottxt")."""
    owner = model_id.split("/", 1)[0] if "/" in model_id else "dottxt"
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": owner}


def _split_pieces(text: str, rng: random.Random) -> Iterator[str]:
    """Irregular token-sized pieces (1-8 characters) of `text`, split anywhere."""
    i = 0
    while i < len(text):
        n = rng.randint(1, 8)
        yield text[i : i + n]
        i += n


class _Server(HTTPServer):
    """The HTTP server; `FakeGateway` runs its accept loop and connection threads itself."""

    request_queue_size = 128  # 32 clients connecting at once must not hit a full backlog
    gateway: FakeGateway

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup (socket.getfqdn), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Handles the requests of one connection (keep-alive) for the gateway."""

    protocol_version = "HTTP/1.1"
    server: _Server
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
                self._models(unquote(route[len("/v1/models/") :]) if route != "/v1/models" else None)  # %2F: "/"
        elif route == "/v1/chat/completions":
            if method != "POST":
                self._error(405, f"Method {method} not allowed on {path}", code="method_not_allowed")
            elif self._authorized():
                self._chat(data, bad_json)
        else:
            self._error(404, f"Unknown endpoint {method} {path}", code="unknown_url")

    def _send_failure(self, failure: _Failure) -> None:
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
            self._send_json(200, {"object": "list", "data": [_model_record(m) for m in self.gw.models]})
        elif model_id in self.gw.models:
            self._send_json(200, _model_record(model_id))
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
        schema, problem = _check_response_format(data.get("response_format"))
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
            queued = self.gw._next_reply(schema, request_seed)
        except DocumentGenerationError as exc:
            self._error(400, f"Cannot generate a document for this response_format: {exc}", param="response_format")
            return
        stream_options = data.get("stream_options")
        reply = _Reply(
            model=model,
            document=None if isinstance(queued, _Raw) else queued,
            raw=queued.text if isinstance(queued, _Raw) else None,
            max_tokens=max_tokens,
            request_seed=request_seed,
            include_usage=isinstance(stream_options, dict) and bool(stream_options.get("include_usage")),
            prompt_tokens=sum(_tokens(json.dumps(m.get("content", ""))) + 3 for m in messages if isinstance(m, dict)),
            fault=self.gw._pop_stream_fault() if stream in (True, "patch") else None,
        )
        if stream is True:
            self._sse(reply)
        elif stream == "patch":
            self._patch(reply)
        else:
            self._plain(reply)

    def _text(self, reply: _Reply) -> str:
        if reply.raw is not None:
            return reply.raw
        return json.dumps(reply.document, ensure_ascii=self.gw.ascii_json)

    def _usage(self, reply: _Reply, content: str) -> dict[str, int]:
        completion = _tokens(content)
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": reply.prompt_tokens + completion,
        }

    def _plain(self, reply: _Reply) -> None:
        content, finish = _truncate(self._text(reply), reply.max_tokens)
        completion = {
            "id": self.gw._next_id("chatcmpl-fake"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": self._usage(reply, content),
        }
        self._send_json(200, completion)

    # -- streaming

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

    def _run_stream(
        self, items: Sequence[tuple[bytes, float]], fault: _StreamFault | None, trailer: bytes, error_line: str
    ) -> None:
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

    def _patch(self, reply: _Reply) -> None:
        delay = self.gw.op_delay
        items: list[tuple[bytes, float]] = []
        if reply.raw is not None:
            lines = reply.raw.splitlines(keepends=True)
            items = [(line.encode("utf-8"), delay) for line in lines]
        else:
            ops = ops_from_document(reply.document)
            if reply.max_tokens is not None:
                kept, finish = _truncate(json.dumps(reply.document, ensure_ascii=False), reply.max_tokens)
                if finish == "length":  # only the ops whose value is complete within the kept text
                    keep = sum(1 for offset in _op_offsets(reply.document) if offset <= len(kept))
                    ops = ops[: min(keep, len(ops) - 1)]
            for op in ops:
                value = op["value"]
                pace = delay * max(1.0, len(value) / 20) if isinstance(value, str) else delay
                items.append(((json.dumps(op, ensure_ascii=False) + "\n").encode("utf-8"), pace))
        self._begin_stream("application/x-ndjson")
        self._run_stream(items, reply.fault, b"", "{}\n")

    def _sse(self, reply: _Reply) -> None:
        gw = self.gw
        content, finish = _truncate(self._text(reply), reply.max_tokens)
        rng = random.Random(f"{gw.seed}|split|{reply.request_seed!r}|{content}")
        cid, created = gw._next_id("chatcmpl-fake"), int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": reply.model,
                "system_fingerprint": "fp_fake",
                "choices": [choice],
                **extra,
            }

        def event(payload: Any) -> bytes:
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

        items = [(event(chunk({"role": "assistant", "content": ""})), 0.0)]
        items += [(event(chunk({"content": piece})), gw.op_delay / 4) for piece in _split_pieces(content, rng)]
        items.append((event(chunk({}, finish)), 0.0))
        if reply.include_usage:
            usage_chunk = chunk({}, usage=self._usage(reply, content))
            usage_chunk["choices"] = []
            items.append((event(usage_chunk), 0.0))
        self._begin_stream("text/event-stream; charset=utf-8")
        self._run_stream(items, reply.fault, b"data: [DONE]\n\n", "data: {}\n\n")


def _json_copy(document: Any) -> Any:
    """A deep copy of `document` as plain JSON data (dict, list, str, int, float, bool, None)."""
    try:
        return json.loads(json.dumps(document, allow_nan=False))
    except (TypeError, ValueError):
        pass
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return json.loads(json.dumps(to_jsonable_python(document), allow_nan=False))
    except (TypeError, ValueError, PydanticSerializationError) as exc:
        raise TypeError(f"enqueue() needs a JSON document, not {type(document).__name__}: {exc}") from None


def _check_response_format(response_format: Any) -> tuple[Any, str | None]:
    """(schema, None) for a usable response_format, else (None, the 400 message)."""
    expected = 'expected {"type": "json_schema", "json_schema": {"schema": {...}}}'
    if response_format is None:
        return (
            None,
            f"'response_format' is required: every completion is constrained by a JSON Schema ({expected}).",
        )
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None, f"Invalid 'response_format': {expected}."
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        return None, f"Invalid 'response_format': 'json_schema' must hold a 'schema' ({expected})."
    schema = spec["schema"]
    if not isinstance(schema, dict):
        return (
            None,
            f"Invalid 'response_format': the schema must be a JSON object, not {type(schema).__name__}.",
        )
    if schema.get("type") in ("structural-tag", "structural_tag"):
        return schema, None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the root"
        return None, f"Invalid JSON Schema in 'response_format' at {where}: {exc.message}"
    return schema, None


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
        self._failures: deque[_Failure] = deque()
        self._stream_faults: deque[_StreamFault] = deque()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._ids = itertools.count(1)

        server_cls = _Server6 if ":" in host else _Server
        self._server = server_cls((host, port), _Handler)
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
        queued = _json_copy(document)
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
            self._queue.append(_Raw(text))

    def fail_next(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        """The next request (any endpoint) gets `status`; calls queue up, one request each.

        `body` defaults to an OpenAI-style error; a dict/list is sent as JSON, a str
        or bytes as is. `headers` (e.g. `{"Retry-After": "1"}`) are added.
        """
        with self._lock:
            self._failures.append(_Failure(status, body, dict(headers or {})))

    def cut_next_after(self, n: int) -> None:
        """The next stream (patch or SSE) sends `n` ops / events, then drops the connection.

        No terminating chunk is sent: with chunked framing clients see a protocol
        error; with close framing, an early end of the body. SSE events count from the
        role delta; `n` past the end sends everything but `[DONE]` / the last chunk.
        """
        self._add_stream_fault(_StreamFault("cut", n))

    def stall_next_after(self, n: int) -> None:
        """The next stream sends `n` ops / events, then goes silent until the client leaves or close()."""
        self._add_stream_fault(_StreamFault("stall", n))

    def error_next_after(self, n: int, message: str = "the gateway failed mid-stream") -> None:
        """The next stream sends `n` ops / events, then an `{"error": {"message": ...}}` line and ends."""
        self._add_stream_fault(_StreamFault("error", n, message))

    def _add_stream_fault(self, fault: _StreamFault) -> None:
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

    def _pop_failure(self) -> _Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _pop_stream_fault(self) -> _StreamFault | None:
        with self._lock:
            return self._stream_faults.popleft() if self._stream_faults else None

    def _next_reply(self, schema: Any, request_seed: Any) -> Any:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        material = f"{self.seed}|{request_seed!r}|{json.dumps(schema, sort_keys=True)}"
        return generate_document(schema, random.Random(material))

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
            thread.start()

    def _handle_connection(self, conn: socket.socket, addr: Any) -> None:
        try:
            _Handler(conn, addr, self._server)
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
