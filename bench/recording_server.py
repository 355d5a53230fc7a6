"""The benches' receiving server: every POST answered 200 at once and recorded, on a bare HTTP/1.1 protocol.

A bench that measures a sender must not be measured by its receiver: the receivers share the machine's two cores
with the sender, the broker and the load. The aiohttp server the sinks were before spent 39-40 µs of CPU a POST
of 1.4 kB here (8 keep-alive connections, bench/http_load.py); this protocol (httptools' parser on uvloop, the
answer written as fixed bytes) 12-14 µs. Nothing is verified (no signature
check). Every POST, any path, is kept as ``entry(path, body, arrival time)`` (``time.time()`` when its last byte
was read); ``GET /_count`` answers how many were kept, ``GET /_received?since=N`` the entries from the N-th on as
JSON. A body over ``max_body`` bytes is answered 413 and not kept; what httptools cannot parse is answered 400 and
the connection closed. Keep-alive as HTTP/1.1 has it; requests pipelined on a connection are answered in order.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httptools
import orjson

FREEZE_EVERY = 4096
"""Every so many entries kept, what the server holds is moved out of the collector's reach (``gc.freeze``): a full
collection walked every entry kept so far, 15.6 ms once in a paced stream of bench/notify_fanout (its sender's
answers waiting meanwhile), and the entries hold no cycles to collect."""

Entry = Callable[[str, bytes, float], Any]
"""What is kept of one POST: (path, body, arrival time) -> a JSON-serialisable value."""

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
OK_CLOSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
MALFORMED = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
CLOSE = b"connection: close\r\n"


def json_answer(value: Any, keep_alive: bool) -> bytes:
    body = orjson.dumps(value)
    close = b"" if keep_alive else CLOSE
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n" % (close, len(body))
    return head + body


def since_of(target: bytes) -> int:
    """``since`` of a ``/_received?since=N`` target (0 when absent or not a number)."""
    found = parse_qs(urlsplit(target.decode("latin-1")).query).get("since", ["0"])[0]
    return int(found) if found.isdigit() else 0


def answer_for(method: bytes, target: bytes, records: list[Any], keep_alive: bool) -> bytes | None:
    """The answer to a request that is not a POST to be kept (None for a POST)."""
    if method == b"POST":
        return None
    path = target.split(b"?", 1)[0]
    if method == b"GET" and path == b"/_count":
        return json_answer({"count": len(records)}, keep_alive)
    if method == b"GET" and path == b"/_received":
        return json_answer(records[since_of(target) :], keep_alive)
    return NOT_FOUND


class BareHttp(asyncio.Protocol):
    """A connection whose requests httptools parses into this object's ``on_*`` callbacks; what it cannot parse is
    answered 400 and the connection closed (the benches' bare servers: this one and bench/lean_intake)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.finish(MALFORMED)

    def finish(self, answer: bytes) -> None:
        """``answer`` written, then the connection closed."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()


class RecordingProtocol(BareHttp):
    """One connection of the recording server."""

    def __init__(self, entry: Entry, records: list[Any], max_body: int, freeze_every: int = FREEZE_EVERY) -> None:
        super().__init__()
        self.entry, self.records, self.max_body = entry, records, max_body
        self.freeze_every = freeze_every
        self.target = b""
        self.body: list[bytes] = []
        self.size = 0

    def on_message_begin(self) -> None:
        self.target, self.body, self.size = b"", [], 0

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= self.max_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        keep_alive = self.parser.should_keep_alive()
        if self.size > self.max_body:
            self.finish(TOO_LARGE)
            return
        answer = answer_for(self.parser.get_method(), self.target, self.records, keep_alive)
        if answer is None:
            path = self.target.split(b"?", 1)[0].decode("latin-1")
            self.records.append(self.entry(path, b"".join(self.body), time.time()))
            if len(self.records) % self.freeze_every == 0:
                gc.freeze()
            answer = OK if keep_alive else OK_CLOSE
        self.transport.write(answer)
        if not keep_alive:
            self.transport.close()


async def serve_recording(port: int, entry: Entry, max_body: int, freeze_every: int = FREEZE_EVERY) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    records: list[Any] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: RecordingProtocol(entry, records, max_body, freeze_every), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()
