"""One streamed response, read as it arrives: the I/O half of every stream (patch, SSE-derived, chat chunks).

`ResponseStream` sends its request when first read, hands the body's bytes to a
decoder (`dottxt._decoders`: no I/O of their own) and yields what the decoder
makes. It owns the response and its `close()`, and it is the one boundary where
failures while reading are mapped to the SDK's errors (like urllib3's error
catcher around every read): a dropped connection is APIConnectionError, a
silence past the read timeout APITimeoutError, a cut made by our own `close()`
is no error at all, a cut made by the client's `close()` is APIConnectionError.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import requests
import urllib3.exceptions

from ._errors import APIConnectionError, APITimeoutError, DotTxtError, redact_error
from ._transport import CancelToken, Transport, interrupt_response

__all__ = ["Decoder", "ResponseStream"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_READ_SIZE = 64 * 1024
#: After a decoder wants no more: the most bytes read (and dropped) to reach the body's end, and the
#: longest wait for each read, so the connection can go back to the pool instead of being closed.
DRAIN_BYTES = 64 * 1024
DRAIN_WAIT = 0.05

# A stream's life: not sent yet -> open -> finished (read to its end) | closed (by us) | aborted (client closed).
_NEW, _OPEN, _FINISHED, _CLOSED, _ABORTED = "new", "open", "finished", "closed", "aborted"


class Decoder(Protocol[T_co]):
    """Turns body bytes into items; `done` says it wants no more bytes (SSE: the root value is whole)."""

    @property
    def done(self) -> bool: ...

    def feed(self, data: bytes) -> Iterator[T_co]: ...

    def finish(self) -> Iterator[T_co]: ...


class ResponseStream(Generic[T]):
    """One request's streamed body, decoded into items; closable from any thread.

    `send(cancel)` makes the request (the transport retries it until a response
    starts); `decoder(response)` makes the decoder once the status and headers are known.
    """

    def __init__(
        self,
        transport: Transport,
        send: Callable[[CancelToken], requests.Response],
        decoder: Callable[[requests.Response], Decoder[T]],
    ) -> None:
        self._transport = transport
        self._send = send
        self._decoder = decoder
        self._cancel = CancelToken()
        self._lock = threading.Lock()
        self._state = _NEW
        self.response: requests.Response | None = None
        #: The failure the stream ended with, raised again to a later `result()`.
        self.error: Exception | None = None
        #: What a failure carries as `.document`, and the progress words of its message (" after 12 ops").
        self.document: Callable[[], Any] = _nothing
        self.progress: Callable[[], str] = str

    @property
    def closed(self) -> bool:
        """True once the stream has ended, one way or another."""
        return self._state not in (_NEW, _OPEN)

    @property
    def finished(self) -> bool:
        """True when the body was read to its end (or the decoder wanted no more)."""
        return self._state == _FINISHED

    def items(self) -> Iterator[T]:
        """Send the request, then yield each decoded item as its bytes arrive.

        A generator holding no reference to the user's stream object, so dropping
        that object closes the connection.
        """
        try:
            response = self.start()
        except DotTxtError as exc:
            self.error = self._annotated(exc)
            raise
        if response is None:
            return
        decoder = self._decoder(response)
        read1 = getattr(response.raw, "read1", None) or response.raw.read
        eof = False
        try:
            while not decoder.done:
                data = read1(_READ_SIZE)
                if data:
                    yield from decoder.feed(data)
                    continue
                eof = True
                if self._state == _OPEN:  # a cut by close() also reads as end-of-file: only a real end is judged
                    yield from decoder.finish()
                break
            else:  # the decoder wants no more (SSE: the root is whole, or [DONE]): what is left is not judged
                eof = self._drain(response, read1)
            if self._state == _ABORTED:
                raise APIConnectionError("the client was closed")
        except GeneratorExit:
            raise
        except Exception as exc:
            if self._state == _CLOSED:
                return  # our own close() interrupted the read: not a failure
            error = self.error = self._annotated(self._read_error(exc))
            if error is exc:
                raise
            raise error from exc
        finally:
            self._end(response, eof=eof, done=decoder.done)

    def _drain(self, response: requests.Response, read1: Callable[[int], bytes]) -> bool:
        """Read and drop what is left of a body nobody needs, if it ends at once; True if it did.

        A server's last few bytes (a finish chunk, `[DONE]`, the chunked terminator)
        usually follow right away: reading them lets the connection go back to the
        pool. A server that keeps sending, or goes quiet, is cut off: at most
        DRAIN_BYTES, waiting at most DRAIN_WAIT for each read.
        """
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if sock is None or self._state != _OPEN:
            return False
        left, timeout = DRAIN_BYTES, sock.gettimeout()
        try:
            sock.settimeout(DRAIN_WAIT)
            while left > 0:
                data = read1(min(left, _READ_SIZE))
                if not data:
                    sock.settimeout(timeout)  # as the pool handed it out, for the next request
                    return True
                left -= len(data)
        except Exception:  # a timeout or a drop: the connection is closed, as it would have been anyway
            return False
        return False

    def close(self) -> None:
        """Stop now, from any thread: wake a blocked read or a wait for the response, close the connection."""
        self._stop(_CLOSED)

    def abort(self) -> None:
        """The client closed: cut the stream off; its reader raises APIConnectionError."""
        self._stop(_ABORTED)

    def _stop(self, state: str) -> None:
        with self._lock:
            if self._state not in (_NEW, _OPEN):
                return
            self._state = state
            response = self.response
        self._cancel.set()
        if response is not None:
            interrupt_response(response)
            self._transport.untrack(self)

    def start(self) -> requests.Response | None:
        """Send the request (once; later calls return the same response); None when closed before it came."""
        if self._state != _NEW:
            return self.response if self._state == _OPEN else None
        try:
            response = self._send(self._cancel)
        except DotTxtError:
            if self._state == _CLOSED:
                return None  # our own close() woke the wait
            raise
        with self._lock:
            self.response = response
            if self._state == _NEW:
                self._state = _OPEN
        if self._state != _OPEN:
            interrupt_response(response)
            if self._state == _ABORTED:
                raise APIConnectionError("the client has been closed")
            return None
        self._transport.track(self)
        return response

    def _annotated(self, error: Exception) -> Exception:
        """The error as raised to the user: with `.document`, and the key blanked out of what it quotes."""
        if isinstance(error, DotTxtError):
            if error.document is None:
                try:
                    error.document = self.document()
                except RecursionError:  # a document deeper than copying can walk: the error still goes out
                    pass
            redact_error(error, self._transport.api_key)
        return error

    def _read_error(self, exc: Exception) -> Exception:
        """The SDK error for a failure while reading; the decoders' own errors pass unchanged."""
        if self._state == _ABORTED:
            return APIConnectionError(f"the client was closed while the stream was being read{self.progress()}")
        if isinstance(exc, DotTxtError):
            return exc
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return APITimeoutError(f"the stream went silent for longer than the read timeout{self.progress()}")
        return APIConnectionError(f"the connection dropped mid-stream{self.progress()}")

    def _end(self, response: requests.Response, *, eof: bool, done: bool) -> None:
        """Hand the connection back to the pool when the body was read to its end; else close it."""
        with self._lock:
            reusable = eof and self._state == _OPEN
            if self._state == _OPEN:
                self._state = _FINISHED if eof or done else _CLOSED
        self._transport.untrack(self)
        release = getattr(response.raw, "release_conn", None) if reusable else None
        if release is not None:
            self._cancel.detach()  # the socket goes back to the pool: a later close() must not reach it
            release()  # (a dropped connection is discarded when next taken from the pool)
        else:
            self._cancel.set()  # shut the socket down: the server sees the hang-up now, not at collection
            interrupt_response(response)


def _nothing() -> Any:
    return None
