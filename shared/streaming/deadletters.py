"""The dead-letter record: what could not be handled, where it came from, and why (no faust here)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import MAX_EVENT_BYTES, DeadLetter
from shared.infra.logging import get_logger

log = get_logger(__name__)

MAX_KEY_CHARS = 4096
"""A dead letter keeps this much of its record's key (ours are dedup keys and ids, at most 255)."""


def dead_letter(
    *, service: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
) -> DeadLetter:
    raw = value or b""
    cut = len(raw) > MAX_EVENT_BYTES  # a record near the broker's limit would make a dead letter over it
    return DeadLetter(
        service=service,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode(errors="replace")[:MAX_KEY_CHARS] if key is not None else None,
        value=raw[:MAX_EVENT_BYTES].decode(errors="replace"),
        reason=reason,
        at=datetime.now(UTC),
        cut_from=len(raw) if cut else None,
    )


def dead_letter_of(
    service: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
) -> DeadLetter:
    """The dead-letter record of a consumed record that could not be handled, and a warning line that says where
    it was and why (never its value, which may carry what was sent to us)."""
    log.warning("dead_lettered", topic=topic, partition=partition, offset=offset, reason=reason)
    return dead_letter(
        service=service, topic=topic, partition=partition, offset=offset, key=key, value=value, reason=reason
    )
