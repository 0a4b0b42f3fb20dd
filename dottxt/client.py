"""Import path kept for existing code: `from dottxt.client import DotTxt, AsyncDotTxt, InvalidOutputError`.

The upstream SDK's users import from here; new code imports from `dottxt`.
"""

from ._async_client import AsyncDotTxt
from ._client import DotTxt
from ._errors import *  # noqa: F403
from ._errors import __all__ as _error_names

__all__ = ["DotTxt", "AsyncDotTxt", *_error_names]
