"""`AsyncDotTxt`: the `DotTxt` surface, awaitable, on the same threaded `requests` transport.

Every blocking call runs on a short-lived thread of its own (not the loop's
default executor, whose few workers would make concurrent calls queue up and
which keeps idle threads around), so the event loop never waits on the network.
Streams are read by a worker thread that hands each item to the loop with
`call_soon_threadsafe`; closing one shuts its socket down so the worker's
blocked read returns at once.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import requests

from ._background import BackgroundStream, FieldCallback
from ._client import ClientConfig, DotTxt, create_completion, generate, list_models
from ._errors import StreamCancelledError
from ._events import PatchEvent
from ._lines import DEFAULT_MAX_LINE_BYTES
from ._params import GenerationParams, Input
from ._streaming import ChatCompletionStream, PatchStream
from ._transport import CancelToken, Timeout
from ._types import ChatCompletionChunk, ModelPage

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Unpack

__all__ = ["AsyncDotTxt", "AsyncPatchStream", "AsyncChatCompletionStream"]

T = TypeVar("T")

_thread_numbers = itertools.count(1)

#: The longest aclose() waits for a worker whose request it could not interrupt (see aclose).
CLOSE_GRACE = 0.25
#: The bound on joining a worker that has made its last hand-over to the loop (it is returning).
_EXIT_WAIT = 0.1


def _hand_over(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> bool:
    """From a worker thread, schedule `callback(*args)` on `loop`; False if the loop is closed (nobody is waiting)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True


async def _in_thread(name: str, call: Callable[[CancelToken], T], *, discard: Callable[[T], None] | None = None) -> T:
    """Run a blocking `call()` on a new thread and await its outcome without blocking the loop.

    The thread ends with the call. If the awaiting task is cancelled, the
    request the call is sending is interrupted (through the transport's ambient
    CancelToken) so the thread ends promptly; its outcome is dropped, after
    `discard(outcome)` (to close a stream nobody will read).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    token = CancelToken()

    def drop(outcome: T | None, error: BaseException | None) -> None:
        if discard is not None and error is None:
            discard(outcome)  # type: ignore[arg-type]

    def settle(outcome: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled
            drop(outcome, error)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome, error = call(token), None
        except BaseException as exc:  # handed to the awaiting task, never to threading's excepthook
            outcome, error = None, exc
        if not _hand_over(loop, settle, outcome, error):
            drop(outcome, error)

    thread = threading.Thread(target=run, name=f"dottxt-{name}-{next(_thread_numbers)}", daemon=True)
    thread.start()
    try:
        return await future
    except asyncio.CancelledError:
        token.set()  # wake the request: its thread ends now, not at the read timeout
        raise


# --------------------------------------------------------------------------- patch streams


class _LoopBackgroundStream(BackgroundStream):
    """A BackgroundStream whose events go to an event loop's asyncio.Queue instead of `.queue`."""

    def __init__(
        self,
        stream: PatchStream,
        loop: asyncio.AbstractEventLoop,
        sink: asyncio.Queue[PatchEvent | None],
        finished: asyncio.Event,
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._finished = finished
        self.delivered_any = False  # an event arrived: the response is open, so close() interrupts it
        super().__init__(stream)

    def _put(self, item: PatchEvent | None) -> bool:
        if item is not None:
            self.delivered_any = True
        if not _hand_over(self._loop, self._sink.put_nowait, item):
            self.cancel()  # nobody will read the rest
            return False
        return True

    def _put_sentinel(self) -> None:
        """The worker's last act: the end marker for readers, and the signal aclose() waits on."""
        if self._put(None):
            _hand_over(self._loop, self._finished.set)


class AsyncPatchStream:
    """An async iterator of PatchEvents, read by a worker thread; also an async context manager.

    The request is sent when iteration starts (or on `async with`). Breaking out
    of `async for` and dropping the stream, `aclose()`, leaving the `async with`,
    or cancelling the task closes the connection and ends the worker thread at
    once, even while the server is silent. `.document` is a copy of what has
    arrived; `await .result()` drains the rest and returns the typed output.
    """

    def __init__(self, stream: PatchStream) -> None:
        self._stream = stream
        self._worker: _LoopBackgroundStream | None = None
        self._events: asyncio.Queue[PatchEvent | None] | None = None
        self._finished: asyncio.Event | None = None
        self._ended = False  # the sentinel was read, or the stream was closed before starting
        self._closed = False  # aclose() was called: iteration then ends quietly

    def _start(self) -> asyncio.Queue[PatchEvent | None]:
        if self._events is None:
            loop = asyncio.get_running_loop()
            self._events = asyncio.Queue()
            self._finished = asyncio.Event()
            self._worker = _LoopBackgroundStream(self._stream, loop, self._events, self._finished)
        return self._events

    def __aiter__(self) -> AsyncPatchStream:
        return self

    async def __anext__(self) -> PatchEvent:
        if self._ended or self._closed:
            raise StopAsyncIteration
        events = self._start()
        try:
            event = await events.get()
        except asyncio.CancelledError:
            self._cancel()  # the task was cancelled mid-stream: nobody will read the rest
            raise
        if event is not None:
            return event
        self._ended = True
        assert self._worker is not None
        error = self._worker.exception(timeout=0)
        if error is not None and not self._closed:
            raise error
        raise StopAsyncIteration

    async def __aenter__(self) -> AsyncPatchStream:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _cancel(self) -> None:
        """Close the connection now (any thread, no waiting)."""
        if self._worker is not None:
            self._worker.cancel()
        else:
            self._ended = True
            self._stream.close()

    async def aclose(self) -> None:
        """Close the connection now and wait (without blocking the loop) for the worker thread to end.

        The close interrupts the worker at every stage (a read, a wait for the
        response headers, a wait between retries), so the wait is about a
        millisecond. Two waits it cannot cut short: a connection still being
        made, and the headers of a request sent through a `session=` of your
        own. Then aclose() waits at most CLOSE_GRACE seconds, and the worker
        drops the response when it arrives (or at the timeout).
        """
        self._closed = True
        self._cancel()
        worker, finished = self._worker, self._finished
        if finished is None or worker is None:
            return
        if worker.delivered_any:  # the response is open: the close has interrupted its read
            await finished.wait()  # set right after the worker's last hand-over
        else:
            try:
                await asyncio.wait_for(finished.wait(), CLOSE_GRACE)
            except asyncio.TimeoutError:
                return  # a request the close cannot reach: the worker follows when it is answered
        worker.join(_EXIT_WAIT)  # past its last hand-over the thread only has to return

    def __del__(self) -> None:
        try:
            self._cancel()
        except Exception:  # never raise from a finalizer
            pass

    @property
    def document(self) -> Any:
        """A copy of the document built so far (None before the first op)."""
        return self._stream.document

    async def result(self) -> Any:
        """Drain the rest of the stream; return the output validated and typed like `generate`.

        Raises the stream's error if it failed (StreamCancelledError once closed).
        """
        async for _ in self:
            pass
        if self._worker is None:
            raise StreamCancelledError(document=self._stream.document)
        return self._worker.result(timeout=0)

    def __repr__(self) -> str:
        state = "not started" if self._worker is None else repr(self._worker)
        return f"<AsyncPatchStream {state}>"


# --------------------------------------------------------------------------- chat completion chunks


class AsyncChatCompletionStream:
    """The chunks of `await chat.completions.create(stream=True)`, as an async iterator.

    A worker thread reads the SSE body and hands chunks to the loop; `aclose()`,
    `async with` exit, or cancelling the task closes the connection at once.
    """

    def __init__(self, stream: ChatCompletionStream, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._items: asyncio.Queue[tuple[ChatCompletionChunk | None, BaseException | None]] = asyncio.Queue()
        self._stop = threading.Event()
        self._finished = asyncio.Event()
        self._ended = False
        self._thread = threading.Thread(
            target=_pump_chunks,
            args=(stream, loop, self._items, self._stop, self._finished),
            name=f"dottxt-chat-stream-{next(_thread_numbers)}",
            daemon=True,
        )
        self._thread.start()

    @property
    def response(self) -> requests.Response:
        """The underlying HTTP response."""
        return self._stream.response

    def __aiter__(self) -> AsyncChatCompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._ended:
            raise StopAsyncIteration
        try:
            chunk, error = await self._items.get()
        except asyncio.CancelledError:
            self._cancel()
            raise
        if chunk is not None:
            return chunk
        self._ended = True
        if error is not None:
            raise error
        raise StopAsyncIteration

    def _cancel(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._stream.close()  # wakes the worker's blocked read

    async def aclose(self) -> None:
        """Close the connection now and wait (without blocking the loop) for the worker to end."""
        self._cancel()
        self._ended = True
        await self._finished.wait()
        self._thread.join(_EXIT_WAIT)  # past its last hand-over the thread only has to return

    async def __aenter__(self) -> AsyncChatCompletionStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            self._cancel()
        except Exception:  # never raise from a finalizer
            pass


def _pump_chunks(
    stream: ChatCompletionStream,
    loop: asyncio.AbstractEventLoop,
    items: asyncio.Queue[tuple[ChatCompletionChunk | None, BaseException | None]],
    stop: threading.Event,
    finished: asyncio.Event,
) -> None:
    """Worker: read chunks and hand them to the loop; end with (None, error-or-None).

    A plain function, not a method, so the running thread keeps no reference to
    the AsyncChatCompletionStream: dropping it closes the connection.
    """
    error: BaseException | None = None
    try:
        for chunk in stream:
            if stop.is_set() or not _hand_over(loop, items.put_nowait, (chunk, None)):
                break
    except BaseException as exc:  # handed to the reader, never to threading's excepthook
        if not stop.is_set():
            error = exc
    finally:
        try:
            stream.close()
        except Exception:  # closing a half-read response: nothing left to report
            pass
        if _hand_over(loop, items.put_nowait, (None, error)):
            _hand_over(loop, finished.set)


# --------------------------------------------------------------------------- resources


class AsyncModels:
    """`client.models`, awaitable."""

    def __init__(self, client: DotTxt) -> None:
        self._client = client

    async def list(self) -> ModelPage:
        """GET /models: a page whose `.data` holds the models."""
        return await _in_thread("models", lambda token: list_models(self._client._transport, {}, token))


class AsyncCompletions:
    """`client.chat.completions`, awaitable."""

    def __init__(self, client: DotTxt) -> None:
        self._client = client

    async def create(self, **kwargs: Any) -> Any:
        """POST /chat/completions; a ChatCompletion, or with `stream=True` an async iterator of chunks.

        Status errors raise here, before the first chunk, as with the sync client.
        """
        transport = self._client._transport
        result = await _in_thread(
            "chat", lambda token: create_completion(transport, kwargs, token), discard=_close_stream
        )
        if isinstance(result, ChatCompletionStream):
            return AsyncChatCompletionStream(result, asyncio.get_running_loop())
        return result


def _close_stream(result: Any) -> None:
    """Close a chunk stream that arrived after its awaiting task was cancelled: nobody will read it."""
    if isinstance(result, ChatCompletionStream):
        result.close()


class AsyncChat:
    """`client.chat`: holds `completions`."""

    def __init__(self, client: DotTxt) -> None:
        self.completions = AsyncCompletions(client)


# --------------------------------------------------------------------------- the client


class AsyncDotTxt(ClientConfig):
    """The .txt client for asyncio: `async with AsyncDotTxt() as client: await client.generate(...)`.

    Same constructor and configuration as DotTxt, whose threaded transport it
    shares (`.sync` is that DotTxt); calls run on worker threads.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: Timeout = 60.0,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        patch_source: str | None = None,
    ) -> None:
        self.sync = DotTxt(
            api_key,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            session=session,
            patch_source=patch_source,
        )
        self._transport = self.sync._transport
        self.patch_source = self.sync.patch_source
        self.models = AsyncModels(self.sync)
        self.chat = AsyncChat(self.sync)

    async def __aenter__(self) -> AsyncDotTxt:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection now, including those of streams still being read."""
        self.sync.close()  # shuts sockets down and closes the pool: no waiting on the network

    @overload
    async def generate(
        self, *, model: str, response_format: type[T], input: Input, **params: Unpack[GenerationParams]
    ) -> T: ...
    @overload
    async def generate(
        self, *, model: str, response_format: Any, input: Input, **params: Unpack[GenerationParams]
    ) -> Any: ...
    async def generate(
        self, *, model: str, response_format: Any, input: Input, **params: Unpack[GenerationParams]
    ) -> Any:
        """One completion constrained by `response_format`, parsed and typed as `DotTxt.generate` does."""
        transport = self._transport

        def call(cancel: CancelToken) -> Any:
            return generate(
                transport, model=model, response_format=response_format, input=input, params=params, cancel=cancel
            )

        return await _in_thread("generate", call)

    @overload
    def stream(
        self,
        *,
        model: str,
        response_format: type[T],
        input: Input,
        max_line_bytes: int = ...,
        **params: Unpack[GenerationParams],
    ) -> AsyncPatchStream[T]: ...
    @overload
    def stream(
        self,
        *,
        model: str,
        response_format: Any,
        input: Input,
        max_line_bytes: int = ...,
        **params: Unpack[GenerationParams],
    ) -> AsyncPatchStream[Any]: ...
    def stream(
        self,
        *,
        model: str,
        response_format: Any,
        input: Input,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        **params: Unpack[GenerationParams],
    ) -> AsyncPatchStream[Any]:
        """Stream the completion as PatchEvents: `async for event in client.stream(...)`.

        Not a coroutine: returns at once; the request is sent when iteration starts.
        """
        stream = self.sync.stream(
            model=model, response_format=response_format, input=input, max_line_bytes=max_line_bytes, **params
        )
        return AsyncPatchStream(stream)

    def stream_in_background(
        self,
        *,
        model: str,
        response_format: Any,
        input: Input,
        on_event: Callable[[PatchEvent], Any] | None = None,
        on_field: Mapping[str, FieldCallback] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        on_complete: Callable[[Any], Any] | None = None,
        queue: queue.Queue[PatchEvent | None] | None = None,
        **params: Unpack[GenerationParams],
    ) -> BackgroundStream:
        """The same as `DotTxt.stream_in_background`: callbacks run on the stream's own thread."""
        return self.sync.stream_in_background(
            model=model,
            response_format=response_format,
            input=input,
            on_event=on_event,
            on_field=on_field,
            on_error=on_error,
            on_complete=on_complete,
            queue=queue,
            **params,
        )
