"""One local HTTP server for every vendor imitation: routing by path prefix, rate limits, outages, a record.

A vendor module provides a ``VendorHandler``: ``handle(request, now)`` checks one request as that vendor would
and returns the answer, plus what a person would have seen (``ReceivedChat``) when the vendor accepted it.
The server adds what every vendor has: a sliding-window rate limit per hook (the vendor's answer when it is
over), outages (``down``: answer 503, or refuse to answer at all), programmed answers for contract tests
(``answer_next``), answers held back (``hold_next``: the message is taken, its answer waits, as when the sender
dies before it hears back), and a record of every accepted message and every rejection with its reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """The path without the vendor's prefix and without the query."""
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReceivedChat:
    """A message the vendor accepted, as a person in the chat would read it."""

    vendor: str
    hook: str
    """Which robot/webhook/channel (the path, or the channel for Slack's API)."""
    title: str
    text: str
    actions: tuple[tuple[str, str], ...] = ()
    """(label, url) of each button or link."""
    mentions: tuple[str, ...] = ()
    body: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


@dataclass(frozen=True)
class Limit:
    """At most ``count`` accepted messages per hook in any ``window_s`` seconds."""

    count: int
    window_s: float


class VendorHandler(Protocol):
    vendor: str
    prefix: str
    """The path prefix this vendor answers under, e.g. ``/dingtalk``."""
    limit: Limit | None

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        """The vendor's answer, and the message when it was accepted (None when rejected)."""

    def rejected(self, request: Request, why: str) -> Answer:
        """The vendor's answer to a request it refuses for ``why`` (an outage or a programmed answer aside)."""

    def over_limit(self, request: Request) -> Answer:
        """The vendor's answer when a hook sends over its rate limit."""

    def hook_of(self, request: Request) -> str:
        """The hook a request is for (what the rate limit counts per)."""


@dataclass
class _Hold:
    vendor: str
    match: Callable[[ReceivedChat], bool]
    taken: threading.Event = field(default_factory=threading.Event)
    """A message matched: it is recorded, its answer waits for ``released``."""
    released: threading.Event = field(default_factory=threading.Event)
    message: ReceivedChat | None = None


HOLD_MAX_S = 120.0
"""The longest a held answer waits for ``release`` (a test that forgot it ends anyway)."""


BODY_MAX_BYTES = 4 * 1024 * 1024
"""The largest body the server reads (above every vendor's own limit, which its handler checks): a larger one is
answered 413 unread."""
READ_TIMEOUT_S = 30.0
"""A connection silent this long while a request is read is closed."""


def is_number(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (``str.isdigit`` also takes "²" and other scripts'
    digits, which ``int`` then refuses or reads as another number). The twin of shared/infra/digits.py
    ``is_digits``: the sinks imitate the vendors apart from ticketloop's code and import none of it."""
    return text.isascii() and text.isdigit()


def one_of(value: object, known: Collection[str]) -> bool:
    """Whether a field of a request's JSON is one of the ``known`` names (a list or an object there is none:
    looked up in a set as it is, it raised TypeError)."""
    return isinstance(value, str) and value in known


def body_length(value: str | None, limit: int = BODY_MAX_BYTES) -> int | Answer:
    """The body's length from a request's Content-Length (none: 0), or the answer to give instead: 400 when it is
    not a number of bytes, 413 when it is over ``limit``."""
    if value is None or value == "":
        return 0
    if not is_number(value):
        return Answer(400, b"Content-Length must be a number of bytes", "text/plain")
    length = int(value)
    if length > limit:
        return Answer(413, f"a body may have at most {limit} bytes".encode(), "text/plain")
    return length


@dataclass
class _Outage:
    until: float
    mode: str  # "503" or "drop"


class VendorSink:
    """Every vendor handler in one threaded HTTP server on 127.0.0.1."""

    def __init__(
        self,
        port: int,
        handlers: list[VendorHandler],
        on_message: Callable[[ReceivedChat], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.port, self.handlers, self.on_message, self.clock = port, handlers, on_message, clock
        self.messages: list[ReceivedChat] = []
        self.rejections: list[tuple[str, str, str]] = []
        """(vendor, hook, why) of every refused request."""
        self.lock = threading.Lock()
        self._sent: dict[tuple[str, str], deque[float]] = {}
        self._outages: dict[str, _Outage] = {}
        self._programmed: dict[str, list[Answer]] = {}
        self._holds: list[_Hold] = []
        self._server: ThreadingHTTPServer | None = None

    # --- test controls -------------------------------------------------------------------------------------
    def down(self, prefix: str, seconds: float, mode: str = "503") -> None:
        """Requests whose path starts with ``prefix`` fail for ``seconds``: 503, or ``drop`` (no answer)."""
        with self.lock:
            self._outages[prefix] = _Outage(self.clock() + seconds, mode)

    def up(self, prefix: str) -> None:
        with self.lock:
            self._outages.pop(prefix, None)

    def answer_next(self, prefix: str, *answers: Answer) -> None:
        """The next requests under ``prefix`` get these answers, whatever they are (contract tests)."""
        with self.lock:
            self._programmed.setdefault(prefix, []).extend(answers)

    def hold_next(self, vendor: str, match: Callable[[ReceivedChat], bool]) -> _Hold:
        """The first message to ``vendor`` that ``match``es is accepted and recorded, and its answer is held back
        until ``release`` (at most ``HOLD_MAX_S``): what the sender sees when it dies before the answer comes."""
        hold = _Hold(vendor, match)
        with self.lock:
            self._holds.append(hold)
        return hold

    def release(self, hold: _Hold) -> None:
        hold.released.set()

    def received(self, vendor: str | None = None) -> list[ReceivedChat]:
        with self.lock:
            return [m for m in self.messages if vendor is None or m.vendor == vendor]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- serving -------------------------------------------------------------------------------------------
    def _handler_for(self, path: str) -> VendorHandler | None:
        return next((h for h in self.handlers if path.startswith(h.prefix + "/") or path == h.prefix), None)

    def _interposed(self, path: str, now: float) -> tuple[Answer | None] | None:
        """An outage's answer (None inside: drop) or a programmed one; None when the vendor should answer."""
        with self.lock:
            for prefix, outage in list(self._outages.items()):
                if path.startswith(prefix):
                    if now >= outage.until:
                        del self._outages[prefix]
                        continue
                    return (None,) if outage.mode == "drop" else (Answer(503, b"service unavailable", "text/plain"),)
            for prefix, queue in self._programmed.items():
                if path.startswith(prefix) and queue:
                    return (queue.pop(0),)
        return None

    def request_for(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[VendorHandler, Request] | None:
        """The vendor a request is for and the request as its handler reads it (None: no vendor's path)."""
        parts = urlsplit(raw_path)
        handler = self._handler_for(parts.path)
        if handler is None:
            return None
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return handler, Request(method, parts.path[len(handler.prefix) :], query, headers, body)

    def serve(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer | None:
        """The answer to one request (None: drop the connection without answering)."""
        found = self.request_for(method, raw_path, headers, body)
        if found is None:
            return Answer(404, b"no such vendor path", "text/plain")
        handler, request = found
        now = self.clock()
        interposed = self._interposed(handler.prefix + request.path, now)
        if interposed is not None:
            return interposed[0]
        try:
            answer, message = handler.handle(request, now)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # a body of a shape the imitation does not check field by field: refused as the vendor refuses a
            # malformed request, not an exception that ends the connection's thread without an answer
            answer, message = handler.rejected(request, f"malformed request body ({type(exc).__name__})"), None
        hook = handler.hook_of(request)
        if message is None:
            with self.lock:
                self.rejections.append((handler.vendor, hook, answer.body.decode(errors="replace")[:300]))
            return answer
        if handler.limit is not None:
            with self.lock:
                sent = self._sent.setdefault((handler.vendor, hook), deque())
                while sent and sent[0] <= now - handler.limit.window_s:
                    sent.popleft()
                if len(sent) >= handler.limit.count:
                    self.rejections.append((handler.vendor, hook, "over the rate limit"))
                    return handler.over_limit(request)
                sent.append(now)
        with self.lock:
            self.messages.append(message)
            hold = next((h for h in self._holds if h.vendor == message.vendor and h.match(message)), None)
            if hold is not None:
                self._holds.remove(hold)
                hold.message = message
        if self.on_message is not None:
            self.on_message(message)
        if hold is not None:
            hold.taken.set()
            hold.released.wait(HOLD_MAX_S)
        return answer

    def start(self) -> VendorSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = READ_TIMEOUT_S

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002
                return

            def _do(self) -> None:
                length = body_length(self.headers.get("Content-Length"))
                if isinstance(length, Answer):  # the body is not read: the connection cannot be used again
                    self.close_connection = True
                    self._answer(length)
                    return
                body = self.rfile.read(length) if length > 0 else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = sink.serve(self.command, self.path, headers, body)
                if answer is None:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                self._answer(answer)

            def _answer(self, answer: Answer) -> None:
                with contextlib.suppress(OSError):  # a sender that died while its answer was held
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(answer.body)

            do_POST = _do  # noqa: N815
            do_GET = _do  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
