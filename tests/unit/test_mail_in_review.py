"""Email in, what the review found: a reply to a resolved ticket, auto-replies, a second mail's text, a long
subject's ticket id, and a header block too long to read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.intake.mail_in import Mail, read_mail, reply_command
from services.router.commands import apply_command
from services.router.lifecycle import TicketRecord
from shared.events import Change, TicketState
from tests.unit.factories import ticket


def test_a_customer_reply_to_a_resolved_ticket_keeps_what_the_customer_wrote() -> None:
    mail = Mail("<m1@x>", "c@acme.example", "Re: [tl-0123456789abcdef] broken", "It is still broken after the fix!")
    cmd = reply_command(mail, "tl-0123456789abcdef", datetime.now(UTC), "t")
    record = TicketRecord(ticket=ticket(ticket_id="tl-0123456789abcdef", state=TicketState.resolved))
    _, [out] = apply_command(record, cmd, datetime.now(UTC))
    assert "still broken" in out.reason, (
        f"250 was answered, yet the timeline has only: {out.change.value}: {out.reason!r}"
    )


def test_an_auto_reply_is_not_the_customers_reply() -> None:
    raw = (
        b"From: c@acme.example\r\nTo: support@acme.example\r\nSubject: Automatic reply: Re: [tl-0123456789abcdef] x\r\n"
        b"Auto-Submitted: auto-replied\r\nPrecedence: bulk\r\nMessage-ID: <ooo@x>\r\n\r\nI am out of office.\r\n"
    )
    mail = read_mail(raw, "c@acme.example")
    assert mail.automatic, "an out-of-office answer would resume a waiting clock as the customer's reply"
    plain = raw.replace(b"Auto-Submitted: auto-replied\r\nPrecedence: bulk\r\n", b"")
    assert not read_mail(plain, "c@acme.example").automatic
    assert read_mail(plain, "").automatic, "a bounce (no envelope sender) is automatic"


def test_a_second_mail_with_the_same_subject_keeps_its_text(tmp_path: Path) -> None:
    from services.intake.mail_in import MailConfig, mail_event
    from shared.events import TicketEvent
    from shared.streaming.codec import decode, encode
    from tests.unit.test_router_service import FLAT, router_broker

    broker, topics = router_broker(tmp_path, FLAT)
    config = MailConfig(addresses=["support@acme.example"], project="webshop", customer="acme")
    for n, text in enumerate(("Login fails with error 17.", "Now checkout also fails: order 4711 is lost.")):
        ev = mail_event(Mail(f"<m{n}@x>", "c@acme.example", "Problem", text), config, datetime.now(UTC), "t")
        broker.produce(topics.events.name, ev.dedup_key.encode(), encode(ev))
        broker.run()
    out = [decode(TicketEvent, r.value) for r in broker.records(topics.tickets.name)]
    seen = " ".join(e.model_dump_json() for e in out)
    assert "error 17" in seen, (
        f"the first mail's text is on no ticket event: {[(e.change.value, e.reason) for e in out]}"
    )
    assert "order 4711" in seen, (
        f"the second mail (answered 250) is nowhere: {[(e.change.value, e.reason) for e in out]}"
    )


def test_a_reply_to_the_workaround_mail_of_a_long_subject_still_names_its_ticket() -> None:
    from services.notifier.templates import render_workaround
    from shared.events import EventKind, TicketEvent

    summary = (
        "Checkout page shows a blank screen after entering the voucher code " * 3
    )  # ~200 chars, as a subject may be
    t = ticket(ticket_id="tl-0123456789abcdef", kind=EventKind.feedback, summary=summary[:200])
    ev = TicketEvent(
        change_id="c",
        change=Change.opened,
        actor="mail",
        at=datetime.now(UTC),
        ticket=t,
        trace_id="t",
        workaround="clear the cache",
    )
    subject = render_workaround(ev, "http://x").subject
    raw = (
        f"From: c@acme.example\r\nSubject: RE: {subject}\r\nMessage-ID: <r@x>\r\n\r\nthanks, did not help\r\n".encode()
    )
    assert read_mail(raw, "").ticket_id == "tl-0123456789abcdef", f"subject cut at 200 before the id: {subject!r}"


def test_a_header_block_too_long_to_read_is_refused_before_it_is_read() -> None:
    import asyncio
    from types import SimpleNamespace

    from services.intake.mail_in import MailConfig, MailHandler, header_block_too_long

    raw = b"From: " + b"a@b, " * 50_000 + b"\r\nSubject: hi\r\n\r\nx"
    assert header_block_too_long(raw) and not header_block_too_long(b"From: a@b\r\n\r\n" + b"x" * 200_000)

    async def deliver(_m: Mail) -> str:
        raise AssertionError("not read, not delivered")

    handler = MailHandler(MailConfig(addresses=["s@x"]), deliver)
    envelope = SimpleNamespace(mail_from="a@b", original_content=raw, content=None)
    assert asyncio.run(handler.handle_DATA(None, None, envelope)).startswith("552")
