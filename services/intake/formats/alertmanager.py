"""Prometheus Alertmanager webhook, version "4": one InboundEvent per alert.

Alertmanager re-sends a group every repeat_interval and retries on 5xx, so an alert's event id is derived from
fingerprint + startsAt + status: the repeats are the same event. The dedup key is the fingerprint within the
integration, so a firing alert and its resolution land on one ticket.

Two parsers give the same events: ``to_events`` (pydantic models, whose errors name the field: the 422's problems)
and ``lean_events``, which intake tries first: the body's bytes straight into msgspec Structs and each event's
bytes written without an InboundEvent. The lean one takes only what the pydantic one takes, and declines (None)
anything else, or anything it is not sure of, for ``to_events`` to accept or refuse as ever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.intake.formats.common import (
    MAX_DEDUP_KEY,
    Encoded,
    ParsedBatch,
    oversize,
    severity_from_word,
    severity_with_words,
    short_hash,
    stable_id,
)
from shared.events import (
    BoundedTime,
    EventKind,
    EventStatus,
    InboundEvent,
    InboundEventWire,
    Severity,
    bounded_time,
)
from shared.streaming.codec import encode_wire

ZERO_TIME_YEAR = 1


def zero_or_bounded(value: datetime) -> datetime:
    """An alert's end: Alertmanager's zero time (year 1) while it fires, else a bounded time."""
    return value if value.year <= ZERO_TIME_YEAR else bounded_time(value)


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: BoundedTime  # noqa: N815 - the vendor's field name
    endsAt: Annotated[datetime, AfterValidator(zero_or_bounded)] | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = ""


class AlertmanagerWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: Literal["4"]
    groupKey: str = ""  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=10_000)


STATUSES = {"firing": EventStatus.firing, "resolved": EventStatus.resolved}


def alert_links(alert: AlertmanagerAlert) -> list[str]:
    """Links a sender adds to an alert beyond its generator (Grafana's dashboard, panel and silence pages)."""
    extra = alert.__pydantic_extra__
    if not extra:
        return []
    return [v for k in LINK_FIELDS if isinstance(v := extra.get(k), str) and v]


LINK_FIELDS = ("dashboardURL", "panelURL", "silenceURL", "imageURL")


def to_events(payload: Any, *, integration: str, received_at: datetime, trace_id: str) -> list[InboundEvent]:
    hook = AlertmanagerWebhook.model_validate(payload)
    return alert_events(
        hook.alerts, hook.externalURL, integration=integration, received_at=received_at, trace_id=trace_id
    )


def alert_events(
    alerts: Sequence[AlertmanagerAlert], external_url: str, *, integration: str, received_at: datetime, trace_id: str
) -> list[InboundEvent]:
    """One event per alert of an Alertmanager-shaped webhook (Alertmanager's own, and Grafana's)."""
    events = []
    for alert in alerts:
        fingerprint = alert.fingerprint or short_hash(*(f"{k}={v}" for k, v in sorted(alert.labels.items())))
        status = STATUSES[alert.status]
        ends = alert.endsAt if alert.endsAt is not None and alert.endsAt.year > ZERO_TIME_YEAR else None
        occurred = ends if status is EventStatus.resolved and ends is not None else alert.startsAt
        summary = (
            alert.annotations.get("summary")
            or alert.annotations.get("description")
            or alert.labels.get("alertname")
            or f"alert {fingerprint}"
        )
        events.append(
            InboundEvent(
                event_id=stable_id(integration, fingerprint, alert.startsAt.isoformat(), status.value),
                kind=EventKind.alert,
                source=integration,
                dedup_key=f"{integration}/{fingerprint}",
                status=status,
                summary=summary[:1024],
                severity=severity_from_word(alert.labels.get("severity")),
                labels=alert.labels,
                annotations=alert.annotations,
                links=[u for u in (alert.generatorURL, *alert_links(alert), external_url) if u],
                occurred_at=occurred,
                received_at=received_at,
                trace_id=trace_id,
            )
        )
    return events


# --- the lean parser ---------------------------------------------------------------------------------------------

Labels = dict[str, str]
MAX_ALERTS = 10_000
_JSON_INT = msgspec.Meta(ge=-(2**63), le=2**63 - 1)
"""Integers orjson reads as int too (past 2**64 it makes a float, which the pydantic path takes differently)."""


class LeanAlert(msgspec.Struct, gc=False):
    """AlertmanagerAlert's fields as msgspec checks them (strict: a value pydantic would coerce is declined). Times
    are kept as text: msgspec rounds nanoseconds where pydantic truncates them, and the event id hashes the time."""

    status: Literal["firing", "resolved"]
    labels: Annotated[Labels, msgspec.Meta(min_length=1)]
    startsAt: str  # noqa: N815 - the vendor's field names
    annotations: Labels = {}
    endsAt: str | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = ""
    dashboardURL: Any = None  # noqa: N815 - LINK_FIELDS: extra fields to pydantic, any JSON value
    panelURL: Any = None  # noqa: N815
    silenceURL: Any = None  # noqa: N815
    imageURL: Any = None  # noqa: N815


class LeanWebhook(msgspec.Struct, gc=False):
    """AlertmanagerWebhook's fields as msgspec checks them (the unknown ones are skipped, as pydantic keeps them)."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: Annotated[list[LeanAlert], msgspec.Meta(min_length=1, max_length=MAX_ALERTS)]
    groupKey: str = ""  # noqa: N815
    truncatedAlerts: Annotated[int, _JSON_INT] = 0  # noqa: N815
    receiver: str = ""
    groupLabels: Labels = {}  # noqa: N815
    commonLabels: Labels = {}  # noqa: N815
    commonAnnotations: Labels = {}  # noqa: N815
    externalURL: str = ""  # noqa: N815


_WEBHOOK_DECODER = msgspec.json.Decoder(LeanWebhook)

_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)?")
"""The RFC 3339 times Alertmanager writes (Go's, to the nanosecond), on which ``datetime.fromisoformat`` and
pydantic agree (both truncate past the microsecond); any other text is left to pydantic."""


def plain_time(text: str) -> datetime | None:
    """``text`` as the datetime pydantic reads from it, when it is a plain RFC 3339 time; else None."""
    if _PLAIN_TIME.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def lean_start(text: str) -> tuple[datetime, str] | None:
    """An alert's start and its ``isoformat()`` (hashed into the event id), or None where the pydantic path decides
    (not a plain time, or out of bounds: its 422)."""
    at = plain_time(text)
    if at is None:
        return None
    try:
        at = bounded_time(at)  # a time without an offset is UTC, as pydantic's BoundedTime makes it
    except ValueError:
        return None
    return at, at.isoformat()


def lean_end(text: str | None) -> tuple[datetime | None] | None:
    """An alert's end (None: none, or Alertmanager's zero time while it fires), wrapped; None where the pydantic
    path decides."""
    if text is None:
        return (None,)
    at = plain_time(text)
    if at is None:
        return None
    if at.year <= ZERO_TIME_YEAR:
        return (None,)
    try:
        return (bounded_time(at),)
    except ValueError:
        return None


_NO_LINKS = (None, None, None, None)


def lean_links(alert: LeanAlert, external_url: str) -> list[str]:
    """What ``alert_links`` and ``alert_events`` link to, in their order (written out for the common alert without
    link fields: about 0.2 against 0.7 us as one comprehension over a generator)."""
    links = [alert.generatorURL] if alert.generatorURL else []
    extra = (alert.dashboardURL, alert.panelURL, alert.silenceURL, alert.imageURL)  # LINK_FIELDS
    if extra != _NO_LINKS:
        links.extend([v for v in extra if isinstance(v, str) and v])
    if external_url:
        links.append(external_url)
    return links


def lean_events(
    raw: bytes,
    integration: str,
    received_at: datetime,
    trace_id: str,
    words: Mapping[str, Severity],
    beat_alertname: str | None,
) -> ParsedBatch | None:
    """The events ``to_events`` makes of this body, with the integration's severity words applied
    (``with_severity_words``), encoded as ``codec.encode`` would (the same InboundEvents decoded); None where the
    pydantic path must decide: malformed JSON, anything pydantic might read otherwise or refuse, a dedup key over
    InboundEvent's limit, or an alert that is the integration's heartbeat (``beat_alertname``, firing)."""
    try:
        hook = _WEBHOOK_DECODER.decode(raw)
        bounded_time(received_at)
    except (msgspec.MsgspecError, ValueError, RecursionError):  # msgspec skips an unknown field by recursion
        return None
    starts: dict[str, tuple[datetime, str]] = {}  # a webhook's alerts often share their times
    ends: dict[str | None, tuple[datetime | None]] = {}
    prefix = f"{integration}/"
    events: list[Encoded] = []
    unknown: list[str] = []
    total = 0  # bytes encoded so far (EventsTooLargeError past the limits)
    for alert in hook.alerts:
        labels = alert.labels
        status = STATUSES[alert.status]
        if beat_alertname is not None and status is EventStatus.firing and labels.get("alertname") == beat_alertname:
            return None
        start = starts.get(alert.startsAt) or lean_start(alert.startsAt)
        end = ends.get(alert.endsAt) or lean_end(alert.endsAt)
        if start is None or end is None:
            return None
        starts[alert.startsAt], ends[alert.endsAt] = start, end
        fingerprint = alert.fingerprint or short_hash(*(f"{k}={v}" for k, v in sorted(labels.items())))
        dedup_key = prefix + fingerprint
        if len(dedup_key) > MAX_DEDUP_KEY:
            return None
        ended = end[0]
        annotations = alert.annotations
        summary = (
            annotations.get("summary")
            or annotations.get("description")
            or labels.get("alertname")
            or f"alert {fingerprint}"
        )
        severity, word = severity_with_words(labels.get("severity"), words)
        if word is not None:
            unknown.append(word)
        event_id = stable_id(integration, fingerprint, start[1], alert.status)  # status.value, without the enum
        wire = InboundEventWire(
            event_id=event_id,
            kind=EventKind.alert,
            source=integration,
            dedup_key=dedup_key,
            status=status,
            summary=summary[:1024],
            severity=severity,
            labels=labels,
            annotations=annotations,
            links=lean_links(alert, hook.externalURL),
            occurred_at=ended if status is EventStatus.resolved and ended is not None else start[0],
            received_at=received_at,
            trace_id=trace_id,
        )
        value = encode_wire(wire)
        total += len(value)
        if (problem := oversize(len(events), len(value), total)) is not None:
            raise problem
        events.append(Encoded(event_id, dedup_key, status, value))
    return ParsedBatch(events, unknown, max(hook.truncatedAlerts, 0))
