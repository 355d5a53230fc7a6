"""Per-integration request rate limits at intake: a sender over its limit is answered 429 with ``Retry-After`` and
the limit it ran into, before anything of its request is read or published.

The decision is GCRA (the generic cell rate algorithm, a token bucket kept as one number: the theoretical arrival
time of the next request), pure; ``Limiter`` holds one number per integration. With several intake workers
(services/intake/workers.py) the numbers of integrations and forms are kept in one small file they all map
(``SharedArrivals``), read and written under a lock, so a sender's limit is the same however its connections
land; other keys (a survey's or a "solved" answer's, per ticket: an abuse guard) stay per process.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.intake.slots import MappedSlots
from shared.infra.config import Duration


class RateLimitConfig(BaseModel):
    """``rate_limit: {requests: 100, per: 1s, burst: 200}`` on an integration in intake.yaml."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(ge=1, le=1_000_000)
    per: Duration
    burst: int | None = Field(default=None, ge=1, le=10_000_000, description="default: requests")

    @model_validator(mode="after")
    def _positive(self) -> RateLimitConfig:
        if self.per.total_seconds() <= 0:
            raise ValueError("'per' must be longer than 0")
        return self

    def describe(self) -> str:
        return f"{self.requests} requests per {self.per.total_seconds():g} s (burst {self.burst or self.requests})"


def admit(tat: float, now: float, limit: RateLimitConfig) -> tuple[float, float]:
    """GCRA: (the next theoretical arrival time, seconds to wait). A wait of 0 admits the request now; otherwise
    it is refused and the arrival time stays as it was."""
    interval = limit.per.total_seconds() / limit.requests
    tolerance = interval * ((limit.burst or limit.requests) - 1)
    due = max(tat, now)
    if due - now > tolerance:
        return tat, due - now - tolerance
    return due + interval, 0.0


def retry_after(wait_s: float) -> str:
    """The ``Retry-After`` header for a wait: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))


def shared_keys(integrations: Iterable[str], forms: Iterable[str]) -> list[str]:
    """The limiter keys every worker shares, in one order for all (a key's slot in the file)."""
    return sorted({*integrations, *(f"form/{name}" for name in forms)})


class SharedArrivals:
    """Arrival times in a file every worker maps (services/intake/slots.py), one slot per key of ``keys``, in
    their order; a slot's read-admit-write holds the file's lock. Times are ``time.monotonic()``, one clock for
    every process of a host. The file is named by its keys: a worker restarted with another intake.yaml keeps
    limits of its own instead of reading another key's slots."""

    def __init__(self, directory: Path, keys: list[str]) -> None:
        self.slots = {key: i for i, key in enumerate(keys)}
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        # filled by the first of these workers: every sender starts with its burst
        self._times = MappedSlots(directory / f"limits-{digest}", "d", len(keys), float("-inf"))

    def admit(self, key: str, limit: RateLimitConfig, now: float) -> float | None:
        """The wait for ``key`` (0: admitted and counted), or None when the key has no slot here."""
        slot = self.slots.get(key)
        if slot is None:
            return None
        with self._times.lock():
            tat, wait = admit(self._times.get(slot), now, limit)
            self._times.set(slot, tat)
        return wait

    def close(self) -> None:
        self._times.close()


@dataclass
class Limiter:
    """The arrival times of integrations and forms: this process's own, or ``shared`` with the other workers
    for the keys it has (a restart of every worker starts every sender with its burst)."""

    arrivals: dict[str, float] = field(default_factory=dict)
    shared: SharedArrivals | None = None

    def wait(self, name: str, limit: RateLimitConfig | None, now: float) -> float:
        """Seconds ``name`` must wait before this request is accepted (0: accepted now, and counted)."""
        if limit is None:
            return 0.0
        if self.shared is not None:
            found = self.shared.admit(name, limit, now)
            if found is not None:
                return found
        tat, wait = admit(self.arrivals.get(name, float("-inf")), now, limit)
        self.arrivals[name] = tat
        return wait
