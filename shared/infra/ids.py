"""Deterministic ids: the same input always gives the same id, which is what makes retries idempotent."""

from __future__ import annotations

import hashlib
import uuid

ID_NAMESPACE = uuid.UUID("5f0c7f52-6a53-4d7e-9a53-7e1f1f3f0d11")


def stable_id(*parts: str) -> str:
    return uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)).hex


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]
