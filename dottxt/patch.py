"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._patch import apply_add, apply_op, ops_from_document

__all__ = ["apply_add", "apply_op", "ops_from_document"]
