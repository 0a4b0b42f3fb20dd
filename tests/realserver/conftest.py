"""Session fixtures: one tiny model and one llama.cpp server for every real-server test, stopped at session end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realserver.llamacpp import LlamaServer, write_tiny_model


@pytest.fixture(scope="session")
def llama_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight llama model, written once per session."""
    return write_tiny_model(tmp_path_factory.mktemp("llama") / "tiny.gguf")


@pytest.fixture(scope="session")
def llama(llama_model: Path) -> Iterator[LlamaServer]:
    """The shared llama.cpp server; tests that kill or stop a server start their own with `LlamaServer`."""
    with LlamaServer(llama_model) as server:
        yield server
