"""dottxt: the sync-first Python SDK for the .txt structured-generation API.

from dottxt import DotTxt
client = DotTxt()
for event in client.stream(model=..., response_format=Ticket, input="..."):
    print(event.field, event.value)
"""

# The public names are imported on first use (PEP 562), so that `dottxt --version`
# and `dottxt --help` start without importing requests, pydantic or jsonschema.
# The exception tree is light (json, re) and imported at once: its names are listed in one place, `_errors.__all__`.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import *  # noqa: F403
from ._errors import __all__ as _error_names
from ._version import __version__

if TYPE_CHECKING:
    from ._async_client import AsyncDotTxt as AsyncDotTxt
    from ._async_client import AsyncPatchStream as AsyncPatchStream
    from ._background import BackgroundStream as BackgroundStream
    from ._batch import BatchItem as BatchItem
    from ._client import DotTxt as DotTxt
    from ._events import PatchEvent as PatchEvent
    from ._fields import FieldDone as FieldDone
    from ._patch import apply_add as apply_add
    from ._patch import apply_op as apply_op
    from ._schemas import build_response_format as build_response_format
    from ._schemas import normalize_schema as normalize_schema
    from ._streaming import PatchStream as PatchStream

#: Where each lazily imported public name lives (its private module, without the `_`).
_LAZY: dict[str, str] = {
    "DotTxt": "client",
    "AsyncDotTxt": "async_client",
    "AsyncPatchStream": "async_client",
    "BackgroundStream": "background",
    "BatchItem": "batch",
    "PatchEvent": "events",
    "FieldDone": "fields",
    "PatchStream": "streaming",
    "apply_add": "patch",
    "apply_op": "patch",
    "build_response_format": "schemas",
    "normalize_schema": "schemas",
}

__all__ = ["__version__", *_LAZY, *_error_names]


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
