"""The generic JSON event: anything that can POST JSON — scripts, support portals, customer feedback forms.

    {"summary": "Checkout fails for EU customers", "kind": "feedback", "category": "bug", "severity": "error",
     "reporter": "alice@customer.example", "labels": {"customer": "acme", "project": "shop"}}

Without a ``dedup_key`` an alert groups by summary + labels, feedback by reporter + summary. Without an
``event_id`` the id is derived from the body, so a client that retries the same POST is not counted twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.intake.formats.common import short_hash, stable_id
from shared.events import BoundedTime, EventKind, EventStatus, InboundEvent, Severity

Category = Literal["bug", "question", "request", "suggestion"]


class GenericEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=1024)
    kind: Literal[EventKind.alert, EventKind.feedback] = EventKind.alert
    """a heartbeat's beat comes only through /api/v1/heartbeats/<name>, for a heartbeat declared in intake.yaml"""
    category: Category | None = None
    """feedback's kind of request: routing rules, SLA policies and reports see it as the label ``category``"""
    status: EventStatus = EventStatus.firing
    severity: Severity = Severity.warning
    dedup_key: str | None = Field(default=None, min_length=1, max_length=200)
    event_id: str | None = Field(default=None, min_length=1, max_length=128)
    reporter: str | None = Field(default=None, max_length=256)
    labels: dict[str, str] = Field(default_factory=dict)
    details: dict[str, str] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list, max_length=20)
    occurred_at: BoundedTime | None = None

    @model_validator(mode="after")
    def _resolved_needs_key(self) -> GenericEvent:
        if self.status is EventStatus.resolved and self.dedup_key is None:
            raise ValueError("dedup_key is required when status is 'resolved' (it names what is resolved)")
        return self


def to_events(
    payload: Any, *, integration: str, raw: bytes, received_at: datetime, trace_id: str
) -> list[InboundEvent]:
    ev = GenericEvent.model_validate(payload)
    if ev.dedup_key is not None:
        key = ev.dedup_key
    elif ev.kind is EventKind.feedback:
        key = "fb-" + short_hash(ev.reporter or "", ev.summary.strip().lower())
    else:
        key = "ev-" + short_hash(ev.summary, *(f"{k}={v}" for k, v in sorted(ev.labels.items())))
    labels = dict(ev.labels)
    if ev.reporter:
        labels.setdefault("reporter", ev.reporter)
    if ev.category is not None:
        labels["category"] = ev.category
    return [
        InboundEvent(
            event_id=ev.event_id or stable_id(integration, hashlib.sha256(raw).hexdigest()),
            kind=ev.kind,
            source=integration,
            dedup_key=f"{integration}/{key}",
            status=ev.status,
            summary=ev.summary,
            severity=ev.severity,
            labels=labels,
            annotations=ev.details,
            links=ev.links,
            occurred_at=ev.occurred_at or received_at,
            received_at=received_at,
            trace_id=trace_id,
        )
    ]
