"""What-if replay: a recorded ticket event stream run against an SLA config, on a simulated clock.

Pure: the same clock code the sla service runs (services.sla.policy), driven by the events' own times instead of
the wall clock, and the same timer index (services.sla.timers). Every warning, breach and escalation fires exactly
at its due time. Replaying one stream against the live config and a changed one, then comparing, says which
tickets would have breached, warned or escalated differently before the change goes live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.sla.clocks import Clock, on_ticket_event
from services.sla.firing import fire_due
from services.sla.policy import SlaConfig
from services.sla.timers import TimerIndex, to_ts
from shared.events import Escalation, TicketEvent


@dataclass(frozen=True, slots=True)
class Summary:
    """What the SLA did to one ticket over the replay."""

    breaches: int = 0
    warnings: int = 0
    escalations: int = 0
    top_level: int = 0

    def describe(self) -> str:
        breached = "breached" if self.breaches else "met"
        return f"{breached}, {self.warnings} warning(s), {self.escalations} escalation(s) (top level {self.top_level})"


@dataclass
class Replay:
    """The outcome of one replay: per ticket what fired, in order."""

    version: int = 1  # the replayed sla.yaml's version
    events: int = 0
    fired: dict[str, list[Escalation]] = field(default_factory=dict)
    tickets: set[str] = field(default_factory=set)

    def summary(self, ticket_id: str) -> Summary:
        fired = self.fired.get(ticket_id, [])
        levels = [f.level for f in fired if f.kind == "escalation"]
        return Summary(
            breaches=sum(f.kind == "breach" for f in fired),
            warnings=sum(f.kind == "warning" for f in fired),
            escalations=len(levels),
            top_level=max(levels, default=0),
        )

    def totals(self) -> Summary:
        per = [self.summary(t) for t in self.tickets]
        return Summary(
            breaches=sum(s.breaches > 0 for s in per),
            warnings=sum(s.warnings for s in per),
            escalations=sum(s.escalations for s in per),
            top_level=max((s.top_level for s in per), default=0),
        )


MAX_FIRES_PER_DUE = 1000  # a clock that keeps being due at the same moment is a bug, not a reason to hang


def replay(
    events: Iterable[TicketEvent],
    config: SlaConfig,
    *,
    until: datetime | None = None,
    progress: Callable[[int], object] | None = None,
) -> Replay:
    """Run ``events`` (in the order of their ``at``; recorded order among equal times) against ``config``.

    Timers fire at their due times between events; after the last event the simulated clock runs on to
    ``until`` (default: the last event's time), so tickets still open then have not yet breached.
    """
    result = Replay(version=config.version)
    clocks: dict[str, Clock] = {}

    def due_of(ticket_id: str) -> float | None:
        clock = clocks.get(ticket_id)
        return None if clock is None else to_ts(clock.next_due)

    index = TimerIndex[str](due_of)
    last: datetime | None = None

    def run_until(now: datetime) -> None:
        while (due := index.next_due()) is not None and due <= now:
            for ticket_id in index.pop_due(due):
                clock = clocks[ticket_id]
                for _ in range(MAX_FIRES_PER_DUE):
                    at = clock.next_due
                    if at is None or at > due:
                        break
                    escalation, clock = fire_due(clock, at)
                    if escalation is None:
                        break
                    result.fired.setdefault(ticket_id, []).append(escalation)
                clocks[ticket_id] = clock
                index.set(ticket_id, clock.next_due)  # popped: nothing of it is left in the index

    for n, event in enumerate(sorted(events, key=lambda e: e.at), start=1):
        run_until(event.at)
        ticket_id = event.ticket.ticket_id
        result.tickets.add(ticket_id)
        before = clocks.get(ticket_id)
        after = on_ticket_event(before, event, config)
        if after is not None:
            clocks[ticket_id] = after
            index.set(ticket_id, after.next_due, was=None if before is None else before.next_due)
        result.events = n
        last = event.at
        if progress is not None:
            progress(1)
    end = until or last
    if end is not None:
        run_until(end)
    return result


@dataclass(frozen=True, slots=True)
class Difference:
    ticket_id: str
    before: Summary
    after: Summary


def compare(before: Replay, after: Replay) -> list[Difference]:
    """Tickets whose breach, warnings or escalations differ between two replays of the same stream."""
    out = []
    for ticket_id in sorted(before.tickets | after.tickets):
        b, a = before.summary(ticket_id), after.summary(ticket_id)
        if a != b:
            out.append(Difference(ticket_id, b, a))
    return out
