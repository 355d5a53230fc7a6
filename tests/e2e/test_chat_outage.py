"""A chat endpoint down while tickets keep opening, and a storm for one team: the loop's notifier must never
block, never lose and never repeat. Counted at the sinks, as the people in the chat would count.

The outage here is short (the breaker's probe interval is shortened by a setting, so the test is quick); the
mechanism is the same for hours: notifications wait in the outbox until TICKETLOOP_NOTIFIER_GIVE_UP_S (24 h).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from deploy.local.kafka_local import free_port
from deploy.local.vendors.base import ReceivedChat
from services.notifier.channels.registry import REGISTRY
from tests.support.chatlab import ChatLab, am_alert, am_payload, chat_lab, tickets_per_message
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

FAST_RECOVERY = {
    "TICKETLOOP_NOTIFIER_BREAKER_OPEN_S": "0.5",
    "TICKETLOOP_NOTIFIER_BREAKER_MAX_OPEN_S": "2",
    "TICKETLOOP_NOTIFIER_RETRY_MAX_S": "2",
}
OPS_CHAT = ("slack", "dingtalk", "wecom", "webhook")
IMPL_CHAT = ("slack", "feishu", "teams", "webhook")
"""Implementation's channels in the lab: Slack by incoming webhook, Feishu, Teams and the signed webhook."""


def post_alerts(lab: ChatLab, first: int, count: int, service: str = "db") -> None:
    """Alerts for operations (``db``) or, routed by ``service="web"``, for implementation."""
    prefix = "host" if service == "db" else service
    alerts = [am_alert(f"{prefix}-{i}", service) for i in range(first, first + count)]
    resp = lab.alertmanager().post("/api/v1/integrations/am", json=am_payload(alerts))
    assert resp.status_code == 202, resp.text


def ticket_ids(lab: ChatLab, n: int) -> list[str]:
    def all_there() -> list[str] | None:
        tickets = lab.api().get("/api/v1/tickets", params={"limit": 1000}).json()["tickets"]
        return [t["ticket_id"] for t in tickets] if len(tickets) >= n else None

    return wait_for(f"{n} tickets in the API", all_there, stack=lab.stack, timeout=180)


def named(messages: list[ReceivedChat]) -> Counter[str]:
    return tickets_per_message([m for m in messages if "ESCALATION" not in m.title and "WARNING" not in m.title])


def in_flight(vendor: str) -> int:
    """How many messages a lane of ``vendor`` may have on their way at once: what one kill may repeat."""
    kind = REGISTRY.get(vendor)
    return kind.in_flight if kind is not None else 1


def repeated_messages(messages: list[ReceivedChat]) -> int:
    """Messages (a digest counts once) that name a ticket an earlier message already named."""
    seen: set[str] = set()
    again = 0
    for m in messages:
        named_here = set(tickets_per_message([m]))
        again += bool(named_here & seen)
        seen |= named_here
    return again


def has_all(lab: ChatLab, vendor: str, ids: list[str]) -> Callable[[], bool]:
    return lambda: set(named(lab.chat.received(vendor))) >= set(ids)


def breaker_open(lab: ChatLab, channel: str) -> bool:
    port = lab.stack.metrics_ports["notifier"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return f'ticketloop_notifier_breakers_open_count{{channel="{channel}"}} 1.0' in text


def test_a_chat_endpoint_down_holds_only_its_own_messages_and_gets_each_exactly_once_after(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with chat_lab(kafka_bootstrap, tmp_path, **FAST_RECOVERY) as lab:
        lab.chat.down("/dingtalk", 3600, mode="drop")  # unreachable: connections closed unanswered
        for batch in range(4):  # tickets keep opening during the outage
            post_alerts(lab, batch * 3, 3)
            ids = ticket_ids(lab, batch * 3 + 3)
            for vendor in ("slack", "wecom", "webhook"):  # the others keep getting theirs during the outage
                wait_for(f"{vendor} to have every ticket so far", has_all(lab, vendor, ids), stack=lab.stack)
        wait_for("DingTalk's circuit open", lambda: breaker_open(lab, "dingtalk"), stack=lab.stack)
        wait_for(
            "the mail of every ticket",
            lambda: len([m for m in lab.smtp.received() if "ops@example.test" in m.recipients]) >= 12,
        )
        assert lab.chat.received("dingtalk") == [], "nothing reached the endpoint while it was down"
        lab.chat.up("/dingtalk")
        wait_for("every held message at DingTalk", has_all(lab, "dingtalk", ids), stack=lab.stack, timeout=120)
        api = lab.api()
        wait_for(
            "the delivery log to show them sent",
            lambda: all(
                any(
                    n["channel"] == "dingtalk" and n["status"] == "sent"
                    for n in api.get(f"/api/v1/tickets/{t}").json()["notifications"]
                )
                for t in ids
            ),
        )
        for vendor in OPS_CHAT:
            counts = named(lab.chat.received(vendor))
            assert {t: counts[t] for t in ids} == dict.fromkeys(ids, 1), f"{vendor}: each ticket exactly once"
            assert set(counts) == set(ids), f"{vendor}: nothing else"
        mails = Counter(
            m.message["X-Ticketloop-Ticket"] for m in lab.smtp.received() if "ops@example.test" in m.recipients
        )
        assert mails == Counter(dict.fromkeys(ids, 1))
        held = [
            n
            for t in ids
            for n in api.get(f"/api/v1/tickets/{t}").json()["notifications"]
            if n["channel"] == "dingtalk"
        ]
        assert max(n["attempts"] for n in held) > 1, "the first held message was retried, not dropped"
        assert lab.chat.rejections == []


def team_ticket_ids(lab: ChatLab, team: str, n: int) -> list[str]:
    def all_there() -> list[str] | None:
        found = lab.api().get("/api/v1/tickets", params={"team": team, "limit": 1000}).json()["tickets"]
        return [t["ticket_id"] for t in found] if len(found) >= n else None

    return wait_for(f"{n} tickets of {team} in the API", all_there, stack=lab.stack, timeout=240)


def test_a_storm_for_each_team_keeps_to_each_vendors_limit_in_digests_and_drops_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """1,000 tickets for operations (Slack by bot token, DingTalk, WeCom, webhook) and 1,000 for implementation
    (Slack by incoming webhook, Feishu, Teams, webhook) at once: every vendor's limit kept, each ticket once."""
    storm = 1000
    storms = (("operations", "db", OPS_CHAT), ("implementation", "web", IMPL_CHAT))
    with chat_lab(kafka_bootstrap, tmp_path) as lab:
        for _, service, _ in storms:
            for first in range(0, storm, 100):
                post_alerts(lab, first, 100, service)
        for team, _, vendors in storms:
            ids = team_ticket_ids(lab, team, storm)
            mine = set(ids)
            for vendor in vendors:
                wait_for(f"every {team} ticket at {vendor}", has_all(lab, vendor, ids), stack=lab.stack, timeout=600)
            for vendor in vendors:
                messages = [m for m in lab.chat.received(vendor) if set(tickets_per_message([m])) & mine]
                counts = named(messages)
                assert sorted(counts.values()) == [1] * storm, f"{vendor} ({team}): each ticket exactly once"
                if vendor != "webhook":  # the generic webhook has no vendor limit to keep
                    # folded, not a message a ticket: how far depends on how fast the tickets came (a vendor of 4 a
                    # second gets more messages when the storm reaches it over a minute than over ten seconds); the
                    # limit itself is the imitation's to enforce (no rejections, below)
                    assert len(messages) < storm / 2, f"{vendor} ({team}): digests ({len(messages)} messages)"
                    assert any(m.title.endswith(f"notifications for {team}") for m in messages), vendor
        assert lab.chat.rejections == [], "no vendor refused anything: every limit was kept"


def test_a_notifier_killed_mid_flow_loses_nothing_when_restarted(kafka_bootstrap: str, tmp_path: Path) -> None:
    """SIGKILL of the notifier while it works through 60 tickets: the restarted worker reloads its outbox and
    every ticket reaches every sink; what may repeat is bounded by what was in flight (at least once, as the
    notifier's side effects leave Kafka), and is counted."""
    with chat_lab(kafka_bootstrap, tmp_path) as lab:
        post_alerts(lab, 0, 60)
        wait_for("the first notifications", lambda: len(lab.chat.received("webhook")) >= 5, stack=lab.stack)
        lab.stack.kill("notifier")  # SIGKILL, mid-flow
        lab.stack.start("notifier")
        ids = ticket_ids(lab, 60)
        for vendor in OPS_CHAT:
            wait_for(f"every ticket at {vendor}", has_all(lab, vendor, ids), stack=lab.stack, timeout=240)
        wait_for(
            "every ticket's mail",
            lambda: {m.message["X-Ticketloop-Ticket"] for m in lab.smtp.received()} >= set(ids),
            stack=lab.stack,
        )
        for vendor in OPS_CHAT:
            counts = named(lab.chat.received(vendor))
            assert set(counts) == set(ids), f"{vendor}: every ticket, nothing else"
            again = repeated_messages(lab.chat.received(vendor))
            most = in_flight(vendor)
            assert again <= most, (
                f"{vendor}: {again} messages repeated (a lane has at most {most} in flight when killed)"
            )
        assert lab.chat.rejections == []


def is_digest(message: ReceivedChat) -> bool:
    return message.title.endswith("notifications for operations")


def test_a_notifier_killed_while_a_digest_is_on_its_way_sends_that_same_digest_again_and_nothing_else_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Slack (one a second) gets a digest; Slack takes it, and the notifier is SIGKILLed before the answer comes
    back. More tickets open meanwhile. The restarted notifier sends that digest again just as it was: the one
    message a kill may repeat. Its tickets are not folded again, into other messages or beside the new tickets,
    which would repeat each of them in a message nobody had in flight."""
    with chat_lab(kafka_bootstrap, tmp_path) as lab:
        hold = lab.chat.hold_next("slack", is_digest)
        post_alerts(lab, 0, 10)
        wait_for("a digest taken by Slack, its answer held back", hold.taken.is_set, stack=lab.stack)
        lab.stack.kill("notifier")  # SIGKILL while the digest's answer is on its way
        lab.chat.release(hold)
        post_alerts(lab, 10, 10)
        lab.stack.start("notifier")
        ids = ticket_ids(lab, 20)
        wait_for("every ticket at Slack", has_all(lab, "slack", ids), stack=lab.stack, timeout=120)
        digest = hold.message
        assert digest is not None
        in_it = set(tickets_per_message([digest]))
        assert len(in_it) > 1
        messages = lab.chat.received("slack")
        after = messages[messages.index(digest) + 1 :]
        again = [m for m in after if set(tickets_per_message([m])) & in_it]
        assert [(m.title, m.text) for m in again] == [(digest.title, digest.text)], "the same digest, once more"
        assert set(named(messages)) == set(ids)
        assert repeated_messages(messages) == 1
        assert lab.chat.rejections == []


def assigned_last(lab: ChatLab, name: str) -> tuple[int, int] | None:
    """The share of partitions a notifier worker was last assigned, from its log (None: none yet)."""
    found = None
    path = lab.stack.log_path(name)
    for line in path.read_text().splitlines() if path.exists() else []:
        if '"partitions_assigned"' in line:
            entry = json.loads(line)
            found = (int(entry["partitions"]), int(entry["of"]))
    return found


def test_two_notifier_workers_keep_each_vendors_limit_together(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Scaled out to two notifier workers, the partitions split between them: each keeps its part of every
    vendor's limit, so a robot never sees more than its limit from both (helper-34: each kept the whole one, and
    DingTalk and WeCom refused the excess and throttled the robots)."""
    with chat_lab(kafka_bootstrap, tmp_path) as lab:
        env = lab.stack.extra_env
        env["TICKETLOOP_NOTIFIER_METRICS_PORT"] = str(free_port())
        lab.stack.start("notifier", name="notifier-2")
        del env["TICKETLOOP_NOTIFIER_METRICS_PORT"]

        def split() -> bool:
            shares = [assigned_last(lab, name) for name in ("notifier", "notifier-2")]
            return all(s is not None and 0 < s[0] < s[1] for s in shares)

        wait_for("the partitions split between the two workers", split, stack=lab.stack, timeout=120)
        for first in range(0, 200, 50):
            post_alerts(lab, first, 50)
        ids = ticket_ids(lab, 200)
        for vendor in OPS_CHAT:
            wait_for(f"every ticket at {vendor}", has_all(lab, vendor, ids), stack=lab.stack, timeout=300)
        assert lab.chat.rejections == [], "no vendor refused anything: the two kept the limit together"
        for vendor in OPS_CHAT:
            counts = named(lab.chat.received(vendor))
            assert sorted(counts.values()) == [1] * 200, f"{vendor}: each ticket exactly once"
