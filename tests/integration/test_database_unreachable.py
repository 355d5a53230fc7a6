"""PostgreSQL that takes the connection and never answers (a firewall, a half-dead host): connecting gives up after
``PG_CONNECT_TIMEOUT_S`` instead of waiting for ever, so a service's start and ``ticketloop db`` end with an error."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from services.cli import main
from shared.store.db import make_engine

pytestmark = pytest.mark.integration


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never sends a byte (closed when the test ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.timeout(120)  # without a connect timeout this waits for ever
def test_connecting_to_a_server_that_never_answers_gives_up(blackhole: int) -> None:
    engine = make_engine(f"postgresql://ticketloop:pw@127.0.0.1:{blackhole}/ticketloop")
    with pytest.raises(OperationalError), engine.connect():
        pass
    out = io.StringIO()
    url = f"postgresql://ticketloop:s3cret-pw@127.0.0.1:{blackhole}/ticketloop"
    assert main(["db", "current", "--database-url", url], out) == 1
    assert "s3cret-pw" not in out.getvalue()
