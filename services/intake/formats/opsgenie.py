"""Opsgenie's alert API, the subset a sender migrating off Opsgenie uses (its support ends in April 2027):

- ``POST /v2/alerts``: create (``message`` required, ``alias`` the dedup key, ``priority`` P1..P5 default P3);
- ``POST /v2/alerts/{alias}/close?identifierType=alias`` and ``.../acknowledge``: by alias (ticketloop issues no
  Opsgenie alert ids, so ``identifierType`` must be ``alias``);

authenticated with ``Authorization: GenieKey <key>`` (the key is an integration's token), answered as Opsgenie
does: ``202 {"result": "Request will be processed", "took": .., "requestId": ..}``.

A create with the alias of an open alert is one more occurrence of it, as in Opsgenie; the same body sent again
later (a monitor repeating itself, an alert firing again after its close) is a new event, so it reopens.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.formats.common import long_key, stable_id
from shared.events import EventKind, EventStatus, InboundEvent, Severity

PRIORITIES = {
    "P1": Severity.critical,
    "P2": Severity.error,
    "P3": Severity.warning,
    "P4": Severity.info,
    "P5": Severity.info,
}
Verb = Literal["create", "close", "acknowledge"]
STATUS: dict[str, EventStatus] = {
    "create": EventStatus.firing,
    "close": EventStatus.resolved,
    "acknowledge": EventStatus.acknowledged,
}


class OpsgenieCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str = Field(min_length=1, max_length=130)
    alias: str | None = Field(default=None, min_length=1, max_length=512)
    description: str = Field(default="", max_length=15_000)
    tags: list[str] = Field(default_factory=list, max_length=20)
    details: dict[str, str] = Field(default_factory=dict)
    entity: str = Field(default="", max_length=512)
    source: str = Field(default="", max_length=100)
    priority: Literal["P1", "P2", "P3", "P4", "P5"] = "P3"
    user: str = Field(default="", max_length=100)
    note: str = Field(default="", max_length=25_000)


class OpsgenieAction(BaseModel):
    """The body of close and acknowledge (all optional)."""

    model_config = ConfigDict(extra="allow")

    user: str = Field(default="", max_length=100)
    source: str = Field(default="", max_length=100)
    note: str = Field(default="", max_length=25_000)


def genie_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: GenieKey <key>`` header (None: no such header)."""
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() or None if scheme.lower() == "geniekey" else None


def alias_of(create: OpsgenieCreate) -> str:
    """The alert's alias, or (as Opsgenie) one made from its message when none is given."""
    return create.alias or hashlib.sha256(create.message.encode()).hexdigest()[:32]


DEDUP_ROOM = 200
"""Aliases longer than this (Opsgenie allows 512) are kept by a prefix and a hash, to fit a dedup key."""


def dedup_key(integration: str, alias: str) -> str:
    if len(alias) <= DEDUP_ROOM:
        return f"{integration}/{alias}"
    return long_key(integration, alias)


def to_events(
    verb: Verb, payload: Any, alias: str | None, *, integration: str, raw: bytes, received_at: datetime, trace_id: str
) -> list[InboundEvent]:
    """The event of one request (``alias`` from the path for close and acknowledge)."""
    body_hash = hashlib.sha256(raw).hexdigest()
    if verb == "create":
        create = OpsgenieCreate.model_validate(payload)
        key = alias_of(create)
        labels = {k: v for k, v in (("entity", create.entity), ("source", create.source)) if v}
        labels |= {f"detail_{k}"[:64]: v for k, v in create.details.items()}
        if create.tags:
            labels["tags"] = ",".join(create.tags)
        annotations = {k: v for k, v in (("description", create.description), ("note", create.note)) if v}
        summary, severity = create.message, PRIORITIES[create.priority]
    else:
        action = OpsgenieAction.model_validate(payload if payload is not None else {})
        key = alias or ""
        labels = {"source": action.source} if action.source else {}
        annotations = {k: v for k, v in (("user", action.user), ("note", action.note)) if v}
        summary, severity = f"{verb} {key}", Severity.info
    return [
        InboundEvent(
            event_id=stable_id(integration, verb, key, body_hash, received_at.isoformat()),
            kind=EventKind.alert,
            source=integration,
            dedup_key=dedup_key(integration, key),
            status=STATUS[verb],
            summary=summary,
            severity=severity,
            labels=labels,
            annotations=annotations,
            occurred_at=received_at,
            received_at=received_at,
            trace_id=trace_id,
        )
    ]
