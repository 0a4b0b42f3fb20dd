"""dottxt: the sync-first Python SDK for the .txt structured-generation API."""

from ._version import __version__
from .errors import *  # noqa: F403
