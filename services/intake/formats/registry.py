"""The inbound formats by name, each one module of services/intake/formats behind one parser signature:
(payload, integration, raw body, received at, trace id) -> events. An integration's ``format`` names one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.intake.formats import alertmanager, generic, pagerduty
from shared.events import InboundEvent

FormatParser = Callable[[Any, str, bytes, datetime, str], list[InboundEvent]]


def _parse_alertmanager(payload: Any, integration: str, _raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return alertmanager.to_events(payload, integration=integration, received_at=now, trace_id=trace)


def _parse_generic(payload: Any, integration: str, raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return generic.to_events(payload, integration=integration, raw=raw, received_at=now, trace_id=trace)


def _parse_pagerduty(payload: Any, integration: str, raw: bytes, now: datetime, trace: str) -> list[InboundEvent]:
    return pagerduty.to_events(payload, integration=integration, raw=raw, received_at=now, trace_id=trace)


PARSERS: dict[str, FormatParser] = {
    "alertmanager": _parse_alertmanager,
    "generic": _parse_generic,
    "pagerduty": _parse_pagerduty,
}
