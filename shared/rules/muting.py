"""Whether a notification about a ticket may go out now, and if not, why: the notifier's mute stage. Pure.

Three things mute a ticket's notifications while it is still recorded and kept to its deadlines:
maintenance windows (routing.yaml), silences (the REST API) and inhibition rules (routing.yaml). They are
checked when a notification is due, not only when the ticket opened, so a silence or a window that starts later
also quiets the reminders and escalations of tickets that are already open (as in Alertmanager).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Ticket
from shared.rules.inhibition import InhibitRule, inhibited_by
from shared.rules.maintenance import MaintenanceWindow, muted_until
from shared.rules.silences import Silence, silenced_by, ticket_labels


class MutingConfig(BaseModel):
    """The parts of routing.yaml the notifier reads (the router validates the whole file)."""

    model_config = ConfigDict(extra="ignore")

    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Mute:
    cause: Literal["maintenance", "silence", "inhibition"]
    reason: str


@dataclass(frozen=True)
class MuteState:
    """What the mute stage needs to know at one moment, read by the notifier just before it decides."""

    silences: Sequence[Silence] = ()
    firing: Sequence[tuple[str, dict[str, str]]] = ()
    config: MutingConfig = field(default_factory=MutingConfig)


def mute_for(ticket: Ticket, now: datetime, state: MuteState) -> Mute | None:
    """Why notifications about this ticket are muted now, or None when they may go out."""
    if ticket.muted_until is not None and now < ticket.muted_until:
        return Mute("maintenance", f"opened in a maintenance window; quiet until {ticket.muted_until.isoformat()}")
    labels = ticket_labels(ticket)
    until, windows = muted_until(labels, now, state.config.maintenance_windows)
    if until is not None:
        return Mute("maintenance", f"in maintenance window {', '.join(windows)} until {until.isoformat()}")
    silence = silenced_by(labels, state.silences, now)
    if silence is not None:
        return Mute("silence", silence.describe())
    found = inhibited_by(ticket.ticket_id, labels, state.firing, state.config.inhibit_rules)
    if found is not None:
        rule, source = found
        return Mute("inhibition", f"inhibited by firing ticket {source} (rule {rule.name})")
    return None
