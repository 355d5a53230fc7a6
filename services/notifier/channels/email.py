"""Email over SMTP (aiosmtplib)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from services.notifier.channels.base import DeliveryError, Message


def build_email(message: Message, *, sender: str, recipient: str, notification_id: str | None = None) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(idstring=notification_id, domain="ticketloop")
    if "ticket_id" in message.data:
        mail["X-Ticketloop-Ticket"] = str(message.data["ticket_id"])
    mail["X-Ticketloop-Kind"] = message.kind
    mail.set_content(text_with_actions(message))
    return mail


def text_with_actions(message: Message) -> str:
    """The text, then one line per one-click action (each link asks to confirm before it acts)."""
    if not message.actions:
        return message.text
    width = max(len(a.label) for a in message.actions) + 1
    lines = [f"  {(a.label + ':').ljust(width)} {a.url}" for a in message.actions]
    return "\n".join([message.text, "", "One click (each link asks you to confirm):", *lines])


class EmailChannel:
    kind = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password, self._starttls, self._timeout = username, password, starttls, timeout_s

    async def send(self, message: Message, target: str) -> None:
        mail = build_email(message, sender=self._sender, recipient=target)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipient refused: {exc}", retryable=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self._host}:{self._port}: {exc}") from exc
