"""bench/http_load.py, the benches' bare HTTP/1.1 POST loop, against a small server on a local socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bench.http_load import Posting, ProtocolError, post_all, read_answer, request_bytes, should_retry

Answer = Callable[[bytes], bytes]


def test_retries_only_what_a_busy_server_answers() -> None:
    assert [s for s in (200, 202, 400, 401, 413, 422, 429, 500, 503) if should_retry(s)] == [429, 500, 503]


def test_a_request_is_the_body_with_its_length_and_headers() -> None:
    raw = request_bytes("127.0.0.1:9", "/x?y=1", {"Content-Type": "application/json"}, b'{"a":1}')
    assert raw == (
        b"POST /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
        b'{"a":1}'
    )


async def answer_of(data: bytes) -> tuple[int, bool]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_answer(reader)


async def test_answers_are_read_whole_by_length_or_chunks_and_say_whether_the_connection_stays() -> None:
    assert await answer_of(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok") == (202, True)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert await answer_of(chunked) == (200, True)
    assert await answer_of(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") == (503, False)
    with pytest.raises(ProtocolError, match="status line"):
        await answer_of(b"SSH-2.0-OpenSSH\r\n\r\n")


class Server:
    """Reads POSTs, records their bodies, answers each as ``answer`` says (raw bytes of an HTTP answer)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.bodies: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                self.bodies.append(body)
                reply = self.answer(body)
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Start = Callable[[Answer], Awaitable[tuple[Server, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> tuple[Server, str]:
        state = Server(answer)
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return state, f"http://127.0.0.1:{port}/in"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


async def test_every_body_is_posted_once_over_the_given_connections(serve: Start) -> None:
    state, url = await serve(lambda _body: OK)
    bodies = [str(i).encode() for i in range(200)]
    out = Posting()
    await post_all(url, bodies, {"X-A": "1"}, 4, time.monotonic() + 30, out)
    assert (out.posted, out.failed, out.retries) == (200, 0, 0)
    assert sorted(state.bodies) == sorted(bodies)
    assert state.connections == 4  # kept alive


async def test_a_busy_answer_and_a_closed_connection_are_tried_again(serve: Start) -> None:
    seen: dict[bytes, int] = {}

    def answer(body: bytes) -> bytes:
        seen[body] = seen.get(body, 0) + 1
        if seen[body] == 1 and body == b"busy":
            return b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
        if seen[body] == 1 and body == b"close":
            return b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        if body == b"bad":
            return b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 0\r\n\r\n"
        return OK

    state, url = await serve(answer)
    out = Posting()
    await post_all(url, [b"busy", b"close", b"after", b"bad"], {}, 1, time.monotonic() + 30, out)
    assert (out.posted, out.failed, out.retries) == (3, 1, 1)  # the 422 is final, the 503 retried once
    assert seen == {b"busy": 2, b"close": 1, b"after": 1, b"bad": 1}
    assert state.connections == 2  # a new connection after the server closed one


async def test_nothing_is_posted_after_the_deadline(serve: Start) -> None:
    state, url = await serve(lambda _body: OK)
    out = Posting()
    await post_all(url, [b"a", b"b"], {}, 1, time.monotonic() - 1, out)
    assert (out.posted, out.failed) == (0, 2)
    assert state.bodies == []
