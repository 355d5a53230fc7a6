"""One routing decision per event: made where the event is assigned, carried through the grouping hop to its
ticket, and applied there even when the routing changed in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.router.decision import carried_decision, decide_event
from services.router.grouping import group_key
from services.router.hop import (
    TicketInput,
    TicketInputRecord,
    decode_input,
    encode_input,
    grouped_input,
    grouped_inputs,
)
from services.router.lifecycle import apply_event
from services.router.projects import ProjectsConfig
from services.router.rules import RouteDecision, RoutingConfig
from shared.rules.oncall import Override, TeamsConfig
from shared.streaming.codec import DecodeError, encode
from tests.unit.factories import T0, event

BEFORE = RoutingConfig.model_validate(
    {
        "route": {
            "team": "ops",
            "routes": [{"name": "db", "matchers": ['service="db"'], "team": "dba", "group_by": ["service"]}],
        }
    }
)
AFTER = RoutingConfig.model_validate(
    {"route": {"team": "ops", "routes": [{"name": "db", "matchers": ['service="db"'], "team": "storage"}]}}
)
TEAMS = TeamsConfig.model_validate(
    {"people": {"ann": {"email": "ann@example.com"}}, "teams": {"dba": {"members": ["ann"]}}}
)


def test_the_ticket_gets_the_decision_its_event_was_assigned_with_even_after_a_routing_reload() -> None:
    ev = event(labels={"service": "db", "instance": "db-1"})
    decided = decide_event(ev, BEFORE, ProjectsConfig(), TEAMS, [])
    item = TicketInput(group_key=group_key(ev, decided), event=ev, decision=decided)
    assert item.group_key != ev.dedup_key, "grouped by service: one more hop to the group's partition"

    # the grouping hop: the record on the grouped topic carries the decision
    hop = grouped_input(item.group_key, encode_input(item))
    assert hop == item

    # routing reloaded between the hops: the ticket's writer applies what was decided, not the new tree
    decision = carried_decision(hop.decision, hop.event, AFTER, ProjectsConfig(), TEAMS, [])
    assert decision.team == "dba" and decision.rule == decided.rule
    new, changes, _ = apply_event(None, "tl-1", hop.group_key, ev, None, decision, T0)
    assert new is not None and new.ticket.team == "dba"
    assert changes[0].reason == decided.explain()


def test_an_event_written_before_decisions_were_carried_is_decided_again_at_its_ticket() -> None:
    ev = event(labels={"service": "db"})
    old = grouped_input("group/abc", encode(ev))  # the grouped topic used to hold the bare event
    assert old == TicketInput(group_key="group/abc", event=ev)
    assert carried_decision(old.decision, old.event, AFTER, ProjectsConfig(), TEAMS, []).team == "storage"


def test_on_call_is_part_of_the_decision_at_the_time_the_event_was_received() -> None:
    ev = event(labels={"service": "db"})
    override = Override(
        override_id="o1",
        team="dba",
        person="ann",
        starts_at=T0 - timedelta(hours=1),
        ends_at=T0 + timedelta(hours=1),
        created_by="lead",
        reason="cover",
        created_at=T0 - timedelta(hours=2),
    )
    decided = decide_event(ev, BEFORE, ProjectsConfig(), TEAMS, [override])
    assert decided.person == "ann" and decided.on_call
    later = ev.model_copy(update={"received_at": T0 + timedelta(hours=2)})
    assert decide_event(later, BEFORE, ProjectsConfig(), TEAMS, [override]).person is None


def test_a_decision_survives_the_wire_whole() -> None:
    full = RouteDecision(
        team="dba",
        priority="P1",
        policy="gold",
        rule="root > db",
        person="ann",
        channels=("slack-dba",),
        watchers=("ops",),
        group_by=("service",),
        group_wait=timedelta(seconds=30),
        group_interval=timedelta(minutes=5),
        project="billing",
        customer="acme",
        phase="hypercare",
        next_level="operations",
        project_reason="project billing (acme), phase hypercare",
        muted_until=datetime(2026, 12, 6, tzinfo=UTC),
        muted_by=("dc-move",),
        on_call="on call: ann",
    )
    ev = event()
    for decision in (full, RouteDecision(team="ops", priority="P3", policy="default", rule="root")):
        item = TicketInput(group_key="g", event=ev, decision=decision)
        assert decode_input(encode_input(item)).decision == decision
        earlier = TicketInputRecord.model_validate_json(encode_input(item))  # as the release before reads it
        assert (earlier.group_key, earlier.event, earlier.decision) == (item.group_key, ev, decision)


def test_a_record_written_by_the_release_before_is_read_alike() -> None:
    # pydantic wrote the hop before msgspec did; a duration of a year and more it writes in years ("P1Y35D"),
    # which msgspec does not read: that record is read by pydantic, as it was
    ev = event()
    for wait in (timedelta(seconds=30), timedelta(days=400)):
        decision = RouteDecision(team="ops", priority="P3", policy="default", rule="root", group_wait=wait)
        before = TicketInputRecord(group_key="g", event=ev, decision=decision)
        written = encode(before)
        assert decode_input(written) == TicketInput("g", ev, decision)
        assert grouped_inputs("g", b"[" + written + b"," + written + b"]") == [TicketInput("g", ev, decision)] * 2


def test_the_event_travels_as_the_bytes_it_was_read_as() -> None:
    ev = event()
    read = encode(ev).replace(b'"schema_version":1', b'"schema_version": 1')  # any JSON intake wrote
    item = TicketInput("g", ev, None, read)
    written = encode_input(item)
    assert read in written, "carried as it is, not encoded again"
    assert decode_input(written) == item and decode_input(written).raw == read


def test_a_batch_of_hops_decodes_whole_in_order_and_a_bad_item_is_named() -> None:
    items = [
        TicketInput(
            group_key=f"g{i}",
            event=event(event_id=f"e{i}"),
            decision=decide_event(event(), BEFORE, ProjectsConfig(), TEAMS, []),
        )
        for i in range(3)
    ]
    batch = b"[" + b",".join(encode_input(i) for i in items) + b"]"
    assert grouped_inputs("g0", batch) == items
    assert grouped_inputs(items[1].group_key, encode_input(items[1])) == [items[1]], "a record of one, as before"
    broken = batch.replace(b'"e2"', b"2")
    with pytest.raises(DecodeError, match=r"2\.event\.event_id"):
        grouped_inputs("g0", broken)
