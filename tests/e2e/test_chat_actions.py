"""Where people meet the loop: an alert's assignment reaches every configured chat vendor (each imitation checks
that vendor's signature and body rules), and one click on its link — or a Slack button — acknowledges it in the
name of the person the link was issued to, so the escalation that would have come does not.

Four service processes, the real broker, SQLite, a real SMTP server and the vendor imitations; nothing mocked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from deploy.local.vendors.slack import SlackVendor
from shared.infra.actionlinks import issue, keys_from_setting, link_url
from tests.support.chatlab import LINK_KEY, SLACK_SIGNING_SECRET, ChatLab, am_alert, am_payload, chat_lab
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

OPS_VENDORS = ("slack", "dingtalk", "wecom", "webhook")
IMPL_VENDORS = ("slack", "feishu", "teams", "webhook")


def open_ticket(lab: ChatLab, fingerprint: str, service: str, severity: str) -> dict[str, Any]:
    resp = lab.alertmanager().post(
        "/api/v1/integrations/am", json=am_payload([am_alert(fingerprint, service, severity)])
    )
    assert resp.status_code == 202, resp.text
    api = lab.api()

    def find() -> dict[str, Any] | None:
        tickets = api.get("/api/v1/tickets").json()["tickets"]
        return next((t for t in tickets if t["dedup_key"] == f"am/{fingerprint}"), None)

    return dict(wait_for(f"ticket {fingerprint}", find, stack=lab.stack))


def timeline(lab: ChatLab, ticket_id: str) -> list[dict[str, Any]]:
    return list(lab.api().get(f"/api/v1/tickets/{ticket_id}").json()["timeline"])


def button(lab: ChatLab, ticket_id: str, vendor: str, label: str) -> str:
    messages = wait_for(f"{vendor} message for {ticket_id}", lambda: lab.about(ticket_id, vendor), stack=lab.stack)
    return next(url for text, url in messages[0].actions if text == label)


def test_assignment_reaches_every_vendor_and_one_click_acknowledges_so_no_escalation_follows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with chat_lab(kafka_bootstrap, tmp_path) as lab:
        a = open_ticket(lab, "db-a", "db", "critical")  # P1: 10 s to acknowledge, owner olga (operations)
        a_id = a["ticket_id"]
        for vendor in OPS_VENDORS:
            button(lab, a_id, vendor, "Acknowledge")
        ding = lab.about(a_id, "dingtalk")[0]
        assert "13800000001" in ding.mentions, "DingTalk mentions the person on call by mobile"
        assert {"Acknowledge", "Take it", "Snooze 1 h", "Resolve"} <= {label for label, _ in ding.actions}
        wait_for("the email to olga", lambda: [m for m in lab.smtp.received() if "olga@example.test" in m.recipients])
        assert lab.chat.rejections == [], "every vendor accepted what was sent"

        link = button(lab, a_id, "dingtalk", "Acknowledge")
        browser = httpx.Client(timeout=10)
        page = browser.get(link)
        assert page.status_code == 200 and f"Acknowledge {a_id}?" in page.text
        # a GET never acts: a later command on the same ticket is handled, and no acknowledgement came before it
        lab.api().post(f"/api/v1/tickets/{a_id}/comment", json={"reason": "looking at the link"})
        wait_for("the comment", lambda: [e for e in timeline(lab, a_id) if e["change"] == "commented"])
        assert [e["change"] for e in timeline(lab, a_id) if e["change"] == "acknowledged"] == []

        forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        assert browser.post(forged).status_code == 403
        keys = keys_from_setting(LINK_KEY)
        expired = link_url(lab.stack.intake_url, issue(keys, a_id, "ack", "olga", datetime.now(UTC) - timedelta(1)))
        refused = browser.post(expired)
        assert refused.status_code == 403 and "expired" in refused.text
        other = link_url(
            lab.stack.intake_url, issue(keys, "tl-0000000000000000", "ack", "olga", datetime.now(UTC) + timedelta(1))
        )
        assert browser.post(other).status_code == 403, "a link for a ticket that does not exist"

        done = browser.post(link, data={"actor": "mallory"})
        assert done.status_code == 200 and "Acknowledged by olga" in done.text
        acked = wait_for(
            "A acknowledged",
            lambda: [e for e in timeline(lab, a_id) if e["change"] == "acknowledged"],
            stack=lab.stack,
        )
        assert acked[0]["actor"] == "olga", "the person the link was issued to, never the request's say"
        again = browser.post(link)
        assert again.status_code == 200 and "already used" in again.text

        # the Slack message (bot token) is redrawn with the new state
        slack = next(h for h in lab.chat.handlers if isinstance(h, SlackVendor))
        wait_for("the Slack message redrawn", lambda: [u for _, u in slack.updates if a_id in u.title + u.text])

        # B opens now and is left alone: once its escalation is there, A's deadline has long passed too
        b = open_ticket(lab, "db-b", "db", "critical")
        wait_for(
            "B's escalation",
            lambda: [m for m in lab.about(b["ticket_id"], "webhook") if "ESCALATION" in m.title],
            stack=lab.stack,
            timeout=120,
        )
        assert [e for e in timeline(lab, a_id) if e["change"] in ("escalated", "breached")] == []
        assert [m for m in lab.about(a_id) if "ESCALATION" in m.title] == []
        assert len([e for e in timeline(lab, a_id) if e["change"] == "acknowledged"]) == 1


def slack_callback(url: str, body: bytes, secret: str, timestamp: int) -> httpx.Response:
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }
    return httpx.post(url, content=body, headers=headers, timeout=10)


def test_a_slack_button_acknowledges_through_the_signed_callback(kafka_bootstrap: str, tmp_path: Path) -> None:
    with chat_lab(kafka_bootstrap, tmp_path) as lab:
        web = open_ticket(lab, "web-a", "web", "critical")  # implementation: ian
        for vendor in IMPL_VENDORS:
            button(lab, web["ticket_id"], vendor, "Acknowledge")
        ops = open_ticket(lab, "db-c", "db", "warning")
        slack_msg = wait_for("the Slack message", lambda: lab.about(ops["ticket_id"], "slack"), stack=lab.stack)[0]
        buttons = [e for b in slack_msg.body["blocks"] if b["type"] == "actions" for e in b["elements"]]
        ack = next(e for e in buttons if e["action_id"] == "ticketloop_ack")
        payload = {
            "type": "block_actions",
            "user": {"id": "U0OLGA", "username": "olga.s"},
            "actions": [{"action_id": ack["action_id"], "value": ack["value"], "type": "button"}],
            "response_url": f"{lab.chat.url}/slack-responses/T0/1",
        }
        body = urlencode({"payload": orjson.dumps(payload).decode()}).encode()
        url = f"{lab.stack.intake_url}/api/v1/slack/interactions"
        now = int(time.time())
        assert slack_callback(url, body, "not-the-secret", now).status_code == 401
        assert slack_callback(url, body, SLACK_SIGNING_SECRET, now - 600).status_code == 401, "stale"
        assert (
            lab.stack.intake_url and [e for e in timeline(lab, ops["ticket_id"]) if e["change"] == "acknowledged"] == []
        )
        assert slack_callback(url, body, SLACK_SIGNING_SECRET, now).status_code == 200
        acked = wait_for(
            "acknowledged through Slack",
            lambda: [e for e in timeline(lab, ops["ticket_id"]) if e["change"] == "acknowledged"],
            stack=lab.stack,
        )
        assert acked[0]["actor"] == "olga" and "@olga.s" in acked[0]["reason"]
        redrawn = wait_for("the redraw through response_url", lambda: lab.chat.received("slack-response"))
        assert redrawn[0].body["replace_original"] is True and "olga" in redrawn[0].text + redrawn[0].title
