"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._async_client import AsyncDotTxt, AsyncPatchStream

__all__ = ["AsyncDotTxt", "AsyncPatchStream"]
