"""The inbound formats by name, each one module of services/intake/formats behind one parser signature:
(payload, integration, raw body, received at, trace id) -> events. An integration's ``format`` names one.

``FORMATS`` is the one list: the config's validation (which names an integration may give, which may be signed),
the parsing, the signature checks and the OpenAPI document's bodies all read it. A new format is one module and
one ``FormatKind`` line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from services.intake.formats import alertmanager, generic, grafana, opsgenie, pagerduty
from services.intake.formats.common import ParsedBatch
from shared.events import InboundEvent, Severity

if TYPE_CHECKING:  # the config validates formats against this module: it imports it, not the other way round
    from services.intake.config import Integration

FormatParser = Callable[[Any, str, bytes, datetime, str], list[InboundEvent]]
LeanParser = Callable[[bytes, str, datetime, str, Mapping[str, Severity], str | None], ParsedBatch | None]
"""(raw body, integration, received at, trace id, the integration's severity words, its heartbeat's alertname) ->
the events already encoded, or None: the format's parser decides (its events, or its 422)."""
Verifier = Callable[["Integration", Mapping[str, str], bytes, datetime], str | None]
"""Why a request of a signing format is refused (None: accepted), from its headers and raw body."""


def _parse_alertmanager(payload: Any, integration: str, _raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return alertmanager.to_events(payload, integration=integration, received_at=now, trace_id=trace)


def _parse_generic(payload: Any, integration: str, raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return generic.to_events(payload, integration=integration, raw=raw, received_at=now, trace_id=trace)


def _parse_grafana(payload: Any, integration: str, _raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return grafana.to_events(payload, integration=integration, received_at=now, trace_id=trace)


def _verify_grafana(integration: Integration, headers: Mapping[str, str], raw: bytes, now: datetime) -> str | None:
    key = integration.signing_key()
    if key is None:
        return None
    stamp_header = integration.signature_timestamp_header
    return grafana.signature_problem(
        key.get_secret_value().encode(),
        raw,
        headers.get(grafana.SIGNATURE_HEADER),
        headers.get(stamp_header) if stamp_header else None,
        timestamped=stamp_header is not None,
        now=now,
    )


def _parse_opsgenie(payload: Any, integration: str, raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    """A create, posted to an integration's own URL (``/api/v1/integrations/<name>``) instead of ``/v2/alerts``."""
    return opsgenie.to_events(
        "create", payload, None, integration=integration, raw=raw, received_at=now, trace_id=trace
    )


def _parse_pagerduty(payload: Any, integration: str, raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return pagerduty.to_events(payload, integration=integration, raw=raw, received_at=now, trace_id=trace)


@dataclass(frozen=True)
class FormatKind:
    """A registry row: everything intake needs of one format."""

    name: str
    model: type[BaseModel]
    """The body an integration of this format takes at ``/api/v1/integrations/<name>`` (the OpenAPI document's)."""
    parse: FormatParser
    verify: Verifier | None = None
    """Its senders may sign their requests (None: the format has no signature)."""
    lean: LeanParser | None = None
    """Tried first without pydantic: the same events in less CPU (see alertmanager.py)."""
    alertmanager_shaped: bool = False
    """Alertmanager's webhook shape: ``truncatedAlerts`` counted, a heartbeat is an alert named for it."""


FORMATS: dict[str, FormatKind] = {
    k.name: k
    for k in (
        FormatKind(
            "alertmanager",
            alertmanager.AlertmanagerWebhook,
            _parse_alertmanager,
            lean=alertmanager.lean_events,
            alertmanager_shaped=True,
        ),
        FormatKind("generic", generic.GenericEvent, _parse_generic),
        FormatKind("grafana", grafana.GrafanaWebhook, _parse_grafana, verify=_verify_grafana, alertmanager_shaped=True),
        FormatKind("opsgenie", opsgenie.OpsgenieCreate, _parse_opsgenie),
        FormatKind("pagerduty", pagerduty.PagerDutyEvent, _parse_pagerduty),
    )
}

PARSERS: dict[str, FormatParser] = {name: k.parse for name, k in FORMATS.items()}
VERIFIERS: dict[str, Verifier] = {name: k.verify for name, k in FORMATS.items() if k.verify is not None}
SIGNING_FORMATS = frozenset(VERIFIERS)
"""Formats whose sender can sign its requests."""
LEAN_PARSERS: dict[str, LeanParser] = {name: k.lean for name, k in FORMATS.items() if k.lean is not None}
ALERTMANAGER_SHAPED = frozenset(name for name, k in FORMATS.items() if k.alertmanager_shaped)


def truncated_alerts(format_name: str, payload: Any) -> int:
    """How many alerts the sender left out of this (already validated) webhook: Alertmanager's and Grafana's
    ``truncatedAlerts``; 0 for the other formats."""
    if format_name not in ALERTMANAGER_SHAPED or not isinstance(payload, dict):
        return 0
    n = payload.get("truncatedAlerts", 0)
    return n if type(n) is int and n > 0 else 0  # the model took it as an int: a bool or text is not a count
