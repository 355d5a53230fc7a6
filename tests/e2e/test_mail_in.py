"""Email in end to end (intake's SMTP receiver, the router, the real broker): a customer's mail to the support
address opens a feedback ticket listing its attachment; a reply naming the ticket in its subject is the customer's
reply on it; a mail to another mailbox is refused at RCPT."""

from __future__ import annotations

import smtplib
import socket
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack
from tests.support.configs import API_TOKEN, write_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def message(subject: str, text: str, attach: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Li Lei <li@customer.example>"
    msg["To"] = "support@acme.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.time_ns()}@customer.example>"
    msg.set_content(text)
    if attach:
        msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


def test_a_mail_opens_a_feedback_ticket_and_a_reply_is_the_customers_reply_on_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    intake_yaml = config / "intake.yaml"
    intake_yaml.write_text(
        intake_yaml.read_text() + "mail: {addresses: [support@acme.example], project: webshop, customer: acme}\n"
    )
    smtp_port = free_port()
    stack = Stack(
        kafka_bootstrap,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        config,
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={
            "TICKETLOOP_TOPIC_PREFIX": f"e2e-mail-{time.time_ns()}.",
            "TICKETLOOP_INTAKE_SMTP_PORT": str(smtp_port),
        },
    )
    stack.start("intake")
    stack.start("router")
    api = httpx.Client(base_url=stack.intake_url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)

    def tickets() -> list[dict[str, object]]:
        return list(api.get("/api/v1/tickets").json()["tickets"])

    try:
        stack.wait_ready()
        # only worker 0 receives mail, once its producer is connected: /readyz may come from the other first
        wait_for("the SMTP receiver", lambda: listening(smtp_port), stack=stack)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.send_message(message("wrong box", "x"), to_addrs=["nobody@acme.example"])
            smtp.send_message(message("Invoice PDF is empty", "The invoice PDF of order 42 is empty.", attach=True))
        [ticket] = wait_for("the feedback ticket", lambda: tickets() or None, stack=stack)
        assert ticket["kind"] == "feedback" and ticket["summary"] == "Invoice PDF is empty"
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(message(f"Re: [{ticket['ticket_id']}] Invoice PDF is empty", "Still empty today."))

        def replied() -> list[dict[str, object]]:
            timeline = api.get(f"/api/v1/tickets/{ticket['ticket_id']}").json()["timeline"]
            return [e for e in timeline if e["change"] == "customer_replied"]

        [reply] = wait_for("the customer's reply on the ticket", replied, stack=stack)
    finally:
        stack.stop_all()
    assert reply["actor"] == "li@customer.example" and "Still empty today." in str(reply["reason"])
    labels = ticket["labels"]
    assert isinstance(labels, dict) and labels["channel"] == "email" and labels["project"] == "webshop"
