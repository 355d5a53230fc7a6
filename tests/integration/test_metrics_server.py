"""shared/infra/metrics.py ``serve_metrics`` on real sockets: scrapes are answered; a connection that sends nothing,
half a request, or its request a byte now and then is closed once the read timeout has passed, without a
traceback; connections beyond the cap are closed at once, and their slots come back when connections end."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from deploy.local.kafka_local import free_port
from shared.infra.metrics import METRICS_READ_TIMEOUT_S, counter, serve_metrics
from tests.support.sockets import answer_until_closed

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5
WITHIN_S = 20.0
DRIBBLE_S = 0.1
"""A byte this often: well inside the read timeout, so only a deadline for the whole request closes it."""


@pytest.fixture
def port() -> Iterator[int]:
    registry = CollectorRegistry()
    counter(registry, "ticketloop_test_scrapes_total", "a test counter").inc(3)
    found = free_port()
    server = serve_metrics(registry, "127.0.0.1", found, read_timeout_s=TIMEOUT_S)
    assert server is not None
    yield found
    server.shutdown()
    server.server_close()


def test_a_scrape_is_answered(port: int) -> None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WITHIN_S).text
    assert "ticketloop_test_scrapes_total 3.0" in text


@pytest.mark.parametrize("sent", [b"", b"GET /metr"], ids=["nothing", "half a request line"])
def test_a_silent_connection_is_closed_without_a_traceback(
    port: int, sent: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    assert answer_until_closed(port, sent, WITHIN_S) == b""
    # the server still answers, and said nothing about the client that timed out
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WITHIN_S).status_code == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in err + out and "Exception" not in err + out


def test_port_zero_serves_nothing_and_the_default_timeout_is_bounded() -> None:
    assert serve_metrics(CollectorRegistry(), "127.0.0.1", 0) is None
    assert 0 < METRICS_READ_TIMEOUT_S <= 60


def dribbled_until_closed(port: int) -> bool:
    """Send a request's first line, then a header a byte every ``DRIBBLE_S`` (never its end) for up to
    ``WITHIN_S``: whether the server closed the connection meanwhile."""
    with socket.create_connection(("127.0.0.1", port), timeout=WITHIN_S) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(int(WITHIN_S / DRIBBLE_S)):
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                return True
            readable, _, _ = select.select([sock], [], [], DRIBBLE_S)
            if readable:
                try:
                    return sock.recv(4096) == b""
                except ConnectionResetError:
                    return True
    return False


def test_a_request_sent_a_byte_at_a_time_is_cut_at_the_read_timeout(
    port: int, capfd: pytest.CaptureFixture[str]
) -> None:
    assert dribbled_until_closed(port)
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WITHIN_S).status_code == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in err + out and "Exception" not in err + out


def scraped_within(port: int, seconds: float) -> bool:
    """Whether a scrape is answered within ``seconds`` (tried again while connections are refused or closed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WITHIN_S).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(DRIBBLE_S)
    return False


def test_connections_beyond_the_cap_are_closed_at_once_and_slots_come_back() -> None:
    found = free_port()
    server = serve_metrics(CollectorRegistry(), "127.0.0.1", found, read_timeout_s=WITHIN_S, max_connections=2)
    assert server is not None
    try:
        held = [socket.create_connection(("127.0.0.1", found), timeout=WITHIN_S) for _ in range(2)]
        # accepted in order: the third is taken after the two silent ones hold both slots
        with socket.create_connection(("127.0.0.1", found), timeout=WITHIN_S) as extra:
            try:  # a whole request: a connection that was served would be answered
                extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                answer = extra.recv(4096)
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
            assert answer == b""
        readable, _, _ = select.select(held, [], [], 0)
        assert readable == []  # the two are still served (waiting for their requests)
        held.pop().close()
        assert scraped_within(found, WITHIN_S)  # the slot it held serves a scrape again
        for sock in held:
            sock.close()
    finally:
        server.shutdown()
        server.server_close()
