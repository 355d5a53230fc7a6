"""Per-integration request rate limits at intake: a sender over its limit is answered 429 with ``Retry-After`` and
the limit it ran into, before anything of its request is read or published.

The decision is GCRA (the generic cell rate algorithm, a token bucket kept as one number: the theoretical arrival
time of the next request), pure; ``Limiter`` holds one number per integration for this process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


@dataclass
class Limiter:
    """The arrival times of this process's integrations (a restart starts every sender with its burst)."""

    arrivals: dict[str, float] = field(default_factory=dict)

    def wait(self, name: str, limit: RateLimitConfig | None, now: float) -> float:
        """Seconds ``name`` must wait before this request is accepted (0: accepted now, and counted)."""
        if limit is None:
            return 0.0
        tat, wait = admit(self.arrivals.get(name, float("-inf")), now, limit)
        self.arrivals[name] = tat
        return wait
