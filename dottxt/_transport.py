"""The HTTP transport every feature shares: one pooled `requests.Session`, retries, error mapping.

It knows nothing about schemas or patch ops; it turns a method and a path into
a `requests.Response` with a 2xx status, or raises one of `dottxt.errors`.
"""

from __future__ import annotations

import contextvars
import email.utils
import ipaddress
import logging
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    error_message_from_body,
    status_error_class,
)
from ._version import __version__

__all__ = [
    "Transport",
    "Timeout",
    "CancelToken",
    "RETRY_STATUSES",
    "CLOSED_BY_CLIENT",
    "retry_delay",
    "interrupt_response",
]

log = logging.getLogger("dottxt")

Timeout = float | tuple[float, float] | tuple[float, None] | None

#: Statuses worth asking again: the request may succeed a moment later.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
#: The longest `Retry-After` we honour; a server asking for more gets this.
MAX_RETRY_AFTER = 60.0
#: Pooled connections per host: enough for 32+ threads streaming at once without waiting.
POOL_MAXSIZE = 64
#: Error bodies are read whole, but never more than this.
MAX_ERROR_BODY = 1 << 20
#: Attribute set on a streamed response that `Transport.close()` cut short.
CLOSED_BY_CLIENT = "_dottxt_closed_by_client"


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
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.timestamp() - (time.time() if now is None else now)


def interrupt_response(response: requests.Response) -> None:
    """Wake a thread blocked reading `response` (from any thread), then close it.

    Closing a socket does not wake a `recv()` blocked on it; shutting it down
    does: the reader sees end-of-file at once.
    """
    raw = response.raw
    try:
        raw.shutdown()
    except (AttributeError, RuntimeError, ValueError, OSError):
        pass  # already released, closed, or never connected: nothing is blocked on it
    try:
        response.close()
    except Exception:  # closing a half-read response can raise from deep in http.client
        pass


class CancelToken:
    """Cancels one request from any thread, at any stage.

    Setting it cuts short a wait between retries and shuts down the socket of
    a request still waiting for its response headers, so the thread blocked
    on it wakes at once. (Once the response exists, `interrupt_response` does
    the same for the body.)
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._connection: HTTPConnection | None = None

    def is_set(self) -> bool:
        """True once cancelled."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for a cancel; True if cancelled."""
        return self._event.wait(timeout)

    def set(self) -> None:
        """Cancel: wake retry waits and shut down the in-flight connection, if any."""
        with self._lock:
            self._event.set()
            if self._connection is not None:
                _shutdown(self._connection)

    def _attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection

    def _check(self, connection: HTTPConnection) -> None:
        """Cancelled while the connection was still being made: shut it down now."""
        with self._lock:
            if self._event.is_set():
                _shutdown(connection)

    def _detach(self) -> None:
        # Under the lock, so a cancel never reaches a connection handed back to the pool.
        with self._lock:
            self._connection = None


def _shutdown(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_current = threading.local()  # the CancelToken of the request this thread is sending

#: A CancelToken for every request made in this context that was given none: how
#: AsyncDotTxt lets a cancelled task interrupt the request its worker thread is sending.
ambient_cancel: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "dottxt_ambient_cancel", default=None
)


class _CancellableConnection(HTTPConnection):
    """Registers itself with the sending thread's CancelToken, so a cancel can reach its socket."""

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        token: CancelToken | None = getattr(_current, "token", None)
        if token is not None:
            token._attach(self)
        super().request(*args, **kwargs)
        if token is not None:
            token._check(self)


class _CancellableHTTPSConnection(_CancellableConnection, HTTPSConnection):
    """The same, over TLS."""


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _CancellableConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CancellableHTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter with pools whose connections a CancelToken can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class Transport:
    """Sends requests to one API base URL with auth, timeouts, retries and error mapping.

    Safe to share between threads. `close()` closes idle pooled connections
    and interrupts every response still being read.
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
        self.headers: dict[str, str] = {
            "User-Agent": f"dottxt-python/{__version__}",
            "Accept": "application/json",
            **dict(default_headers or {}),
            "Authorization": f"Bearer {api_key}",
        }
        self._live: set[requests.Response] = set()
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
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

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        timeout: Timeout = None,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
    ) -> requests.Response:
        """Send a request, retrying what is worth retrying; return a 2xx response.

        With `stream=True` the body is left unread and the response is tracked
        as live until `release()` is called for it. `cancel`, when set from
        another thread, cuts short a retry wait or a wait for the response.
        """
        if self._closed:
            raise APIConnectionError("the client has been closed")
        if cancel is None:
            cancel = ambient_cancel.get()
        url = f"{self.base_url}/{path.lstrip('/')}"
        all_headers = {**self.headers, **dict(headers or {})}
        effective_timeout = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            retry_after: str | None = None
            error: APIError | None = None
            cause: BaseException | None = None
            _current.token = cancel
            try:
                response = self.session.request(
                    method, url, json=json, headers=all_headers, timeout=effective_timeout, stream=stream
                )
            except requests.exceptions.Timeout as exc:
                error, cause = APITimeoutError(f"{method} {url} timed out ({_reason(exc)})"), exc
            except (requests.exceptions.ConnectionError, OSError) as exc:
                error, cause = APIConnectionError(f"could not connect to {url} ({_reason(exc)})"), exc
            except requests.exceptions.RequestException as exc:
                raise APIConnectionError(f"{method} {url} failed ({_reason(exc)})") from exc
            finally:
                _current.token = None
                if cancel is not None:
                    cancel._detach()
            if error is None:
                if response.status_code < 300:
                    if stream:
                        self._track(response)
                    return response
                error = self._status_error(response, streamed=stream, secret=self._api_key)
                retry_after = response.headers.get("retry-after")
                response.close()
                if response.status_code not in RETRY_STATUSES:
                    raise error
            cancelled = cancel is not None and cancel.is_set()
            if attempt >= self.max_retries or self._closed or cancelled:
                raise error from cause
            delay = retry_delay(attempt, retry_after)
            log.info("retrying %s %s in %.2fs after: %s", method, url, delay, error)
            attempt += 1
            if cancel is not None:
                if cancel.wait(delay):
                    raise error from cause
            else:
                time.sleep(delay)

    @staticmethod
    def _status_error(response: requests.Response, *, streamed: bool, secret: str) -> APIStatusError:
        """The APIStatusError subclass for a non-2xx response, its body read (bounded).

        A server may echo the key it rejected; it is blanked out of the body and message.
        """
        try:
            if streamed:
                raw = response.raw.read(MAX_ERROR_BODY, decode_content=True)
                body = raw.decode(response.encoding or "utf-8", errors="replace")
            else:
                body = response.text
        except Exception:  # a body we cannot read still leaves the status to report
            body = ""
        if secret and secret in body:
            body = body.replace(secret, "***")
        message = error_message_from_body(body) or response.reason or f"HTTP {response.status_code}"
        return status_error_class(response.status_code)(
            message,
            status_code=response.status_code,
            body=body,
            request_id=response.headers.get("x-request-id"),
            headers=response.headers,
        )

    def _track(self, response: requests.Response) -> None:
        with self._lock:
            if self._closed:
                interrupt_response(response)
                raise APIConnectionError("the client has been closed")
            self._live.add(response)

    def release(self, response: requests.Response) -> None:
        """Close a streamed response and stop tracking it."""
        with self._lock:
            self._live.discard(response)
        response.close()

    def close(self) -> None:
        """Close every connection: the idle ones in the pool and the ones streams are reading."""
        with self._lock:
            self._closed = True
            live, self._live = list(self._live), set()
        for response in live:
            setattr(response, CLOSED_BY_CLIENT, True)  # its reader must not take the cut for the end
            interrupt_response(response)
        if self._owns_session:
            self.session.close()
        else:
            for adapter in self.session.adapters.values():
                adapter.close()


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
    """A short reason for a requests exception, without the request object's repr."""
    inner: BaseException = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    if isinstance(reason, BaseException):
        inner = reason
    text = str(inner) or type(inner).__name__
    return text if len(text) <= 200 else text[:197] + "..."
