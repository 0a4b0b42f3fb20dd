"""The exception tree, written out whole: every error the SDK raises on purpose derives from DotTxtError.

DotTxtError                          (.message, .document: what a stream had built before it failed)
├── APIError                         (the server gave no usable answer)
│   ├── APIStatusError               (non-2xx; .status_code, .body, .request_id)
│   │   ├── BadRequestError              400
│   │   ├── AuthenticationError          401
│   │   ├── PermissionDeniedError        403
│   │   ├── NotFoundError                404
│   │   ├── UnprocessableEntityError     422
│   │   ├── RateLimitError               429
│   │   └── InternalServerError          >= 500
│   ├── APIConnectionError           (refused, reset, cut short, or the client was closed)
│   │   └── APITimeoutError
│   ├── StreamDecodeError            (a stream line or event that cannot be decoded or applied)
│   └── PatchStreamError             (a stream failed: non-2xx, or an `error` event inside it)
│       ├── PatchStreamAPIStatusError          (also an APIStatusError: any other non-2xx)
│       ├── PatchStreamBadRequestError         (also a BadRequestError)
│       ├── PatchStreamAuthenticationError     (also an AuthenticationError)
│       ├── PatchStreamPermissionDeniedError   (also a PermissionDeniedError)
│       ├── PatchStreamNotFoundError           (also a NotFoundError)
│       ├── PatchStreamUnprocessableEntityError (also an UnprocessableEntityError)
│       ├── PatchStreamRateLimitError          (also a RateLimitError)
│       └── PatchStreamInternalServerError     (also an InternalServerError)
├── InvalidSchemaError               (a response_format that is not a usable JSON Schema)
├── InvalidOutputError (ValueError)  (output that is not JSON, or does not match the schema)
├── PatchError (ValueError)          (a JSON Pointer / patch op that cannot be applied)
└── StreamCancelledError             (a background stream was cancelled)

So `except APIError` catches every failure the server causes, before or during a stream
(a status, a report mid-stream, bytes that are not a stream, a dropped connection), and
`except RateLimitError` also catches a 429 that refused a stream.
"""

from __future__ import annotations

import json
import re
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
    "PatchStreamError",
    "PatchStreamAPIStatusError",
    "PatchStreamBadRequestError",
    "PatchStreamAuthenticationError",
    "PatchStreamPermissionDeniedError",
    "PatchStreamNotFoundError",
    "PatchStreamUnprocessableEntityError",
    "PatchStreamRateLimitError",
    "PatchStreamInternalServerError",
    "InvalidSchemaError",
    "InvalidOutputError",
    "PatchError",
    "StreamDecodeError",
    "StreamCancelledError",
]

#: Error bodies kept on exceptions are cut to this many characters.
MAX_ERROR_BODY = 1 << 20
#: What stands in for the API key wherever it could surface.
REDACTED = "***"


class DotTxtError(Exception):
    """Base class of every error the SDK raises on purpose."""

    def __init__(self, message: str = "", *, document: Any = None) -> None:
        super().__init__(message)
        self.message = message
        #: The document built from what a stream received before it failed (None elsewhere).
        self.document = document

    def __str__(self) -> str:
        return self.message


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
        document: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, document=document)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        #: The response's headers, names lower-cased (`Retry-After` is `headers.get("retry-after")`).
        self.headers: dict[str, str] = {name.lower(): value for name, value in (headers or {}).items()}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: pickle (say, from a distributed worker) rebuilds it from its state.
        return (_rebuild, (type(self), self.__dict__))

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
    """No usable response: connection refused or reset, a body cut short, or the client closed."""

    def __init__(self, message: str = "Connection error.", *, document: Any = None) -> None:
        super().__init__(message, document=document)


class APITimeoutError(APIConnectionError):
    """The server did not answer (or went silent mid-stream) within the timeout."""

    def __init__(self, message: str = "Request timed out.", *, document: Any = None) -> None:
        super().__init__(message, document=document)


class PatchStreamError(APIError):
    """A stream failed: a non-2xx response (after retries), or an `error` event inside the stream.

    For a non-2xx response the raised object is one of the PatchStream*Error classes
    below, so it is also the matching APIStatusError subclass. `status_code` is the
    response's (200 for an error reported mid-stream).
    """

    def __init__(
        self,
        status_code: int,
        body: str = "",
        *,
        message: str | None = None,
        request_id: str | None = None,
        document: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        text = message or error_message_from_body(body) or f"stream failed ({status_code})"
        if isinstance(self, APIStatusError):  # a PatchStream*Error: the next class in line is the status class
            super().__init__(
                text, status_code=status_code, body=body, request_id=request_id, document=document, headers=headers
            )
        else:
            super().__init__(text, document=document)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class PatchStreamAPIStatusError(PatchStreamError, APIStatusError):
    """A stream refused with a non-2xx status that has no class of its own."""


class PatchStreamBadRequestError(PatchStreamError, BadRequestError):
    """A stream refused with 400."""


class PatchStreamAuthenticationError(PatchStreamError, AuthenticationError):
    """A stream refused with 401."""


class PatchStreamPermissionDeniedError(PatchStreamError, PermissionDeniedError):
    """A stream refused with 403."""


class PatchStreamNotFoundError(PatchStreamError, NotFoundError):
    """A stream refused with 404."""


class PatchStreamUnprocessableEntityError(PatchStreamError, UnprocessableEntityError):
    """A stream refused with 422."""


class PatchStreamRateLimitError(PatchStreamError, RateLimitError):
    """A stream refused with 429 (after retries)."""


class PatchStreamInternalServerError(PatchStreamError, InternalServerError):
    """A stream refused with a 5xx (after retries)."""


class InvalidSchemaError(DotTxtError):
    """A response_format that cannot be turned into a valid JSON Schema."""


class InvalidOutputError(DotTxtError, ValueError):
    """The model's output is not valid JSON or does not match the schema.

    Constructed with keywords only, it words its own message from them (as the upstream SDK's does).
    `field` names the finished value that failed validation mid-stream, when one did.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        model: str | None = None,
        raw_output: str | None = None,
        finish_reason: str | None = None,
        original_error: BaseException | None = None,
        document: Any = None,
        field: str | None = None,
    ) -> None:
        if message is None:
            message = _output_message(model, finish_reason, original_error)
        super().__init__(message, document=document)
        self.model = model
        self.raw_output = raw_output
        self.finish_reason = finish_reason
        self.original_error = original_error
        self.field = field


def _output_message(model: str | None, finish_reason: str | None, original_error: BaseException | None) -> str:
    what = f"the output of {model}" if model else "the model's output"
    why = f": {original_error}" if original_error is not None else ""
    truncated = " (truncated: finish_reason was 'length')" if finish_reason == "length" else ""
    return f"{what} is not valid for the schema{why}{truncated}"


class PatchError(DotTxtError, ValueError):
    """A JSON Pointer or patch operation that cannot be applied to the document."""


class StreamDecodeError(APIError):
    """A stream line or event that cannot be decoded or applied.

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
        super().__init__(message, document=document)
        self.line_number = line_number
        self.line = line


class StreamCancelledError(DotTxtError):
    """The background stream was cancelled before it finished."""

    def __init__(self, message: str = "stream was cancelled", *, document: Any = None) -> None:
        super().__init__(message, document=document)


_STATUS_CLASSES: dict[int, tuple[type[APIStatusError], type[PatchStreamError]]] = {
    400: (BadRequestError, PatchStreamBadRequestError),
    401: (AuthenticationError, PatchStreamAuthenticationError),
    403: (PermissionDeniedError, PatchStreamPermissionDeniedError),
    404: (NotFoundError, PatchStreamNotFoundError),
    422: (UnprocessableEntityError, PatchStreamUnprocessableEntityError),
    429: (RateLimitError, PatchStreamRateLimitError),
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The APIStatusError subclass for an HTTP status code."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, (APIStatusError,))[0]


def stream_status_error_class(status_code: int) -> type[PatchStreamError]:
    """The PatchStream*Error for a status that refused a stream: also `status_error_class(status_code)`."""
    if status_code >= 500:
        return PatchStreamInternalServerError
    return _STATUS_CLASSES.get(status_code, (APIStatusError, PatchStreamAPIStatusError))[1]


def status_error(
    status_code: int,
    body: str,
    *,
    reason: str | None,
    request_id: str | None,
    headers: Mapping[str, str] | None = None,
    stream: bool = False,
) -> APIStatusError:
    """The error for a non-2xx answer whose (bounded, redacted) body has been read."""
    message = error_message_from_body(body) or reason or f"HTTP {status_code}"
    if stream:
        cls = stream_status_error_class(status_code)
        error = cls(status_code, body, message=message, request_id=request_id, headers=headers)
        assert isinstance(error, APIStatusError)
        return error
    cls_ = status_error_class(status_code)
    return cls_(message, status_code=status_code, body=body, request_id=request_id, headers=headers)


def _rebuild(cls: type[Exception], state: dict[str, Any]) -> Exception:
    """An exception of `cls` with `state`, made without calling its constructor (for unpickling)."""
    error = Exception.__new__(cls)
    error.__dict__.update(state)
    error.args = (state.get("message", ""),)
    return error


def error_member_message(error: Any) -> str:
    """The text of an `error` member in a stream: its `message` when it is an object, else itself."""
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]  # type: ignore[no-any-return]
    return shorten(str(error))


def error_message_from_body(body: str) -> str | None:
    """The server's `error.message` (or a string `error`) from an OpenAI-style body, if any."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    candidates = (err.get("message") if isinstance(err, dict) else None, err, data.get("message"))
    return next((shorten(c) for c in candidates if isinstance(c, str) and c), None)


_SHOWN = 200


def shorten(text: str | bytes, limit: int = _SHOWN) -> str:
    """Text for an error message: decoded leniently, cut to a readable length."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[: limit * 4]).decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# A key counts as found only where it stands whole: not inside a longer word or name.
_EDGE = r"A-Za-z0-9_\-/+~"


def redact(text: str, secret: str) -> str:
    """`text` with every whole occurrence of `secret` replaced by `***`.

    Only whole occurrences count, so a short key such as `x` leaves "does not exist" intact.
    """
    if not secret or not text or secret not in text:
        return text
    return re.sub(rf"(?<![{_EDGE}]){re.escape(secret)}(?![{_EDGE}])", REDACTED, text)


def redact_error(error: DotTxtError, secret: str) -> None:
    """Blank the key out of an error in place: its message and the server's text it quotes (`body`, `line`).

    A stream error quotes what the server sent (an `error` line echoing the key, perhaps \\u-escaped).
    """
    if not secret:
        return
    for name in ("message", "body", "line"):
        value = getattr(error, name, None)
        if isinstance(value, str):
            setattr(error, name, redact_body(value, secret))
    error.args = (error.message,)


def redact_body(body: str, secret: str) -> str:
    """An error body with the key blanked out, also where JSON escapes (`\\u0073k-...`) spell it.

    A JSON body whose decoded strings still hold the key after plain redaction is
    written out again from its decoded, redacted form.
    """
    body = redact(body, secret)
    if not secret or "\\" not in body:
        return body
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body
    found = False

    def clean(value: Any) -> Any:
        nonlocal found
        if isinstance(value, str):
            cleaned = redact(value, secret)
            found = found or cleaned != value
            return cleaned
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    try:
        cleaned = clean(data)
    except RecursionError:  # deeper than we walk: no key can be told apart in it, so keep none of it
        return "(error body withheld: nested too deeply to check for the API key)"
    return json.dumps(cleaned) if found else body
