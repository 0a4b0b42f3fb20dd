"""dottxt: the sync-first Python SDK for the .txt structured-generation API.

from dottxt import DotTxt
client = DotTxt()
for event in client.stream(model=..., response_format=Ticket, input="..."):
    print(event.field, event.value)
"""

from ._version import __version__
from .client import DotTxt
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DotTxtError,
    InternalServerError,
    InvalidOutputError,
    InvalidSchemaError,
    NotFoundError,
    PatchError,
    PatchStreamError,
    PermissionDeniedError,
    RateLimitError,
    StreamCancelledError,
    StreamDecodeError,
    UnprocessableEntityError,
)
from .patch import apply_add, apply_op
from .schemas import build_response_format, normalize_schema
from .streaming import PatchEvent, PatchStream

__all__ = [
    "__version__",
    "DotTxt",
    "PatchEvent",
    "PatchStream",
    "apply_add",
    "apply_op",
    "build_response_format",
    "normalize_schema",
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
]
