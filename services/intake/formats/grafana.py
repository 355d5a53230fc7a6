"""Grafana alerting's webhook contact point (payload version "1"): Alertmanager's webhook shape plus ``orgId``,
``title``, ``state`` and ``message``, each alert with ``values``, ``silenceURL``, ``dashboardURL``, ``panelURL``
and ``imageURL``. One InboundEvent per alert, as for Alertmanager (the same event ids and dedup keys).

Optionally signed: ``X-Grafana-Alerting-Signature`` is the lowercase hex HMAC-SHA256 of the body, or of
``"{timestamp}:{body}"`` when the contact point names a timestamp header (then the timestamp, Unix seconds, must
be within five minutes of now: a replayed request is refused).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ConfigDict, Field

from services.intake.formats.alertmanager import AlertmanagerAlert, AlertmanagerWebhook, alert_events
from shared.events import InboundEvent
from shared.infra.digits import is_digits

SIGNATURE_HEADER = "x-grafana-alerting-signature"
MAX_SKEW = timedelta(minutes=5)


class GrafanaAlert(AlertmanagerAlert):
    model_config = ConfigDict(extra="allow")

    values: dict[str, float | None] | None = None
    valueString: str = ""  # noqa: N815 - the vendor's field name


class GrafanaWebhook(AlertmanagerWebhook):
    model_config = ConfigDict(extra="allow")

    version: Literal["1"]  # type: ignore[assignment]  # Grafana's payload version, where Alertmanager's is "4"
    orgId: int = 0  # noqa: N815
    title: str = ""
    state: str = ""
    message: str = ""
    alerts: list[GrafanaAlert] = Field(min_length=1, max_length=10_000)  # type: ignore[assignment]


def to_events(payload: Any, *, integration: str, received_at: datetime, trace_id: str) -> list[InboundEvent]:
    hook = GrafanaWebhook.model_validate(payload)
    return alert_events(
        hook.alerts, hook.externalURL, integration=integration, received_at=received_at, trace_id=trace_id
    )


def signature_problem(
    key: bytes, body: bytes, signature: str | None, timestamp: str | None, *, timestamped: bool, now: datetime
) -> str | None:
    """Why a signed request is refused (None: its signature is right). ``timestamped``: the contact point sends
    a timestamp header, which is then part of what is signed and must be recent."""
    if not signature:
        return "missing X-Grafana-Alerting-Signature"
    signed = body
    if timestamped:
        if timestamp is None or not is_digits(timestamp) or len(timestamp) > 12:
            return "missing or malformed signature timestamp"
        if abs(now.timestamp() - int(timestamp)) > MAX_SKEW.total_seconds():
            return "signature timestamp is more than 5 minutes from now"
        signed = f"{timestamp}:".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace")):
        return "signature does not match"
    return None
