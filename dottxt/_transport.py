"""The HTTP transport every feature shares: one pooled `requests.Session`, retries, error mapping.

It knows nothing about schemas or patch ops; it turns a method and a path into
a `requests.Response` with a 2xx status, or raises one of `dottxt.errors`.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json as _json
import logging
import math
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._errors import (
    MAX_ERROR_BODY,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    redact,
    redact_body,
    shorten,
    status_error,
)
from ._version import __version__

__all__ = ["Transport", "Timeout", "CancelToken", "RETRY_STATUSES", "retry_delay", "interrupt_response"]

log = logging.getLogger("dottxt")

Timeout = float | tuple[float, float] | tuple[float, None] | None

#: Statuses worth asking again: the request may succeed a moment later.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
#: The longest `Retry-After` we honour; a server asking for more gets this.
MAX_RETRY_AFTER = 60.0
#: Pooled connections per host: room for hundreds of threads streaming at once, none waiting or warned about.
POOL_MAXSIZE = 256
#: Redirects followed before giving up (a redirect loop costs at most this many requests).
MAX_REDIRECTS = 5


def retry_delay(attempt: int, retry_after: str | None = None, *, now: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based).

    A `Retry-After` header (seconds or an HTTP date) wins, capped at
    MAX_RETRY_AFTER; otherwise exponential backoff from INITIAL_RETRY_DELAY,
    capped at MAX_RETRY_DELAY, with up to 25% jitter taken off so that many
    clients retrying at once spread out.
    """
    if retry_after:
        seconds = _parse_retry_after(retry_after, now=now)
        if seconds is not None:
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    base = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
    return base * (1.0 - 0.25 * random.random())


def _parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None  # "nan", "inf": unreadable, so back off instead
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.timestamp() - (time.time() if now is None else now)


def interrupt_response(response: requests.Response) -> None:
    """Wake a thread blocked reading `response` (from any thread), then close it.

    Closing a socket wakes no `recv()` blocked on it, and is put off while
    anything still references it; shutting it down does both at once: the
    reader sees end-of-file, the server sees the hang-up.
    """
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is not None:
        _shutdown(sock)
    try:
        response.close()
    except Exception:  # closing a half-read response can raise from deep in http.client
        pass


class CancelToken:
    """Cancels one request from any thread, at any stage: a wait between retries, a wait for the
    response headers, and (for a stream) every read of its body.

    It is handed down explicitly: to `Transport.request`, which hands it to the
    connection sending the request; the connection gives it its socket. Setting
    the token wakes a retry wait and shuts that socket down, so the thread
    blocked on it wakes at once and the server sees the hang-up, even after
    http.client has let go of the socket (a `Connection: close` answer).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def is_set(self) -> bool:
        """True once cancelled."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for a cancel; True if cancelled."""
        return self._event.wait(timeout)

    def set(self) -> None:
        """Cancel: wake retry waits and shut down the socket of the request, if it has one."""
        with self._lock:
            self._event.set()
            if self._sock is not None:
                _shutdown(self._sock)

    def attach(self, connection: HTTPConnection) -> None:
        """Called by the connection sending this token's request: a cancel now reaches its socket."""
        sock = getattr(connection, "sock", None)
        with self._lock:
            if sock is not None:
                self._sock = sock
                if self._event.is_set():
                    _shutdown(sock)

    def detach(self) -> None:
        """The request is done with its socket: a later cancel must not reach a pooled connection."""
        with self._lock:
            self._sock = None


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# The token of the request this thread is sending, from Transport.request down to the
# connection urllib3 picks for it: the one channel requests offers between the two.
_sending = threading.local()


class _TokenConnection(HTTPConnection):
    """A connection that hands itself to the sending request's CancelToken before it sends."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        token: CancelToken | None = getattr(_sending, "token", None)
        if token is not None:
            token.attach(self)
        super().request(*args, **kwargs)
        if token is not None:
            token.attach(self)  # again, now that the socket exists: a cancel that came while connecting lands


class _TokenHTTPSConnection(_TokenConnection, HTTPSConnection):
    """The same, over TLS."""


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TokenConnection

    def close(self) -> None:
        """Close the pool, hanging up its idle connections for real (see `hang_up_idle`)."""
        hang_up_idle(self)
        super().close()


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TokenHTTPSConnection

    def close(self) -> None:
        """Close the pool, hanging up its idle connections for real (see `hang_up_idle`)."""
        hang_up_idle(self)
        super().close()


def hang_up_idle(pool: HTTPConnectionPool) -> None:
    """Shut down the sockets of a pool's idle connections: closing one only drops a reference
    while a finished response still holds its file object, so the server would see no hang-up."""
    idle = pool.pool
    if idle is not None:
        with idle.mutex:
            connections = list(idle.queue)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                _shutdown(sock)


class _Adapter(HTTPAdapter):
    """requests' adapter with pools whose connections a CancelToken can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class Closable(Protocol):
    """What the transport closes when the client closes: a stream still being read."""

    def abort(self) -> None:
        """Cut the stream off because its client closed; its reader raises APIConnectionError."""


class Transport:
    """Sends requests to one API base URL with auth, timeouts, retries and error mapping.

    Safe to share between threads. `close()` wakes every request still waiting
    for its response (it raises APIConnectionError), cuts off every stream still
    being read, and closes the pooled connections.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: Timeout = 60.0,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._owns_session = session is None
        self.session = session if session is not None else self._new_session()
        if self._owns_session and _is_loopback(self.base_url):
            self.session.trust_env = False  # a local gateway is never reached through HTTP(S)_PROXY
        self.default_headers = check_headers(default_headers, "default_headers")
        self.headers: dict[str, str] = {
            "User-Agent": f"dottxt-python/{__version__}",
            "Accept": "application/json",
            **self.default_headers,
            "Authorization": f"Bearer {api_key}",
        }
        self._waiting: set[CancelToken] = set()  # requests waiting for their response
        self._streams: set[Closable] = set()  # streams being read
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        session.max_redirects = MAX_REDIRECTS
        adapter = _Adapter(pool_connections=4, pool_maxsize=POOL_MAXSIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    @property
    def api_key(self) -> str:
        """The key sent as `Authorization: Bearer ...` (left out of `repr()`)."""
        return self._api_key

    @property
    def closed(self) -> bool:
        """True once `close()` has been called."""
        return self._closed

    def config(self) -> dict[str, Any]:
        """The arguments that make this transport again (for pickling a client): never a connection."""
        return {
            "api_key": self._api_key,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "default_headers": dict(self.default_headers),
        }

    def redact(self, text: str) -> str:
        """`text` with the key blanked out."""
        return redact(text, self._api_key)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        query: Mapping[str, Any] | None = None,
        timeout: Timeout = None,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
    ) -> requests.Response:
        """Send a request, retrying what is worth retrying; return a 2xx response.

        The body is serialised here, strictly (NaN, or a value JSON cannot hold, is a
        ValueError/TypeError before anything is sent). With `stream=True` the body is
        left unread for a stream to read; otherwise it has been read whole. `cancel`,
        set from another thread, cuts short a retry wait or a wait for the response.
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        data = None if json is None else _json.dumps(json, allow_nan=False).encode()
        all_headers = {**self.headers, **check_headers(headers, "extra_headers")}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        effective_timeout = self.timeout if timeout is None else timeout
        token = cancel if cancel is not None else CancelToken()
        attempt = 0
        while True:
            response, error, cause = self._send(method, url, data, query, all_headers, effective_timeout, token)
            if response is not None and response.status_code < 300 and stream:
                return response  # the token keeps its socket: the stream's close() shuts it down
            token.detach()  # from here the connection may go back to the pool: a cancel must not reach it
            if response is not None:
                if response.status_code < 300:
                    _ = response.content  # read whole; the connection goes back to the pool
                    return response
                error = self._status_error(response, stream=stream)
                retry_after = response.headers.get("retry-after")
                response.close()
                if response.status_code not in RETRY_STATUSES:
                    raise error
            else:
                retry_after = None
            assert error is not None
            if attempt >= self.max_retries or self._closed or token.is_set():
                raise error from cause
            delay = retry_delay(attempt, retry_after)
            log.info("retrying %s %s in %.2fs after: %s", method, url, delay, error)
            attempt += 1
            if token.wait(delay):
                raise error from cause

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        query: Mapping[str, Any] | None,
        headers: dict[str, str],
        timeout: Timeout,
        token: CancelToken,
    ) -> tuple[requests.Response | None, APIError | None, BaseException | None]:
        """One attempt: the response, or the error it ended with (and its cause), mapped here once."""
        with self._lock:
            if self._closed:
                raise APIConnectionError("the client has been closed")
            if token.is_set():
                raise APIConnectionError("the request was cancelled before it was sent")
            self._waiting.add(token)
        _sending.token = token
        try:
            response = self.session.request(
                method, url, data=data, params=query, headers=headers, timeout=timeout, stream=True
            )
            return response, None, None
        except requests.exceptions.TooManyRedirects as exc:
            raise APIConnectionError(f"{method} {url} was redirected more than {MAX_REDIRECTS} times") from exc
        except requests.exceptions.Timeout as exc:
            return None, APITimeoutError(f"{method} {url} timed out ({self._reason(exc)})"), exc
        except (requests.exceptions.RequestException, OSError) as exc:
            if self._closed:
                raise APIConnectionError(
                    "the client was closed while the request was waiting for its response"
                ) from exc
            if token.is_set():
                raise APIConnectionError("the request was cancelled") from exc
            return None, APIConnectionError(f"could not connect to {url} ({self._reason(exc)})"), exc
        finally:
            _sending.token = None
            with self._lock:
                self._waiting.discard(token)

    def _status_error(self, response: requests.Response, *, stream: bool) -> APIStatusError:
        """The APIStatusError subclass for a non-2xx response, its body read (at most 1 MiB) and redacted."""
        try:
            raw = response.raw.read(MAX_ERROR_BODY, decode_content=True)
            body = raw.decode(response.encoding or "utf-8", errors="replace")
        except Exception:  # a body we cannot read still leaves the status to report
            body = ""
        return status_error(
            response.status_code,
            redact_body(body, self._api_key),
            reason=response.reason,
            request_id=response.headers.get("x-request-id"),
            headers=response.headers,
            stream=stream,
        )

    def _reason(self, exc: BaseException) -> str:
        return self.redact(_reason(exc))

    def track(self, stream: Closable) -> None:
        """Register a stream being read, so `close()` can cut it off; APIConnectionError once closed."""
        with self._lock:
            if not self._closed:
                self._streams.add(stream)
                return
        stream.abort()
        raise APIConnectionError("the client has been closed")

    def untrack(self, stream: Closable) -> None:
        """The stream has ended: `close()` need not reach it any more."""
        with self._lock:
            self._streams.discard(stream)

    def close(self) -> None:
        """Close everything now: requests waiting for their response, streams being read, the pool."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), set()
            streams, self._streams = list(self._streams), set()
        for token in waiting:
            token.set()
        for stream in streams:
            stream.abort()
        _close_pools(self.session)
        if self._owns_session:
            self.session.close()
        else:
            for adapter in self.session.adapters.values():
                adapter.close()


def _close_pools(session: requests.Session) -> None:
    """Close every pooled connection now: urllib3 2 only drops its pools on `Session.close()`, leaving
    their idle sockets open until garbage collection (a finished response still referenced keeps them)."""
    for adapter in {id(a): a for a in session.adapters.values()}.values():
        managers = [getattr(adapter, "poolmanager", None), *getattr(adapter, "proxy_manager", {}).values()]
        for manager in managers:
            pools = getattr(manager, "pools", None) or {}
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()


def check_headers(headers: Mapping[str, str] | None, name: str) -> dict[str, str]:
    """Headers as a dict, refused before sending when HTTP cannot carry them (not Latin-1, line breaks)."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a mapping of header name -> value, not {type(headers).__name__}")
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{name}: header names and values must be strings, got {key!r}: {type(value).__name__}")
        if not is_header_safe(key) or not is_header_safe(value):
            raise ValueError(
                f"{name}: header {shorten(key, 60)!r} cannot be sent (not Latin-1, or a control character)"
            )
        checked[key] = value
    return checked


def is_header_safe(text: str) -> bool:
    """True when an HTTP header can carry `text`: Latin-1, no control characters but tab."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in text)


def _is_loopback(url: str) -> bool:
    """True when the URL's host is this machine (127.0.0.0/8, ::1, localhost)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reason(exc: BaseException) -> str:
    """A short reason for a requests failure: the operating system's words, no internal class names.

    urllib3 wraps the socket error in errors whose text names its connection
    objects; the innermost error of Python's own (ConnectionRefusedError, ...) says it plainly.
    """
    seen: set[int] = set()
    plain: BaseException | None = None
    pending: list[BaseException] = [exc]
    while pending:
        inner = pending.pop()
        if id(inner) in seen:
            continue
        seen.add(id(inner))
        if type(inner).__module__ in ("builtins", "socket", "ssl"):
            plain = inner
        linked = [inner.__cause__, inner.__context__, getattr(inner, "reason", None), *inner.args[:1]]
        pending.extend(e for e in linked if isinstance(e, BaseException))
    text = str(plain) if plain is not None and str(plain) else type(plain or exc).__name__
    return shorten(text)
