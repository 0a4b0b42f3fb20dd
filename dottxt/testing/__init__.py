"""Offline kit: a fake .txt gateway on loopback, and the op sequence it streams.

`FakeGateway` is a real HTTP server (no mock of `requests`), so tests, demos and CI
get the whole experience with no key and no network::

    with FakeGateway(api_key="test-key") as gw:
        client = DotTxt(api_key="test-key", base_url=gw.base_url)
"""

from .._patch import ops_from_document
from ._documents import DocumentGenerationError, generate_document
from ._gateway import FakeGateway, RecordedRequest

__all__ = [
    "FakeGateway",
    "RecordedRequest",
    "ops_from_document",
    "generate_document",
    "DocumentGenerationError",
]
