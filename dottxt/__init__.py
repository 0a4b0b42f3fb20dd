"""dottxt: the sync-first Python SDK for the .txt structured-generation API.

from dottxt import DotTxt
client = DotTxt()
for event in client.stream(model=..., response_format=Ticket, input="..."):
    print(event.field, event.value)
"""

# The public names are imported on first use (PEP 562), so that `dottxt --version`
# and `dottxt --help` start without importing requests, pydantic or jsonschema.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._async_client import AsyncDotTxt, AsyncPatchStream
    from ._background import BackgroundStream
    from ._batch import BatchItem
    from ._client import DotTxt
    from ._errors import (
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
        PatchStreamAPIStatusError,
        PatchStreamAuthenticationError,
        PatchStreamBadRequestError,
        PatchStreamError,
        PatchStreamInternalServerError,
        PatchStreamNotFoundError,
        PatchStreamPermissionDeniedError,
        PatchStreamRateLimitError,
        PatchStreamUnprocessableEntityError,
        PermissionDeniedError,
        RateLimitError,
        StreamCancelledError,
        StreamDecodeError,
        UnprocessableEntityError,
    )
    from ._events import PatchEvent
    from ._patch import apply_add, apply_op
    from ._schemas import build_response_format, normalize_schema
    from ._streaming import PatchStream

__all__ = [
    "__version__",
    "DotTxt",
    "AsyncDotTxt",
    "AsyncPatchStream",
    "BackgroundStream",
    "BatchItem",
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
    "PatchStreamAPIStatusError",
    "PatchStreamBadRequestError",
    "PatchStreamAuthenticationError",
    "PatchStreamPermissionDeniedError",
    "PatchStreamNotFoundError",
    "PatchStreamUnprocessableEntityError",
    "PatchStreamRateLimitError",
    "PatchStreamInternalServerError",
    "StreamDecodeError",
    "StreamCancelledError",
]

#: Where each lazily imported public name lives (module relative to this package).
_LAZY: dict[str, str] = {
    "DotTxt": "client",
    "AsyncDotTxt": "async_client",
    "AsyncPatchStream": "async_client",
    "BackgroundStream": "background",
    "BatchItem": "batch",
    "PatchEvent": "events",
    "PatchStream": "streaming",
    "apply_add": "patch",
    "apply_op": "patch",
    "build_response_format": "schemas",
    "normalize_schema": "schemas",
    **{name: "errors" for name in __all__ if name.endswith("Error")},
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"._{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
