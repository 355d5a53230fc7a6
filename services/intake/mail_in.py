"""Email in: intake's SMTP receiver (aiosmtpd) for the support address. A customer's mail to it is a feedback
ticket; a reply whose subject carries a ticket id (``tl-`` and 16 hex digits, as every ticket mail's subject does)
is the customer's reply on that ticket (a ``customer_replied`` command: a waiting clock resumes, first-response and
update clocks see it). Attachments are listed (name, type, size), not kept.

``mail:`` in intake.yaml names the addresses it takes (any other recipient is refused at RCPT, 550) and the
project and customer its tickets carry; ``TICKETLOOP_INTAKE_SMTP_PORT`` turns the receiver on. The answer to DATA
is 250 only once the broker has the event or command (else 451: the sending server tries again), so nothing
accepted is lost. The reading of a mail and what it becomes are pure; ``MailHandler`` is the shell.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import parseaddr
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Action, Command, EventKind, EventStatus, InboundEvent, Severity
from shared.infra.ids import stable_id
from shared.infra.logging import get_logger

log = get_logger(__name__)

TICKET_IN_SUBJECT = re.compile(r"\b(tl-[0-9a-f]{16})\b")
TEXT_KEPT = 4000
SOURCE = "mail"
HEADERS_MAX = 64 * 1024
"""A mail whose header block is longer is refused (552): the standard library reads huge headers in
super-linear time."""


class MailConfig(BaseModel):
    """``mail: {addresses: [support@acme.example], project: webshop, customer: acme}`` in intake.yaml."""

    model_config = ConfigDict(extra="forbid")

    addresses: list[str] = Field(min_length=1)
    project: str | None = None
    customer: str | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)

    def takes(self, address: str) -> bool:
        return address.strip().lower() in {a.strip().lower() for a in self.addresses}


@dataclass(frozen=True, slots=True)
class Mail:
    """What a received mail says, read once."""

    message_id: str
    sender: str
    subject: str
    text: str
    attachments: tuple[str, ...] = ()
    ticket_id: str | None = None
    automatic: bool = False
    """An auto-reply, a bounce or list mail (Auto-Submitted, Precedence, X-Autoreply, List-Id, no sender): taken
    and logged, never a ticket or a customer's reply, so an out-of-office answer to a ticket mail loops nothing."""


def read_mail(raw: bytes, envelope_from: str) -> Mail:
    """A mail's sender (From, else the envelope's), subject, plain text (HTML-only mail: its text without tags),
    attachments as ``name (type, bytes)`` and the ticket id its subject names. Total: a header the email package
    cannot parse is read as its raw text, a part it cannot read is listed as unreadable (a customer's mail is
    never refused, nor answered "try again" for ever, because of how it was written)."""
    msg = parse_mail(raw)
    sender = parseaddr(header(msg, "From"))[1] or envelope_from
    whole_subject = " ".join(header(msg, "Subject").replace("\x00", "").split())[:2000]
    subject = whole_subject[:200]
    text, attachments = "", []
    for part in msg.walk():
        if part.is_multipart():
            continue
        try:
            filename = part.get_filename()
            if filename or part.get_content_disposition() == "attachment":
                size = len(part.get_payload(decode=True) or b"")
                attachments.append(f"{filename or 'unnamed'} ({part.get_content_type()}, {size} bytes)")
            elif not text and part.get_content_type() in ("text/plain", "text/html"):
                body = _content(part)
                text = re.sub(r"<[^>]+>", " ", body) if part.get_content_type() == "text/html" else body
        except Exception:  # noqa: BLE001 - the email package's parsers raise many kinds on malformed headers
            attachments.append("unreadable part")
    found = TICKET_IN_SUBJECT.search(whole_subject)  # the id ends a long subject: searched before it is cut
    message_id = header(msg, "Message-ID").strip() or hashlib.sha256(raw).hexdigest()  # a retry: the same id
    automatic = (
        header(msg, "Auto-Submitted", "no").strip().lower() != "no"
        or header(msg, "Precedence").strip().lower() in ("bulk", "junk", "list")
        or any(k.lower() in AUTOMATIC_HEADERS for k in msg)
        or not envelope_from
    )
    return Mail(
        message_id,
        sender[:256],
        subject,
        text.replace("\x00", "").strip()[:TEXT_KEPT],
        tuple(attachments[:50]),
        found.group(1) if found else None,
        automatic,
    )


AUTOMATIC_HEADERS = frozenset({"x-autoreply", "x-autorespond", "list-id"})
"""Headers whose presence alone marks a mail as automatic."""


def parse_mail(raw: bytes) -> Message:
    """The mail as the email package reads it: by its current policy (each header parsed and decoded when read),
    or, when that parser raises while reading the mail (a part's MIME parameter cut short: IndexError), by its
    lenient ``compat32`` policy (headers kept as text)."""
    try:
        return message_from_bytes(raw, policy=policy.default)
    except Exception:  # noqa: BLE001 - its header parsers raise many kinds on malformed input
        return message_from_bytes(raw, policy=policy.compat32)


def header(msg: Message, name: str, default: str = "") -> str:
    """A header's value as text (``default`` when absent), its encoded words decoded. The email package parses a
    header when it is read, and some malformed values make it raise (a ``From`` group with no address, a stray
    quote, a CR in a name: IndexError, AttributeError, ValueError): such a header is its raw text, unfolded."""
    try:
        value = msg.get(name)
        if value is None:
            return default
        if isinstance(msg, EmailMessage):
            return str(value)
        return str(make_header(decode_header(str(value))))  # compat32 keeps the encoded words
    except Exception:  # noqa: BLE001 - any of the parsers' errors: the raw text instead
        for key, raw in msg.raw_items():
            if key.lower() == name.lower():
                return " ".join(str(raw).split())
        return default


def _content(part: Message) -> str:
    """A text part's text: as the email package decodes it, or its bytes in its charset (an unknown charset, a
    mail read by ``compat32``: UTF-8), what cannot be decoded replaced."""
    if isinstance(part, EmailMessage):
        try:
            return str(part.get_content())
        except (LookupError, ValueError):
            pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def mail_event(mail: Mail, config: MailConfig, received_at: datetime, trace_id: str) -> InboundEvent:
    """A new customer mail as a feedback event (one ticket per sender and subject, as feedback groups)."""
    labels = {"reporter": mail.sender, "channel": "email"}
    labels |= {k: v for k, v in (("project", config.project), ("customer", config.customer)) if v}
    annotations = {"details": mail.text} if mail.text else {}
    if mail.attachments:
        annotations["attachments"] = "; ".join(mail.attachments)
    return InboundEvent(
        event_id=stable_id(SOURCE, mail.message_id),
        kind=EventKind.feedback,
        source=SOURCE,
        dedup_key=f"{SOURCE}/{stable_id(mail.sender.lower(), mail.subject.lower())[:24]}",
        status=EventStatus.firing,
        summary=mail.subject or "(no subject)",
        severity=Severity.warning,
        labels=labels,
        annotations=annotations,
        occurred_at=received_at,
        received_at=received_at,
        trace_id=trace_id,
    )


def reply_command(mail: Mail, ticket_id: str, issued_at: datetime, trace_id: str) -> Command:
    """A reply on a ticket: the customer's answer, its text as the reason (the same mail twice is one command)."""
    reason = mail.text[: TEXT_KEPT - 200] if mail.text else "(no text)"
    if mail.attachments:
        reason += "\n[attachments: " + "; ".join(mail.attachments) + "]"
    return Command(
        command_id=stable_id(SOURCE, mail.message_id, ticket_id),
        ticket_id=ticket_id,
        action=Action.customer_replied,
        actor=mail.sender or "customer",
        reason=reason[:4000],
        issued_at=issued_at,
        trace_id=trace_id,
    )


def header_block_too_long(raw: bytes) -> bool:
    """Whether a mail's header block (up to the first empty line) is longer than HEADERS_MAX."""
    head = raw[: HEADERS_MAX + 4]
    return b"\r\n\r\n" not in head and b"\n\n" not in head and len(raw) > HEADERS_MAX


@dataclass
class MailHandler:
    """aiosmtpd's handler: RCPT refuses what is not ours, DATA answers 250 once what the mail became is on Kafka
    (the mail is read in a worker thread: a slow mail never holds up intake's other doors)."""

    config: MailConfig
    deliver: Callable[[Mail], Awaitable[str]]
    """Publishes what the mail becomes; returns what it was ("feedback" or "reply") or raises to refuse (451)."""

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any) -> str:  # noqa: N802
        if not self.config.takes(address):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes) or len(raw) > self.config.max_bytes:
            return "552 5.3.4 message too big"
        if header_block_too_long(raw):
            return "552 5.3.4 header block too long"
        try:
            mail = await asyncio.to_thread(read_mail, raw, str(envelope.mail_from or ""))
            if mail.automatic:
                log.info("mail_automatic_not_taken_as_a_ticket", ticket_id=mail.ticket_id)
                return "250 OK"
            what = await self.deliver(mail)
        except Exception as exc:  # noqa: BLE001 - the sending server keeps the mail and tries again
            log.warning("mail_not_taken", error=type(exc).__name__)
            return "451 4.3.0 not taken now, try again later"
        log.info("mail_taken", became=what, ticket_id=mail.ticket_id)
        return "250 OK"
