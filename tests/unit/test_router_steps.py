"""The router's steps driven in memory, as its agents drive them on the broker: an event is routed, hops to its
group, is assigned a ticket, opens it; a command acts on it; the group follows the ticket's changes. No broker."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.router.grouping import Home, KeyState, KeyUpdate, apply_key_update
from services.router.hop import TicketInput
from services.router.lifecycle import Member, TicketRecord
from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig
from services.router.steps import (
    Config,
    Out,
    UnknownTicketError,
    assign_step,
    changes_out,
    command_step,
    route_step,
    ticket_step,
)
from shared.events import Action, Change, Command, EventStatus, TicketEvent, TicketState
from shared.rules.oncall import Override, TeamsConfig
from shared.streaming.topics import partition_of
from tests.unit.factories import T0, event

GROUPED = RoutingConfig.model_validate(
    {
        "route": {
            "team": "ops",
            "routes": [{"name": "db", "matchers": ['service="db"'], "team": "dba", "group_by": ["service"]}],
        }
    }
)
TEAMS = TeamsConfig.model_validate({"people": {"ann": {}}, "teams": {"dba": {"members": ["ann"]}}})
CONFIG = Config(GROUPED, ProjectsConfig(), TEAMS)
WINDOW = timedelta(minutes=30)


class Memory:
    """The router's tables and topics as dicts and lists: what the agents would hold and send."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.groups: dict[str, KeyState] = {}
        self.tickets: dict[str, TicketRecord] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.sent: list[Out] = []

    def intake(self, item: TicketInput) -> None:
        routed, hop = route_step(item, self.config)
        self.sent += hop
        self.assign(routed if not hop else hop[0].value)  # type: ignore[arg-type]  # the grouped record is one

    def assign(self, item: TicketInput) -> None:
        after, out = assign_step(self.groups.get(item.group_key), item, WINDOW)
        if after is not None:
            self.groups[item.group_key] = after
        self.sent += out
        for o in out:
            self.ticket(o.key, o.value)  # type: ignore[arg-type]

    def ticket(self, ticket_id: str, item: TicketInput) -> None:
        key = (ticket_id, item.event.dedup_key)
        new, member, changes = ticket_step(
            self.tickets.get(ticket_id), self.members.get(key), ticket_id, item, T0, self.config
        )
        if new is not None:
            self.tickets[ticket_id] = new
        if member is not None:
            self.members[key] = member
        self.follow(changes_out(ticket_id, changes))

    def command(self, cmd: Command) -> None:
        new, changes = command_step(self.tickets.get(cmd.ticket_id), cmd, T0, self.config)
        if new is not None:
            self.tickets[cmd.ticket_id] = new
        self.follow(changes_out(cmd.ticket_id, changes))

    def follow(self, out: list[Out]) -> None:
        self.sent += out
        for o in out:
            if o.to == "key_updates" and isinstance(o.value, KeyUpdate):
                after = apply_key_update(self.groups.get(o.key), o.value)
                if after is None:
                    self.groups.pop(o.key, None)
                else:
                    self.groups[o.key] = after

    def topic(self, name: str) -> list[Out]:
        return [o for o in self.sent if o.to == name]


def alert(i: int, status: EventStatus = EventStatus.firing) -> TicketInput:
    ev = event(event_id=f"e{i}", dedup_key=f"am/db-{i}", labels={"service": "db", "instance": f"db-{i}"}, status=status)
    return TicketInput(group_key=ev.dedup_key, event=ev)


def test_a_storm_of_one_group_hops_once_each_and_opens_one_ticket_owned_by_whoever_is_on_call() -> None:
    overrides = [
        Override(
            override_id="o1",
            team="dba",
            person="ann",
            starts_at=T0 - timedelta(hours=1),
            ends_at=T0 + timedelta(hours=1),
            created_by="lead",
            created_at=T0 - timedelta(hours=2),
        )
    ]
    loop = Memory(Config(GROUPED, ProjectsConfig(), TEAMS, overrides))
    for i in range(5):
        loop.intake(alert(i))
    assert len(loop.topic("grouped")) == 5, "each event goes one hop to its group's partition"
    assert len(loop.tickets) == 1
    [record] = loop.tickets.values()
    assert (record.ticket.team, record.ticket.person, record.ticket.alerts) == ("dba", "ann", 5)
    first = loop.topic("tickets")[0].value
    assert isinstance(first, TicketEvent) and first.change is Change.opened


def test_an_ungrouped_event_is_assigned_where_it_is_and_a_resolve_without_a_ticket_sends_nothing() -> None:
    loop = Memory(Config(RoutingConfig.model_validate({"route": {"team": "ops"}}), ProjectsConfig(), TeamsConfig()))
    loop.intake(alert(1, EventStatus.resolved))
    assert loop.sent == [] and loop.tickets == {}
    loop.intake(alert(2))
    assert loop.topic("grouped") == [] and len(loop.topic("ticket_inputs")) == 1
    [record] = loop.tickets.values()
    assert record.ticket.team == "ops"


def test_a_command_acts_on_its_ticket_and_a_resolve_frees_the_group() -> None:
    loop = Memory(CONFIG)
    loop.intake(alert(1))
    [ticket_id] = loop.tickets
    group = loop.tickets[ticket_id].ticket.dedup_key
    assert loop.groups[group].ticket_id == ticket_id
    resolve = Command(
        command_id="c1", ticket_id=ticket_id, action=Action.resolve, actor="ann", reason="", issued_at=T0, trace_id="t"
    )
    loop.command(resolve)
    assert loop.tickets[ticket_id].ticket.state is TicketState.resolved
    assert any(o.to == "key_updates" for o in loop.sent), "the group learns its ticket resolved"


def test_a_command_for_a_ticket_this_partition_does_not_hold_is_refused_with_the_reason() -> None:
    cmd = Command(
        command_id="c9",
        ticket_id="tl-nope",
        action=Action.acknowledge,
        actor="a",
        reason="",
        issued_at=T0,
        trace_id="t",
    )
    with pytest.raises(UnknownTicketError, match="tl-nope"):
        command_step(None, cmd, T0, CONFIG)


def test_an_event_whose_group_lives_on_its_own_partition_is_assigned_where_it_is_read() -> None:
    ev = event(labels={"service": "db", "instance": "db-1"})
    routed, hop = route_step(TicketInput(group_key=ev.dedup_key, event=ev), CONFIG)
    assert routed.group_key != ev.dedup_key and len(hop) == 1, "not knowing where it was read: it hops"
    home = partition_of(routed.group_key.encode(), 4)
    here, hop_here = route_step(TicketInput(group_key=ev.dedup_key, event=ev), CONFIG, Home(home, 4))
    assert (here, hop_here) == (routed, []), "read on its group's partition: assigned at once, the same decision"
    _, hop_away = route_step(TicketInput(group_key=ev.dedup_key, event=ev), CONFIG, Home((home + 1) % 4, 4))
    assert [(o.to, o.key, o.value) for o in hop_away] == [("grouped", routed.group_key, routed)]
