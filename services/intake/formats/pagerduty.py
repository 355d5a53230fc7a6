"""PagerDuty Events API v2 (``POST /v2/enqueue``): trigger, acknowledge and resolve by ``dedup_key``.

The ``routing_key`` is the integration's token. A trigger without a ``dedup_key`` gets one derived from its
body, returned in the answer as PagerDuty does; acknowledge and resolve require one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.intake.formats.common import MAX_DEDUP_KEY, long_key, stable_id
from shared.events import Action, BoundedTime, Command, EventKind, EventStatus, InboundEvent, Severity

ACTIONS = {"trigger": EventStatus.firing, "acknowledge": EventStatus.acknowledged, "resolve": EventStatus.resolved}


class PagerDutyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=255)
    severity: Severity
    timestamp: BoundedTime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    custom_details: dict[str, Any] | str | None = None


class PagerDutyLink(BaseModel):
    href: str
    text: str | None = None


class PagerDutyEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routing_key: str = Field(min_length=32, max_length=32)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: PagerDutyPayload | None = None
    images: list[dict[str, Any]] = Field(default_factory=list)
    links: list[PagerDutyLink] = Field(default_factory=list)
    client: str | None = None
    client_url: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> PagerDutyEvent:
        if self.event_action == "trigger" and self.payload is None:
            raise ValueError("payload is required for trigger events")
        if self.event_action != "trigger" and self.dedup_key is None:
            raise ValueError(f"dedup_key is required for {self.event_action} events")
        return self


class ChangePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=1024)
    timestamp: BoundedTime | None = None
    source: str | None = Field(default=None, max_length=255)
    custom_details: dict[str, Any] | None = None


class ChangeEvent(BaseModel):
    """PagerDuty's change event (``POST /v2/change/enqueue``): a deploy or a config change, context for whoever
    looks at the service's incidents."""

    model_config = ConfigDict(extra="forbid")

    routing_key: str = Field(min_length=32, max_length=32)
    payload: ChangePayload
    links: list[PagerDutyLink] = Field(default_factory=list)
    images: list[dict[str, Any]] = Field(default_factory=list)


def change_comments(
    change: ChangeEvent, raw: bytes, integration: str, ticket_ids: list[str], issued_at: datetime, trace_id: str
) -> list[Command]:
    """A change event as a comment on each open ticket of its integration (the same body sent again later is
    noted again)."""
    p = change.payload
    reason = f"change: {p.summary}" + (f" (from {p.source})" if p.source else "")
    if change.links:
        reason += " " + " ".join(link.href for link in change.links[:5])
    body = hashlib.sha256(raw).hexdigest()
    return [
        Command(
            command_id=stable_id(integration, "change", body, ticket_id, issued_at.isoformat()),
            ticket_id=ticket_id,
            action=Action.comment,
            actor=integration,
            reason=reason[:4000],
            issued_at=issued_at,
            trace_id=trace_id,
        )
        for ticket_id in ticket_ids
    ]


def routing_key(payload: Any) -> str | None:
    """The routing key, read before validation so the integration can be found (and authenticated) first."""
    value = payload.get("routing_key") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


def sender_key(given: str | None, raw: bytes) -> str:
    """An event's ``dedup_key`` as PagerDuty answers it: the sender's (``given``), or one derived from the body."""
    return given or hashlib.sha256(raw).hexdigest()[:32]


def keyed(integration: str, key: str) -> str:
    """The dedup key of a PagerDuty key: ``<integration>/<key>``, or, when that is over an event's 255 characters
    (PagerDuty takes keys of 255), the key's first 160 and a hash of it all."""
    whole = f"{integration}/{key}"
    return whole if len(whole) <= MAX_DEDUP_KEY else long_key(integration, key)


def to_events(
    payload: Any, *, integration: str, raw: bytes, received_at: datetime, trace_id: str
) -> list[InboundEvent]:
    ev = PagerDutyEvent.model_validate(payload)
    key = sender_key(ev.dedup_key, raw)
    p = ev.payload
    labels = {"source": p.source} if p else {}
    if p:
        labels |= {k: v for k, v in (("component", p.component), ("group", p.group), ("class", p.class_)) if v}
    details = p.custom_details if p else None
    annotations = (
        {k: str(v) for k, v in details.items()}
        if isinstance(details, dict)
        else {"details": details}
        if details
        else {}
    )
    return [
        InboundEvent(
            # the same body again later is a new event (a trigger after a resolve must reopen, not be dropped as
            # seen); identical requests at the same microsecond are one
            event_id=stable_id(integration, hashlib.sha256(raw).hexdigest(), received_at.isoformat()),
            kind=EventKind.alert,
            source=integration,
            dedup_key=keyed(integration, key),
            status=ACTIONS[ev.event_action],
            summary=p.summary if p else f"{ev.event_action} {key}",
            severity=p.severity if p else Severity.info,
            labels=labels,
            annotations=annotations,
            links=[link.href for link in ev.links] + ([ev.client_url] if ev.client_url else []),
            occurred_at=(p.timestamp if p and p.timestamp else received_at),
            received_at=received_at,
            trace_id=trace_id,
        )
    ]
