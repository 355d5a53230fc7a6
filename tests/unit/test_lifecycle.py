from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.commands import TRANSITIONS, apply_command, reassign_on_call, tick_command, timer_due
from services.router.decision import with_on_call
from services.router.grouping import (
    Assignment,
    Home,
    KeyState,
    KeyUpdate,
    apply_key_update,
    assign,
    group_key,
    hands_over_in_place,
    home_ticket_id,
    key_update_for,
    new_ticket_id,
)
from services.router.hop import TicketInput
from services.router.lifecycle import (
    SEEN_LIMIT,
    Member,
    Occurrences,
    Status,
    TicketRecord,
    apply_event,
    fold_occurrences,
    folds,
)
from services.router.rules import FlapPolicy, RouteDecision
from shared.events import Action, Change, Command, EventStatus, InboundEvent, TicketEvent, TicketState
from shared.rules.oncall import OnCall
from shared.streaming.topics import partition_of
from tests.unit.factories import T0, event, ticket

DECISION = RouteDecision(team="ops", priority="P1", policy="default", rule="r")
NOW = T0 + timedelta(minutes=1)


def cmd(action: Action, command_id: str = "c1") -> Command:
    return Command(
        command_id=command_id, ticket_id="tl-1", action=action, actor="alice", reason="why", issued_at=NOW, trace_id="t"
    )


def on(
    rec: TicketRecord | None, ev: InboundEvent, member: Status = "firing", at: datetime = NOW
) -> tuple[TicketRecord | None, list[TicketEvent]]:
    """apply_event for the one-alert ticket tl-1 (group am/fp1) whose alert the ticket knows as ``member``."""
    known = Member(member, "an-earlier-event") if rec is not None else None
    new, out, _ = apply_event(rec, "tl-1", "am/fp1", ev, known, DECISION, at)
    return new, out


def record(state: TicketState = TicketState.open) -> TicketRecord:
    return TicketRecord(ticket=ticket(state=state), seen=["e1"])


WINDOW = timedelta(minutes=30)


def test_assign_new_existing_and_resolved() -> None:
    first = assign(None, event(), WINDOW)
    assert first.ticket_id == new_ticket_id("e1")
    assert first.key_state == KeyState(ticket_id=new_ticket_id("e1"))
    open_key = KeyState(ticket_id="tl-x")
    assert assign(open_key, event(event_id="e2"), WINDOW) == Assignment("tl-x", open_key)
    resolved = assign(open_key, event(status=EventStatus.resolved), WINDOW)
    assert resolved == Assignment("tl-x", open_key), "the writer reports the resolution back; the key is untouched"
    assert assign(None, event(status=EventStatus.resolved), WINDOW).ticket_id is None


@pytest.mark.parametrize(
    ("gap", "same_ticket"), [(timedelta(0), True), (WINDOW, True), (WINDOW + timedelta(seconds=1), False)]
)
def test_recurrence_within_the_window_goes_back_to_the_ticket(gap: timedelta, same_ticket: bool) -> None:
    key = KeyState(ticket_id="tl-x", resolved_at=T0)
    result = assign(key, event(event_id="again", received_at=T0 + gap), WINDOW)
    assert (result.ticket_id == "tl-x") is same_ticket
    if not same_ticket:
        assert result.key_state == KeyState(ticket_id=new_ticket_id("again"))


def test_key_updates_follow_the_ticket_and_ignore_stale_ones() -> None:
    key = KeyState(ticket_id="tl-x")

    def upd(state: TicketState, ticket_id: str = "tl-x") -> KeyUpdate:
        return KeyUpdate(dedup_key="am/fp1", ticket_id=ticket_id, state=state, at=T0)

    resolved = apply_key_update(key, upd(TicketState.resolved))
    assert resolved == KeyState(ticket_id="tl-x", resolved_at=T0)
    assert apply_key_update(resolved, upd(TicketState.open)) == key
    assert apply_key_update(key, upd(TicketState.closed)) is None
    assert apply_key_update(key, upd(TicketState.resolved, "tl-old")) == key, "an older ticket's news is stale"
    assert apply_key_update(None, upd(TicketState.resolved)) is None


def test_key_updates_are_sent_for_resolve_close_and_reopen_only() -> None:
    for change, state in (
        (Change.resolved, TicketState.resolved),
        (Change.closed, TicketState.closed),
        (Change.reopened, TicketState.open),
    ):
        tev = TicketEvent(change_id="c", change=change, actor="a", at=NOW, ticket=ticket(state=state), trace_id="t")
        update = key_update_for(tev)
        assert update is not None and (update.dedup_key, update.state, update.at) == ("am/fp1", state, NOW)
    for change in (Change.opened, Change.occurred, Change.acknowledged, Change.commented):
        tev = TicketEvent(change_id="c", change=change, actor="a", at=NOW, ticket=ticket(), trace_id="t")
        assert key_update_for(tev) is None


def test_a_recurring_problem_reopens_its_resolved_ticket() -> None:
    repeat, out = on(record(TicketState.resolved), event(event_id="repeat"), member="firing")
    assert repeat is not None and repeat.ticket.state is TicketState.resolved, "a still-firing repeat is no recurrence"
    assert out[0].change is Change.occurred
    rec, out = on(record(TicketState.resolved), event(event_id="again"), member="resolved")
    assert rec is not None
    assert out[0].change is Change.reopened and out[0].reason == "the problem recurred"
    assert (rec.ticket.state, rec.ticket.reopened, rec.ticket.occurrences, rec.ticket.resolved_at) == (
        TicketState.open,
        1,
        2,
        None,
    )
    closed, out = on(record(TicketState.closed), event(event_id="late"), member="resolved")
    assert closed is not None and closed.ticket.state is TicketState.closed and out[0].change is Change.occurred


def test_ticket_ids_are_deterministic_so_replays_land_on_the_same_ticket() -> None:
    assert new_ticket_id("e1") == new_ticket_id("e1") != new_ticket_id("e2")


def test_first_event_opens_a_routed_ticket() -> None:
    rec, out = on(None, event())
    assert rec is not None
    assert [o.change for o in out] == [Change.opened]
    t = out[0].ticket
    assert (t.state, t.team, t.priority, t.version, t.occurrences, t.opened_at) == (
        TicketState.open,
        "ops",
        "P1",
        1,
        1,
        NOW,
    )
    assert out[0].change_id == "tl-1:1"
    assert "route r: owner ops" in out[0].reason


def test_resolution_for_unknown_ticket_opens_nothing() -> None:
    assert apply_event(None, "tl-1", "am/fp1", event(status=EventStatus.resolved), None, DECISION, NOW) == (
        None,
        [],
        None,
    )


def test_repeats_count_occurrences_and_duplicates_are_ignored() -> None:
    rec, _ = on(None, event())
    assert rec is not None
    later = T0 + timedelta(minutes=5)
    rec2, out = on(rec, event(event_id="e2", occurred_at=later))
    assert rec2 is not None
    assert out[0].change is Change.occurred and out[0].ticket.occurrences == 2 and out[0].ticket.last_seen == later
    rec3, out3 = on(rec2, event(event_id="e2"))
    assert out3 == [] and rec3 == rec2


def test_source_resolution_resolves_once() -> None:
    rec, out = on(record(), event(event_id="r1", status=EventStatus.resolved))
    assert rec is not None
    assert out[0].change is Change.resolved and out[0].ticket.resolved_at == NOW and out[0].actor == "am"
    again, out2 = on(rec, event(event_id="r2", status=EventStatus.resolved), member="resolved")
    assert out2 == [] and again is not None and again.ticket.version == rec.ticket.version


@pytest.mark.parametrize(
    ("state", "action", "change", "new_state"),
    [
        (TicketState.open, Action.acknowledge, Change.acknowledged, TicketState.acknowledged),
        (TicketState.open, Action.resolve, Change.resolved, TicketState.resolved),
        (TicketState.acknowledged, Action.resolve, Change.resolved, TicketState.resolved),
        (TicketState.acknowledged, Action.acknowledge, Change.rejected, TicketState.acknowledged),
        (TicketState.resolved, Action.acknowledge, Change.rejected, TicketState.resolved),
        (TicketState.resolved, Action.resolve, Change.rejected, TicketState.resolved),
    ],
)
def test_command_transitions(state: TicketState, action: Action, change: Change, new_state: TicketState) -> None:
    rec, out = apply_command(record(state), cmd(action), NOW)
    assert [o.change for o in out] == [change]
    assert rec.ticket.state is new_state
    assert rec.ticket.version == 2, "every change, a rejection too, is a new version on the timeline"
    assert out[0].actor == "alice"
    if change is Change.rejected:
        assert f"cannot {action.value}" in out[0].reason
    else:
        assert out[0].reason.endswith(": why")


@pytest.mark.parametrize("state", [TicketState.open, TicketState.resolved])  # done, and refused
def test_the_client_a_person_acted_through_goes_on_the_change(state: TicketState) -> None:
    via = cmd(Action.acknowledge).model_copy(update={"via": "console"})
    _rec, out = apply_command(record(state), via, NOW)
    assert [(o.actor, o.via) for o in out] == [("alice", "console")]
    assert "via" in out[0].model_dump_json()
    _rec, out = apply_command(record(state), cmd(Action.acknowledge), NOW)
    assert [(o.actor, o.via) for o in out] == [("alice", None)]
    assert "via" not in out[0].model_dump_json(), "absent when the actor acted itself (the wire as before)"


def test_acknowledge_stamps_time_and_duplicate_command_is_ignored() -> None:
    rec, _out = apply_command(record(), cmd(Action.acknowledge), NOW)
    assert rec.ticket.acknowledged_at == NOW
    assert rec.ticket.last_action == f"acknowledged by alice at {NOW:%Y-%m-%d %H:%M} UTC"
    same, again = apply_command(rec, cmd(Action.acknowledge), NOW)
    assert again == [] and same == rec


def test_seen_ids_are_bounded() -> None:
    rec = record()
    for i in range(SEEN_LIMIT + 50):
        nxt, _ = on(rec, event(event_id=f"x{i}"))
        assert nxt is not None
        rec = nxt
    assert len(rec.seen) == SEEN_LIMIT


@given(st.lists(st.sampled_from(["fire", "resolve", "ack", "close"]), max_size=30))
def test_versions_only_grow_and_resolved_tickets_have_a_time(steps: list[str]) -> None:
    rec, _ = on(None, event())
    assert rec is not None
    member: Member | None = Member("firing", "e1")
    for i, step in enumerate(steps):
        before = rec.ticket.version
        at = datetime(2026, 11, 24, tzinfo=UTC) + timedelta(seconds=i)
        if step in ("fire", "resolve"):
            status = EventStatus.firing if step == "fire" else EventStatus.resolved
            nxt, _, member = apply_event(
                rec, "tl-1", "am/fp1", event(event_id=f"{step}{i}", status=status), member, DECISION, at
            )
        else:
            nxt, _ = apply_command(rec, cmd(Action.acknowledge if step == "ack" else Action.resolve, f"c{i}"), at)
        assert nxt is not None
        rec = nxt
        assert rec.ticket.version >= before
        if rec.ticket.state is TicketState.resolved:
            assert rec.ticket.resolved_at is not None


def full_cmd(action: Action, **over: object) -> Command:
    args: dict[str, object] = {"team": "dba", "priority": "P3", "until": NOW + timedelta(hours=1), "reason": "text"}
    args.update(over)
    return Command(
        command_id=f"c-{action.value}",
        ticket_id="tl-1",
        action=action,
        actor="bob",
        issued_at=NOW,
        trace_id="t",
        **args,
    )


@pytest.mark.parametrize("state", list(TicketState))
@pytest.mark.parametrize(
    "action", [a for a in Action if a not in (Action.tick, Action.rate, Action.answer_workaround)]
)  # test_survey
def test_every_action_in_every_state_is_applied_or_rejected_never_dropped(state: TicketState, action: Action) -> None:
    rec, out = apply_command(record(state), full_cmd(action), NOW)
    allowed, change = TRANSITIONS[action]
    assert len(out) == 1, "every command leaves a trace on the timeline"
    assert rec.ticket.version == 2
    if state in allowed:  # customer_replied in any state: it records what the customer wrote
        assert out[0].change is change
    else:
        assert out[0].change is Change.rejected
        assert rec.ticket.model_dump(exclude={"version"}) == record(state).ticket.model_dump(exclude={"version"})
        assert out[0].reason


def test_reassign_changes_owner_and_needs_a_new_acknowledgement() -> None:
    rec, out = apply_command(
        record(TicketState.acknowledged), full_cmd(Action.reassign, team="dba", person="erik"), NOW
    )
    t = rec.ticket
    assert (t.team, t.person, t.state, t.acknowledged_at) == ("dba", "erik", TicketState.open, None)
    assert out[0].reason == "reassigned to erik (dba): text"
    again_cmd = Command(
        command_id="c2",
        ticket_id="tl-1",
        action=Action.reassign,
        actor="bob",
        team="dba",
        person="erik",
        issued_at=NOW,
        trace_id="t",
    )
    _, again = apply_command(rec, again_cmd, NOW)
    assert again[0].change is Change.rejected and "already assigned" in again[0].reason


def test_snooze_priority_waiting_and_reopen() -> None:
    rec, out = apply_command(record(), full_cmd(Action.snooze, until=NOW - timedelta(seconds=1)), NOW)
    assert out[0].change is Change.rejected and "future" in out[0].reason
    rec, out = apply_command(record(), full_cmd(Action.snooze), NOW)
    assert rec.ticket.snoozed_until == NOW + timedelta(hours=1)
    rec, out = apply_command(record(), full_cmd(Action.set_priority, priority="P1"), NOW)
    assert out[0].change is Change.rejected and "already P1" in out[0].reason
    rec, out = apply_command(record(), full_cmd(Action.set_priority, priority="P2"), NOW)
    assert rec.ticket.priority == "P2" and out[0].reason.startswith("priority P1 -> P2")
    rec, _ = apply_command(record(), full_cmd(Action.wait_on_customer), NOW)
    assert rec.ticket.waiting_on_customer
    rec, out = apply_command(rec, full_cmd(Action.customer_replied), NOW)
    assert not rec.ticket.waiting_on_customer and out[0].change is Change.customer_replied
    rec, out = apply_command(record(TicketState.closed), full_cmd(Action.reopen), NOW)
    assert (rec.ticket.state, rec.ticket.reopened, rec.ticket.closed_at) == (TicketState.open, 1, None)


@pytest.mark.parametrize(
    ("action", "missing", "message"),
    [
        (Action.reassign, {"team": None, "person": None}, "team or a person"),
        (Action.set_priority, {"priority": None}, "priority"),
        (Action.snooze, {"until": None}, "until"),
        (Action.comment, {"reason": " "}, "text"),
    ],
)
def test_commands_need_their_arguments(action: Action, missing: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        full_cmd(action, **missing)


GROUPED = RouteDecision(
    team="ops", priority="P1", policy="default", rule="root > db", group_by=("alertname", "cluster")
)


def test_group_keys() -> None:
    a = event(labels={"alertname": "Down", "cluster": "eu", "instance": "1"}, dedup_key="am/1")
    b = event(labels={"alertname": "Down", "cluster": "eu", "instance": "2"}, dedup_key="am/2")
    c = event(labels={"alertname": "Down", "cluster": "us", "instance": "3"}, dedup_key="am/3")
    assert group_key(a, DECISION) == "am/1", "no group_by: one ticket per alert"
    assert group_key(a, GROUPED) == group_key(b, GROUPED) != group_key(c, GROUPED)
    other_route = RouteDecision(
        team="ops", priority="P1", policy="default", rule="root > web", group_by=("alertname", "cluster")
    )
    assert group_key(a, other_route) != group_key(a, GROUPED)
    assert TicketInput(group_key="g", event=a).event == a


def test_a_group_counts_alerts_and_resolves_when_the_last_one_does() -> None:
    members: dict[str, Member] = {}

    def feed(
        rec: TicketRecord | None, alert: str, status: EventStatus, n: int
    ) -> tuple[TicketRecord | None, list[TicketEvent]]:
        ev = event(event_id=f"{alert}-{status.value}-{n}", dedup_key=alert, status=status)
        new, out, after = apply_event(rec, "tl-g", "group/x", ev, members.get(alert), GROUPED, NOW)
        if after is not None:
            members[alert] = after
        return new, out

    rec, out = feed(None, "a1", EventStatus.firing, 0)
    assert out[0].ticket.dedup_key == "group/x"
    for i in range(2, 6):
        rec, out = feed(rec, f"a{i}", EventStatus.firing, 0)
    rec, out = feed(rec, "a1", EventStatus.firing, 1)  # fires again with a new event
    same, dup = feed(rec, "a1", EventStatus.firing, 1)  # the very same event again (a sender's retry)
    assert dup == [] and same == rec
    assert rec is not None
    assert (rec.ticket.alerts, rec.ticket.alerts_firing, rec.ticket.occurrences) == (5, 5, 6)
    for i in range(1, 5):
        rec, out = feed(rec, f"a{i}", EventStatus.resolved, 0)
        assert out[0].change is Change.alert_resolved
    assert out[0].reason == "1 of 5 alerts still firing"
    rec, out = feed(rec, "a3", EventStatus.resolved, 1)  # already resolved: nothing
    assert out == []
    rec, out = feed(rec, "a5", EventStatus.resolved, 0)
    assert rec is not None
    assert out[0].change is Change.resolved and out[0].reason == "resolved by the source (all 5 alerts)"
    rec, out = feed(rec, "a2", EventStatus.firing, 2)
    assert rec is not None
    assert out[0].change is Change.reopened and rec.ticket.alerts_firing == 1


def test_a_team_decision_goes_to_whoever_is_on_call() -> None:
    found = OnCall("ops", "olga", T0 + timedelta(days=3), "rotation")
    decided = with_on_call(DECISION, found)
    assert decided.person == "olga"
    assert "owner olga (ops)" in decided.explain()
    assert "on call for ops: olga (rotation, until 2026-11-27T09:00:00+00:00)" in decided.explain()
    new, [opened], _ = apply_event(None, "tl-1", "am/fp1", event(), None, decided, NOW)
    assert new is not None and opened.ticket.person == "olga" and "on call for ops" in opened.reason
    assert with_on_call(DECISION, None) == DECISION, "nobody on call: the team keeps it"
    engineer = RouteDecision(team="ops", priority="P1", policy="default", rule="r", person="ian")
    assert with_on_call(engineer, found) == engineer, "a named person (the hypercare engineer) is not replaced"
    assert with_on_call(DECISION, OnCall("dba", "dan", T0, "rotation")) == DECISION


def test_reassigning_to_a_team_reassigns_to_its_on_call_person() -> None:
    to_team = Command(
        command_id="c1",
        ticket_id="tl-1",
        action=Action.reassign,
        actor="alice",
        reason="why",
        team="dba",
        issued_at=NOW,
        trace_id="t",
    )
    found = OnCall("dba", "dan", T0 + timedelta(hours=8), "override", "o1")
    resolved = reassign_on_call(to_team, found)
    assert resolved.person == "dan" and resolved.reason.startswith("why; on call for dba: dan (override o1")
    _, [change] = apply_command(record(), resolved, NOW)
    assert (change.change, change.ticket.team, change.ticket.person) == (Change.reassigned, "dba", "dan")
    named = to_team.model_copy(update={"person": "zoe"})
    assert reassign_on_call(named, found) == named
    assert reassign_on_call(to_team, None) == to_team
    assert reassign_on_call(cmd(Action.comment), found) == cmd(Action.comment)


FLAP = FlapPolicy(changes=3, within=timedelta(minutes=10), stable_for=timedelta(minutes=5))


def flip(
    rec: TicketRecord | None, member: Member | None, status: EventStatus, n: int, at: datetime
) -> tuple[TicketRecord | None, list[TicketEvent], Member | None]:
    ev = event(event_id=f"e{n}", status=status)
    return apply_event(rec, "tl-1", "am/fp1", ev, member, DECISION, at, FLAP)


def test_a_flapping_alert_holds_its_ticket_open_until_it_is_stable() -> None:
    at = NOW
    rec, _, m = flip(None, None, EventStatus.firing, 0, at)
    rec, [first], m = flip(rec, m, EventStatus.resolved, 1, at + timedelta(minutes=1))
    assert first.change is Change.resolved, "one change is not flapping"
    rec, [again], m = flip(rec, m, EventStatus.firing, 2, at + timedelta(minutes=2))
    assert again.change is Change.reopened
    rec, [held], m = flip(rec, m, EventStatus.resolved, 3, at + timedelta(minutes=3))
    assert rec is not None and m is not None
    assert held.change is Change.flapping and rec.ticket.state is TicketState.open
    assert rec.ticket.flapping and rec.ticket.stable_at == at + timedelta(minutes=8)
    assert "changed state 3 times within 0:10:00" in held.reason
    rec, [more], m = flip(rec, m, EventStatus.firing, 4, at + timedelta(minutes=4))
    assert rec is not None and more.change is Change.occurred and rec.ticket.state is TicketState.open
    rec, [last], m = flip(rec, m, EventStatus.resolved, 5, at + timedelta(minutes=5))
    assert rec is not None and last.change is Change.alert_resolved and "held: flapping" in last.reason
    stable_at = rec.ticket.stable_at
    assert stable_at == at + timedelta(minutes=10), "every change pushes the quiet time out"
    early = tick_command("tl-1", stable_at, stable_at - timedelta(seconds=1))
    same, nothing = apply_command(rec, early, stable_at - timedelta(seconds=1))
    assert nothing == [] and same.ticket == rec.ticket, "not due yet: nothing changes"
    due = tick_command("tl-1", stable_at, stable_at).model_copy(update={"command_id": "settle-2"})
    done, [resolved] = apply_command(rec, due, stable_at)
    assert resolved.change is Change.resolved and "stable after flapping" in resolved.reason
    assert not done.ticket.flapping and done.ticket.stable_at is None and done.ticket.state is TicketState.resolved
    assert apply_command(done, due, stable_at + timedelta(minutes=1)) == (done, []), "a repeat does nothing"


def test_a_flapping_ticket_still_firing_settles_open() -> None:
    rec, _, m = flip(None, None, EventStatus.firing, 0, NOW)
    for n, status in enumerate([EventStatus.resolved, EventStatus.firing, EventStatus.resolved, EventStatus.firing], 1):
        rec, _, m = flip(rec, m, status, n, NOW + timedelta(minutes=n))
    assert rec is not None and rec.ticket.flapping and rec.ticket.alerts_firing == 1
    assert rec.ticket.stable_at is not None
    _, [stable] = apply_command(rec, tick_command("tl-1", rec.ticket.stable_at, NOW), rec.ticket.stable_at)
    assert stable.change is Change.stable and stable.ticket.state is TicketState.open and not stable.ticket.flapping


def test_changes_spread_wider_than_the_window_are_not_flapping() -> None:
    rec, _, m = flip(None, None, EventStatus.firing, 0, NOW)
    changes = []
    for n, status in enumerate([EventStatus.resolved, EventStatus.firing, EventStatus.resolved], 1):
        rec, [out], m = flip(rec, m, status, n, NOW + timedelta(minutes=6 * n))
        changes.append(out.change)
    assert changes == [Change.resolved, Change.reopened, Change.resolved]
    assert rec is not None and not rec.ticket.flapping


def test_without_a_flap_policy_nothing_is_held() -> None:
    rec, _, m = apply_event(None, "tl-1", "am/fp1", event(event_id="e0"), None, DECISION, NOW)
    seen = []
    for n, status in enumerate([EventStatus.resolved, EventStatus.firing] * 3, 1):
        ev = event(event_id=f"e{n}", status=status)
        rec, [out], m = apply_event(rec, "tl-1", "am/fp1", ev, m, DECISION, NOW + timedelta(seconds=n))
        seen.append(out.change)
    assert seen == [Change.resolved, Change.reopened] * 3
    assert m is not None and m.changes == (), "no history is kept without a policy"


def test_member_state_round_trips_with_its_changes() -> None:
    member = Member("resolved", "e9", (NOW, NOW + timedelta(seconds=1.5)))
    assert Member.decode(member.encode()) == member
    assert Member.decode(b"firing\x1fe1") == Member("firing", "e1"), "the earlier two-field form still reads"


WAITING = RouteDecision(
    team="ops",
    priority="P1",
    policy="default",
    rule="r",
    group_by=("cluster",),
    group_wait=timedelta(seconds=30),
    group_interval=timedelta(minutes=5),
)


def join(rec: TicketRecord | None, n: int, at: datetime) -> TicketRecord:
    ev = event(event_id=f"e{n}", dedup_key=f"am/fp{n}")
    new, _, _ = apply_event(rec, "tl-1", "group/x", ev, None, WAITING, at)
    assert new is not None
    return new


def test_group_wait_holds_the_first_notification_and_sends_it_with_the_storm() -> None:
    rec = join(None, 0, NOW)
    assert rec.ticket.notify_at == NOW + timedelta(seconds=30) and rec.ticket.notified_at is None
    assert timer_due(rec.ticket) == NOW + timedelta(seconds=30)
    for n in range(1, 40):
        rec = join(rec, n, NOW + timedelta(seconds=n / 2))
    assert rec.ticket.notify_at == NOW + timedelta(seconds=30), "joining alerts do not push the first one out"
    early, nothing = apply_command(rec, tick_command("tl-1", NOW, NOW), NOW + timedelta(seconds=29))
    assert nothing == [] and early.ticket.notify_at == rec.ticket.notify_at
    due = NOW + timedelta(seconds=30)
    rec, [first] = apply_command(rec, tick_command("tl-1", due, due), due)
    assert first.change is Change.group_notified and first.reason == "group_wait over: 40 alerts (40 firing)"
    assert (rec.ticket.notified_alerts, rec.ticket.notified_at, rec.ticket.notify_at) == (40, due, None)
    assert timer_due(rec.ticket) is None


def test_group_interval_batches_joining_alerts_into_one_update() -> None:
    no_wait = RouteDecision(team="ops", priority="P1", policy="default", rule="r", group_interval=timedelta(minutes=5))
    new, [opened], _ = apply_event(None, "tl-1", "g", event(event_id="e0"), None, no_wait, NOW)
    assert new is not None and opened.change is Change.opened and new.ticket.notified_at == NOW
    rec = new
    for n in range(1, 11):
        ev = event(event_id=f"e{n}", dedup_key=f"am/fp{n}")
        after, _, _ = apply_event(rec, "tl-1", "g", ev, None, no_wait, NOW + timedelta(minutes=1))
        assert after is not None
        rec = after
    assert rec.ticket.notify_at == NOW + timedelta(minutes=5), "not before group_interval after the last one"
    due = NOW + timedelta(minutes=5)
    rec, [update] = apply_command(rec, tick_command("tl-1", due, due), due)
    assert update.change is Change.alerts_joined
    assert update.reason == "10 alerts joined since the last notification (11 in all, 11 firing)"
    ev = event(event_id="e99", dedup_key="am/fp99")
    later, _, _ = apply_event(rec, "tl-1", "g", ev, None, no_wait, due + timedelta(minutes=20))
    assert later is not None and later.ticket.notify_at == due + timedelta(minutes=20), "long quiet: at once"


def test_a_ticket_resolved_during_group_wait_sends_nothing_more() -> None:
    rec = join(None, 0, NOW)
    rec, _ = apply_command(rec, cmd(Action.resolve), NOW + timedelta(seconds=5))
    due = NOW + timedelta(seconds=30)
    after, out = apply_command(rec, tick_command("tl-1", due, due), due)
    assert out == [] and after.ticket.notify_at is None and timer_due(after.ticket) is None


@given(st.text(min_size=1, max_size=20), st.integers(min_value=1, max_value=16), st.data())
def test_a_ticket_minted_at_home_lands_on_its_groups_partition_and_the_same_event_mints_the_same_id(
    event_id: str, partitions: int, data: st.DataObject
) -> None:
    home = Home(data.draw(st.integers(min_value=0, max_value=partitions - 1)), partitions)
    minted = home_ticket_id(event_id, home)
    assert minted is not None and minted == home_ticket_id(event_id, home)
    assert partition_of(minted.encode(), partitions) == home.partition
    assert minted.startswith("tl-") and len(minted) == 19


def test_a_new_ticket_minted_at_home_is_inline_and_only_its_own_group_hands_over_in_place() -> None:
    home = Home(2, 4)
    fresh = assign(None, event(event_id="e1"), timedelta(hours=1), home).key_state
    assert fresh is not None and fresh.inline and fresh.ticket_id == home_ticket_id("e1", home)
    assert hands_over_in_place(fresh, fresh.ticket_id)
    assert not hands_over_in_place(fresh, "tl-someone-else")
    assert not hands_over_in_place(KeyState(ticket_id=fresh.ticket_id), fresh.ticket_id), "minted before: travels"
    assert not hands_over_in_place(None, fresh.ticket_id)
    resolved = apply_key_update(
        fresh, KeyUpdate(dedup_key="g", ticket_id=fresh.ticket_id, state=TicketState.resolved, at=T0)
    )
    assert resolved is not None and resolved.inline, "a resolve keeps the ticket inline"


def _change(change: Change, reason: str, version: int) -> TicketEvent:
    t = ticket(version=version)
    return TicketEvent(
        change_id=f"tl-1:{version}", change=change, actor="am", reason=reason, at=T0, ticket=t, trace_id="t"
    )


def test_occurrences_fold_into_the_latest_event_counting_each_reason_and_nothing_else_folds() -> None:
    first = Occurrences.of(_change(Change.occurred, "another alert joined", 2))
    assert first.event() == first.latest, "one occurrence is told as it was"
    folded = fold_occurrences(first, Occurrences.of(_change(Change.occurred, "another alert joined", 3)))
    folded = fold_occurrences(folded, Occurrences.of(_change(Change.occurred, "fired again", 4)))
    told = folded.event()
    assert told.ticket.version == 4 and told.change_id == "tl-1:4" and told.told == 3
    assert told.reason == "another alert joined (2 times); fired again"
    assert folds(first.latest)
    assert not any(folds(_change(c, "", 2)) for c in Change if c is not Change.occurred)
