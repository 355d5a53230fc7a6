"""Helpers shared by the inbound format modules (pure)."""

from __future__ import annotations

from shared.events import Severity
from shared.infra.ids import short_hash, stable_id

__all__ = ["severity_from_word", "short_hash", "stable_id"]

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
