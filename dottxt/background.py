"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._background import BackgroundStream

__all__ = ["BackgroundStream"]
