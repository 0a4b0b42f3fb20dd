"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._events import PatchEvent

__all__ = ["PatchEvent"]
