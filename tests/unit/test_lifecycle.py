from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.lifecycle import (
    SEEN_LIMIT,
    TRANSITIONS,
    Assignment,
    KeyState,
    KeyUpdate,
    TicketRecord,
    apply_command,
    apply_event,
    apply_key_update,
    assign,
    key_update_for,
    new_ticket_id,
)
from services.router.rules import RouteDecision
from shared.events import Action, Change, Command, EventStatus, TicketEvent, TicketState
from tests.unit.factories import T0, event, ticket

DECISION = RouteDecision(team="ops", priority="P1", policy="default", rule="r")
NOW = T0 + timedelta(minutes=1)


def cmd(action: Action, command_id: str = "c1") -> Command:
    return Command(
        command_id=command_id, ticket_id="tl-1", action=action, actor="alice", reason="why", issued_at=NOW, trace_id="t"
    )


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
    rec, out = apply_event(record(TicketState.resolved), "tl-1", event(event_id="again"), DECISION, NOW)
    assert rec is not None
    assert out[0].change is Change.reopened and out[0].reason == "the problem recurred"
    assert (rec.ticket.state, rec.ticket.reopened, rec.ticket.occurrences, rec.ticket.resolved_at) == (
        TicketState.open,
        1,
        2,
        None,
    )
    closed, out = apply_event(record(TicketState.closed), "tl-1", event(event_id="late"), DECISION, NOW)
    assert closed is not None and closed.ticket.state is TicketState.closed and out[0].change is Change.occurred


def test_ticket_ids_are_deterministic_so_replays_land_on_the_same_ticket() -> None:
    assert new_ticket_id("e1") == new_ticket_id("e1") != new_ticket_id("e2")


def test_first_event_opens_a_routed_ticket() -> None:
    rec, out = apply_event(None, "tl-1", event(), DECISION, NOW)
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
    assert apply_event(None, "tl-1", event(status=EventStatus.resolved), DECISION, NOW) == (None, [])


def test_repeats_count_occurrences_and_duplicates_are_ignored() -> None:
    rec, _ = apply_event(None, "tl-1", event(), DECISION, NOW)
    assert rec is not None
    later = T0 + timedelta(minutes=5)
    rec2, out = apply_event(rec, "tl-1", event(event_id="e2", occurred_at=later), DECISION, NOW)
    assert rec2 is not None
    assert out[0].change is Change.occurred and out[0].ticket.occurrences == 2 and out[0].ticket.last_seen == later
    rec3, out3 = apply_event(rec2, "tl-1", event(event_id="e2"), DECISION, NOW)
    assert out3 == [] and rec3 == rec2


def test_source_resolution_resolves_once() -> None:
    rec, out = apply_event(record(), "tl-1", event(event_id="r1", status=EventStatus.resolved), DECISION, NOW)
    assert rec is not None
    assert out[0].change is Change.resolved and out[0].ticket.resolved_at == NOW and out[0].actor == "am"
    again, out2 = apply_event(rec, "tl-1", event(event_id="r2", status=EventStatus.resolved), DECISION, NOW)
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


def test_acknowledge_stamps_time_and_duplicate_command_is_ignored() -> None:
    rec, _out = apply_command(record(), cmd(Action.acknowledge), NOW)
    assert rec.ticket.acknowledged_at == NOW
    same, again = apply_command(rec, cmd(Action.acknowledge), NOW)
    assert again == [] and same == rec


def test_seen_ids_are_bounded() -> None:
    rec = record()
    for i in range(SEEN_LIMIT + 50):
        rec, _ = apply_event(rec, "tl-1", event(event_id=f"x{i}"), DECISION, NOW)  # type: ignore[assignment]
    assert len(rec.seen) == SEEN_LIMIT


@given(st.lists(st.sampled_from(["fire", "resolve", "ack", "close"]), max_size=30))
def test_versions_only_grow_and_resolved_tickets_have_a_time(steps: list[str]) -> None:
    rec, _ = apply_event(None, "tl-1", event(), DECISION, NOW)
    assert rec is not None
    for i, step in enumerate(steps):
        before = rec.ticket.version
        at = datetime(2026, 11, 24, tzinfo=UTC) + timedelta(seconds=i)
        if step == "fire":
            nxt, _ = apply_event(rec, "tl-1", event(event_id=f"f{i}"), DECISION, at)
        elif step == "resolve":
            nxt, _ = apply_event(rec, "tl-1", event(event_id=f"r{i}", status=EventStatus.resolved), DECISION, at)
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
@pytest.mark.parametrize("action", list(Action))
def test_every_action_in_every_state_is_applied_or_rejected_never_dropped(state: TicketState, action: Action) -> None:
    rec, out = apply_command(record(state), full_cmd(action), NOW)
    allowed, change = TRANSITIONS[action]
    assert len(out) == 1, "every command leaves a trace on the timeline"
    assert rec.ticket.version == 2
    guarded = action is Action.customer_replied  # allowed states, but the ticket is not waiting
    if state in allowed and not guarded:
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
