"""Versioned wire schemas (pydantic v2) for everything ticketloop puts on Kafka.

Every message carries ``schema_version``; a consumer that meets a version it does not know dead-letters it
with that reason rather than guessing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Severity(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"


class EventStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class EventKind(StrEnum):
    alert = "alert"
    feedback = "feedback"


class TicketState(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Change(StrEnum):
    opened = "opened"
    occurred = "occurred"
    acknowledged = "acknowledged"
    resolved = "resolved"
    rejected = "rejected"


class Action(StrEnum):
    acknowledge = "acknowledge"
    resolve = "resolve"


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InboundEvent(Wire):
    """One normalised signal: an alert (firing or resolved) or a piece of customer feedback."""

    schema_version: Literal[1] = 1
    event_id: str = Field(min_length=1, max_length=128, description="stable: a re-sent signal has the same id")
    kind: EventKind
    source: str = Field(min_length=1, description="the integration that accepted it")
    dedup_key: str = Field(min_length=1, max_length=255)
    status: EventStatus
    summary: str = Field(min_length=1, max_length=1024)
    severity: Severity
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    occurred_at: datetime
    received_at: datetime
    trace_id: str


class Command(Wire):
    schema_version: Literal[1] = 1
    command_id: str
    ticket_id: str
    action: Action
    actor: str
    reason: str = ""
    issued_at: datetime
    trace_id: str


class Ticket(Wire):
    ticket_id: str
    dedup_key: str
    kind: EventKind
    source: str
    state: TicketState
    summary: str
    severity: Severity
    priority: str
    team: str
    person: str | None = None
    watchers: list[str] = Field(default_factory=list, description="teams copied on the ticket")
    channels: list[str] = Field(default_factory=list, description="channel kinds to use; empty: all of the team's")
    policy: str
    rule: str
    labels: dict[str, str] = Field(default_factory=dict)
    occurrences: int = Field(ge=1)
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    version: int = Field(ge=1)


class TicketEvent(Wire):
    """One change to one ticket, with the ticket as it is after the change."""

    schema_version: Literal[1] = 1
    change_id: str
    change: Change
    actor: str
    reason: str = ""
    at: datetime
    ticket: Ticket
    trace_id: str


class Escalation(Wire):
    schema_version: Literal[1] = 1
    escalation_id: str = Field(description="stable per ticket, clock and level: a re-fired timer repeats it")
    ticket_id: str
    level: int = Field(ge=1)
    target_team: str
    clock: Literal["acknowledge"] = "acknowledge"
    deadline: datetime
    fired_at: datetime
    reason: str
    ticket: Ticket
    trace_id: str


class Delivery(Wire):
    schema_version: Literal[1] = 1
    notification_id: str
    ticket_id: str
    kind: str
    channel: str
    recipient: str
    status: Literal["sent", "failed"]
    attempts: int
    error: str = ""
    at: datetime


class DeadLetter(Wire):
    schema_version: Literal[1] = 1
    service: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str = Field(description="the original bytes, decoded as UTF-8 with replacement")
    reason: str
    at: datetime
