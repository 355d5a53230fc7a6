"""Deterministic ids: the same input always gives the same id, which is what makes retries idempotent."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

ID_NAMESPACE = uuid.UUID("5f0c7f52-6a53-4d7e-9a53-7e1f1f3f0d11")


_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_MS_MAX = (1 << 48) - 1
_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stable_id(*parts: str) -> str:
    """``uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)).hex``, made here without the UUID object (half the time on
    intake's hot path; the same ids as ever)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return digest.hex()


def ordered_id(at: datetime | None, *parts: str) -> str:
    """``stable_id(*parts)`` with its first 48 bits the milliseconds of ``at`` since the epoch and its version 7:
    UUIDv7's layout (RFC 9562), the rest still the hash, so the same ``at`` and parts give the same id. Ids of
    things made in time order sort in time order, and a table keyed by them grows at its end: keyed by hashes, a
    transaction of N new rows rewrote about N pages of the key's index once it was large (bench/notify_fanout: the
    delivery log's key took more of the notifier's writes than all the rest). ``at`` None: ``stable_id`` as it is."""
    made = stable_id(*parts)
    return made if at is None else _in_time(f"{epoch_ms(at):012x}", made)


def epoch_ms(at: datetime) -> int:
    """Whole milliseconds since the epoch, in integers (no float rounding); a time without a zone is UTC, whatever
    the host's zone (two workers must make the same id); before 1970: 0, after 48 bits: their most."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return min(max(0, (aware - _EPOCH) // _MS), _MS_MAX)


def derived_id(base: str, *parts: str) -> str:
    """An id made from another one (``base``) and ``parts``; in the same place of time order as ``base`` when that
    is an ``ordered_id``."""
    made = stable_id(base, *parts)
    return _in_time(base[:12], made) if base[12:13] == "7" else made


def _in_time(ms_hex: str, made: str) -> str:
    """UUIDv7's layout: 48 bits of milliseconds (12 hex digits), the version, then the rest of a ``stable_id``
    (its variant bits included)."""
    return f"{ms_hex}7{made[13:]}"


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]
