"""The transport over real loopback sockets: retries, Retry-After, timeouts, the connection pool, close()."""

from __future__ import annotations

import logging
import threading
import time
from email.utils import formatdate

import pytest

import dottxt._transport
from dottxt import APITimeoutError, DotTxt, InternalServerError, RateLimitError, build_response_format
from dottxt._transport import MAX_RETRY_AFTER, MAX_RETRY_DELAY, retry_delay
from dottxt.testing import FakeGateway
from tests.conftest import MODEL, TEST_KEY
from tests.rawserver import RawConnection, RawServer

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def client_of(gateway: FakeGateway, **kwargs) -> DotTxt:  # type: ignore[no-untyped-def]
    return DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, **kwargs)


# --------------------------------------------------------------------------- the retry schedule


def test_backoff_doubles_with_jitter_and_is_capped():
    for attempt in range(8):
        base = min(0.5 * 2**attempt, MAX_RETRY_DELAY)
        delays = [retry_delay(attempt) for _ in range(50)]
        assert all(0.75 * base <= d <= base for d in delays)
        assert len(set(delays)) > 1  # jitter spreads clients out


def test_retry_after_seconds_and_http_date_are_honoured_and_capped():
    assert retry_delay(0, "2") == 2.0
    assert retry_delay(0, "0") == 0.0
    assert retry_delay(0, "100000") == MAX_RETRY_AFTER
    now = time.time()
    assert retry_delay(0, formatdate(now + 3, usegmt=True), now=now) == pytest.approx(3, abs=1)
    assert retry_delay(0, formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert 0.375 <= retry_delay(0, "garbage") <= 0.5  # unparseable: plain backoff


# --------------------------------------------------------------------------- retries on the wire


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(gateway, status):
    gateway.fail_next(status, headers={"Retry-After": "0"})
    with client_of(gateway, max_retries=1) as client:
        assert client.generate(model="dottxt/fake-model", response_format=SCHEMA, input="x")["n"] is not None
    assert len(gateway.requests) == 2


def test_gives_up_after_max_retries(gateway):
    for _ in range(3):
        gateway.fail_next(429, headers={"Retry-After": "0"})
    with client_of(gateway, max_retries=2) as client, pytest.raises(RateLimitError):
        client.models.list()
    assert len(gateway.requests) == 3


def test_client_errors_are_not_retried(gateway):
    gateway.fail_next(400)
    with client_of(gateway, max_retries=3) as client, pytest.raises(Exception) as info:
        client.models.list()
    assert getattr(info.value, "status_code", None) == 400
    assert len(gateway.requests) == 1


class _Clock:
    """The transport's waits between retries, for one test: recorded, not waited."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float | None) -> bool:
        assert seconds is not None
        self.slept.append(seconds)
        return False  # not cancelled


def test_retry_after_seconds_and_http_date_on_the_wire_are_honoured_and_capped(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(dottxt._transport.CancelToken, "wait", lambda _token, seconds=None: clock.sleep(seconds))
    gateway.fail_next(503, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    gateway.fail_next(429, headers={"Retry-After": "7"})
    gateway.fail_next(429, headers={"Retry-After": "86400"})  # a day: capped
    with DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=3) as client:
        assert [m.id for m in client.models.list()] == [MODEL]
    assert len(gateway.requests) == 4
    assert 28 <= clock.slept[0] <= 31
    assert clock.slept[1] == 7
    assert 7 < clock.slept[2] <= 60


def test_server_errors_reach_the_caller_after_retries(gateway):
    for _ in range(2):
        gateway.fail_next(500, headers={"Retry-After": "0"})
    with client_of(gateway, max_retries=1) as client, pytest.raises(InternalServerError) as info:
        client.models.list()
    assert info.value.status_code == 500


def test_connection_dropped_before_a_response_is_retried():
    attempts: list[int] = []

    def handler(conn: RawConnection) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            return  # close without answering
        body = b'{"object": "list", "data": [{"id": "m"}]}'
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with RawServer(handler) as server, DotTxt(api_key="k", base_url=server.base_url, max_retries=1) as client:
        assert [m.id for m in client.models.list()] == ["m"]
    assert len(attempts) == 2


# --------------------------------------------------------------------------- timeouts


def test_read_timeout_raises_api_timeout_error():
    def handler(conn: RawConnection) -> None:
        conn.wait_for_disconnect(5)  # never answer

    with RawServer(handler) as server, DotTxt(api_key="k", base_url=server.base_url, timeout=0.2, max_retries=0) as c:
        with pytest.raises(APITimeoutError):
            c.models.list()


def test_per_call_timeout_overrides_the_client_default():
    def handler(conn: RawConnection) -> None:
        conn.wait_for_disconnect(5)

    with RawServer(handler) as server, DotTxt(api_key="k", base_url=server.base_url, timeout=30, max_retries=0) as c:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            c.generate(model="m", response_format=SCHEMA, input="x", timeout=(2, 0.2))
        assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- sharing one client


def test_32_threads_share_one_client_without_waiting_for_connections(gateway, caplog):
    """Every thread is in flight at once (the barrier proves it) and no pool warning is logged."""
    caplog.set_level(logging.WARNING, logger="urllib3")
    barrier = threading.Barrier(32, timeout=20)
    results: list[object] = []
    errors: list[BaseException] = []

    with client_of(gateway) as client:

        def work() -> None:
            try:
                barrier.wait()
                stream = client.stream(model="dottxt/fake-model", response_format=SCHEMA, input="x")
                first = next(stream)  # every stream holds a connection open at this point
                results.append(first)
                barrier.wait()
                results.append(stream.result())
                results.append(client.generate(model="dottxt/fake-model", response_format=SCHEMA, input="x"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []
    assert len(results) == 96
    assert "pool is full" not in caplog.text.lower()


def test_close_closes_idle_pooled_connections_at_once():
    disconnected: list[bool] = []

    def handler(conn: RawConnection) -> None:
        body = b'{"object": "list", "data": []}'
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        disconnected.append(conn.wait_for_disconnect(5))  # keep-alive: open until the client closes it

    with RawServer(handler) as server:
        client = DotTxt(api_key="k", base_url=server.base_url)
        client.models.list()
        assert not server.handled.wait(0.2)  # the idle connection stays pooled
        client.close()
        assert server.handled.wait(5)
    assert disconnected == [True]


def test_a_key_the_server_echoes_back_is_blanked_out_of_errors(gateway):
    secret = "sk-very-secret-0123456789"
    gateway.fail_next(401, body={"error": {"message": f"Incorrect API key provided: {secret}"}})
    with DotTxt(api_key=secret, base_url=gateway.base_url, max_retries=0) as client:
        with pytest.raises(Exception) as info:
            client.models.list()
    error = info.value
    assert secret not in str(error) and secret not in error.body and secret not in repr(error)  # type: ignore[attr-defined]
    assert "Incorrect API key provided" in str(error)


def test_a_loopback_gateway_is_not_sent_through_an_environment_proxy(gateway, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with client_of(gateway) as client:
        assert [m.id for m in client.models.list()] == ["dottxt/fake-model"]


@pytest.mark.parametrize("kind", ["patch", "sse", "chat", "generate"])
def test_a_stream_read_to_its_end_hands_its_connection_back_to_the_pool(kind: str) -> None:
    """Five calls in a row, each read to its end, use one connection: the server accepts it once."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    with FakeGateway(api_key="k") as gateway:
        source = "sse" if kind == "sse" else "gateway"
        with DotTxt(api_key="k", base_url=gateway.base_url, patch_source=source) as client:
            for _ in range(5):
                if kind == "chat":
                    chunks = client.chat.completions.create(
                        model="dottxt/fake-model",
                        messages=[{"role": "user", "content": "hi"}],
                        response_format=build_response_format(schema),
                        stream=True,
                    )
                    assert list(chunks)
                elif kind == "generate":
                    assert "a" in client.generate(model="dottxt/fake-model", response_format=schema, input="hi")
                else:
                    assert "a" in client.stream(model="dottxt/fake-model", response_format=schema, input="hi").result()
        assert len(gateway.requests) == 5
        assert gateway.connections_accepted == 1
