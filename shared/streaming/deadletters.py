"""The dead-letter record: what could not be handled, where it came from, and why (no faust here)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import DeadLetter


def dead_letter(
    *, service: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
) -> DeadLetter:
    return DeadLetter(
        service=service,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode(errors="replace") if key is not None else None,
        value=(value or b"").decode(errors="replace"),
        reason=reason,
        at=datetime.now(UTC),
    )
