"""bench/recording_server.py, the benches' receiving server, on a local socket: what it keeps and answers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator

import orjson

from bench.http_load import Posting, post_all, read_answer
from bench.recording_server import serve_recording, since_of
from deploy.local.kafka_local import free_port


@contextlib.asynccontextmanager
async def recording(max_body: int = 1024, freeze_every: int = 1 << 30) -> AsyncIterator[int]:
    port = free_port()
    task = asyncio.create_task(
        serve_recording(port, lambda path, body, at: [path, body.decode(), at], max_body, freeze_every)
    )
    deadline = time.monotonic() + 10
    while True:  # until it listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, "the recording server never listened"
            await asyncio.sleep(0.01)
            continue
        writer.close()
        break
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def exchange(port: int, raw: bytes, answers: int = 1) -> list[tuple[int, bytes]]:
    """``raw`` written at once; ``answers`` read back as (status, body), then what follows until the server closes
    (b"" when it keeps the connection open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    got: list[tuple[int, bytes]] = []
    for _ in range(answers):
        status_line = await reader.readline()
        length, headers = 0, b""
        while (line := await reader.readline()) not in (b"\r\n", b""):
            headers += line.lower()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        got.append((int(status_line.split()[1]), await reader.readexactly(length)))
    writer.close()
    return got


def test_the_since_of_a_target_is_its_number_or_zero() -> None:
    assert [since_of(t) for t in (b"/_received?since=12", b"/_received", b"/_received?since=x", b"/?since=-1")] == [
        12,
        0,
        0,
        0,
    ]


async def test_every_post_is_kept_with_its_path_and_served_back_from_where_asked() -> None:
    async with recording() as port:
        bodies = [f'{{"n": {i}}}'.encode() for i in range(50)]
        posting = Posting()
        await post_all(f"http://127.0.0.1:{port}/hook/7", bodies, {}, 4, time.monotonic() + 30, posting)
        assert (posting.posted, posting.failed) == (50, 0)
        [(status, body)] = await exchange(port, b"GET /_count HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, orjson.loads(body)) == (200, {"count": 50})
        [(status, body)] = await exchange(port, b"GET /_received?since=45 HTTP/1.1\r\nHost: x\r\n\r\n")
        kept = orjson.loads(body)
        assert status == 200 and [(p, b) for p, b, _at in kept] == [("/hook/7", f'{{"n": {i}}}') for i in range(45, 50)]


async def test_pipelined_requests_are_answered_in_order_and_a_chunked_body_is_kept_whole() -> None:
    async with recording() as port:
        chunked = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        plain = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nfg"
        count = b"GET /_count HTTP/1.1\r\nHost: x\r\n\r\n"
        answers = await exchange(port, chunked + plain + count, answers=3)
        assert answers == [(200, b""), (200, b""), (200, b'{"count":2}')]
        [(_, body)] = await exchange(port, b"GET /_received HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [(p, b) for p, b, _at in orjson.loads(body)] == [("/c", "abcde"), ("/p", "fg")]


async def test_too_large_garbage_and_unknown_requests_are_answered_and_nothing_is_kept() -> None:
    async with recording(max_body=8) as port:
        too_large = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n123456789"
        assert await exchange(port, too_large) == [(413, b"")]
        assert await exchange(port, b"\x00\x01 NOT HTTP\r\n\r\n") == [(400, b"")]
        assert await exchange(port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n") == [(404, b"")]
        closing = b"POST /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(closing)
        assert await read_answer(reader) == (200, False)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        writer.close()
        [(_, body)] = await exchange(port, b"GET /_received HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [p for p, _b, _at in orjson.loads(body)] == ["/y"]


async def test_what_it_keeps_is_moved_out_of_the_collectors_reach_every_so_many_entries() -> None:
    """A full collection must not walk every entry kept so far (a pause in the receiver is a pause the measured
    sender waits through)."""
    gc.unfreeze()
    try:
        async with recording(freeze_every=3) as port:
            assert await exchange(port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1") == [(200, b"")]
            assert await exchange(port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n2") == [(200, b"")]
            assert gc.get_freeze_count() == 0
            assert await exchange(port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n3") == [(200, b"")]
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
