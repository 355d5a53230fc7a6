"""services/intake/read_timeout.py on a real uvicorn server and real sockets: a connection whose request does not
arrive whole in time is answered 408 (headers incomplete) or closed (body incomplete, its handler told the client
is gone); whole requests, and a kept-alive connection idle between them, are not touched."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from deploy.local.kafka_local import free_port
from services.intake.read_timeout import read_timeout_protocol
from tests.support.sockets import read_until_closed
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5
WITHIN_S = 20.0
"""How long a test waits for the server's answer (bounded; the timer fires after TIMEOUT_S)."""
REQUEST = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"


@dataclass
class Seen:
    bodies: list[bytes] = field(default_factory=list)
    disconnects: int = 0


def recording_app(seen: Seen) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/early":  # answered before its body is read, as a 401 or 413 is
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"no"})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@contextlib.contextmanager
def serving(keep_alive_s: int) -> Iterator[tuple[int, Seen]]:
    seen, port = Seen(), free_port()
    config = uvicorn.Config(
        recording_app(seen),
        host="127.0.0.1",
        port=port,
        log_config=None,
        loop="asyncio",
        http=read_timeout_protocol(TIMEOUT_S),
        timeout_keep_alive=keep_alive_s,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    thread.start()
    wait_for("the server to start", lambda: srv.started, timeout=WITHIN_S)
    yield port, seen
    srv.should_exit = True
    thread.join(WITHIN_S)


@pytest.fixture
def server() -> Iterator[tuple[int, Seen]]:
    """Its keep-alive timeout far longer than the read timeout: only ours can close a connection here."""
    with serving(keep_alive_s=120) as found:
        yield found


def connect(port: int, sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WITHIN_S)
    if sent:
        sock.sendall(sent)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """One answer of the test app (its body is 2 bytes), however the server split it."""
    got = b""
    while not (b"\r\n\r\n" in got and len(got.partition(b"\r\n\r\n")[2]) >= 2):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("sent", [b"", b"POST /x HTTP/1.1\r\nHost: t\r\n", b"GE"], ids=["nothing", "half", "a byte"])
def test_a_request_whose_headers_do_not_come_in_time_is_answered_408_and_closed(
    server: tuple[int, Seen], sent: bytes
) -> None:
    port, seen = server
    with connect(port, sent) as sock:
        answer = read_until_closed(sock)  # the server closes it: recv returns b"" after the answer
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"connection: close" in answer
    assert answer.endswith(b'{"error":"the request did not arrive in full within 0.5 s"}')
    assert seen.bodies == [] and seen.disconnects == 0  # no handler had it


def test_a_body_that_does_not_come_in_time_closes_the_connection_and_its_handler_sees_the_client_gone(
    server: tuple[int, Seen],
) -> None:
    port, seen = server
    with connect(port, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc") as sock:
        assert read_until_closed(sock) == b""  # closed without an answer: the handler had the request
    wait_for("the handler to see the client gone", lambda: seen.disconnects == 1, timeout=WITHIN_S)
    assert seen.bodies == []  # nothing of it was taken


def test_whole_requests_are_answered_and_a_kept_alive_connection_idle_past_the_timeout_still_serves(
    server: tuple[int, Seen],
) -> None:
    port, seen = server
    with connect(port, REQUEST) as kept:
        first = read_answer(kept)
        assert first.startswith(b"HTTP/1.1 200 OK"), first
        # a connection opened now that sends nothing is answered 408 once the timeout has passed; the kept-alive one,
        # idle as long (its keep-alive timeout is the fixture's, 120 s), must still take a request
        with connect(port, b"") as silent:
            assert read_until_closed(silent).startswith(b"HTTP/1.1 408")
        kept.sendall(REQUEST)
        second = read_answer(kept)
        assert second.startswith(b"HTTP/1.1 200 OK"), second
    assert seen.bodies == [b"ab", b"ab"]


def test_a_request_sent_in_pieces_within_the_timeout_is_answered(server: tuple[int, Seen]) -> None:
    port, seen = server
    with connect(port, REQUEST[:10]) as sock:
        sock.sendall(REQUEST[10:])
        assert read_answer(sock).startswith(b"HTTP/1.1 200 OK")
    assert seen.bodies == [b"ab"]


def test_a_line_break_after_a_request_and_then_silence_is_closed(server: tuple[int, Seen]) -> None:
    port, seen = server
    with connect(port, REQUEST) as sock:
        assert read_answer(sock).startswith(b"HTTP/1.1 200 OK")
        sock.sendall(b"\r\n")  # uvicorn's keep-alive timer is cancelled by any bytes; no request begins
        rest = read_until_closed(sock)
    assert rest == b"" or rest.startswith(b"HTTP/1.1 4"), rest
    assert seen.bodies == [b"ab"]


def test_a_request_answered_before_its_body_then_silent_is_closed_by_the_keep_alive_timeout() -> None:
    with serving(keep_alive_s=1) as (port, seen):
        head = b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n"
        with connect(port, head) as sock:
            assert read_answer(sock).startswith(b"HTTP/1.1 401")
            sock.sendall(b"abcd")  # the rest of the body, after the answer: then nothing
            assert read_until_closed(sock) == b""  # closed once idle for the keep-alive timeout
        assert seen.bodies == []
