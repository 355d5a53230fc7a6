"""Silences, as Alertmanager has them: matchers, a start, an end, who made it and why. Pure.

A silence mutes notifications about the tickets whose labels it matches while it is active; the tickets are
recorded and move through their lifecycle as usual, and each muted notification is logged with the silence
that muted it. Silences are created, listed and expired through the REST API (``/api/v1/silences``) and
``ticketloop silence``; the SQL database holds them, so every service sees the same ones.

Expiring a silence ends it now rather than deleting it, so the record of who muted what stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Ticket
from shared.rules.matchers import MatcherList, matcher_labels, parse_matcher
from shared.rules.windows import TimeWindowRequest

SilenceState = Literal["pending", "active", "expired"]
MAX_DURATION = timedelta(days=366)


class SilenceRequest(TimeWindowRequest):
    """The body of ``POST /api/v1/silences``: an end time or a duration, and always a creator and a comment."""

    matchers: MatcherList = Field(min_length=1, description='Alertmanager matchers, e.g. service="db"')
    created_by: str = Field(min_length=1, max_length=256)
    comment: str = Field(min_length=1, max_length=4000)

    def window(self, now: datetime, longest: timedelta | None = MAX_DURATION) -> tuple[datetime, datetime]:
        return super().window(now, longest)


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    silence_id: str
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime

    def state(self, now: datetime) -> SilenceState:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether every matcher matches. A silence whose regex RE2 cannot read (stored before matchers were RE2's:
        a lookaround, a backreference) matches nothing: the notifications it would have muted go out, rather than
        every batch it is checked against failing."""
        try:
            matchers = [parse_matcher(m) for m in self.matchers]
        except ValueError:
            return False
        return all(m.matches(labels) for m in matchers)

    def describe(self) -> str:
        return f"silence {self.silence_id} by {self.created_by} until {self.ends_at.isoformat()}: {self.comment}"


def ticket_labels(ticket: Ticket) -> dict[str, str]:
    """What matchers see of a ticket: its labels plus severity, source and kind (as routing sees an event)."""
    return matcher_labels(ticket.labels, ticket.severity.value, ticket.source, ticket.kind.value)


def silenced_by(labels: dict[str, str], silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The active silence that mutes these labels (the one lasting longest), or None."""
    found = [s for s in silences if s.state(now) == "active" and s.matches(labels)]
    return max(found, key=lambda s: s.ends_at) if found else None
