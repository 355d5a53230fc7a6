"""Heartbeats (dead man's switches): an integration that declares one must beat at least every ``every``; when no
beat came for ``every`` + ``grace``, a ticket opens (an alert ``HeartbeatMissing``), and the next beat resolves it.

A beat is an InboundEvent of kind ``heartbeat`` (intake makes one from ``POST /api/v1/heartbeats/<name>`` or from
Alertmanager's always-firing ``Watchdog`` alert), keyed by ``heartbeat/<name>``, carrying the expected period and
grace in its annotations, so the router needs no configuration of its own for it. The router keeps one
``Heartbeat`` per name in the partition of that key and checks them on its timer, in the same transaction as
anything else: exactly once, on time, across restarts. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import orjson

from shared.events import (
    HEARTBEAT_EVERY,
    HEARTBEAT_GRACE,
    EventKind,
    EventStatus,
    InboundEvent,
    Severity,
    heartbeat_key,
)
from shared.infra.ids import stable_id

ALERTNAME = "HeartbeatMissing"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What the router knows of one heartbeat."""

    name: str
    source: str
    every_s: float
    grace_s: float
    last_beat: datetime
    missing_since: datetime | None = None
    """When its ticket was opened (None: beating)."""

    @property
    def due(self) -> datetime:
        """When it is missing if no beat comes first."""
        return self.last_beat + timedelta(seconds=self.every_s + self.grace_s)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "name": self.name,
                "source": self.source,
                "every_s": self.every_s,
                "grace_s": self.grace_s,
                "last_beat": self.last_beat.timestamp(),
                "missing_since": self.missing_since.timestamp() if self.missing_since else None,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Heartbeat:
        d = orjson.loads(raw)
        missing = d.get("missing_since")
        return cls(
            d["name"],
            d["source"],
            float(d["every_s"]),
            float(d["grace_s"]),
            datetime.fromtimestamp(d["last_beat"], UTC),
            datetime.fromtimestamp(missing, UTC) if missing is not None else None,
        )


def _missing_event(hb: Heartbeat, status: EventStatus, at: datetime, trace_id: str) -> InboundEvent:
    since = hb.missing_since or at
    every = timedelta(seconds=hb.every_s)
    return InboundEvent(
        event_id=stable_id("heartbeat", hb.name, status.value, since.isoformat()),
        kind=EventKind.alert,
        source=hb.source,
        dedup_key=heartbeat_key(hb.name),
        status=status,
        summary=f"heartbeat {hb.name} missing: no beat since {hb.last_beat.isoformat()} (expected every {every})",
        severity=Severity.critical,
        labels={"alertname": ALERTNAME, "heartbeat": hb.name, "severity": "critical"},
        annotations={"last_beat": hb.last_beat.isoformat()},
        occurred_at=at,
        received_at=at,
        trace_id=trace_id,
    )


LONGEST_S = 100 * 365 * 86400.0


class BadBeatError(ValueError):
    """A beat this router cannot keep (its name, key or period is not one intake makes): dead-lettered."""


def beat_period(beat: InboundEvent) -> tuple[str, float, float]:
    """A beat's heartbeat name, period and grace in seconds; BadBeatError unless intake could have made it."""
    name = beat.labels.get("heartbeat", "")
    if not name or beat.dedup_key != heartbeat_key(name):
        raise BadBeatError(f"a beat names heartbeat {name!r} under the key {beat.dedup_key!r}")
    try:
        every = float(beat.annotations[HEARTBEAT_EVERY])
        grace = float(beat.annotations.get(HEARTBEAT_GRACE, str(every)))
    except (KeyError, ValueError):
        raise BadBeatError(f"heartbeat {name!r}: its period is not a number of seconds") from None
    if not (1 <= every <= LONGEST_S and 0 <= grace <= LONGEST_S):
        raise BadBeatError(f"heartbeat {name!r}: period {every} s and grace {grace} s are out of bounds")
    return name, every, grace


def on_beat(state: Heartbeat | None, beat: InboundEvent, now: datetime) -> tuple[Heartbeat, InboundEvent | None]:
    """The heartbeat after a beat the router handles ``now`` (its own clock, the one its timer reads: intake's
    clock may run apart), and the event resolving its ticket when it had gone missing."""
    name, every, grace = beat_period(beat)
    at = max(now, state.last_beat) if state is not None else now
    after = Heartbeat(name, beat.source, every, grace, at)
    if state is not None and state.missing_since is not None:
        return after, _missing_event(state, EventStatus.resolved, at, beat.trace_id)
    return after, None


def on_tick(state: Heartbeat, now: datetime, trace_id: str) -> tuple[Heartbeat, InboundEvent | None]:
    """The heartbeat at ``now``, and the event opening its ticket when it has just gone missing. OverflowError
    for a state no beat could have made."""
    if state.missing_since is not None or now < state.due:
        return state, None
    after = replace(state, missing_since=state.due)
    return after, _missing_event(after, EventStatus.firing, now, trace_id)
