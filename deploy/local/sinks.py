"""A local mail receiver for the demo and the tests: a real SMTP server (aiosmtpd) that keeps what it receives.

Chat and webhook receivers are deploy/local/vendors/ (one imitation per vendor, ticketloop's signed webhook
among them).
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

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
