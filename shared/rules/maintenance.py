"""Maintenance windows (in routing.yaml): recurring or one-off, in a time zone. Pure functions.

    maintenance_windows:
      - name: weekly-db-patching
        matchers: ['service="database"']
        time_zone: Asia/Shanghai
        weekdays: [sat, sun]          # empty: every day
        start: "23:00"                # a window may wrap past midnight
        end: "01:30"
      - name: datacenter-move
        matchers: ['site="bj-1"']
        from: 2026-12-05T20:00:00+08:00
        until: 2026-12-06T08:00:00+08:00

Tickets opened during a window are recorded as usual but carry ``muted_until`` (the window's end): nobody is
notified before then. What is still unacknowledged afterwards escalates as usual.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.infra.config import TimeZone
from shared.rules.matchers import MatcherList, parse_matcher

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MaintenanceWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    matchers: MatcherList = Field(min_length=1)
    time_zone: TimeZone = "UTC"
    weekdays: list[Weekday] = Field(default_factory=list)
    start: time | None = None
    end: time | None = None
    from_: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        recurring = self.start is not None or self.end is not None
        one_off = self.from_ is not None or self.until is not None
        if recurring == one_off:
            raise ValueError("a window is either recurring (start and end) or one-off (from and until)")
        if recurring and (self.start is None or self.end is None or self.start == self.end):
            raise ValueError("a recurring window needs a start and a different end")
        if one_off and (self.from_ is None or self.until is None or self.until <= self.from_):
            raise ValueError("a one-off window needs 'from' before 'until'")
        return self

    def ends_after(self, at: datetime) -> datetime | None:
        """The end of the occurrence of this window that contains ``at``, or None when ``at`` is outside it."""
        if self.from_ is not None and self.until is not None:
            return self.until if self.from_ <= at < self.until else None
        if self.start is None or self.end is None:  # pragma: no cover - the validator guarantees one kind
            return None
        zone = ZoneInfo(self.time_zone)
        local = at.astimezone(zone)
        # the occurrence that started today, or (for windows wrapping midnight) yesterday
        for days_back in (0, 1):
            day = local.date() - timedelta(days=days_back)
            if self.weekdays and WEEKDAYS[day.weekday()] not in self.weekdays:
                continue
            begins = datetime.combine(day, self.start, zone)
            ends_day = day if self.end > self.start else day + timedelta(days=1)
            ends = datetime.combine(ends_day, self.end, zone)
            if begins <= local < ends:
                return ends
        return None

    def applies_to(self, labels: dict[str, str]) -> bool:
        return all(parse_matcher(m).matches(labels) for m in self.matchers)


def muted_until(
    labels: dict[str, str], at: datetime, windows: list[MaintenanceWindow]
) -> tuple[datetime | None, list[str]]:
    """When notifications for these labels may resume (None: not muted), and the windows that mute them."""
    ends = [(w.name, end) for w in windows if w.applies_to(labels) and (end := w.ends_after(at)) is not None]
    if not ends:
        return None, []
    return max(end for _, end in ends), [name for name, _ in ends]
