"""The dead-letter record: what could not be handled, where it came from, and why (no faust here)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import DeadLetter
from shared.infra.logging import get_logger

log = get_logger(__name__)


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


def dead_letter_of(
    service: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
) -> DeadLetter:
    """The dead-letter record of a consumed record that could not be handled, and a warning line that says where
    it was and why (never its value, which may carry what was sent to us)."""
    log.warning("dead_lettered", topic=topic, partition=partition, offset=offset, reason=reason)
    return dead_letter(
        service=service, topic=topic, partition=partition, offset=offset, key=key, value=value, reason=reason
    )
