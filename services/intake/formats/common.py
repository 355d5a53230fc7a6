"""Helpers shared by the inbound format modules (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from shared.events import EventStatus, InboundEvent, Severity, beat_event
from shared.infra.ids import short_hash, stable_id

__all__ = ["severity_from_word", "short_hash", "stable_id", "watchdogs_as_beats", "with_severity_words"]

_SEVERITY_WORDS: dict[str, Severity] = {
    "critical": Severity.critical,
    "crit": Severity.critical,
    "page": Severity.critical,
    "p1": Severity.critical,
    "fatal": Severity.critical,
    "emergency": Severity.critical,
    "error": Severity.error,
    "high": Severity.error,
    "major": Severity.error,
    "p2": Severity.error,
    "warning": Severity.warning,
    "warn": Severity.warning,
    "minor": Severity.warning,
    "medium": Severity.warning,
    "p3": Severity.warning,
    "info": Severity.info,
    "low": Severity.info,
    "none": Severity.info,
    "p4": Severity.info,
    "p5": Severity.info,
}


def severity_from_word(word: str | None, default: Severity = Severity.warning) -> Severity:
    if not word:
        return default
    return _SEVERITY_WORDS.get(word.strip().lower(), default)


def watchdogs_as_beats(
    events: list[InboundEvent], alertname: str, name: str, every: timedelta, grace: timedelta
) -> list[InboundEvent]:
    """An integration's always-firing ``alertname`` alerts (Alertmanager's Watchdog) as beats of its heartbeat
    ``name``; every other event as it is."""
    return [
        beat_event(
            name,
            ev.source,
            every,
            grace,
            ev.received_at,
            stable_id(ev.event_id, ev.received_at.isoformat()),
            ev.trace_id,
        )
        if ev.labels.get("alertname") == alertname and ev.status is EventStatus.firing
        else ev
        for ev in events
    ]


def with_severity_words(
    events: list[InboundEvent], words: Mapping[str, Severity]
) -> tuple[list[InboundEvent], list[str]]:
    """Events whose ``severity`` label is one of an integration's own words (``words``, lower case) take its
    severity; the words neither those nor the built-in ones know are returned (their events keep the default,
    warning), so they can be counted and mapped."""
    out: list[InboundEvent] = []
    unknown: list[str] = []
    for ev in events:
        word = (ev.labels.get("severity") or "").strip().lower()
        if word and word in words:
            ev = ev.model_copy(update={"severity": words[word]})  # noqa: PLW2901
        elif word and word not in _SEVERITY_WORDS:
            unknown.append(word[:64])
        out.append(ev)
    return out, unknown
