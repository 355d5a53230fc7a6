"""How a ticket did against its clock when it was acknowledged or resolved: the SLA metrics' outcomes. Pure."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.sla.clocks import Clock
from shared.events import Change, TicketEvent


class Outcome(BaseModel):
    """What a ticket event settled, for the SLA panels: an acknowledgement (against the clock's deadline) or a
    resolution (from opening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["acknowledged", "resolved"]
    seconds: float = Field(ge=0)
    within_target: bool | None = Field(
        default=None,
        description="by the deadline (acknowledgements; resolutions when the policy sets a resolve target)",
    )


def outcomes(before: Clock | None, event: TicketEvent) -> list[Outcome]:
    """The outcomes a (new, not replayed) ticket event settles, given the clock before it."""
    t = event.ticket
    if before is None or t.version <= before.version:
        return []
    out: list[Outcome] = []
    # an exhausted clock (every escalation level fired) is still waiting for its acknowledgement: a late one counts
    if before.state in ("running", "exhausted") and event.change is Change.acknowledged:
        acked_at = t.acknowledged_at or event.at
        start = before.started_at or t.opened_at
        seconds = max((acked_at - start).total_seconds(), 0.0)
        out.append(Outcome(kind="acknowledged", seconds=seconds, within_target=acked_at <= before.deadline))
    if event.change is Change.resolved and t.resolved_at is not None:
        seconds = max((t.resolved_at - t.opened_at).total_seconds(), 0.0)
        resolve = before.targets.get("resolve")
        within = None if resolve is None else t.resolved_at <= resolve.deadline
        out.append(Outcome(kind="resolved", seconds=seconds, within_target=within))
    return out
