"""Local receivers for the demo and the tests: a real SMTP server and a real HTTP server for chat webhooks.

The webhook sink verifies ticketloop's signature with its own code (as a receiver would, not by calling
ticketloop's signer): ``v1=`` + hex HMAC-SHA256(secret, "{timestamp}.{body}"), timestamp within 5 minutes.
Unverified requests are answered 401 and counted in ``rejected``.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_SKEW_S = 300


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


class _MailHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        msg = email.message_from_bytes(data, policy=email.policy.default)
        if not isinstance(msg, EmailMessage):  # pragma: no cover - policy.default always builds one
            return "554 unreadable message"
        mail = ReceivedMail(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], msg)
        with self.sink.lock:
            self.sink.messages.append(mail)
        if self.sink.on_message is not None:
            self.sink.on_message(mail)
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    port: int
    host: str = "127.0.0.1"
    on_message: Callable[[ReceivedMail], None] | None = None
    messages: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = Controller(_MailHandler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[ReceivedMail]:
        with self.lock:
            return list(self.messages)


@dataclass
class ReceivedHook:
    path: str
    body: dict[str, Any]
    timestamp: int


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, now: float) -> str | None:
    """None when valid, else why not."""
    if not timestamp.isdigit():
        return "missing or malformed timestamp"
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return "timestamp outside the 5 minute window"
    expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "signature mismatch"
    return None


class WebhookSink:
    """Secrets are per path (``/hooks/<team>``); a request to an unknown path is 404."""

    def __init__(
        self, port: int, secrets: dict[str, str], on_hook: Callable[[ReceivedHook], None] | None = None
    ) -> None:
        self.port, self.secrets, self.on_hook = port, secrets, on_hook
        self.hooks: list[ReceivedHook] = []
        self.rejected: list[str] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.fail_next = 0

    def start(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002
                return

            def _answer(self, status: int, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                secret = sink.secrets.get(self.path)
                if secret is None:
                    self._answer(404, "unknown hook")
                    return
                with sink.lock:
                    if sink.fail_next > 0:
                        sink.fail_next -= 1
                        self._answer(503, "try again")
                        return
                ts = self.headers.get("X-Ticketloop-Timestamp", "")
                why = verify_signature(secret, ts, body, self.headers.get("X-Ticketloop-Signature", ""), time.time())
                if why is not None:
                    with sink.lock:
                        sink.rejected.append(why)
                    self._answer(401, why)
                    return
                hook = ReceivedHook(self.path, json.loads(body), int(ts))
                with sink.lock:
                    sink.hooks.append(hook)
                if sink.on_hook is not None:
                    sink.on_hook(hook)
                self._answer(200, "ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None

    def received(self) -> list[ReceivedHook]:
        with self.lock:
            return list(self.hooks)
