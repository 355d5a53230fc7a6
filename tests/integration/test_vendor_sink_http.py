"""The local vendor sinks (deploy/local/vendors/base.py) on a real socket: a request whose Content-Length is not a
number of bytes, or is over the limit, gets a clear 400 or 413 (the body unread), no traceback, and the server
answers the next request as before."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import BODY_MAX_BYTES, VendorSink
from deploy.local.vendors.webhook import TicketloopWebhookVendor
from tests.support.sockets import answer_until_closed

pytestmark = pytest.mark.integration
WITHIN_S = 20.0


@pytest.fixture
def sink() -> Iterator[VendorSink]:
    started = VendorSink(free_port(), [TicketloopWebhookVendor({"hook": "secret-0123456789"})]).start()
    yield started
    started.stop()


@pytest.mark.parametrize(
    ("length", "status", "says"),
    [
        (b"abc", b"400", b"Content-Length must be a number of bytes"),
        (b"-1", b"400", b"Content-Length must be a number of bytes"),
        (str(BODY_MAX_BYTES + 1).encode(), b"413", f"at most {BODY_MAX_BYTES} bytes".encode()),
        (b"99999999999999999999", b"413", f"at most {BODY_MAX_BYTES} bytes".encode()),
    ],
)
def test_a_length_it_does_not_read_is_answered_and_the_server_goes_on(
    sink: VendorSink, length: bytes, status: bytes, says: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    head = b"POST /hooks/hook HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
    got = answer_until_closed(sink.port, head, WITHIN_S)  # no body follows: the server answers and closes
    assert got.startswith(b"HTTP/1.0 " + status) or got.startswith(b"HTTP/1.1 " + status)
    assert got.endswith(says)
    # the next request is answered as the vendor answers it (unsigned: refused by the vendor, not the server)
    assert httpx.post(f"{sink.url}/hooks/hook", content=b"{}", timeout=WITHIN_S).status_code in {400, 401, 403}
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
