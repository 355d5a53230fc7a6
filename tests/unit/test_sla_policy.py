from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.sla.clocks import finished, on_ticket_event, start_clock
from services.sla.firing import fire_due
from services.sla.outcomes import Outcome, outcomes
from services.sla.policy import SlaConfig
from shared.events import Change, EventKind, TicketEvent, TicketState
from tests.unit.factories import T0, ticket, ticket_event

CONFIG = SlaConfig.model_validate(
    {
        "policies": {
            "default": {
                "acknowledge": {"P1": "5m", "P3": "1h"},
                "escalation": [{"after": "0s", "team": "owner"}, {"after": "10m", "team": "leads"}],
            },
            "gold": {"acknowledge": {"P1": "1m"}, "escalation": [{"after": 0, "team": "owner"}]},
        }
    }
)


tev = ticket_event


def test_deadline_is_opened_at_plus_the_priority_target() -> None:
    assert start_clock(ticket(), CONFIG).deadline == T0 + timedelta(minutes=5)
    assert start_clock(ticket(priority="P3"), CONFIG).deadline == T0 + timedelta(hours=1)
    assert start_clock(ticket(priority="P4"), CONFIG).deadline == T0 + timedelta(hours=1), "unknown: the loosest target"
    gold = start_clock(ticket(policy="gold"), CONFIG)
    assert (gold.policy, gold.deadline) == ("gold", T0 + timedelta(minutes=1))
    assert start_clock(ticket(policy="nope"), CONFIG).policy == "default"


def test_chain_fires_each_level_once_in_order_then_is_exhausted() -> None:
    clock = start_clock(ticket(), CONFIG)
    deadline = T0 + timedelta(minutes=5)
    none, same = fire_due(clock, deadline - timedelta(seconds=1))
    assert none is None and same == clock
    breach, clock = fire_due(clock, deadline)
    assert breach is not None and (breach.kind, breach.escalation_id) == ("breach", "tl-1:acknowledge:1:breach")
    assert breach.reason.startswith("acknowledge target missed: not acknowledged by 2026-11-24T09:05:00")
    first, clock = fire_due(clock, deadline)
    assert first is not None
    assert (first.kind, first.level, first.target_team) == ("escalation", 1, "ops")
    assert first.escalation_id == "tl-1:acknowledge:1:1"
    nothing, clock = fire_due(clock, deadline + timedelta(minutes=9))
    assert nothing is None
    second, clock = fire_due(clock, deadline + timedelta(minutes=10))
    assert second is not None and (second.level, second.target_team) == (2, "leads")
    assert clock.state == "exhausted" and clock.next_due is None
    assert fire_due(clock, deadline + timedelta(days=1))[0] is None


def test_acknowledge_and_resolve_stop_the_clock() -> None:
    clock = on_ticket_event(None, tev(Change.opened, 1), CONFIG)
    assert clock is not None and clock.state == "running"
    for change, state in ((Change.acknowledged, TicketState.acknowledged), (Change.resolved, TicketState.resolved)):
        stopped = on_ticket_event(clock, tev(change, 2, state=state), CONFIG)
        assert stopped is not None and stopped.state == "stopped" and stopped.next_due is None
        assert fire_due(stopped, T0 + timedelta(days=1))[0] is None


def test_occurrences_keep_the_clock_and_replays_are_no_ops() -> None:
    clock = on_ticket_event(None, tev(Change.opened, 1), CONFIG)
    assert clock is not None
    after = on_ticket_event(clock, tev(Change.occurred, 2, occurrences=2), CONFIG)
    assert after is not None and after.state == "running" and after.deadline == clock.deadline and after.version == 2
    acked = on_ticket_event(after, tev(Change.acknowledged, 3, state=TicketState.acknowledged), CONFIG)
    replayed_open = on_ticket_event(acked, tev(Change.opened, 1), CONFIG)
    assert replayed_open == acked and acked is not None and acked.state == "stopped"


def test_no_clock_for_a_ticket_first_seen_closed() -> None:
    assert on_ticket_event(None, tev(Change.resolved, 3, state=TicketState.resolved), CONFIG) is None


def test_a_policy_edit_does_not_change_a_running_clock() -> None:
    clock = start_clock(ticket(), CONFIG)
    edited = SlaConfig.model_validate(
        {"policies": {"default": {"acknowledge": {"P1": "1h"}, "escalation": [{"after": "0s", "team": "x"}]}}}
    )
    later = on_ticket_event(clock, tev(Change.occurred, 2), edited)
    assert later is not None and later.deadline == clock.deadline and later.levels == clock.levels


def test_a_clock_keeps_the_policy_version_it_started_under_and_says_so() -> None:
    v3 = CONFIG.model_copy(update={"version": 3})
    clock = start_clock(ticket(), v3)
    assert clock.policy_version == 3
    v4 = SlaConfig.model_validate(
        {
            "version": 4,
            "policies": {"default": {"acknowledge": {"P1": "1h"}, "escalation": [{"after": 0, "team": "x"}]}},
        }
    )
    later = on_ticket_event(clock, tev(Change.occurred, 2), v4)
    assert later is not None and (later.policy_version, later.deadline) == (3, clock.deadline)
    breach, later = fire_due(later, clock.deadline)
    assert breach is not None and breach.reason.endswith("(policy default v3)")
    restarted = on_ticket_event(later, tev(Change.reassigned, 3, at=T0 + timedelta(hours=1)), v4)
    assert restarted is not None and restarted.policy_version == 4, "a new chain starts under the current version"
    assert CONFIG.version == 1, "a file without a version is version 1"


def test_a_customers_contract_picks_the_policy_before_the_route_does() -> None:
    contracts = CONFIG.model_copy(update={"contracts": {"acme": "gold"}})
    acme = start_clock(ticket(customer="acme", policy="default"), contracts)
    assert (acme.policy, acme.deadline) == ("gold", T0 + timedelta(minutes=1))
    other = start_clock(ticket(customer="globex", policy="default"), contracts)
    assert (other.policy, other.deadline) == ("default", T0 + timedelta(minutes=5))
    assert start_clock(ticket(customer=None), contracts).policy == "default"


def test_a_contract_must_name_a_policy_that_exists() -> None:
    with pytest.raises(ValidationError, match=r"contracts\.acme: no policy 'platinum'"):
        SlaConfig.model_validate(
            {
                "contracts": {"acme": "platinum"},
                "policies": {"default": {"acknowledge": {"P1": "5m"}, "escalation": [{"after": 0, "team": "x"}]}},
            }
        )


@given(st.integers(min_value=0, max_value=100_000))
def test_escalation_never_fires_before_the_deadline(offset_s: int) -> None:
    clock = start_clock(ticket(), CONFIG)
    now = T0 + timedelta(seconds=offset_s)
    esc, _ = fire_due(clock, now)
    assert (esc is not None) == (now >= clock.deadline)


def test_reopen_unacknowledge_and_reassign_start_a_new_chain() -> None:
    clock = on_ticket_event(None, tev(Change.opened, 1), CONFIG)
    assert clock is not None
    first, clock = fire_due(clock, T0 + timedelta(minutes=5))
    assert first is not None
    acked = on_ticket_event(clock, tev(Change.acknowledged, 2, state=TicketState.acknowledged), CONFIG)
    assert acked is not None
    for version, change in ((3, Change.unacknowledged), (3, Change.reassigned), (3, Change.reopened)):
        at = T0 + timedelta(hours=1)
        event = TicketEvent(
            change_id=f"tl-1:{version}", change=change, actor="x", at=at, ticket=ticket(version=version), trace_id="t"
        )
        restarted = on_ticket_event(acked, event, CONFIG)
        assert restarted is not None
        assert (restarted.state, restarted.fired, restarted.deadline) == ("running", 0, at + timedelta(minutes=5))
        again, _ = fire_due(restarted, at + timedelta(minutes=5))
        assert again is not None
        assert again.escalation_id != first.escalation_id, "a new chain is not swallowed as a duplicate"


def test_snooze_holds_escalations_until_it_ends() -> None:
    until = T0 + timedelta(minutes=30)
    clock = start_clock(ticket(snoozed_until=until), CONFIG)
    assert clock.next_due == until
    assert fire_due(clock, T0 + timedelta(minutes=10))[0] is None
    esc, _ = fire_due(clock, until)
    assert esc is not None and esc.level == 1


BUSINESS = SlaConfig.model_validate(
    {
        "calendars": {"cn": {"time_zone": "Asia/Shanghai", "hours": ["09:00-18:00"], "china": True}},
        "policies": {
            "default": {"acknowledge": {"P1": "15m"}, "escalation": [{"after": "0s", "team": "owner"}]},
            "business": {
                "calendar": "cn",
                "acknowledge": {"P2": "2h"},
                "escalation": [{"after": "0s", "team": "owner"}, {"after": "1h", "team": "leads"}],
            },
        },
    }
)


def test_a_business_hours_policy_counts_working_time_and_never_escalates_at_night() -> None:
    sh = ZoneInfo("Asia/Shanghai")
    friday_evening = datetime(2025, 11, 21, 17, 30, tzinfo=sh)
    t = ticket(policy="business", priority="P2", opened_at=friday_evening)
    clock = start_clock(t, BUSINESS)
    assert clock.deadline == datetime(2025, 11, 24, 10, 30, tzinfo=sh), "30 min on Friday, 90 on Monday"
    assert clock.next_due == clock.deadline
    saturday_3am = datetime(2025, 11, 22, 3, 0, tzinfo=sh)
    assert fire_due(clock, saturday_3am)[0] is None
    breach, clock = fire_due(clock, clock.deadline)
    assert breach is not None and breach.kind == "breach"
    first, clock = fire_due(clock, clock.deadline)
    assert first is not None and first.target_team == "ops"
    assert clock.next_due == datetime(2025, 11, 24, 11, 30, tzinfo=sh)
    evening = start_clock(
        ticket(policy="business", priority="P2", opened_at=datetime(2025, 11, 24, 16, 30, tzinfo=sh)), BUSINESS
    )
    assert evening.deadline == datetime(2025, 11, 25, 9, 30, tzinfo=sh), "90 min today, the last 30 tomorrow"
    assert evening.levels[1].due == datetime(2025, 11, 25, 10, 30, tzinfo=sh)
    assert start_clock(ticket(opened_at=friday_evening), BUSINESS).deadline == friday_evening + timedelta(minutes=15)


def test_a_policy_must_name_a_calendar_that_exists() -> None:
    with pytest.raises(ValidationError, match=r"policies\.default\.calendar: no calendar 'nope'"):
        SlaConfig.model_validate(
            {
                "policies": {
                    "default": {
                        "calendar": "nope",
                        "acknowledge": {"P1": "1m"},
                        "escalation": [{"after": 0, "team": "owner"}],
                    }
                }
            }
        )


WARNING = SlaConfig.model_validate(
    {
        "policies": {
            "default": {
                "acknowledge": {"P1": "8s"},
                "warnings": [0.5, 0.75],
                "escalation": [{"after": "0s", "team": "owner"}, {"after": "10s", "team": "leads"}],
            }
        }
    }
)
SEC = timedelta(seconds=1)


def test_warnings_come_before_the_deadline_then_the_chain() -> None:
    clock = start_clock(ticket(), WARNING)
    assert clock.next_due == T0 + 4 * SEC
    assert fire_due(clock, T0 + 3 * SEC)[0] is None
    first, clock = fire_due(clock, T0 + 4 * SEC)
    assert first is not None and (first.kind, first.level, first.target_team) == ("warning", 1, "ops")
    assert first.reason.startswith("50% of the acknowledge target used; the deadline is 2026-11-24T09:00:08")
    assert first.escalation_id == "tl-1:acknowledge:1:warning:1"
    second, clock = fire_due(clock, T0 + 6 * SEC)
    assert second is not None and second.kind == "warning" and second.level == 2 and "75%" in second.reason
    breach, clock = fire_due(clock, T0 + 8 * SEC)
    assert breach is not None and breach.kind == "breach"
    level1, clock = fire_due(clock, T0 + 8 * SEC)
    assert level1 is not None and (level1.kind, level1.level) == ("escalation", 1)
    assert clock.next_due == T0 + 18 * SEC


def test_warnings_not_sent_by_the_deadline_are_dropped() -> None:
    first, clock = fire_due(start_clock(ticket(), WARNING), T0 + 5 * SEC)
    assert first is not None and first.kind == "warning"
    breach, clock = fire_due(clock, T0 + 9 * SEC)  # a tick after the deadline (say, after a restart)
    assert breach is not None and breach.kind == "breach"
    assert clock.warned == 2, "the 75% warning is moot after the breach"
    escalation, clock = fire_due(clock, T0 + 9 * SEC)
    assert escalation is not None and escalation.kind == "escalation"
    assert clock.next_due == T0 + 18 * SEC


def test_acknowledging_stops_the_warnings_too() -> None:
    clock = start_clock(ticket(), WARNING)
    acked = on_ticket_event(clock, tev(Change.acknowledged, 2, state=TicketState.acknowledged), WARNING)
    assert acked is not None and acked.next_due is None


def test_warning_shares_are_validated() -> None:
    base = {"acknowledge": {"P1": "1m"}, "escalation": [{"after": 0, "team": "owner"}]}
    for bad, message in (([1.5], "between 0 and 1"), ([0.9, 0.75], "increasing"), ([0.5, 0.5], "distinct")):
        with pytest.raises(ValidationError, match=message):
            SlaConfig.model_validate({"policies": {"default": {**base, "warnings": bad}}})


def test_the_last_level_repeats_until_acknowledged_up_to_the_limit() -> None:
    config = SlaConfig.model_validate(
        {
            "policies": {
                "default": {
                    "acknowledge": {"P1": "10s"},
                    "escalation": [{"after": "0s", "team": "owner"}, {"after": "1m", "team": "leads"}],
                    "repeat": {"every": "5m", "limit": 2},
                }
            }
        }
    )
    clock = start_clock(ticket(), config)
    fired = []
    now = T0
    while (due := clock.next_due) is not None:
        now = due
        esc, clock = fire_due(clock, now)
        assert esc is not None
        if esc.kind == "escalation":
            fired.append((esc.level, esc.target_team, esc.fired_at - T0))
    assert fired == [
        (1, "ops", timedelta(seconds=10)),
        (2, "leads", timedelta(seconds=70)),
        (3, "leads", timedelta(seconds=370)),
        (4, "leads", timedelta(seconds=670)),
    ]
    assert clock.state == "exhausted", "the limit ends the chain"
    halfway = start_clock(ticket(), config)
    _, halfway = fire_due(halfway, T0 + 10 * SEC)
    _, halfway = fire_due(halfway, T0 + 10 * SEC)
    acked = on_ticket_event(halfway, tev(Change.acknowledged, 2, state=TicketState.acknowledged), config)
    assert acked is not None and acked.next_due is None, "acknowledging stops the repeats"
    with pytest.raises(ValidationError, match="limit"):
        SlaConfig.model_validate(
            {
                "policies": {
                    "default": {
                        "acknowledge": {"P1": "1m"},
                        "escalation": [{"after": 0, "team": "owner"}],
                        "repeat": {"every": "5m", "limit": 0},
                    }
                }
            }
        )


def test_the_breach_is_at_the_deadline_once_even_when_the_first_level_waits() -> None:
    config = SlaConfig.model_validate(
        {"policies": {"default": {"acknowledge": {"P1": "10s"}, "escalation": [{"after": "10m", "team": "leads"}]}}}
    )
    clock = start_clock(ticket(), config)
    assert clock.next_due == T0 + 10 * SEC
    breach, clock = fire_due(clock, T0 + 12 * SEC)
    assert breach is not None and (breach.kind, breach.target_team) == ("breach", "ops")
    assert clock.breached and clock.next_due == T0 + 10 * SEC + timedelta(minutes=10)
    assert fire_due(clock, T0 + 13 * SEC)[0] is None, "one breach per clock"
    level, clock = fire_due(clock, T0 + timedelta(minutes=11))
    assert level is not None and (level.kind, level.target_team) == ("escalation", "leads")
    reopened = on_ticket_event(clock, tev(Change.reopened, 2), config)
    assert reopened is not None and not reopened.breached, "a restarted clock can breach again"


def test_outcomes_measure_acknowledgement_against_the_deadline_and_resolution_from_opening() -> None:
    clock = start_clock(ticket(), CONFIG)  # P1: 5 minutes
    in_time = tev(Change.acknowledged, 2, state=TicketState.acknowledged, acknowledged_at=T0 + timedelta(minutes=4))
    assert outcomes(clock, in_time) == [Outcome(kind="acknowledged", seconds=240, within_target=True)]
    late = tev(Change.acknowledged, 2, state=TicketState.acknowledged, acknowledged_at=T0 + timedelta(minutes=6))
    assert outcomes(clock, late) == [Outcome(kind="acknowledged", seconds=360, within_target=False)]
    assert outcomes(clock, tev(Change.acknowledged, 1)) == [], "a replay settles nothing"
    assert outcomes(None, late) == []
    exhausted = clock.model_copy(update={"state": "exhausted"})  # every escalation level has fired
    assert outcomes(exhausted, late) == [Outcome(kind="acknowledged", seconds=360, within_target=False)]
    stopped = on_ticket_event(clock, in_time, CONFIG)
    assert stopped is not None
    resolved = tev(Change.resolved, 3, state=TicketState.resolved, resolved_at=T0 + timedelta(hours=2))
    assert outcomes(stopped, resolved) == [Outcome(kind="resolved", seconds=7200)]
    assert outcomes(stopped, tev(Change.occurred, 3, occurrences=2)) == [], "only acknowledgements and resolutions"


def waiting(version: int, at: datetime, *, waiting_on_customer: bool, **over: object) -> TicketEvent:
    change = Change.waiting_on_customer if waiting_on_customer else Change.customer_replied
    return ticket_event(change, version, at=at, waiting_on_customer=waiting_on_customer, **over)


def test_waiting_on_the_customer_pauses_the_clock_and_the_reply_resumes_it_with_the_time_left() -> None:
    clock = start_clock(ticket(), CONFIG)  # P1: 5 minutes, levels at +0 and +10 minutes
    minute = timedelta(minutes=1)
    paused = on_ticket_event(clock, waiting(2, T0 + 2 * minute, waiting_on_customer=True), CONFIG)
    assert paused is not None and paused.paused_at == T0 + 2 * minute and paused.next_due is None
    assert fire_due(paused, T0 + 30 * minute)[0] is None, "nothing fires while waiting on the customer"
    still = on_ticket_event(paused, tev(Change.commented, 3, waiting_on_customer=True), CONFIG)
    assert still is not None and still.paused_at == paused.paused_at, "a pause is not restarted by other changes"
    resumed = on_ticket_event(still, waiting(4, T0 + 62 * minute, waiting_on_customer=False), CONFIG)
    assert resumed is not None and resumed.paused_at is None and resumed.paused_s == 3600
    assert resumed.deadline == T0 + 65 * minute, "3 of 5 minutes were left when it paused"
    assert [lvl.due for lvl in resumed.levels] == [T0 + 65 * minute, T0 + 75 * minute]
    assert resumed.next_due == T0 + 65 * minute
    assert on_ticket_event(resumed, waiting(2, T0, waiting_on_customer=True), CONFIG) == resumed, "replay: no-op"


def test_a_pause_in_business_hours_keeps_the_working_time_left_across_the_weekend() -> None:
    sh = ZoneInfo("Asia/Shanghai")
    opened = datetime(2025, 11, 20, 16, 0, tzinfo=sh)  # Thursday; 2 working hours: due 18:00
    clock = start_clock(ticket(policy="business", priority="P2", opened_at=opened), BUSINESS)
    assert clock.deadline == datetime(2025, 11, 20, 18, 0, tzinfo=sh)
    at = datetime(2025, 11, 20, 17, 0, tzinfo=sh)
    paused = on_ticket_event(
        clock, waiting(2, at, waiting_on_customer=True, policy="business", priority="P2"), BUSINESS
    )
    assert paused is not None
    reply = datetime(2025, 11, 21, 17, 30, tzinfo=sh)  # Friday 17:30: 30 working minutes that day, 30 on Monday
    resumed = on_ticket_event(
        paused, waiting(3, reply, waiting_on_customer=False, policy="business", priority="P2"), BUSINESS
    )
    assert resumed is not None and resumed.deadline == datetime(2025, 11, 24, 9, 30, tzinfo=sh)
    assert resumed.levels[1].due == datetime(2025, 11, 24, 10, 30, tzinfo=sh), "level 2 still one working hour on"


def test_a_clock_is_finished_once_its_ticket_is_resolved_or_closed_not_before() -> None:
    from services.sla.clocks import finished

    clock = start_clock(ticket(), CONFIG)
    assert not finished(clock)
    acked = on_ticket_event(clock, tev(Change.acknowledged, 2, state=TicketState.acknowledged), CONFIG)
    assert acked is not None and acked.state == "stopped" and not finished(acked), "kept: resolve is still to come"
    for change, state in ((Change.resolved, TicketState.resolved), (Change.closed, TicketState.closed)):
        done = on_ticket_event(acked, tev(change, 3, state=state), CONFIG)
        assert done is not None and finished(done)
    exhausted = clock.model_copy(update={"state": "exhausted"})
    assert not finished(exhausted), "an unacknowledged ticket whose chain ran out is still open"


def test_a_lead_level_and_its_repeats_are_for_the_team_lead() -> None:
    config = SlaConfig.model_validate(
        {
            "policies": {
                "default": {
                    "acknowledge": {"P1": "1m"},
                    "escalation": [{"after": "0s", "team": "owner"}, {"after": "5m", "team": "leads", "lead": True}],
                    "repeat": {"every": "5m", "limit": 1},
                }
            }
        }
    )
    clock = start_clock(ticket(), config)
    fired = []
    while (due := clock.next_due) is not None:
        esc, clock = fire_due(clock, due)
        assert esc is not None
        if esc.kind == "escalation":
            fired.append((esc.level, esc.target_team, esc.to_lead))
    assert fired == [(1, "ops", False), (2, "leads", True), (3, "leads", True)]


RESOLVING = SlaConfig.model_validate(
    {
        "policies": {
            "default": {
                "acknowledge": {"P1": "5m"},
                "resolve": {"P1": "1h", "P3": "8h"},
                "warnings": [0.5],
                "escalation": [{"after": 0, "team": "owner"}],
            }
        }
    }
)
MINUTE = timedelta(minutes=1)


def test_the_resolve_clock_runs_on_after_acknowledgement_warns_breaches_and_stops_at_resolve() -> None:
    clock = start_clock(ticket(), RESOLVING)
    assert clock.targets["resolve"].deadline == T0 + 60 * MINUTE
    assert start_clock(ticket(priority="P5"), RESOLVING).targets["resolve"].deadline == T0 + 8 * 60 * MINUTE, "loosest"
    assert start_clock(ticket(), CONFIG).targets == {}, "no resolve targets: no resolve clock"
    warning, clock = fire_due(clock, T0 + 2.5 * MINUTE)
    assert warning is not None and (warning.clock, warning.kind) == ("acknowledge", "warning")
    acked = on_ticket_event(clock, tev(Change.acknowledged, 2, state=TicketState.acknowledged), RESOLVING)
    assert acked is not None and acked.state == "stopped"
    assert acked.next_due == T0 + 30 * MINUTE, "acknowledging stops the acknowledge clock, not the resolve clock"
    assert fire_due(acked, T0 + 29 * MINUTE)[0] is None
    half, acked = fire_due(acked, T0 + 30 * MINUTE)
    assert half is not None and (half.clock, half.kind, half.escalation_id) == (
        "resolve",
        "warning",
        "tl-1:resolve:1:warning:1",
    )
    assert half.reason.startswith("50% of the resolve target used") and half.deadline == T0 + 60 * MINUTE
    breach, acked = fire_due(acked, T0 + 61 * MINUTE)
    assert breach is not None and (breach.clock, breach.kind, breach.escalation_id) == (
        "resolve",
        "breach",
        "tl-1:resolve:1:breach",
    )
    assert breach.reason.startswith("resolve target missed: not resolved by 2026-11-24T10:00:00")
    assert acked.next_due is None and fire_due(acked, T0 + 2 * 60 * MINUTE)[0] is None, "one breach"
    resolved = on_ticket_event(acked, tev(Change.resolved, 3, state=TicketState.resolved), RESOLVING)
    assert resolved is not None and finished(resolved)


def test_resolving_in_time_ends_the_resolve_clock_before_it_warns() -> None:
    clock = start_clock(ticket(), RESOLVING)
    resolved = on_ticket_event(clock, tev(Change.resolved, 2, state=TicketState.resolved), RESOLVING)
    assert resolved is not None and resolved.next_due is None


def test_a_new_owner_keeps_the_resolve_deadline_and_a_reopen_starts_a_new_one() -> None:
    clock = start_clock(ticket(), RESOLVING)
    moved = on_ticket_event(clock, tev(Change.reassigned, 2, at=T0 + 10 * MINUTE), RESOLVING)
    assert moved is not None and moved.deadline == T0 + 15 * MINUTE, "a new acknowledge chain"
    assert moved.targets["resolve"] == clock.targets["resolve"]
    back = on_ticket_event(moved, tev(Change.reopened, 3, at=T0 + 90 * MINUTE), RESOLVING)
    assert back is not None
    assert (back.targets["resolve"].deadline, back.targets["resolve"].started_version) == (T0 + 150 * MINUTE, 3)


def test_waiting_on_the_customer_holds_the_resolve_deadline_too() -> None:
    clock = start_clock(ticket(), RESOLVING)
    wait = tev(Change.waiting_on_customer, 2, at=T0 + 10 * MINUTE, waiting_on_customer=True)
    paused = on_ticket_event(clock, wait, RESOLVING)
    assert paused is not None and paused.next_due is None
    reply = tev(Change.customer_replied, 3, at=T0 + 40 * MINUTE, waiting_on_customer=False)
    resumed = on_ticket_event(paused, reply, RESOLVING)
    assert resumed is not None and resumed.targets["resolve"].deadline == T0 + 90 * MINUTE, "50 minutes were left"


def test_a_resolution_is_measured_against_the_resolve_target_when_there_is_one() -> None:
    clock = start_clock(ticket(), RESOLVING)
    late = tev(Change.resolved, 2, state=TicketState.resolved, resolved_at=T0 + 61 * MINUTE)
    assert outcomes(clock, late) == [Outcome(kind="resolved", seconds=61 * 60, within_target=False)]
    plain = start_clock(ticket(), CONFIG)
    assert outcomes(plain, late) == [Outcome(kind="resolved", seconds=61 * 60, within_target=None)]


RESPONDING = SlaConfig.model_validate(
    {
        "policies": {
            "default": {
                "acknowledge": {"P1": "5m"},
                "first_response": {"P1": "30m"},
                "update": {"P1": "2h"},
                "escalation": [{"after": 0, "team": "owner"}],
            }
        }
    }
)


def test_feedback_gets_a_first_response_target_that_a_comment_or_a_question_meets() -> None:
    feedback = start_clock(ticket(kind=EventKind.feedback), RESPONDING)
    assert feedback.targets["first_response"].deadline == T0 + 30 * MINUTE
    assert "first_response" not in start_clock(ticket(), RESPONDING).targets, "alerts have no reporter to answer"
    acked = on_ticket_event(
        feedback, tev(Change.acknowledged, 2, kind=EventKind.feedback, state=TicketState.acknowledged), RESPONDING
    )
    assert acked is not None and "first_response" in acked.targets, "acknowledging is not an answer"
    breach, _ = fire_due(acked, T0 + 31 * MINUTE)
    assert breach is not None and (breach.clock, breach.kind) == ("first_response", "breach")
    assert breach.reason.startswith("first response target missed: no response to the reporter by")
    for answer in (Change.commented, Change.waiting_on_customer):
        answered = on_ticket_event(feedback, tev(answer, 2, kind=EventKind.feedback, at=T0 + 10 * MINUTE), RESPONDING)
        assert answered is not None and "first_response" not in answered.targets, answer


def test_a_workaround_sent_at_opening_is_the_first_response() -> None:
    opened = tev(Change.opened, 1, kind=EventKind.feedback).model_copy(
        update={"workaround": "restart the agent", "notify_reporter": True}
    )
    clock = on_ticket_event(None, opened, RESPONDING)
    assert clock is not None and "first_response" not in clock.targets and "update" in clock.targets


def test_the_update_interval_starts_again_with_every_update_and_breaches_once_per_interval() -> None:
    clock = start_clock(ticket(), RESPONDING)
    assert clock.targets["update"].deadline == T0 + 120 * MINUTE
    acked = on_ticket_event(clock, tev(Change.acknowledged, 2, state=TicketState.acknowledged), RESPONDING)
    assert acked is not None
    comment = tev(Change.commented, 3, at=T0 + 100 * MINUTE, state=TicketState.acknowledged)
    commented = on_ticket_event(acked, comment, RESPONDING)
    assert commented is not None and commented.targets["update"].deadline == T0 + 220 * MINUTE
    assert fire_due(commented, T0 + 219 * MINUTE)[0] is None
    breach, commented = fire_due(commented, T0 + 221 * MINUTE)
    assert breach is not None and (breach.clock, breach.escalation_id) == ("update", "tl-1:update:3:breach")
    assert breach.reason.startswith("update interval missed: the customer had no update by")
    assert fire_due(commented, T0 + 300 * MINUTE)[0] is None, "one breach per interval"
    reply = tev(Change.customer_replied, 4, at=T0 + 310 * MINUTE, state=TicketState.acknowledged)
    replied = on_ticket_event(commented, reply, RESPONDING)
    assert replied is not None and replied.targets["update"].deadline == T0 + 430 * MINUTE
    again, _ = fire_due(replied, T0 + 430 * MINUTE)
    assert again is not None and again.escalation_id == "tl-1:update:4:breach", "the next interval breaches anew"


def test_the_intervals_length_is_the_one_the_ticket_started_under() -> None:
    clock = start_clock(ticket(), RESPONDING)
    shorter = RESPONDING.model_copy(
        update={"policies": {"default": RESPONDING.policies["default"].model_copy(update={"update": {"P1": MINUTE}})}}
    )
    commented = on_ticket_event(clock, tev(Change.commented, 2, at=T0 + 10 * MINUTE), shorter)
    assert commented is not None and commented.targets["update"].deadline == T0 + 130 * MINUTE


def business(acknowledge: str, days: list[str], hours: list[str], **policy: object) -> dict[str, object]:
    return {
        "calendars": {"biz": {"days": days, "hours": hours}},
        "policies": {
            "default": {
                "calendar": "biz",
                "acknowledge": {"P1": acknowledge},
                "escalation": [{"after": "0s", "team": "owner"}],
                **policy,
            }
        },
    }


WEEK = ["mon", "tue", "wed", "thu", "fri"]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (business("20s", [], ["09:00-10:00"]), "a business calendar needs working days (or always: true)"),
        (business("36500d", ["mon"], ["09:00-09:01"]), "more than five years of calendar 'biz' hold"),
        (business("2000d", WEEK, ["09:00-18:00"]), "more than five years of calendar 'biz' hold"),
        (
            business("1h", WEEK, ["09:00-18:00"], repeat={"every": "30d", "limit": 100}),
            "its targets, escalation and repeats take",
        ),
    ],
)
def test_a_policy_whose_clocks_would_run_out_of_its_calendar_is_refused(
    config: dict[str, object], problem: str
) -> None:
    """Else starting such a ticket's clock raised ("no working time within 3660 days") in the sla worker: its
    event went to the dead-letter topic, and the ticket had no clock and no escalation."""
    with pytest.raises(ValidationError, match=re.escape(problem)):
        SlaConfig.model_validate(config)


def test_a_policy_that_fits_its_calendar_is_taken() -> None:
    config = SlaConfig.model_validate(business("400d", WEEK, ["09:00-18:00"], resolve={"P1": "30d"}))
    policy = config.policies["default"]
    deadline = config.calendar_for(policy).calendar.add(T0, policy.acknowledge["P1"])
    assert deadline - T0 < timedelta(days=5 * 365)
