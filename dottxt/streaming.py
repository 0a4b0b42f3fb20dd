"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._streaming import PatchStream

__all__ = ["PatchStream"]
