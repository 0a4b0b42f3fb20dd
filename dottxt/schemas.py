"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._schemas import build_response_format, normalize_schema

__all__ = ["build_response_format", "normalize_schema"]
