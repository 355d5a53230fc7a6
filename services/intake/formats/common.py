"""Helpers shared by the inbound format modules (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import NamedTuple

from shared.events import MAX_EVENT_BYTES, EventStatus, InboundEvent, Severity, beat_event
from shared.infra.ids import short_hash, stable_id
from shared.streaming.codec import encode

__all__ = [
    "MAX_DEDUP_KEY",
    "MAX_REQUEST_EVENT_BYTES",
    "Encoded",
    "EventsTooLargeError",
    "ParsedBatch",
    "encoded",
    "long_key",
    "oversize",
    "severity_from_word",
    "severity_with_words",
    "short_hash",
    "stable_id",
    "watchdogs_as_beats",
    "with_severity_words",
    "within_limits",
]


class Encoded(NamedTuple):
    """An inbound event as intake puts it on Kafka (``value``, keyed by ``dedup_key``) and names it in its answer."""

    event_id: str
    dedup_key: str
    status: EventStatus
    value: bytes


class ParsedBatch(NamedTuple):
    """What one request's body became: its events, encoded, with the integration's severity words applied (and its
    heartbeat's alerts as beats); the severity words neither the integration nor the built-in ones know (see
    ``with_severity_words``); and how many alerts the sender left out (``registry.truncated_alerts``)."""

    events: list[Encoded]
    unknown_words: list[str]
    truncated: int


def encoded(event: InboundEvent) -> Encoded:
    return Encoded(event.event_id, event.dedup_key, event.status, encode(event))


MAX_DEDUP_KEY = 255
"""An event's dedup key is at most this long (``InboundEvent``)."""


def long_key(integration: str, key: str) -> str:
    """The dedup key of a sender's key too long to be kept whole: its first 160 characters and a hash of it all."""
    return f"{integration}/{key[:160]}~{hashlib.sha256(key.encode()).hexdigest()[:32]}"


MAX_REQUEST_EVENT_BYTES = 32 * 1024 * 1024
"""The most one request's events may be together, encoded: a 1 MiB body whose every alert repeats a long
``externalURL`` would otherwise become gigabytes of events in memory and on Kafka. A storm of 10,000 ordinary
alerts in one webhook is about 10 MB."""


class EventsTooLargeError(ValueError):
    """A request's events are over ``MAX_EVENT_BYTES`` each or ``MAX_REQUEST_EVENT_BYTES`` together (its 413)."""


def oversize(index: int, size: int, total: int) -> EventsTooLargeError | None:
    """Why the ``index``-th event of a request (counting from 0), ``size`` bytes encoded with ``total`` bytes for
    it and those before, is too large; None when it is not."""
    if size > MAX_EVENT_BYTES:
        return EventsTooLargeError(
            f"event {index} of this request is {size:,} bytes encoded; an event is at most {MAX_EVENT_BYTES:,}:"
            " shorten its labels, annotations or links"
        )
    if total > MAX_REQUEST_EVENT_BYTES:
        return EventsTooLargeError(
            f"this request's events are over {MAX_REQUEST_EVENT_BYTES:,} bytes encoded by event {index}:"
            " send fewer alerts a request, or shorter ones"
        )
    return None


def within_limits(events: Iterable[Encoded]) -> list[Encoded]:
    """``events`` as a list, encoded one after another until one is too large (EventsTooLargeError)."""
    kept: list[Encoded] = []
    total = 0
    for i, e in enumerate(events):
        total += len(e.value)
        problem = oversize(i, len(e.value), total)
        if problem is not None:
            raise problem
        kept.append(e)
    return kept


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


def severity_with_words(label: str | None, words: Mapping[str, Severity]) -> tuple[Severity, str | None]:
    """The severity of an event whose ``severity`` label is ``label``: an integration's own word (``words``, lower
    case) first, then a built-in one (``severity_from_word``), else warning; and the word (at most 64 characters)
    when neither knows it. What ``with_severity_words`` does to a built event, for one made without one."""
    word = (label or "").strip().lower()
    if not word:
        return Severity.warning, None
    own = words.get(word)
    if own is not None:
        return own, None
    known = _SEVERITY_WORDS.get(word)
    return (known, None) if known is not None else (Severity.warning, word[:64])


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
