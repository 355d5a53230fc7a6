"""A request must arrive whole within ``read_timeout_s`` of its connection or of its first byte, as Go's
``http.Server.ReadTimeout`` (Prometheus's ``--web.read-timeout``) holds it.

uvicorn (0.54, httptools) arms no timer on a new connection, nor while a request's headers or body come in: only
its keep-alive timer, between a response and the next request. A client that connected and sent nothing, half a
header, or a body shorter than its Content-Length held its connection (and, mid-body, a handler waiting for the
rest) for as long as it liked; enough of them, and intake runs out of file descriptors. ``read_timeout_protocol``
is uvicorn's protocol with that timer, for both the single-process server and the workers (services/intake/main.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.infra.logging import get_logger

log = get_logger(__name__)


def timed_out_answer(headers_read: bool, timeout_s: float) -> bytes | None:
    """What a client whose request did not arrive whole in time is sent before its connection is closed: a 408
    saying so while the request's headers are incomplete (no handler has it); nothing once they are read (its
    handler, waiting for the rest of the body, sees the client gone, and nothing of the request is accepted)."""
    if headers_read:
        return None
    body = f'{{"error":"the request did not arrive in full within {timeout_s:g} s"}}'.encode()
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"content-type: application/json\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class ReadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request is not read whole within
    ``read_timeout_s``: counted from the connection for its first request, from a later request's first byte for
    the others (between requests, uvicorn's keep-alive timeout holds, armed again after a request answered before
    its body was read). A request queued behind an earlier one's answer (pipelined) is not timed meanwhile."""

    read_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._headers_read = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # a request's clock starts with its first byte (the first request's with the connection), whatever the
        # parser makes of it: a bare line break between requests cancels uvicorn's keep-alive timer too
        if self._read_timer is None:
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_read = False

    def on_headers_complete(self) -> None:
        self._headers_read = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._headers_read = False  # what comes next, until its headers are read, is a new request's start
        super().on_message_complete()
        answered = self.cycle is not None and self.cycle.response_complete
        if answered and not self.pipeline and not self.transport.is_closing():
            # answered before its body was read (a 401, 413 or 429): the body's bytes cancelled the keep-alive
            # timer uvicorn armed with the answer, and uvicorn arms it again only after an answer
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.pipeline:  # queued behind an earlier request, reading paused by uvicorn: the wait is the server's
            self._arm()
            return
        log.info("request_read_timeout", headers_read=self._headers_read, timeout_s=self.read_timeout_s)
        answer = timed_out_answer(self._headers_read, self.read_timeout_s)
        if answer is not None and self.cycle is not None and not self.cycle.response_complete:
            # a response to an earlier (pipelined) request is under way: the connection closes after it instead
            self.cycle.keep_alive = False
            return
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()


def read_timeout_protocol(timeout_s: float) -> type[ReadTimeoutProtocol]:
    """The protocol class for uvicorn's ``http`` with this read timeout."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout_s": timeout_s})
