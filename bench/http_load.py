"""The benches' load generator: POSTs over keep-alive HTTP/1.1 connections, one request in flight on each.

A bench that compares two servers must not be limited by its own client. httpx spent about 0.9 ms of CPU a POST
here, so with the server on the same two cores the client was the bottleneck: Alertmanager's single-alert posts
measured 650-1,200 a second through httpx and 9,500-16,700 through this loop (bench/intake_vs_alertmanager, the
same run). This loop writes each request's bytes as they are and reads the status line, the headers and a
Content-Length or chunked body; nothing else of HTTP is needed to talk to the local servers the benches start.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

ATTEMPTS = 5
"""Tries of one POST (a busy answer or a dropped connection) before it counts as failed."""
MAX_HEAD_BYTES = 64 * 1024


@dataclass
class Posting:
    """What a posting loop did: POSTs answered 2xx, POSTs given up, retries, and when the last answer came."""

    posted: int = 0
    failed: int = 0
    retries: int = 0
    done_at: float = math.nan


def should_retry(status: int) -> bool:
    """A POST answered like this is tried again (the broker or the server was busy), anything else is final."""
    return status == 429 or status >= 500


class ProtocolError(Exception):
    """The server's answer was not HTTP/1.1 as this loop reads it."""


def request_bytes(host: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One answer read whole: its status, and whether the server keeps the connection open."""
    status_line = await reader.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    status, length, chunked, keep = int(parts[1]), 0, False, parts[0] == b"HTTP/1.1"
    seen = 0
    while True:
        line = await reader.readline()
        seen += len(line)
        if seen > MAX_HEAD_BYTES:
            raise ProtocolError("answer headers too long")
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep = value != b"close"
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF; the last chunk (0) ends with the trailer's
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep


class Connection:
    """One keep-alive connection, opened on first use and again after the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(request)
            status, keep = await read_answer(self.reader)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def post_all(
    url: str,
    bodies: Sequence[bytes],
    headers: Mapping[str, str],
    concurrency: int,
    deadline: float,
    out: Posting,
) -> None:
    """Every body POSTed to ``url``, over ``concurrency`` connections at a time, each retried a few times while
    the server is busy or drops the connection; gives up at the ``deadline`` (monotonic)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    authority = f"{host}:{port}"
    pending: Iterator[bytes] = iter(bodies)

    async def one(conn: Connection, body: bytes) -> bool:
        request = request_bytes(authority, path, headers, body)
        for attempt in range(ATTEMPTS):
            if time.monotonic() > deadline:
                return False
            try:
                status = await asyncio.wait_for(conn.post(request), timeout=max(0.001, deadline - time.monotonic()))
                if status < 300:
                    return True
                if not should_retry(status):
                    return False
            except (OSError, ProtocolError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                pass
            out.retries += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        return False

    async def lane() -> None:
        conn = Connection(host, port)
        try:
            for body in pending:
                if await one(conn, body):
                    out.posted += 1
                else:
                    out.failed += 1
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    out.done_at = time.time()
