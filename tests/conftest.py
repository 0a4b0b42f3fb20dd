"""Shared pytest fixtures: a running FakeGateway, and a guard that fails tests which leak threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dottxt.testing import FakeGateway

#: The key the `gateway` fixture expects (`DotTxt(api_key=TEST_KEY, base_url=gateway.base_url)`).
TEST_KEY = "test-key"

#: How long threads that are already finishing get to end before they count as leaked.
THREAD_GRACE_SECONDS = 2.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_thread_leaks: do not fail this test for threads it leaves running")


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves threads running; ones still finishing get a short join() grace."""
    before = set(threading.enumerate())
    yield
    if request.node.get_closest_marker("allow_thread_leaks"):
        return
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    leaked = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread.name)
    if leaked:
        pytest.fail(f"test left {len(leaked)} thread(s) running: {', '.join(sorted(leaked))}")


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A running FakeGateway that expects the key TEST_KEY; closed (threads joined) after the test."""
    with FakeGateway(api_key=TEST_KEY) as gw:
        yield gw
