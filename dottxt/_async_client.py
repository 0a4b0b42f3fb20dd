"""`AsyncDotTxt`: the `DotTxt` surface, awaitable, on the same threaded `requests` transport.

Every blocking call runs on a short-lived thread of its own (`_pump.run`; not
the loop's default executor, whose few workers would make concurrent calls
queue up and which keeps idle threads around), so the event loop never waits
on the network. Streams are read by a `Pump` whose `LoopSink` hands each item
to the loop with `call_soon_threadsafe`; closing one shuts its socket down so
the worker's blocked read returns at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import requests

from ._client import ClientConfig, DotTxt, create_completion, generate, list_models, retrieve_model
from ._errors import StreamCancelledError
from ._events import PatchEvent
from ._fields import FieldDone
from ._lines import DEFAULT_MAX_LINE_BYTES
from ._params import GenerationParams, Input, RequestOptions
from ._pump import End, LoopSink, Pump, run
from ._streaming import ChatCompletionStream, PatchStream
from ._transport import CancelToken, Timeout, Transport
from ._types import ChatCompletionChunk, Model, ModelPage

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Unpack

__all__ = ["AsyncDotTxt", "AsyncPatchStream", "AsyncChatCompletionStream"]

T = TypeVar("T")

#: The longest aclose() waits for a worker whose request it could not interrupt (see aclose).
CLOSE_GRACE = 0.25
#: The bound on joining a worker that has made its last hand-over to the loop (it is returning).
_EXIT_WAIT = 0.1


# --------------------------------------------------------------------------- streams


class _LoopReader(Generic[T]):
    """What both async streams share: a pump into a LoopSink, read with `next()`, closed with `aclose()`.

    Holds the pump; the pump's worker never holds this object, so dropping
    the user's stream (whose finalizer cancels the pump) closes the connection.
    """

    def __init__(self, pump: Pump[T], sink: LoopSink[T], error_of: Callable[[End], BaseException | None]) -> None:
        self.pump = pump
        self.sink = sink
        self._error_of = error_of  # the error a reader gets at the end, if any
        self.end: End | None = None  # the end signal, once read
        self.closed = False  # aclose() was called: iteration ends quietly

    async def next(self) -> T:
        """The next item; at the end raise the stream's error (once), else StopAsyncIteration.

        Cancelling the awaiting task cancels the pump: nobody will read the rest.
        """
        if self.closed or self.end is not None:
            raise StopAsyncIteration
        try:
            item = await self.sink.get()
        except asyncio.CancelledError:
            self.pump.cancel()
            raise
        if not isinstance(item, End):
            return item
        self.end = item
        error = self._error_of(item)
        if error is not None and not self.closed:
            raise error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Cancel the pump and wait (without blocking the loop) for the worker thread to end.

        Once an item has arrived the response is open and the cancel has
        interrupted its read: the wait is about a millisecond. Before that the
        request may be waiting on something the cancel cannot cut short (a
        connection being made, the headers of a request through a `session=`
        of your own): then the wait is at most CLOSE_GRACE seconds, and the
        worker drops the response when it arrives (or at the timeout).
        """
        self.closed = True
        self.pump.cancel()
        if self.sink.delivered:
            await self.sink.wait_ended()
        else:
            try:
                await asyncio.wait_for(self.sink.wait_ended(), CLOSE_GRACE)
            except asyncio.TimeoutError:
                return
        self.pump.join(_EXIT_WAIT)  # past its last hand-over the thread only has to return


class AsyncPatchStream(Generic[T]):
    """An async iterator of PatchEvents, read by a worker thread; also an async context manager.

    The request is sent when iteration starts (or on `async with`). Breaking out
    of `async for` and dropping the stream, `aclose()`, leaving the `async with`,
    or cancelling the task closes the connection and ends the worker thread at
    once, even while the server is silent. `.document` is a copy of what has
    arrived; `await .result()` drains the rest and returns the typed output.
    """

    def __init__(self, stream: PatchStream[T]) -> None:
        self._stream = stream
        self._reader: _LoopReader[Any] | None = None
        self._source: _Reading
        self._closed = False  # closed before the request was sent

    def _start(self) -> _LoopReader[Any]:
        """The reader of this stream, started on first use (the request goes out; the body waits for a reader)."""
        if self._reader is None:
            stream = self._stream
            sink: LoopSink[Any] = LoopSink(asyncio.get_running_loop())
            source = self._source = _Reading(stream)
            pump: Pump[Any] = Pump(source, sink, name="stream", finish=stream.result)
            # Not a bound method: the reader must not hold this object, or dropping it would not close it.
            self._reader = _LoopReader(pump, sink, lambda end: _patch_error(stream, pump, end))
            pump.start()
        return self._reader

    def _read(self, dones: Iterator[FieldDone] | None = None) -> _LoopReader[Any]:
        """The started reader, its body now read: as events, or as the FieldDones of `dones`."""
        reader = self._start()
        self._source.read(dones)
        return reader

    def completed(self, *patterns: str) -> AsyncIterator[FieldDone]:
        """`async for done in stream.completed("steps/*")`: each matching value the moment it is finished.

        The async twin of `PatchStream.completed`: the same reading as `async
        for event in stream` (use one or the other, first thing after `async
        with`); `await result()` afterwards reads nothing more.
        """
        if self._closed:
            return _no_items()
        dones = self._stream.completed(*patterns)  # the patterns are checked now
        return self._items(self._read(dones))

    @staticmethod
    async def _items(reader: _LoopReader[Any]) -> AsyncIterator[Any]:
        while True:
            try:
                item = await reader.next()
            except StopAsyncIteration:
                return
            yield item

    def __aiter__(self) -> AsyncPatchStream[T]:
        return self

    async def __anext__(self) -> PatchEvent:
        if self._closed:
            raise StopAsyncIteration
        event: PatchEvent = await self._read().next()
        return event

    async def __aenter__(self) -> AsyncPatchStream[T]:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection now and wait (without blocking the loop) for the worker thread to end.

        The close interrupts the worker at every stage (a read, a wait for the
        response headers, a wait between retries), so the wait is about a
        millisecond. Two waits it cannot cut short: a connection still being
        made, and the headers of a request sent through a `session=` of your
        own. Then aclose() waits at most CLOSE_GRACE seconds, and the worker
        drops the response when it arrives (or at the timeout).
        """
        if self._reader is not None:
            await self._reader.aclose()
        else:
            self._closed = True
            self._stream.close()

    def __del__(self) -> None:
        try:
            if self._reader is not None:
                self._reader.pump.cancel()
            else:
                self._stream.close()
        except Exception:  # never raise from a finalizer
            pass

    @property
    def document(self) -> Any:
        """A copy of the document built so far (None before the first op)."""
        return self._stream.document

    async def result(self) -> T:
        """Drain the rest of the stream; return the output validated and typed like `generate`.

        Raises the stream's error if it failed (StreamCancelledError once closed).
        """
        async for _ in self:
            pass
        reader = self._reader
        if reader is None or reader.end is None:  # closed before the end arrived
            raise StreamCancelledError(document=self._stream.document)
        error = _patch_error(self._stream, reader.pump, reader.end)
        if error is not None:
            raise error
        return cast(T, reader.end.value)

    def __repr__(self) -> str:
        state = "not started" if self._reader is None else repr(self._reader.pump)
        return f"<AsyncPatchStream {state}>"


class _Reading:
    """A patch stream as a pump's source: the request goes out at once, the body is read once a reader says how.

    `read(None)` reads events; `read(dones)` the FieldDones of `completed()`, which must track
    the stream from its first op: so the worker waits, once the response has started, for the
    first `read()` (made on the loop, by iteration or `completed()`); `close()` also wakes it.
    """

    def __init__(self, stream: PatchStream[Any]) -> None:
        self._stream = stream
        self._how: Iterator[Any] | None = None
        self._chosen = threading.Event()

    def read(self, dones: Iterator[FieldDone] | None) -> None:
        """Say how the body is read (the first call decides; a later `completed()` is refused)."""
        if self._chosen.is_set():
            if dones is not None and self._how is not dones:
                raise RuntimeError("completed() must be the stream's only reading: it was already being read")
            return
        self._how = dones
        self._chosen.set()

    def __iter__(self) -> Iterator[Any]:
        self._stream.start()
        self._chosen.wait()
        return self._how if self._how is not None else iter(self._stream)

    def close(self) -> None:
        self._chosen.set()
        self._stream.close()


async def _no_items() -> AsyncIterator[Any]:
    """An async iterator that ends at once (a stream closed before it was read)."""
    return
    yield


def _patch_error(stream: PatchStream[Any], pump: Pump[Any], end: End) -> BaseException | None:
    """A patch stream's error once it has ended: StreamCancelledError (with `.document`) if it was closed first."""
    if pump.cancelled:
        return StreamCancelledError(document=stream.document)
    return end.error


class AsyncChatCompletionStream:
    """The chunks of `await chat.completions.create(stream=True)`, as an async iterator.

    A worker thread reads the SSE body and hands chunks to the loop; `aclose()`,
    `async with` exit, or cancelling the task closes the connection at once.
    """

    def __init__(self, stream: ChatCompletionStream, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        sink: LoopSink[ChatCompletionChunk] = LoopSink(loop)
        self._reader = _LoopReader(Pump(stream, sink, name="chat-stream"), sink, lambda end: end.error)
        self._reader.pump.start()

    @property
    def response(self) -> requests.Response | None:
        """The underlying HTTP response."""
        return self._stream.response

    def __aiter__(self) -> AsyncChatCompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return await self._reader.next()

    async def aclose(self) -> None:
        """Close the connection now and wait (without blocking the loop) for the worker to end."""
        await self._reader.aclose()

    async def __aenter__(self) -> AsyncChatCompletionStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            self._reader.pump.cancel()
        except Exception:  # never raise from a finalizer
            pass


# --------------------------------------------------------------------------- resources


class AsyncModels:
    """`client.models`, awaitable."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def list(self, **options: Unpack[RequestOptions]) -> ModelPage:
        """GET /models: a page whose `.data` holds the models."""
        return await run(lambda cancel: list_models(self._transport, options, cancel), name="models")

    async def retrieve(self, model_id: str, **options: Unpack[RequestOptions]) -> Model:
        """GET /models/{id}: one model; NotFoundError when the key cannot use it."""
        return await run(lambda cancel: retrieve_model(self._transport, model_id, options, cancel), name="models")


class AsyncCompletions:
    """`client.chat.completions`, awaitable."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(self, **kwargs: Any) -> Any:
        """POST /chat/completions; a ChatCompletion, or with `stream=True` an async iterator of chunks.

        Status errors raise here, before the first chunk, as with the sync client.
        """
        result = await run(
            lambda cancel: create_completion(self._transport, kwargs, cancel), name="chat", discard=_close_stream
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

    def __init__(self, transport: Transport) -> None:
        self.completions = AsyncCompletions(transport)


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
        self.models = AsyncModels(self._transport)
        self.chat = AsyncChat(self._transport)

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

        return await run(call, name="generate")

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
