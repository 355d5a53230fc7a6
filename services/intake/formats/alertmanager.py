"""Prometheus Alertmanager webhook, version "4": one InboundEvent per alert.

Alertmanager re-sends a group every repeat_interval and retries on 5xx, so an alert's event id is derived from
fingerprint + startsAt + status: the repeats are the same event. The dedup key is the fingerprint within the
integration, so a firing alert and its resolution land on one ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.intake.formats.common import severity_from_word, short_hash, stable_id
from shared.events import BoundedTime, EventKind, EventStatus, InboundEvent, bounded_time

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
