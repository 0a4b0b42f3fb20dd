"""`DotTxt`, the blocking client: configuration, resources, `generate`, `stream`, `stream_in_background`."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from ._batch import generate_many as _generate_many
from ._credentials import credentials_path, load_api_key
from ._errors import APIError, APIStatusError, DotTxtError, error_member_message
from ._lines import DEFAULT_MAX_LINE_BYTES, iter_lines, read_error
from ._schemas import OutputSchema
from ._sse import DONE, iter_sse_data
from ._streaming import PatchStream
from ._transport import CancelToken, Timeout, Transport, interrupt_response
from ._types import ChatCompletion, ChatCompletionChunk, ModelPage, Record

if TYPE_CHECKING:
    import queue

    from ._background import BackgroundStream
    from ._events import PatchEvent

__all__ = ["DotTxt", "ClientConfig", "DEFAULT_BASE_URL", "ChatCompletionStream"]

DEFAULT_BASE_URL = "https://api.dottxt.ai/v1"
PATCH_SOURCES = ("gateway", "sse")


def resolve_api_key(api_key: str | None) -> str:
    """The key from the argument, else DOTTXT_API_KEY, else the `dottxt login` credentials file."""
    if api_key is not None and not isinstance(api_key, str):
        raise TypeError(f"api_key must be a string, not {type(api_key).__name__}")
    key = (api_key or os.environ.get("DOTTXT_API_KEY") or load_api_key() or "").strip()  # a file's "\n" too
    if not key:
        raise ValueError(
            "No API key: pass api_key=..., set the DOTTXT_API_KEY environment variable, "
            f"or run `dottxt login` to store one in {credentials_path()}"
        )
    if "\r" in key or "\n" in key:
        # Refused here, without echoing it: requests would put the whole header in its error message.
        raise ValueError("the API key holds a line break, which an HTTP header cannot carry")
    return key


def resolve_base_url(base_url: str | None) -> str:
    """The URL from the argument, else DOTTXT_BASE_URL, else the public API; no trailing `/`."""
    if base_url is not None and not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    url = base_url or os.environ.get("DOTTXT_BASE_URL") or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def _check_timeout(timeout: Any, name: str = "timeout") -> Timeout:
    if timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)):
        return timeout  # type: ignore[no-any-return]
    if (
        isinstance(timeout, tuple)
        and len(timeout) == 2
        and all(t is None or (isinstance(t, (int, float)) and not isinstance(t, bool)) for t in timeout)
    ):
        return timeout  # type: ignore[return-value]
    raise TypeError(f"{name} must be seconds (a number) or a (connect, read) tuple, not {timeout!r}")


def chat_messages(input: Any) -> list[dict[str, Any]]:
    """A prompt string as one user message; a list of message dicts unchanged."""
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    if isinstance(input, list) and all(isinstance(m, Mapping) for m in input):
        return [dict(m) for m in input]
    raise TypeError(f"input must be a string or a list of message dicts, not {type(input).__name__}")


def chat_body(
    *,
    model: str,
    input: Any,
    output: OutputSchema,
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The chat-completions request body shared by `generate` and the streams."""
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, not {model!r}")
    body: dict[str, Any] = {
        "model": model,
        "messages": chat_messages(input),
        "response_format": output.response_format,
    }
    for name, value in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed)):
        if value is not None:
            body[name] = value
    if extra:
        body.update(extra)
    return body


class Models:
    """`client.models`: the models the key can use."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self) -> ModelPage:
        """GET /models: a page whose `.data` holds the models (iterating the page yields them)."""
        response = self._transport.request("GET", "models")
        return _record(ModelPage, response)


class Completions:
    """`client.chat.completions`: the OpenAI-compatible surface, passed through unchanged."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(self, **kwargs: Any) -> Any:
        """POST /chat/completions with `kwargs` as the body.

        Returns a ChatCompletion, or with `stream=True` a ChatCompletionStream of chunks.
        """
        timeout = _check_timeout(kwargs.pop("timeout", None))
        if kwargs.get("stream") is True:
            response = self._transport.request(
                "POST",
                "chat/completions",
                json=kwargs,
                timeout=timeout,
                stream=True,
                headers={"Accept": "text/event-stream", "Accept-Encoding": "identity"},
            )
            return ChatCompletionStream(response, self._transport.release)
        response = self._transport.request("POST", "chat/completions", json=kwargs, timeout=timeout)
        return _record(ChatCompletion, response)


class Chat:
    """`client.chat`: holds `completions`."""

    def __init__(self, transport: Transport) -> None:
        self.completions = Completions(transport)


class ChatCompletionStream:
    """The chunks of `chat.completions.create(stream=True)`, each as soon as it arrives.

    A dropped or silent connection raises APIConnectionError / APITimeoutError;
    `close()` (from any thread) ends the iteration quietly.
    """

    def __init__(self, response: requests.Response, release: Callable[[requests.Response], None]) -> None:
        self.response = response
        self._release = release
        self._closed = threading.Event()
        # The generator holds no reference to this object: dropping the stream closes its connection.
        self._chunks = _read_chunks(response, release, self._closed)

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self._chunks

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def __enter__(self) -> ChatCompletionStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection now. Safe from any thread, and more than once."""
        self._closed.set()
        interrupt_response(self.response)  # wakes a read blocked on another thread
        try:
            self._chunks.close()  # type: ignore[attr-defined]
        except ValueError:  # running on another thread: the interrupt above ends it
            pass
        self._release(self.response)


def _read_chunks(
    response: requests.Response, release: Callable[[requests.Response], None], closed: threading.Event
) -> Iterator[ChatCompletionChunk]:
    """The chunks of an SSE response, each as it arrives; the response is released at the end."""
    try:
        for data in iter_sse_data(iter_lines(response, DEFAULT_MAX_LINE_BYTES)):
            if data.strip() == DONE:
                return
            yield _chunk_of(data)
    except DotTxtError:
        raise
    except Exception as exc:
        if closed.is_set():
            return  # closed by us: the read error is our own interrupt, not a failure
        raise read_error(exc) from exc
    finally:
        release(response)


def _chunk_of(data: str) -> ChatCompletionChunk:
    """One SSE event's data as a chunk; APIError for an error event or one that is not a chunk."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise APIError(f"the server sent an SSE event that is not JSON: {data[:200]!r}") from exc
    if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
        error = payload["error"]
        message = error_member_message(error)
        raise APIError(f"the server reported an error mid-stream: {message}")
    try:
        return ChatCompletionChunk.model_validate(payload)
    except ValueError as exc:  # pydantic's ValidationError
        raise APIError(f"the server sent an SSE event that is not a chat completion chunk: {data[:200]!r}") from exc


_R = TypeVar("_R", bound=Record)


def _record(cls: type[_R], response: requests.Response) -> _R:
    """The response's JSON as a `cls` record; APIStatusError when it is not JSON of that shape."""
    try:
        return cls.model_validate(_json_of(response))
    except ValueError as exc:  # pydantic's ValidationError
        raise APIStatusError(
            f"the server's {response.status_code} answer is not a {cls.__name__}: {exc.__class__.__name__}",
            status_code=response.status_code,
            body=response.text[:1000],
            request_id=response.headers.get("x-request-id"),
        ) from exc


def _json_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise APIStatusError(
            f"the server sent a {response.status_code} answer that is not JSON",
            status_code=response.status_code,
            body=response.text[:1000],
            request_id=response.headers.get("x-request-id"),
        ) from exc


class ClientConfig:
    """What DotTxt and AsyncDotTxt share: their configuration, read back from the one transport."""

    _transport: Transport
    patch_source: str

    @property
    def api_key(self) -> str:
        """The API key requests are sent with (never shown by `repr()`)."""
        return self._transport.api_key

    @property
    def base_url(self) -> str:
        """The API base URL requests go to (no trailing `/`)."""
        return self._transport.base_url

    @property
    def timeout(self) -> Timeout:
        """The default timeout: seconds, or (connect, read)."""
        return self._transport.timeout

    @property
    def max_retries(self) -> int:
        """How many times a failed request is retried."""
        return self._transport.max_retries

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class DotTxt(ClientConfig):
    """The blocking .txt client. Share one between threads; close it (or use `with`) when done.

    >>> client = DotTxt()                          # key from DOTTXT_API_KEY or `dottxt login`
    >>> ticket = client.generate(model="...", response_format=Ticket, input="...")
    >>> for event in client.stream(model="...", response_format=Ticket, input="..."):
    ...     print(event.field, event.value)
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
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise TypeError(f"max_retries must be a non-negative int, not {max_retries!r}")
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, not {type(session).__name__}")
        source = patch_source or os.environ.get("DOTTXT_PATCH_SOURCE") or "gateway"
        if source not in PATCH_SOURCES:
            raise ValueError(f"patch_source must be one of {PATCH_SOURCES}, got {source!r}")
        self.patch_source = source
        self._transport = Transport(
            api_key=resolve_api_key(api_key),
            base_url=resolve_base_url(base_url),
            timeout=_check_timeout(timeout),
            max_retries=max_retries,
            default_headers=default_headers,
            session=session,
        )
        self.models = Models(self._transport)
        self.chat = Chat(self._transport)

    def __enter__(self) -> DotTxt:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection now, including those of streams still being read."""
        self._transport.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its configuration (the API key included), never its connections."""
        from ._batch import client_state

        return client_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        DotTxt.__init__(self, **state)  # a fresh client, with connections of its own

    def generate(
        self,
        *,
        model: str,
        response_format: Any,
        input: Any,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: Timeout = None,
        **extra: Any,
    ) -> Any:
        """One completion constrained by `response_format`, parsed and typed.

        Returns a model instance for a Pydantic model, the validated value for
        other Python types, the decoded JSON for a JSON Schema. Raises
        InvalidOutputError when the output is not valid JSON or not valid
        against the schema (its message says "truncated" when max_tokens cut it).
        """
        output = OutputSchema(response_format)
        body = chat_body(
            model=model,
            input=input,
            output=output,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            extra=extra,
        )
        response = self._transport.request("POST", "chat/completions", json=body, timeout=_check_timeout(timeout))
        completion = _record(ChatCompletion, response)
        if not completion.choices:
            from ._errors import InvalidOutputError

            raise InvalidOutputError("the response has no choices", model=model, raw_output=response.text)
        choice = completion.choices[0]
        return output.parse_json(choice.message.content, model=model, finish_reason=choice.finish_reason)

    #: `generate` over every input, up to `concurrency` at once: a BatchItem each, in completion order.
    generate_many = _generate_many

    def stream(
        self,
        *,
        model: str,
        response_format: Any,
        input: Any,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: Timeout = None,
        extra: Mapping[str, Any] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> PatchStream:
        """Stream the completion as PatchEvents, each the moment its op arrives.

        The request is sent when iteration starts. Use it in a `for` loop, or
        as a context manager to close the connection on exit.
        """
        output = OutputSchema(response_format)
        body = chat_body(
            model=model,
            input=input,
            output=output,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            extra=extra,
        )
        checked_timeout = _check_timeout(timeout)
        sse = self.patch_source == "sse"
        body["stream"] = True if sse else "patch"
        accept = "text/event-stream" if sse else "application/x-ndjson"
        transport = self._transport

        def open_response(cancel: CancelToken) -> requests.Response:
            return transport.request(
                "POST",
                "chat/completions",
                json=body,
                timeout=checked_timeout,
                stream=True,
                cancel=cancel,
                headers={"Accept": accept, "Accept-Encoding": "identity"},
            )

        return PatchStream(
            open_response,
            output=output,
            model=model,
            release=transport.release,
            max_line_bytes=max_line_bytes,
            sse=sse,
            max_tokens=max_tokens,
        )

    def stream_in_background(
        self,
        *,
        model: str,
        response_format: Any,
        input: Any,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: Timeout = None,
        extra: Mapping[str, Any] | None = None,
        on_event: Callable[[PatchEvent], Any] | None = None,
        on_field: Mapping[str, Callable[[PatchEvent], Any]] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        on_complete: Callable[[Any], Any] | None = None,
        queue: queue.Queue[PatchEvent | None] | None = None,
    ) -> BackgroundStream:
        """Run `stream(...)` on its own thread, handing events to callbacks and a queue."""
        from ._background import BackgroundStream

        stream = self.stream(
            model=model,
            response_format=response_format,
            input=input,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            timeout=timeout,
            extra=extra,
        )
        return BackgroundStream(
            stream,
            on_event=on_event,
            on_field=on_field,
            on_error=on_error,
            on_complete=on_complete,
            queue=queue,
        )
