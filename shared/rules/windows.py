"""A stretch of time asked for through the API (a silence, an on-call override): a start (default now) and an
end or a duration, checked against the clock when it is made."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.events import EARLIEST_YEAR, LATEST_YEAR, bounded_time
from shared.infra.config import Duration


class TimeWindowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: Annotated[AwareDatetime, AfterValidator(bounded_time)] | None = Field(
        default=None, description="default: now"
    )
    ends_at: Annotated[AwareDatetime, AfterValidator(bounded_time)] | None = None
    duration: Duration | None = Field(default=None, description='instead of ends_at, e.g. "2h"')

    @model_validator(mode="after")
    def _one_end(self) -> TimeWindowRequest:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give exactly one of 'ends_at' or 'duration'")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        return self

    def window(self, now: datetime, longest: timedelta | None = None) -> tuple[datetime, datetime]:
        """(starts_at, ends_at) for a window made now; ValueError when it would end in the past, end before it
        starts, or last longer than ``longest``."""
        starts = self.starts_at or now
        try:
            ends = bounded_time(self.ends_at if self.ends_at is not None else starts + (self.duration or timedelta(0)))
        except (OverflowError, ValueError):
            raise ValueError(
                f"it would end after {LATEST_YEAR}: times are between {EARLIEST_YEAR} and {LATEST_YEAR}"
            ) from None
        if ends <= now:
            raise ValueError("ends_at is in the past: it would never apply")
        if ends <= starts:
            raise ValueError("ends_at must be after starts_at")
        if longest is not None and ends - starts > longest:
            raise ValueError(f"it may last at most {longest.days} days")
        return starts, ends
