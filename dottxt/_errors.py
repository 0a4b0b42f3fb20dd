"""The exception tree: every error the SDK raises on purpose derives from DotTxtError.

DotTxtError
├── APIError
│   ├── APIStatusError            (non-2xx response; status_code, body, message, request_id, headers)
│   │   ├── BadRequestError           400
│   │   ├── AuthenticationError       401
│   │   ├── PermissionDeniedError     403
│   │   ├── NotFoundError             404
│   │   ├── UnprocessableEntityError  422
│   │   ├── RateLimitError            429
│   │   └── InternalServerError       >= 500
│   └── APIConnectionError        (no usable response: refused, reset, cut short)
│       └── APITimeoutError
├── InvalidSchemaError            (a response_format we cannot turn into a JSON Schema)
├── InvalidOutputError            (the model's output is not JSON or does not match the schema)
├── PatchError (also ValueError)  (a JSON Pointer / patch op that cannot be applied)
├── PatchStreamError              (the patch stream failed: non-2xx, or an error line)
├── StreamDecodeError             (a patch-stream line we cannot decode or apply)
└── StreamCancelledError          (a background stream was cancelled)

Stream failures carry `.document`: the document built from what arrived before
the failure, so nothing received is lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DotTxtError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "InvalidSchemaError",
    "InvalidOutputError",
    "PatchError",
    "PatchStreamError",
    "StreamDecodeError",
    "StreamCancelledError",
    "status_error_class",
    "patch_stream_error",
    "error_message_from_body",
    "error_member_message",
]


class DotTxtError(Exception):
    """Base class of every error the SDK raises on purpose."""

    #: The document built from the patch ops received before a stream failed
    #: (None when no op had arrived, or for errors outside a stream).
    document: Any = None


class APIError(DotTxtError):
    """A request to the API did not give a usable answer."""


class APIStatusError(APIError):
    """The server answered with a non-2xx status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        #: The response's headers, names lower-cased (`Retry-After` is `headers.get("retry-after")`).
        self.headers: dict[str, str] = {name.lower(): value for name, value in (headers or {}).items()}

    def __str__(self) -> str:
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.status_code}: {self.message}{rid}"


class BadRequestError(APIStatusError):
    """400: the request was malformed (often: an invalid response_format)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this resource."""


class NotFoundError(APIStatusError):
    """404: unknown endpoint or model."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests; retried automatically before it reaches you."""


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


class APIConnectionError(APIError):
    """No usable response: connection refused or reset, or a body cut short."""

    def __init__(self, message: str = "Connection error.", *, document: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.document = document


class APITimeoutError(APIConnectionError):
    """The server did not answer (or went silent mid-stream) within the timeout."""

    def __init__(self, message: str = "Request timed out.", *, document: Any = None) -> None:
        super().__init__(message, document=document)


class InvalidSchemaError(DotTxtError):
    """A response_format that cannot be turned into a valid JSON Schema."""


class InvalidOutputError(DotTxtError):
    """The model's output is not valid JSON or does not match the schema."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        raw_output: str | None = None,
        finish_reason: str | None = None,
        original_error: BaseException | None = None,
        document: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.raw_output = raw_output
        self.finish_reason = finish_reason
        self.original_error = original_error
        self.document = document


class PatchError(DotTxtError, ValueError):
    """A JSON Pointer or patch operation that cannot be applied to the document."""


class PatchStreamError(DotTxtError):
    """The patch stream failed: a non-2xx response, or an `error` line inside the stream.

    For a non-2xx response the raised object is also an instance of the matching
    APIStatusError subclass, so `except RateLimitError` works for streams too.
    """

    def __init__(
        self,
        status_code: int,
        body: str = "",
        *,
        message: str | None = None,
        request_id: str | None = None,
        document: Any = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.message = message or error_message_from_body(body) or f"patch stream failed ({status_code})"
        self.request_id = request_id
        self.document = document
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class StreamDecodeError(DotTxtError):
    """A patch-stream line that cannot be decoded or applied.

    `line_number` is 1-based and counts every received line (blank ones too);
    `line` is the offending line, shortened for display.
    """

    def __init__(
        self,
        message: str,
        *,
        line_number: int | None = None,
        line: str | None = None,
        document: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line_number = line_number
        self.line = line
        self.document = document


class StreamCancelledError(DotTxtError):
    """The background stream was cancelled before it finished."""

    def __init__(self, message: str = "stream was cancelled", *, document: Any = None) -> None:
        super().__init__(message)
        self.document = document


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The APIStatusError subclass for an HTTP status code."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


def error_member_message(error: Any) -> str:
    """The text of an `error` member in a stream: its `message` when it is an object, else itself."""
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]  # type: ignore[no-any-return]
    return str(error)


def error_message_from_body(body: str) -> str | None:
    """The server's `error.message` (or a string `error`) from an OpenAI-style body, if any."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    candidates = (err.get("message") if isinstance(err, dict) else None, err, data.get("message"))
    return next((c for c in candidates if isinstance(c, str) and c), None)


_PATCH_STREAM_CLASSES: dict[type[APIStatusError], type[PatchStreamError]] = {}


def patch_stream_error(error: APIStatusError, document: Any = None) -> PatchStreamError:
    """The PatchStreamError for a non-2xx stream response, also an instance of `type(error)`.

    So `except PatchStreamError` and `except RateLimitError` both catch a 429 on a stream.
    """
    base = type(error)
    cls = _PATCH_STREAM_CLASSES.get(base)
    if cls is None:
        cls = type(f"PatchStream{base.__name__}", (PatchStreamError, base), {"__module__": __name__})
        _PATCH_STREAM_CLASSES[base] = cls
    return cls(
        error.status_code,
        error.body,
        message=error.message,
        request_id=error.request_id,
        document=document,
    )
