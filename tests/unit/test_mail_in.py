"""Email in: what a mail says (sender, subject, text, attachments, the ticket it answers), what it becomes, and the
SMTP handler's answers (550 for another mailbox, 250 once delivered, 451 when it could not be)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.mail_in import Mail, MailConfig, MailHandler, mail_event, read_mail, reply_command
from shared.events import Action, EventKind
from tests.unit.factories import T0

CONFIG = MailConfig(addresses=["Support@ACME.example"], project="webshop", customer="acme")


def mail(subject: str, text: str = "The invoice PDF is empty.", attach: bool = False, html: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Li Lei <li@customer.example>"
    msg["To"] = "support@acme.example"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@customer.example>"
    if html:
        msg.set_content(f"<p>{text}</p>", subtype="html")
    else:
        msg.set_content(text)
    if attach:
        msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg.as_bytes()


def test_a_new_mail_is_a_feedback_event_listing_its_attachments() -> None:
    m = read_mail(mail("Invoice  PDF   empty", attach=True), "bounce@x")
    assert (m.sender, m.subject, m.text, m.ticket_id) == (
        "li@customer.example",
        "Invoice PDF empty",
        "The invoice PDF is empty.",
        None,
    )
    assert m.attachments == ("invoice.pdf (application/pdf, 13 bytes)",)
    ev = mail_event(m, CONFIG, T0, "t")
    assert ev.kind is EventKind.feedback and ev.summary == "Invoice PDF empty" and ev.source == "mail"
    assert ev.labels == {
        "reporter": "li@customer.example",
        "channel": "email",
        "project": "webshop",
        "customer": "acme",
    }
    assert ev.annotations == {
        "details": "The invoice PDF is empty.",
        "attachments": "invoice.pdf (application/pdf, 13 bytes)",
    }
    assert ev.event_id == mail_event(m, CONFIG, T0, "other").event_id, "the same mail delivered twice is one event"


def test_a_reply_naming_a_ticket_is_the_customers_reply_and_html_mail_is_read_as_text() -> None:
    m = read_mail(mail("Re: [tl-0123456789abcdef] Invoice PDF empty", "It works now, thanks!", html=True), "x@y")
    assert m.ticket_id == "tl-0123456789abcdef" and m.text == "It works now, thanks!"
    cmd = reply_command(m, "tl-0123456789abcdef", T0, "t")
    assert (cmd.action, cmd.actor, cmd.reason) == (
        Action.customer_replied,
        "li@customer.example",
        "It works now, thanks!",
    )
    assert cmd.command_id == reply_command(m, "tl-0123456789abcdef", T0, "u").command_id


def test_the_handler_takes_only_its_addresses_and_says_250_only_once_delivered() -> None:
    delivered: list[Mail] = []
    fail = False

    async def deliver(m: Mail) -> str:
        if fail:
            raise RuntimeError("broker away")
        delivered.append(m)
        return "feedback"

    handler = MailHandler(CONFIG, deliver)
    envelope = SimpleNamespace(rcpt_tos=[], mail_from="li@customer.example", original_content=mail("Hi"), content=None)
    run: Any = asyncio.run
    assert run(handler.handle_RCPT(None, None, envelope, "someone@else.example", [])).startswith("550")
    assert run(handler.handle_RCPT(None, None, envelope, "support@acme.example", [])) == "250 OK"
    assert run(handler.handle_DATA(None, None, envelope)) == "250 OK" and len(delivered) == 1
    fail = True
    assert run(handler.handle_DATA(None, None, envelope)).startswith("451"), "not taken: the sender keeps it"
    assert len(delivered) == 1


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe garbage", b"Subject: =?unknown?Q?x?=\n\nbody"])
def test_any_bytes_read_as_a_mail_without_raising(raw: bytes) -> None:
    m = read_mail(raw, "env@x")
    assert m.sender in ("env@x", "") or "@" in m.sender


def malformed(headers: bytes, body: bytes = b"The invoice PDF is empty.") -> bytes:
    return b"Subject: =?utf-8?b?5Y+R56Wo?= invoice\r\nMessage-ID: <m2@customer.example>\r\n" + headers + b"\r\n" + body


@pytest.mark.parametrize(
    "from_header",
    [b'From: "\r\n', b'From: "=?utf-8?q?a=0Db?=" <li@customer.example>\r\n', b"From: text/html@\r\n"],
    ids=["a lone quote (IndexError)", "a CR in the name (ValueError)", "no domain (IndexError)"],
)
def test_a_from_header_the_email_package_cannot_parse_is_still_a_customers_mail(from_header: bytes) -> None:
    m = read_mail(malformed(from_header), "li@customer.example")
    assert (m.sender, m.subject, m.text) == ("li@customer.example", "发票 invoice", "The invoice PDF is empty.")
    assert m.message_id == "<m2@customer.example>" and not m.automatic


def test_a_mail_the_email_package_cannot_read_at_all_is_read_leniently() -> None:
    # its parser raises IndexError while reading this Content-Type (an RFC 2231 value cut short)
    raw = malformed(b"From: Li Lei <li@customer.example>\r\nContent-Type: text/plain; charset*=\"x'\r\n")
    m = read_mail(raw, "env@customer.example")
    assert (m.sender, m.subject, m.text) == ("li@customer.example", "发票 invoice", "The invoice PDF is empty.")


def test_a_part_that_cannot_be_read_is_listed_and_the_rest_of_the_mail_is_kept() -> None:
    body = (
        b"--B\r\nContent-Type: text/plain\r\n\r\nThe invoice PDF is empty.\r\n"
        b"--B\r\nContent-Disposition: attachment; filename*=\"x'\r\n\r\n%PDF\r\n--B--\r\n"
    )
    raw = malformed(b"From: li@customer.example\r\nContent-Type: multipart/mixed; boundary=B\r\n", body)
    m = read_mail(raw, "env@customer.example")
    assert (m.text, m.attachments) == ("The invoice PDF is empty.", ("unreadable part",))


def test_the_handler_takes_a_mail_the_email_package_cannot_parse_instead_of_asking_for_it_again() -> None:
    delivered: list[Mail] = []

    async def deliver(m: Mail) -> str:
        delivered.append(m)
        return "feedback"

    handler = MailHandler(CONFIG, deliver)
    raw = malformed(b'From: "\r\nContent-Type: text/plain; charset*="x\'\r\n')
    envelope = SimpleNamespace(original_content=raw, content=raw, mail_from="li@customer.example")
    assert asyncio.run(handler.handle_DATA(None, None, envelope)) == "250 OK"
    assert [(m.sender, m.subject) for m in delivered] == [("li@customer.example", "发票 invoice")]


FRAGMENTS = [
    b"From: ",
    b"Subject: ",
    b"Content-Type: ",
    b"Content-Disposition: attachment; filename",
    b"multipart/mixed; ",
    b"boundary=B",
    b"--B",
    b"text/plain; charset=",
    b"*=",
    b"*0*=",
    b"=?utf-8?q?",
    b"=?x-unknown?b?",
    b"?=",
    b"\r\n",
    b"\n",
    b'"',
    b"'",
    b";",
    b":",
    b"@",
    b"<a@b>",
    b"(",
    b")",
    b"\\",
    b"\x00",
    b"\xff",
    b"base64",
    b"Content-Transfer-Encoding: ",
    b"quoted-printable",
    b"=E9",
    b" ",
    b"abc",
]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_any_mail_made_of_header_and_mime_fragments_is_read_without_raising(parts: list[bytes]) -> None:
    m = read_mail(b"".join(parts), "env@x")
    assert m.message_id and len(m.subject) <= 200
