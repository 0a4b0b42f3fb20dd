"""Import path kept for existing code: `dottxt.cli:main` is the `dottxt` command."""

from ._cli import main

__all__ = ["main"]
