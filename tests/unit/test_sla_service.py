"""The sla worker's processor (services/sla/service.py) on the in-memory broker: ticket events move the clocks,
the punctuation fires what is due in order and only once, an acknowledgement stops the chain, a resolution
forgets the clock, a bad record is dead-lettered, and a proposal left on ``sla-due`` by the faust worker fires."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
from prometheus_client import CollectorRegistry

from services.sla.clocks import ClockDue
from services.sla.policy import SlaConfig
from services.sla.service import CLOCKS, SlaDeps, SlaMetrics, SlaProcessor
from shared.events import Change, TicketEvent, TicketState
from shared.streaming.codec import encode
from shared.streaming.memory import MemoryBroker
from shared.streaming.topics import Topics
from tests.unit.factories import T0, ticket_event

CONFIG = SlaConfig.model_validate(
    {
        "policies": {
            "default": {
                "acknowledge": {"P1": "5m"},
                "warnings": [0.5],
                "escalation": [{"after": "0s", "team": "owner"}, {"after": "10m", "team": "leads"}],
            }
        }
    }
)
TOPICS = Topics("u.", 4)


def broker() -> tuple[MemoryBroker, SlaProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    processor = SlaProcessor(SlaDeps(TOPICS, CONFIG, registry), SlaMetrics.register(registry))
    return MemoryBroker(processor, processor.topics, partitions=4), processor, registry


def send(mem: MemoryBroker, ev: TicketEvent) -> None:
    mem.produce(TOPICS.tickets.name, ev.ticket.ticket_id.encode(), encode(ev))
    mem.run()


def fired(mem: MemoryBroker) -> list[tuple[str, str, int]]:
    out = []
    for r in mem.records(TOPICS.escalations.name):
        e = orjson.loads(r.value or b"")
        out.append((e["ticket_id"], e["kind"], e["level"]))
    return out


def at(t: datetime) -> float:
    return t.timestamp()


def clocks(mem: MemoryBroker) -> dict[bytes, bytes]:
    return {k: v for task in mem.tasks.values() for k, v in task.tables[CLOCKS].items()}


def test_the_warning_the_breach_and_each_level_fire_once_when_due() -> None:
    mem, _, registry = broker()
    send(mem, ticket_event(Change.opened, 1))
    assert list(clocks(mem)) == [b"tl-1"]
    mem.punctuate(at(T0 + timedelta(minutes=2)))
    assert fired(mem) == [], "nothing due yet"
    mem.punctuate(at(T0 + timedelta(minutes=2, seconds=31)))
    assert fired(mem) == [("tl-1", "warning", 1)]
    mem.punctuate(at(T0 + timedelta(minutes=5, seconds=1)))
    mem.punctuate(at(T0 + timedelta(minutes=5, seconds=2)))
    assert fired(mem) == [("tl-1", "warning", 1), ("tl-1", "breach", 1), ("tl-1", "escalation", 1)]
    mem.punctuate(at(T0 + timedelta(minutes=15, seconds=1)))
    assert fired(mem)[-1] == ("tl-1", "escalation", 2)
    mem.punctuate(at(T0 + timedelta(hours=5)))
    assert len(fired(mem)) == 4, "the chain is over: nothing fires twice"
    assert registry.get_sample_value("ticketloop_sla_armed_clocks_count") == 0


def test_an_acknowledgement_stops_the_chain_and_a_resolution_forgets_the_clock() -> None:
    mem, _, registry = broker()
    send(mem, ticket_event(Change.opened, 1))
    assert registry.get_sample_value("ticketloop_sla_armed_clocks_count") is not None
    send(mem, ticket_event(Change.acknowledged, 2, at=T0 + timedelta(minutes=1), state=TicketState.acknowledged))
    mem.punctuate(at(T0 + timedelta(hours=1)))
    assert fired(mem) == []
    send(mem, ticket_event(Change.resolved, 3, at=T0 + timedelta(minutes=2), state=TicketState.resolved))
    assert clocks(mem) == {}
    changelog = [(r.key, r.value) for r in mem.records("memory-clocks-changelog")]
    assert changelog[-1] == (b"tl-1", None), "a tombstone"
    labels = {"team": "ops", "priority": "P1", "customer": "", "project": "", "within_target": "true"}
    assert registry.get_sample_value("ticketloop_sla_acknowledged_total", labels) == 1


def test_response_times_and_compliance_are_counted_by_the_tickets_project_and_customer() -> None:
    mem, _, registry = broker()
    acked_at, resolved_at = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    send(mem, ticket_event(Change.opened, 1, project="webshop", customer="acme"))
    acked = ticket_event(
        Change.acknowledged, 2, at=acked_at, state=TicketState.acknowledged, project="webshop", customer="acme"
    )
    send(mem, acked)
    resolved = ticket_event(
        Change.resolved,
        3,
        at=resolved_at,
        state=TicketState.resolved,
        resolved_at=resolved_at,
        project="webshop",
        customer="acme",
    )
    send(mem, resolved)
    who = {"team": "ops", "priority": "P1", "project": "webshop", "customer": "acme"}
    assert registry.get_sample_value("ticketloop_sla_time_to_acknowledge_seconds_sum", who) == 60
    assert registry.get_sample_value("ticketloop_sla_time_to_acknowledge_seconds_count", who) == 1
    assert registry.get_sample_value("ticketloop_sla_time_to_resolve_seconds_sum", who) == 180
    assert registry.get_sample_value("ticketloop_sla_acknowledged_total", {**who, "within_target": "true"}) == 1


def test_a_replayed_event_changes_nothing() -> None:
    mem, _, _ = broker()
    opened = ticket_event(Change.opened, 1)
    send(mem, opened)
    before = clocks(mem)
    send(mem, ticket_event(Change.acknowledged, 2, state=TicketState.acknowledged))
    send(mem, opened)  # read again after a crash
    mem.punctuate(at(T0 + timedelta(hours=1)))
    assert fired(mem) == [] and clocks(mem) != before


def test_a_record_that_does_not_decode_is_dead_lettered_and_the_rest_go_on() -> None:
    mem, _, _ = broker()
    mem.produce(TOPICS.tickets.name, b"tl-1", b"{not json")
    send(mem, ticket_event(Change.opened, 1))
    [dead] = mem.records(TOPICS.deadletter.name)
    assert orjson.loads(dead.value or b"")["topic"] == TOPICS.tickets.name
    assert list(clocks(mem)) == [b"tl-1"]
    assert mem.dead_lettered == {"undecodable": 1}


def test_a_proposal_left_on_sla_due_by_the_faust_worker_fires_its_clock() -> None:
    """T0 is days before the test runs: by now the whole chain is overdue, and the proposal fires all of it (a
    warning whose deadline has passed is not sent)."""
    mem, _, _ = broker()
    send(mem, ticket_event(Change.opened, 1))
    proposal = ClockDue(ticket_id="tl-1", due=T0 + timedelta(minutes=5), proposed_at=T0)
    mem.produce(TOPICS.sla_due.name, b"tl-1", encode(proposal))
    mem.run()
    assert fired(mem) == [("tl-1", "breach", 1), ("tl-1", "escalation", 1), ("tl-1", "escalation", 2)]
    mem.punctuate(at(T0 + timedelta(days=30)))
    assert len(fired(mem)) == 3
