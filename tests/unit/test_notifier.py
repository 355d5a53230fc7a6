from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest

from deploy.local.vendors.webhook import signature_problem
from services.notifier.channels.base import ActionLink, Mention, Message
from services.notifier.channels.email import build_email
from services.notifier.channels.webhook import payload, sign
from services.notifier.config import NotifyConfig
from services.notifier.pipeline import (
    notice_for_escalation,
    notice_for_ticket_event,
    notices_for_ticket_event,
    notifies,
    plan,
    plan_notice,
    with_actions,
    with_mention,
)
from services.notifier.templates import render_assignment, render_escalation, render_resolution, render_state
from shared.events import Change, Escalation, TicketEvent, TicketState
from shared.rules.oncall import OnCall, TeamsConfig
from tests.unit.factories import T0, ticket

URL = "http://tl.example"


def tev(change: Change, **over: object) -> TicketEvent:
    return TicketEvent(
        change_id="tl-1:1", change=change, actor="am", reason="rule 'db'", at=T0, ticket=ticket(**over), trace_id="t"
    )


def escalation() -> Escalation:
    return Escalation(
        escalation_id="tl-1:acknowledge:1",
        ticket_id="tl-1",
        level=1,
        target_team="leads",
        deadline=T0,
        fired_at=T0,
        reason="not acknowledged",
        ticket=ticket(),
        trace_id="t",
    )


def test_assignment_message_has_the_facts_and_the_api_address() -> None:
    m = render_assignment(tev(Change.opened, occurrences=3, labels={"service": "db"}), URL)
    assert m.kind == "assignment"
    assert m.subject == "[P1] New ticket tl-1: disk full"
    for part in (
        "Owner:     ops",
        "Why: rule 'db'",
        "Seen:      3 times",
        "service=db",
        "API:       http://tl.example/api/v1/tickets/tl-1",
    ):
        assert part in m.text
    assert m.data["ticket_id"] == "tl-1"


def test_escalation_and_resolution_messages() -> None:
    e = render_escalation(escalation(), URL)
    assert e.subject.startswith("[P1] ESCALATION L1 tl-1")
    assert "ESCALATION level 1 to leads: not acknowledged" in e.text
    assert e.data["level"] == 1
    r = render_resolution(tev(Change.resolved, state=TicketState.resolved), URL)
    assert r.kind == "resolution" and "Resolved by am" in r.text


def test_messages_name_the_client_a_person_acted_through() -> None:
    def by_alice(change: Change, **over: object) -> TicketEvent:
        return tev(change, **over).model_copy(update={"actor": "alice", "via": "console"})

    resolved = render_resolution(by_alice(Change.resolved, state=TicketState.resolved), URL)
    assert "Resolved by alice (via console): rule 'db'" in resolved.text
    acked = render_state(by_alice(Change.acknowledged, state=TicketState.acknowledged), URL)
    assert "by alice (via console)" in acked.text and "via" not in acked.subject
    moved = render_assignment(by_alice(Change.reassigned, team="dba"), URL)
    assert "reassigned to dba by alice (via console)." in moved.text
    assert "via" not in render_resolution(tev(Change.resolved, state=TicketState.resolved), URL).text


def test_only_assignment_and_resolution_ticket_events_notify() -> None:
    assert notice_for_ticket_event(tev(Change.opened), URL) is not None
    assert notice_for_ticket_event(tev(Change.resolved), URL) is not None
    reassigned = notice_for_ticket_event(tev(Change.reassigned, team="dba"), URL)
    assert reassigned is not None
    assert (reassigned.team, reassigned.notice_id) == ("dba", "tl-1:1")
    assert reassigned.message.subject.startswith("[P1] Reassigned ticket tl-1")
    for change in (Change.occurred, Change.acknowledged, Change.rejected, Change.commented, Change.snoozed):
        assert notice_for_ticket_event(tev(change), URL) is None
    notice = notice_for_escalation(escalation(), URL)
    assert (notice.notice_id, notice.team, notice.ticket_id) == ("tl-1:acknowledge:1", "leads", "tl-1")


def test_watchers_are_copied_and_route_channels_limit_the_kinds() -> None:
    notice = notice_for_ticket_event(tev(Change.opened, watchers=["leads"], channels=["email"]), URL)
    assert notice is not None
    assert (notice.watchers, notice.kinds) == (("leads",), ("email",))
    targets = [(d.channel, d.target) for d in plan_notice(notice, CFG)]
    assert targets == [("email", "a@x"), ("email", "b@x"), ("email", "l@x")]
    assert "Watchers:  leads" in notice.message.text


def test_signature_matches_an_independent_hmac_and_the_receiver_check() -> None:
    body = b'{"a":1}'
    expected = "v1=" + hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1_700_000_000, body) == expected
    assert signature_problem("s3cret", "1700000000", body, expected, now=1_700_000_010) is None
    assert signature_problem("other", "1700000000", body, expected, now=1_700_000_010) == "signature mismatch"
    assert signature_problem("s3cret", "1700000000", body + b" ", expected, now=1_700_000_010) == "signature mismatch"
    assert "window" in (signature_problem("s3cret", "1700000000", body, expected, now=1_700_000_000 + 301) or "")


def test_webhook_payload_is_json_with_the_message() -> None:
    assert (
        payload(Message("k", "s", "t", {"ticket_id": "x"}))
        == b'{"kind":"k","subject":"s","text":"t","ticket_id":"x","actions":[]}'
    )


def test_email_headers() -> None:
    mail = build_email(Message("assignment", "subj", "body", {"ticket_id": "tl-1"}), sender="a@x", recipient="b@y")
    assert (mail["To"], mail["Subject"], mail["X-Ticketloop-Ticket"], mail["X-Ticketloop-Kind"]) == (
        "b@y",
        "subj",
        "tl-1",
        "assignment",
    )


CFG = NotifyConfig.model_validate(
    {
        "teams": {
            "ops": {
                "email": ["a@x", "b@x"],
                "channels": [{"type": "webhook", "name": "ops-chat", "url": "http://h/1", "secret": "12345678"}],
            },
            "quiet": {},
            "leads": {"email": ["l@x"]},
        },
        "fallback_team": "leads",
    }
)


def test_plan_fans_out_per_channel_and_target_with_stable_distinct_ids() -> None:
    msg = Message("assignment", "s", "t")
    dispatches = plan("tl-1:1", "tl-1", "ops", msg, CFG)
    assert [(d.channel, d.target) for d in dispatches] == [("email", "a@x"), ("email", "b@x"), ("webhook", "ops-chat")]
    assert len({d.notification_id for d in dispatches}) == 3
    assert [d.notification_id for d in plan("tl-1:1", "tl-1", "ops", msg, CFG)] == [
        d.notification_id for d in dispatches
    ]
    assert plan("tl-1:2", "tl-1", "ops", msg, CFG)[0].notification_id != dispatches[0].notification_id


def test_a_tickets_notification_ids_begin_with_when_it_opened_so_the_delivery_log_grows_at_its_end() -> None:
    """Keyed by hashes, each new row of the delivery log rewrote a page of its key's index (shared/infra/ids.py)."""
    opened = [T0 + timedelta(milliseconds=k) for k in range(20)]
    ids = []
    for k, at in enumerate(opened):
        notice = notice_for_ticket_event(tev(Change.opened, ticket_id=f"tl-{k:x}", opened_at=at), URL)
        assert notice is not None and notice.opened == at
        ids.append([d.notification_id for d in plan_notice(notice, CFG, "olga@x")])
    assert [min(each) for each in ids] == sorted(min(each) for each in ids)
    assert all(max(ids[k]) < min(ids[k + 1]) for k in range(len(ids) - 1)), "a later ticket's ids sort after"
    assert all(
        int(nid[:12], 16) == int(at.timestamp() * 1000) for at, each in zip(opened, ids, strict=True) for nid in each
    )
    late = notice_for_escalation(escalation().model_copy(update={"ticket": ticket(opened_at=opened[3])}), URL)
    assert {d.notification_id[:12] for d in plan_notice(late, CFG)} == {ids[3][0][:12]}, "its ticket's time"


def test_plan_uses_the_fallback_team_for_teams_without_channels() -> None:
    msg = Message("assignment", "s", "t")
    assert [d.target for d in plan("n", "tl-1", "quiet", msg, CFG)] == ["l@x"]
    assert [d.target for d in plan("n", "tl-1", "unknown", msg, CFG)] == ["l@x"]
    no_fallback = NotifyConfig.model_validate({"teams": {"ops": {}}})
    assert plan("n", "tl-1", "nobody", msg, no_fallback) == []


def test_config_rejects_duplicate_channel_names_and_unknown_fallback() -> None:
    hook = {"type": "webhook", "name": "h", "url": "http://x", "secret": "12345678"}
    with pytest.raises(ValueError, match="unique"):
        NotifyConfig.model_validate({"teams": {"a": {"channels": [hook]}, "b": {"channels": [hook]}}})
    with pytest.raises(ValueError, match="fallback_team"):
        NotifyConfig.model_validate({"teams": {"a": {}}, "fallback_team": "b"})


def test_the_owner_person_is_mailed_besides_the_team() -> None:
    notice = notice_for_ticket_event(tev(Change.opened, person="olga"), URL)
    assert notice is not None and notice.person == "olga"
    targets = [(d.channel, d.target) for d in plan_notice(notice, CFG, "olga@x")]
    assert targets[0] == ("email", "olga@x")
    assert len({d.notification_id for d in plan_notice(notice, CFG, "olga@x")}) == len(targets)
    assert ("email", "olga@x") not in [(d.channel, d.target) for d in plan_notice(notice, CFG)]
    chat_only = notice_for_ticket_event(tev(Change.opened, person="olga", channels=["webhook"]), URL)
    assert chat_only is not None
    assert "olga@x" not in [d.target for d in plan_notice(chat_only, CFG, "olga@x")], "the route wants chat only"


def test_an_escalation_goes_to_whoever_is_on_call_for_its_target_team() -> None:
    lead = OnCall("leads", "lena", T0 + timedelta(hours=8), "rotation")
    assert notice_for_escalation(escalation(), URL, lead).person == "lena"
    assert notice_for_escalation(escalation(), URL).person is None, "nobody on call: the team only"
    other = OnCall("dba", "dan", T0, "rotation")
    assert notice_for_escalation(escalation(), URL, other).person is None, "on call for another team"
    to_owner = escalation().model_copy(update={"target_team": "ops", "ticket": ticket(person="olga")})
    assert notice_for_escalation(to_owner, URL, OnCall("ops", "oscar", T0, "rotation")).person == "olga"


def test_group_wait_moves_the_first_notification_to_group_notified() -> None:
    held = tev(Change.opened, notify_at=T0 + timedelta(seconds=30))
    assert notice_for_ticket_event(held, URL) is None
    ready = tev(Change.group_notified, alerts=40, alerts_firing=39, notified_at=T0)
    notice = notice_for_ticket_event(ready, URL)
    assert notice is not None and notice.message.kind == "assignment"
    assert "Alerts:    40 grouped, 39 firing" in notice.message.text
    update = notice_for_ticket_event(tev(Change.alerts_joined, alerts=52, alerts_firing=50), URL)
    assert update is not None and update.message.kind == "update"
    assert update.message.subject == "[P1] 52 alerts on tl-1: disk full"


def test_a_warning_reads_as_a_warning() -> None:
    warning = escalation().model_copy(
        update={"kind": "warning", "target_team": "ops", "reason": "75% of the acknowledge target used"}
    )
    m = render_escalation(warning, URL)
    assert m.kind == "warning" and m.subject == "[P1] WARNING tl-1: disk full"
    assert m.text.startswith("WARNING: 75% of the acknowledge target used")


def test_a_resolve_breach_is_sent_to_the_owner_an_acknowledge_breach_is_not() -> None:
    """An acknowledge breach has escalation levels after it to do the notifying; a resolve breach has none."""
    ack_breach = escalation().model_copy(update={"kind": "breach", "target_team": "ops"})
    resolve_breach = ack_breach.model_copy(
        update={"clock": "resolve", "reason": "resolve target missed: not resolved by 2026-11-24T10:00:00+00:00"}
    )
    assert not notifies(ack_breach) and notifies(resolve_breach)
    m = render_escalation(resolve_breach, URL)
    assert m.kind == "breach" and m.subject == "[P1] SLA BREACHED tl-1: disk full"
    assert m.text.startswith("SLA BREACHED: resolve target missed")
    warning = resolve_breach.model_copy(update={"kind": "warning", "reason": "50% of the resolve target used"})
    assert f"Resolve by {T0.isoformat()} to meet the resolve target." in render_escalation(warning, URL).text
    update = warning.model_copy(update={"clock": "update"})
    assert f"Update the customer by {T0.isoformat()}" in render_escalation(update, URL).text
    assert notifies(update.model_copy(update={"kind": "breach"}))


def test_a_lead_level_goes_to_the_target_teams_lead_else_its_on_call_person() -> None:
    teams = TeamsConfig.model_validate(
        {
            "people": {"lena": {"email": "lena@x"}, "lars": {"email": "lars@x"}, "olga": {"email": "olga@x"}},
            "teams": {"leads": {"members": ["lena", "lars"], "lead": "lena"}, "ops": {"members": ["olga"]}},
        }
    )
    on_call = OnCall("leads", "lars", T0 + timedelta(hours=8), "rotation")
    to_lead = escalation().model_copy(update={"to_lead": True})
    assert notice_for_escalation(to_lead, URL, on_call, teams).person == "lena"
    assert notice_for_escalation(escalation(), URL, on_call, teams).person == "lars", "a plain level: on call"
    leaderless = to_lead.model_copy(update={"target_team": "ops", "ticket": ticket(person=None)})
    assert notice_for_escalation(leaderless, URL, OnCall("ops", "olga", T0, "rotation"), teams).person == "olga"
    assert "ESCALATION level 1 to leads (team lead)" in render_escalation(to_lead, URL).text


def issued(ticket_id: str, action: str, person: str) -> str:
    return f"http://tl.example/act/{ticket_id}.{action}.{person}"


def test_messages_carry_one_click_links_bound_to_their_person() -> None:
    notice = notice_for_ticket_event(tev(Change.opened, person="olga"), URL)
    assert notice is not None
    linked = with_actions(notice, issued, "open")
    assert [(a.action, a.label, a.url) for a in linked.message.actions] == [
        ("ack", "Acknowledge", "http://tl.example/act/tl-1.ack.olga"),
        ("take", "Take it", "http://tl.example/act/tl-1.take.olga"),
        ("snooze", "Snooze 1 h", "http://tl.example/act/tl-1.snooze.olga"),
        ("resolve", "Resolve", "http://tl.example/act/tl-1.resolve.olga"),
    ]
    acked = with_actions(notice, issued, "acknowledged")
    assert [a.action for a in acked.message.actions] == ["take", "snooze", "resolve"]
    team_only = notice_for_ticket_event(tev(Change.opened, person=None), URL)
    assert team_only is not None
    assert [a.url for a in with_actions(team_only, issued, "open").message.actions] == [
        "http://tl.example/act/tl-1.ack.ops team",
        "http://tl.example/act/tl-1.snooze.ops team",
        "http://tl.example/act/tl-1.resolve.ops team",
    ], "no 'take it' without a person to take it"
    assert with_actions(notice, None, "open").message.actions == (), "links not configured"
    resolution = notice_for_ticket_event(tev(Change.resolved, person="olga"), URL)
    assert resolution is not None and with_actions(resolution, issued, "resolved").message.actions == ()


def test_a_viewer_is_told_without_links_that_would_not_act() -> None:
    notice = notice_for_ticket_event(tev(Change.opened, person="olga"), URL)
    assert notice is not None
    viewer = TeamsConfig.model_validate({"people": {"olga": {"role": "viewer"}}})
    responder = TeamsConfig.model_validate({"people": {"olga": {"role": "responder"}}})
    assert with_actions(notice, issued, "open", viewer).message.actions == ()
    assert len(with_actions(notice, issued, "open", responder).message.actions) == 4


def test_a_reporters_workaround_mail_carries_no_links_and_no_mention() -> None:
    ev = tev(Change.opened, labels={"reporter": "ann@customer.example"}, person="olga")
    ev = ev.model_copy(update={"workaround": "restart the exporter", "notify_reporter": True})
    reporter = notices_for_ticket_event(ev, URL)[1]
    assert reporter.recipients == (("email", "ann@customer.example"),)
    assert with_actions(reporter, issued, "open").message.actions == ()
    teams = TeamsConfig.model_validate({"people": {"olga": {"email": "o@x"}}})
    assert with_mention(reporter, teams).message.mention is None


def test_the_person_is_mentioned_by_name_and_mobile() -> None:
    teams = TeamsConfig.model_validate(
        {"people": {"olga": {"email": "olga@x", "name": "Olga Ops", "mobile": "+86 138 0000 0000"}}}
    )
    notice = notice_for_ticket_event(tev(Change.opened, person="olga"), URL)
    assert notice is not None
    assert with_mention(notice, teams).message.mention == Mention("Olga Ops", "+86 138 0000 0000", "olga@x")
    stranger = notice_for_ticket_event(tev(Change.opened, person="sam"), URL)
    assert stranger is not None and with_mention(stranger, teams).message.mention == Mention("sam")


def test_an_email_lists_its_one_click_links() -> None:
    message = Message("assignment", "s", "body", actions=(ActionLink("ack", "Acknowledge", "http://x/act/t1"),))
    text = build_email(message, sender="tl@x", recipient="o@x").get_content()
    assert "One click (each link asks you to confirm):" in text
    assert "  Acknowledge: http://x/act/t1" in text


def test_an_action_redraws_the_tickets_chat_message_where_the_channel_can() -> None:
    cfg = NotifyConfig.model_validate(
        {
            "teams": {
                "ops": {
                    "email": ["ops@x"],
                    "channels": [
                        {"type": "slack", "name": "ops-slack", "token": "xoxb-1-2-3", "channel": "C0123456789"},
                        {"type": "webhook", "name": "ops-hook", "url": "http://h/1", "secret": "12345678"},
                    ],
                }
            }
        }
    )
    acked = tev(Change.acknowledged, person="olga", state=TicketState.acknowledged).model_copy(
        update={"actor": "olga", "reason": "one-click link"}
    )
    notices = notices_for_ticket_event(acked, URL)
    assert [n.message.kind for n in notices] == ["state"]
    assert notices[0].message.text.startswith("Acknowledged by olga (one-click link).")
    assert [(d.channel, d.target) for d in plan_notice(notices[0], cfg, "olga@x")] == [("slack", "ops-slack")]
    linked = with_actions(notices[0], issued, "acknowledged")
    assert [a.action for a in linked.message.actions] == ["take", "snooze", "resolve"]
    email_only = tev(Change.acknowledged, channels=["email"])
    assert notices_for_ticket_event(email_only, URL) == [], "the route wants no channel that redraws"
    assert [n.message.kind for n in notices_for_ticket_event(tev(Change.commented), URL)] == []


def test_the_next_message_says_who_acted_last() -> None:
    """Where a chat message cannot be redrawn, the ticket's next message tells who acted."""
    acked = escalation().model_copy(
        update={"ticket": ticket(last_action="acknowledged by olga at 2026-11-24 10:01 UTC")}
    )
    assert "Last:      acknowledged by olga at 2026-11-24 10:01 UTC" in render_escalation(acked, URL).text
    assert "Last:" not in render_escalation(escalation(), URL).text
