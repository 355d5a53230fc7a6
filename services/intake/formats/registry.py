"""The inbound formats by name, each one module of services/intake/formats behind one parser signature:
(payload, integration, raw body, received at, trace id) -> events. An integration's ``format`` names one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.intake.config import Integration
from services.intake.formats import alertmanager, generic, grafana, opsgenie, pagerduty
from services.intake.formats.common import ParsedBatch
from shared.events import InboundEvent, Severity

FormatParser = Callable[[Any, str, bytes, datetime, str], list[InboundEvent]]
LeanParser = Callable[[bytes, str, datetime, str, Mapping[str, Severity], str | None], ParsedBatch | None]
"""(raw body, integration, received at, trace id, the integration's severity words, its heartbeat's alertname) ->
the events already encoded, or None: the format's parser decides (its events, or its 422)."""
Verifier = Callable[[Integration, Mapping[str, str], bytes, datetime], str | None]
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


PARSERS: dict[str, FormatParser] = {
    "alertmanager": _parse_alertmanager,
    "generic": _parse_generic,
    "grafana": _parse_grafana,
    "opsgenie": _parse_opsgenie,
    "pagerduty": _parse_pagerduty,
}

VERIFIERS: dict[str, Verifier] = {"grafana": _verify_grafana}

LEAN_PARSERS: dict[str, LeanParser] = {"alertmanager": alertmanager.lean_events}
"""Formats whose requests are tried first without pydantic (the same events, in less CPU; see alertmanager.py)."""

ALERTMANAGER_SHAPED = frozenset({"alertmanager", "grafana"})


def truncated_alerts(format_name: str, payload: Any) -> int:
    """How many alerts the sender left out of this (already validated) webhook: Alertmanager's and Grafana's
    ``truncatedAlerts``; 0 for the other formats."""
    if format_name not in ALERTMANAGER_SHAPED or not isinstance(payload, dict):
        return 0
    n = payload.get("truncatedAlerts", 0)
    return n if type(n) is int and n > 0 else 0  # the model took it as an int: a bool or text is not a count
