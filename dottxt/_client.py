"""`DotTxt`, the blocking client: configuration, the `models` and `chat` resources, `generate`, `stream`.

Each call is a few named steps: build the request (`dottxt._params`), send it
(`dottxt._transport`), read the answer (a record, or a stream from
`dottxt._streaming`). The steps take a `CancelToken` explicitly, so the async
client runs the very same functions on its worker threads and can interrupt them.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import requests

from ._batch import BatchItem, generate_many
from ._credentials import credentials_path, load_api_key
from ._errors import APIStatusError, InvalidOutputError
from ._lines import DEFAULT_MAX_LINE_BYTES, loads
from ._logging import log_from_env
from ._params import GenerationParams, Input, RequestOptions, chat_request, check_timeout, merge_body, options
from ._schemas import OutputSchema
from ._streaming import ChatCompletionStream, PatchStream
from ._transport import CancelToken, Timeout, Transport, is_header_safe
from ._types import ChatCompletion, Model, ModelPage, Record, loose_record

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._background import BackgroundParams, BackgroundStream

__all__ = ["DotTxt", "ClientConfig", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.dottxt.ai/v1"
PATCH_SOURCES = ("gateway", "sse")

T = TypeVar("T")
R = TypeVar("R", bound=Record)


# --------------------------------------------------------------------------- configuration


def resolve_api_key(api_key: str | None) -> str:
    """The key from the argument, else DOTTXT_API_KEY, else the `dottxt login` credentials file.

    A blank value counts as unset. A key HTTP cannot carry is refused here, without showing it.
    """
    if api_key is not None and not isinstance(api_key, str):
        raise TypeError(f"api_key must be a string, not {type(api_key).__name__}")
    key = (api_key or "").strip() or os.environ.get("DOTTXT_API_KEY", "").strip() or (load_api_key() or "").strip()
    if not key:
        raise ValueError(
            "No API key: pass api_key=..., set the DOTTXT_API_KEY environment variable, "
            f"or run `dottxt login` to store one in {credentials_path()}"
        )
    if not is_header_safe(key):
        raise ValueError(
            "the API key holds characters an HTTP header cannot carry (not Latin-1, or a control character)"
        )
    return key


def resolve_base_url(base_url: str | None) -> str:
    """The URL from the argument, else DOTTXT_BASE_URL, else the public API; no trailing `/`."""
    if base_url is not None and not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    url = base_url or os.environ.get("DOTTXT_BASE_URL") or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def resolve_patch_source(patch_source: str | None) -> str:
    """`"gateway"` (NDJSON patch ops from the .txt API) or `"sse"` (derived from any OpenAI-style stream)."""
    source = patch_source or os.environ.get("DOTTXT_PATCH_SOURCE") or "gateway"
    if source not in PATCH_SOURCES:
        raise ValueError(f"patch_source must be one of {PATCH_SOURCES}, got {source!r}")
    return source


class ClientConfig:
    """What DotTxt and AsyncDotTxt share: their configuration, read back from the one transport, and
    `stream_in_background` (a blocking thread's stream either way)."""

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

    @overload
    def stream_in_background(
        self, *, model: str, response_format: type[T], input: Input, **kwargs: Unpack[BackgroundParams]
    ) -> BackgroundStream[T]: ...
    @overload
    def stream_in_background(
        self, *, model: str, response_format: Any, input: Input, **kwargs: Unpack[BackgroundParams]
    ) -> BackgroundStream[Any]: ...
    def stream_in_background(
        self, *, model: str, response_format: Any, input: Input, **kwargs: Unpack[BackgroundParams]
    ) -> BackgroundStream[Any]:
        """Run the stream on its own thread, handing events to callbacks and a queue (the same on both clients).

        Callbacks: `on_event`, `on_field`, `on_done` (finished values), `on_error`, `on_complete`; see BackgroundStream.
        """
        from ._background import BackgroundStream, split_options

        params, options = split_options(kwargs)
        stream = open_stream(
            self._transport, self.patch_source, model=model, response_format=response_format, input=input, params=params
        )
        return BackgroundStream(stream, **options)


# --------------------------------------------------------------------------- the calls, shared with AsyncDotTxt


def list_models(transport: Transport, params: Mapping[str, Any], cancel: CancelToken | None = None) -> ModelPage:
    """GET /models."""
    return _get(transport, ModelPage, "models", params, cancel)


def retrieve_model(
    transport: Transport, model_id: str, params: Mapping[str, Any], cancel: CancelToken | None = None
) -> Model:
    """GET /models/{id}, the id percent-encoded (`/` included)."""
    if not isinstance(model_id, str) or not model_id:
        raise TypeError(f"model_id must be a non-empty string, not {model_id!r}")
    return _get(transport, Model, f"models/{urllib.parse.quote(model_id, safe='')}", params, cancel)


def _get(transport: Transport, cls: type[R], path: str, params: Mapping[str, Any], cancel: CancelToken | None) -> R:
    headers, query, timeout = options(params)
    response = transport.request("GET", path, query=query, headers=headers, timeout=timeout, cancel=cancel)
    return _record(transport, cls, response)


def create_completion(transport: Transport, kwargs: dict[str, Any], cancel: CancelToken | None = None) -> Any:
    """POST /chat/completions with `kwargs` as the body, passed through; chunks with `stream=True`."""
    params = {name: kwargs.pop(name) for name in RequestOptions.__annotations__ if name in kwargs}
    headers, query, timeout = options(params)
    body = merge_body(kwargs, params.get("extra_body"))
    if body.get("stream") is True:
        accept = {"Accept": "text/event-stream", "Accept-Encoding": "identity", **headers}

        def send(token: CancelToken) -> requests.Response:
            return transport.request(
                "POST", "chat/completions", json=body, query=query, timeout=timeout, headers=accept, stream=True,
                cancel=token,
            )  # fmt: skip

        return ChatCompletionStream(transport, send)
    response = transport.request(
        "POST", "chat/completions", json=body, query=query, headers=headers, timeout=timeout, cancel=cancel
    )
    return _record(transport, ChatCompletion, response, strict=False)


def generate(
    transport: Transport,
    *,
    model: str,
    response_format: Any,
    input: Any,
    params: Mapping[str, Any],
    cancel: CancelToken | None = None,
) -> Any:
    """One completion, parsed and typed: the body of `DotTxt.generate`."""
    output: OutputSchema[Any] = (
        response_format if isinstance(response_format, OutputSchema) else OutputSchema(response_format)
    )
    request = chat_request(model=model, input=input, output=output, params=params)
    response = transport.request(
        "POST",
        "chat/completions",
        json=request.body,
        query=request.query,
        headers=request.headers,
        timeout=request.timeout,
        cancel=cancel,
    )
    content, finish_reason = _first_choice(transport, response, model)
    return output.parse_json(content, model=model, finish_reason=finish_reason)


def open_stream(
    transport: Transport,
    patch_source: str,
    *,
    model: str,
    response_format: Any,
    input: Any,
    params: Mapping[str, Any],
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> PatchStream[Any]:
    """A PatchStream for one completion (the request goes out when it is first read)."""
    output: OutputSchema[Any] = OutputSchema(response_format)
    sse = patch_source == "sse"
    request = chat_request(model=model, input=input, output=output, params=params, stream=True if sse else "patch")
    accept = "text/event-stream" if sse else "application/x-ndjson"
    headers = {"Accept": accept, "Accept-Encoding": "identity", **request.headers}

    def send(cancel: CancelToken) -> requests.Response:
        return transport.request(
            "POST",
            "chat/completions",
            json=request.body,
            query=request.query,
            timeout=request.timeout,
            headers=headers,
            stream=True,
            cancel=cancel,
        )

    max_tokens = params.get("max_tokens")
    return PatchStream(
        transport, send, output=output, model=model, sse=sse, max_tokens=max_tokens, max_line_bytes=max_line_bytes
    )


_NOT_JSON = object()  # a 2xx body that does not parse: output of the wrong shape too, not a status error


def _first_choice(transport: Transport, response: requests.Response, model: str) -> tuple[str | None, str | None]:
    """The first choice's content and finish_reason; InvalidOutputError for a 200 of the wrong shape."""
    try:
        data = loads(response.content)
    except ValueError:
        data = _NOT_JSON
    choices = data.get("choices") if isinstance(data, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    problem = (
        "is not JSON" if data is _NOT_JSON
        else "has no choices" if choice is None
        else "has a finish_reason that is not a string" if not (finish_reason is None or isinstance(finish_reason, str))
        else "has message content that is not a string" if not (content is None or isinstance(content, str))
        else None
    )  # fmt: skip
    if problem is not None:
        raise InvalidOutputError(
            f"the response {problem} (a 200 of the wrong shape)",
            model=model,
            raw_output=transport.redact(response.text[:1000]),
        )
    return content, finish_reason


def _record(transport: Transport, cls: type[R], response: requests.Response, *, strict: bool = True) -> R:
    """The response's JSON as a `cls` record (passed through as sent unless `strict`)."""
    data = _json_of(transport, response)
    try:
        return cls.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError
        if not strict and isinstance(data, dict):
            return cast(R, loose_record(data))  # passed through as sent, attribute access kept
        raise _bad_answer(transport, response, f"is not a {cls.__name__}") from exc


def _json_of(transport: Transport, response: requests.Response) -> Any:
    try:
        return loads(response.content)
    except ValueError as exc:
        raise _bad_answer(transport, response, "is not JSON") from exc


def _bad_answer(transport: Transport, response: requests.Response, what: str) -> Exception:
    return APIStatusError(
        f"the server's {response.status_code} answer {what}",
        status_code=response.status_code,
        body=transport.redact(response.text[:1000]),
        request_id=response.headers.get("x-request-id"),
    )


# --------------------------------------------------------------------------- the client


class Models:
    """`client.models`: the models the key can use."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self, **options: Unpack[RequestOptions]) -> ModelPage:
        """GET /models: a page whose `.data` holds the models (iterating the page yields them)."""
        return list_models(self._transport, options)

    def retrieve(self, model_id: str, **options: Unpack[RequestOptions]) -> Model:
        """GET /models/{id}: one model; NotFoundError when the key cannot use it."""
        return retrieve_model(self._transport, model_id, options)


class Completions:
    """`client.chat.completions`: the OpenAI-compatible surface, passed through unchanged."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(self, **kwargs: Any) -> Any:
        """POST /chat/completions with `kwargs` as the body (request options apart).

        Returns a ChatCompletion, or with `stream=True` a ChatCompletionStream of chunks.
        """
        return create_completion(self._transport, kwargs)


class Chat:
    """`client.chat`: holds `completions`."""

    def __init__(self, transport: Transport) -> None:
        self.completions = Completions(transport)


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
        self.patch_source = resolve_patch_source(patch_source)
        self._transport = Transport(
            api_key=resolve_api_key(api_key),
            base_url=resolve_base_url(base_url),
            timeout=check_timeout(timeout),
            max_retries=max_retries,
            default_headers=default_headers,
            session=session,
        )
        self.models = Models(self._transport)
        self.chat = Chat(self._transport)
        log_from_env(self.api_key, f"{self!r}, timeout={self.timeout!r}, max_retries={self.max_retries}")

    def __enter__(self) -> DotTxt:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection now: streams being read, requests waiting for an answer, the pool."""
        self._transport.close()

    @overload
    def generate(
        self, *, model: str, response_format: type[T], input: Input, **params: Unpack[GenerationParams]
    ) -> T: ...
    @overload
    def generate(
        self, *, model: str, response_format: Any, input: Input, **params: Unpack[GenerationParams]
    ) -> Any: ...
    def generate(self, *, model: str, response_format: Any, input: Input, **params: Unpack[GenerationParams]) -> Any:
        """One completion constrained by `response_format`, parsed and typed.

        Returns a model instance for a Pydantic model, the validated value for
        other Python types, the decoded JSON for a JSON Schema. Raises
        InvalidOutputError when the output is not valid JSON or not valid
        against the schema (its message says "truncated" when max_tokens cut it).
        """
        return generate(self._transport, model=model, response_format=response_format, input=input, params=params)

    @overload
    def stream(
        self,
        *,
        model: str,
        response_format: type[T],
        input: Input,
        max_line_bytes: int = ...,
        **params: Unpack[GenerationParams],
    ) -> PatchStream[T]: ...
    @overload
    def stream(
        self,
        *,
        model: str,
        response_format: Any,
        input: Input,
        max_line_bytes: int = ...,
        **params: Unpack[GenerationParams],
    ) -> PatchStream[Any]: ...
    def stream(
        self,
        *,
        model: str,
        response_format: Any,
        input: Input,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        **params: Unpack[GenerationParams],
    ) -> PatchStream[Any]:
        """Stream the completion as PatchEvents, each the moment its op arrives.

        The request is sent when iteration starts. Use it in a `for` loop, or
        as a context manager to close the connection on exit.
        """
        return open_stream(
            self._transport,
            self.patch_source,
            model=model,
            response_format=response_format,
            input=input,
            params=params,
            max_line_bytes=max_line_bytes,
        )

    def generate_many(
        self,
        inputs: Iterable[Input],
        *,
        model: str,
        response_format: Any,
        concurrency: int = 8,
        system: str | None = None,
        **params: Unpack[GenerationParams],
    ) -> Generator[BatchItem, None, None]:
        """`generate` over every input, up to `concurrency` at once: a BatchItem each, in completion order.

        On 429 the concurrency is lowered for a while and `Retry-After` honoured,
        so a rate-limited run slows down instead of failing. Leaving the loop
        early starts nothing more and ends every thread.
        """
        output: OutputSchema[Any] = OutputSchema(response_format)  # checked now, resolved once for every input
        transport = self._transport

        def call(input: Any, cancel: CancelToken) -> Any:
            return generate(transport, model=model, response_format=output, input=input, params=params, cancel=cancel)

        return generate_many(call, inputs, concurrency=concurrency, system=system)

    def __getstate__(self) -> dict[str, Any]:
        """A DotTxt pickles as its configuration (the API key included), never its connections."""
        return {**self._transport.config(), "patch_source": self.patch_source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        DotTxt.__init__(self, **state)  # a fresh client, with connections of its own
