"""shared/infra/metrics.py ``serve_metrics`` on real sockets: scrapes are answered, and a connection that sends
nothing or half a request is closed once it has been silent for the read timeout, without a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from deploy.local.kafka_local import free_port
from shared.infra.metrics import METRICS_READ_TIMEOUT_S, counter, serve_metrics

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5
WITHIN_S = 20.0


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


def closed_after(port: int, sent: bytes) -> bytes:
    """What the server sends on a connection that sent ``sent`` and nothing more, until it closes it (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WITHIN_S) as sock:
        sock.sendall(sent)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        return got


def test_a_scrape_is_answered(port: int) -> None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WITHIN_S).text
    assert "ticketloop_test_scrapes_total 3.0" in text


@pytest.mark.parametrize("sent", [b"", b"GET /metr"], ids=["nothing", "half a request line"])
def test_a_silent_connection_is_closed_without_a_traceback(
    port: int, sent: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    assert closed_after(port, sent) == b""
    # the server still answers, and said nothing about the client that timed out
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=WITHIN_S).status_code == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in err + out and "Exception" not in err + out


def test_port_zero_serves_nothing_and_the_default_timeout_is_bounded() -> None:
    assert serve_metrics(CollectorRegistry(), "127.0.0.1", 0) is None
    assert 0 < METRICS_READ_TIMEOUT_S <= 60
