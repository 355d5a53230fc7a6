"""Versioned wire schemas (pydantic v2) for everything ticketloop puts on Kafka.

Every message carries ``schema_version``; a consumer that meets a version it does not know dead-letters it
with that reason rather than guessing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


class Severity(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"


class EventStatus(StrEnum):
    firing = "firing"
    acknowledged = "acknowledged"
    """the source says someone is on it (PagerDuty's acknowledge)"""
    resolved = "resolved"


class EventKind(StrEnum):
    alert = "alert"
    feedback = "feedback"
    heartbeat = "heartbeat"
    """a beat of a dead man's switch (services/router/heartbeats.py): never a ticket itself; its absence is"""


class TicketState(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
    closed = "closed"


class Change(StrEnum):
    opened = "opened"
    occurred = "occurred"
    alert_resolved = "alert_resolved"
    reopened = "reopened"
    acknowledged = "acknowledged"
    unacknowledged = "unacknowledged"
    resolved = "resolved"
    closed = "closed"
    reassigned = "reassigned"
    commented = "commented"
    snoozed = "snoozed"
    priority_changed = "priority_changed"
    waiting_on_customer = "waiting_on_customer"
    customer_replied = "customer_replied"
    rejected = "rejected"
    flapping = "flapping"
    stable = "stable"
    group_notified = "group_notified"
    """group_wait is over: the first notification, with the alerts collected so far"""
    alerts_joined = "alerts_joined"
    """group_interval is over and alerts joined since the last notification"""
    rated = "rated"
    """the reporter answered the satisfaction survey of a resolved feedback ticket (or changed the answer)"""
    workaround_answered = "workaround_answered"
    """the reporter said whether the known issue's workaround they were sent solved their problem"""
    noted = "noted"
    """the system wrote a note on the timeline (the handover package in force): no one is told, no clock moves"""


class Action(StrEnum):
    acknowledge = "acknowledge"
    unacknowledge = "unacknowledge"
    resolve = "resolve"
    close = "close"
    reopen = "reopen"
    reassign = "reassign"
    comment = "comment"
    snooze = "snooze"
    set_priority = "set_priority"
    wait_on_customer = "wait_on_customer"
    customer_replied = "customer_replied"
    rate = "rate"
    """The reporter's survey answer (1-5, ``reason`` its comment), only through the survey link they were mailed."""
    answer_workaround = "answer_workaround"
    """The reporter's "this solved it / it did not" about the workaround they were mailed (``solved``)."""
    tick = "tick"
    """System: the router's own timer says a ticket has something due (flapping settles, grouped notifications)."""
    note = "note"
    """System: a note on the timeline (a new handover package in force); not a response to anyone."""


EARLIEST_YEAR, LATEST_YEAR = 1970, 9000

MAX_EVENT_BYTES = 256 * 1024
"""The most an inbound event may be, as JSON on the events topic. What the router writes of one event (the ticket,
its change, the hop to the ticket's partition) is a small multiple of it, and every record must stay under the
broker's 1 MiB: an event that made a larger one could never be committed, and its partition would stop behind it.
(PagerDuty takes up to 512 KB an event, Opsgenie 15,000 characters a description.)"""


def bounded_time(value: datetime) -> datetime:
    """A time every part of the loop can store and compute with: in UTC between 1970 and 9000 (a naive time is
    read as UTC). Anything else is a ValueError, which pydantic answers as a 422 naming the field."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # compared with aware times later on
    if EARLIEST_YEAR < value.year < LATEST_YEAR:  # no offset (under a day) takes it past either bound
        return aware
    try:
        utc = aware.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST_YEAR <= utc.year <= LATEST_YEAR:
        raise ValueError(f"a time between the years {EARLIEST_YEAR} and {LATEST_YEAR} (UTC)")
    return aware


BoundedTime = Annotated[datetime, AfterValidator(bounded_time)]


def _unset(value: object) -> bool:
    return value is None


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
    occurred_at: BoundedTime
    received_at: BoundedTime
    trace_id: str


class InboundEventWire(msgspec.Struct, kw_only=True, gc=False):
    """InboundEvent's fields in its order, as msgspec writes them (``shared.streaming.codec.encode_wire``):
    intake's lean path (services/intake/formats/alertmanager.py) writes its events' bytes with it instead of
    building and validating an InboundEvent each. It checks nothing: whoever makes one makes sure InboundEvent
    takes its values (lengths, bounded times); ``codec.decode(InboundEvent, ...)`` then reads its bytes as the event
    with the same values (tests/unit/test_alertmanager_lean.py holds both paths to the same bytes)."""

    schema_version: int = SCHEMA_VERSION
    event_id: str
    kind: EventKind
    source: str
    dedup_key: str
    status: EventStatus
    summary: str
    severity: Severity
    labels: dict[str, str]
    annotations: dict[str, str]
    links: list[str]
    occurred_at: datetime
    received_at: datetime
    trace_id: str


class Command(Wire):
    schema_version: Literal[1] = 1
    command_id: str
    ticket_id: str
    action: Action
    actor: str
    reason: str = Field(default="", max_length=4000)
    team: str | None = Field(default=None, min_length=1, description="reassign: the new team")
    person: str | None = Field(default=None, min_length=1, description="reassign: the new owner")
    priority: str | None = Field(default=None, pattern=r"^P[1-5]$", description="set_priority")
    until: BoundedTime | None = Field(default=None, description="snooze: until when")
    score: int | None = Field(
        default=None, ge=1, le=5, description="rate: the survey's answer, 1 (bad) to 5 (good)", exclude_if=_unset
    )
    solved: bool | None = Field(
        default=None, description="answer_workaround: whether the workaround solved it", exclude_if=_unset
    )
    issued_at: datetime
    trace_id: str
    via: str | None = Field(
        default=None, description="the API client that acted for ``actor`` (None: the actor itself, or a link)"
    )

    @model_validator(mode="after")
    def _arguments(self) -> Command:
        a = self.action
        if a is Action.reassign and not (self.team or self.person):
            raise ValueError("reassign needs a team or a person")
        if a is Action.set_priority and self.priority is None:
            raise ValueError("set_priority needs a priority (P1..P5)")
        if a is Action.snooze and self.until is None:
            raise ValueError("snooze needs 'until' (a time)")
        if a is Action.comment and not self.reason.strip():
            raise ValueError("comment needs a text in 'reason'")
        if a is Action.rate and self.score is None:
            raise ValueError("rate needs a score (1..5)")
        if a is Action.answer_workaround and self.solved is None:
            raise ValueError("answer_workaround needs 'solved' (true or false)")
        return self


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
    project: str | None = None
    customer: str | None = None
    phase: str | None = Field(default=None, description="pre-go-live | hypercare | operations")
    next_level: str | None = Field(default=None, description="the team an escalation level 'next' goes to")
    known_issue: str | None = Field(default=None, description="the project's known issue this report matches")
    phase_until: datetime | None = Field(
        default=None, description="its project's hypercare ends then: an active ticket is handed over to operations"
    )
    muted_until: datetime | None = Field(default=None, description="opened in a maintenance window: quiet until")
    channels: list[str] = Field(default_factory=list, description="channel kinds to use; empty: all of the team's")
    policy: str
    rule: str
    labels: dict[str, str] = Field(default_factory=dict)
    occurrences: int = Field(ge=1)
    alerts: int = Field(default=1, ge=1, description="distinct alerts (dedup keys) grouped into this ticket")
    alerts_firing: int = Field(default=1, ge=0)
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    snoozed_until: datetime | None = None
    waiting_on_customer: bool = False
    reopened: int = Field(default=0, ge=0, description="how many times it was reopened")
    flapping: bool = Field(default=False, description="an alert changes state too often: resolve is held")
    stable_at: datetime | None = Field(default=None, description="flapping: settles if nothing changes until then")
    notify_at: datetime | None = Field(default=None, description="a grouped notification is due then")
    notified_alerts: int = Field(default=0, ge=0, description="alerts the last notification told about")
    notified_at: datetime | None = Field(default=None, description="when people were last told about its alerts")
    last_action: str | None = Field(
        default=None, description="the last thing a person did to it, e.g. 'acknowledged by olga at 09:12 UTC'"
    )
    # written only once set, so a ticket nobody rated reads as it did before surveys (a reader of the release
    # before forbids fields it does not know)
    rating: int | None = Field(
        default=None, ge=1, le=5, description="the reporter's survey answer (feedback)", exclude_if=_unset
    )
    rated_at: datetime | None = Field(
        default=None, description="when the reporter last answered the survey", exclude_if=_unset
    )
    version: int = Field(ge=1)


class TicketEvent(Wire):
    """One change to one ticket, with the ticket as it is after the change."""

    schema_version: Literal[1] = 1
    change_id: str
    change: Change
    actor: str
    via: str | None = Field(
        default=None,
        description="the API client that acted for ``actor`` (absent: the actor acted itself)",
        exclude_if=_unset,
    )
    reason: str = ""
    at: datetime
    ticket: Ticket
    trace_id: str
    workaround: str | None = Field(default=None, description="a known issue's workaround, found when it opened")
    notify_reporter: bool = Field(default=False, description="send the workaround to the reporter at once")
    similar: list[str] = Field(
        default_factory=list,
        description="opened: the most similar resolved tickets, how and by whom each was resolved (one line each)",
        exclude_if=lambda v: not v,
    )
    told: int = Field(
        default=1,
        ge=1,
        description="the plain occurrences this change stands for: the router tells a ticket's occurrences of one "
        "transaction as one change, its ticket as after the last (written only when more than one)",
    )


class Escalation(Wire):
    schema_version: Literal[1] = 1
    escalation_id: str = Field(description="stable per ticket, clock and level: a re-fired timer repeats it")
    ticket_id: str
    kind: Literal["escalation", "warning", "breach"] = Field(
        default="escalation",
        description="warning: a share of the target is used up, before the deadline; breach: the deadline "
        "passed (an acknowledge breach is recorded and counted, the escalation levels do the notifying; a resolve "
        "breach also notifies the owner)",
    )
    level: int = Field(ge=1, description="the escalation level, or the warning's number")
    target_team: str
    to_lead: bool = Field(default=False, description="for the target team's lead rather than its on-call person")
    clock: Literal["acknowledge", "resolve", "first_response", "update"] = Field(
        default="acknowledge",
        description="acknowledge: warnings, breach and the escalation chain until acknowledged; resolve, "
        "first_response (feedback) and update (interval): warnings and a breach, which notifies the owner",
    )
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
    status: Literal["sent", "failed", "suppressed"]
    attempts: int
    error: str = ""
    at: datetime


class MovedTicket(Wire):
    """A ticket in a handover digest: what it is and how it moved."""

    ticket_id: str
    summary: str
    priority: str
    state: str
    moved: str = Field(description="from whom to whom, as the ticket's timeline says it (empty: not moved yet)")


class HandoverDigest(Wire):
    """The one message both teams of a project get when its hypercare ends: what moved to operations (and what
    had not yet when it was sent), and the handover package in force. Made by the router's handover watch
    (services/router/handover.py), sent by the notifier to the operations team and the implementation team."""

    schema_version: Literal[1] = 1
    digest_id: str = Field(description="stable per project and end of hypercare: a digest sent again repeats it")
    project: str
    customer: str
    ended_at: datetime = Field(description="when the project's hypercare ended")
    operations: str = Field(description="the team that owns the project's tickets from now on")
    implementation: str = Field(description="the implementation team: the next escalation level from now on")
    moved: list[MovedTicket] = Field(default_factory=list)
    not_moved: list[MovedTicket] = Field(
        default_factory=list, description="open tickets still in hypercare when the digest went (moving late)"
    )
    moved_unlisted: int = Field(default=0, ge=0, description="moved tickets beyond those listed (a digest lists 50)")
    not_moved_unlisted: int = Field(default=0, ge=0, description="tickets not moved yet beyond those listed")
    package: str | None = Field(default=None, description="the handover package in force, e.g. 'webshop v3'")
    package_lacks: list[str] = Field(default_factory=list, description="what the package still lacks")
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
    cut_from: int | None = Field(
        default=None, description="the original's size in bytes when ``value`` holds only its first MAX_EVENT_BYTES"
    )


class Redriven(Wire):
    """On the deadletter topic beside the dead letters: one of them was put back on its source topic
    (``ticketloop deadletters redrive``), so it is not sent back twice by mistake."""

    schema_version: Literal[1] = 1
    redriven: str = Field(description="the dead letter's id: its partition:offset on the deadletter topic")
    topic: str = Field(description="where it went back to")
    at: datetime


# --- heartbeats: what intake sends the router for each beat (services/router/heartbeats.py) ---------------------

HEARTBEAT_EVERY = "heartbeat_every_s"
HEARTBEAT_GRACE = "heartbeat_grace_s"


def heartbeat_key(name: str) -> str:
    return f"heartbeat/{name}"


def beat_event(
    name: str, source: str, every: timedelta, grace: timedelta, at: datetime, event_id: str, trace_id: str
) -> InboundEvent:
    """The event of one beat (what intake publishes)."""
    return InboundEvent(
        event_id=event_id,
        kind=EventKind.heartbeat,
        source=source,
        dedup_key=heartbeat_key(name),
        status=EventStatus.firing,
        summary=f"heartbeat {name}",
        severity=Severity.info,
        labels={"heartbeat": name},
        annotations={HEARTBEAT_EVERY: f"{every.total_seconds():g}", HEARTBEAT_GRACE: f"{grace.total_seconds():g}"},
        occurred_at=at,
        received_at=at,
        trace_id=trace_id,
    )
