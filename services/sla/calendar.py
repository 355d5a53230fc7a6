"""Business calendars: when the clock runs, and deadline arithmetic in business time. Pure functions.

    calendars:                               # in sla.yaml
      cn-ops:
        time_zone: Asia/Shanghai
        days: [mon, tue, wed, thu, fri]
        hours: ["09:00-12:00", "13:30-18:00"]
        china: true                          # official holidays and make-up working days (chinesecalendar)
        holidays: [2027-01-01]               # extra days off (or days the packages do not know yet)
        workdays: []                         # extra working days
      de-support:
        time_zone: Europe/Berlin
        hours: ["08:00-17:00"]
        country: DE                          # public holidays of a country (the holidays package)
        subdivision: BY
      always:
        always: true                         # 24x7: no gaps, DST or midnight

A working day is a day of ``days`` that is no holiday, or any make-up working day; it has the working
``hours`` in the calendar's zone (wall-clock, so a DST change moves nothing people see). All arithmetic is done
on absolute (UTC) time, so a 24x7 clock across a DST change or midnight has no gap and no overlap.
China's official calendar is known to the ``chinesecalendar`` package only for the years it has been published
for; later years fall back to ``days`` plus the listed ``holidays`` and ``workdays``, and ``ticketloop config
check`` warns about them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import chinese_calendar
import holidays as holiday_data
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.infra.config import TimeZone

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_DAYS = 3660
"""How far (in days) deadline arithmetic looks for working time before it gives up (a calendar with none)."""


def _parse_span(text: str) -> tuple[time, time | None]:
    """``"09:00-18:00"`` -> (09:00, 18:00); an end of ``24:00`` is the next midnight (None)."""
    start_s, sep, end_s = text.partition("-")
    if not sep:
        raise ValueError(f"working hours are 'HH:MM-HH:MM', not {text!r}")
    try:
        start = time.fromisoformat(start_s.strip())
        end = None if end_s.strip() == "24:00" else time.fromisoformat(end_s.strip())
    except ValueError as exc:
        raise ValueError(f"working hours are 'HH:MM-HH:MM', not {text!r}") from exc
    if end is not None and end <= start:
        raise ValueError(f"working hours {text!r} end before they start (use 24:00 for midnight)")
    return start, end


class CalendarConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    always: bool = Field(default=False, description="24x7: every moment counts")
    time_zone: TimeZone = "UTC"
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    hours: list[str] = Field(default_factory=lambda: ["09:00-18:00"])
    china: bool = Field(default=False, description="China's official holidays and make-up working days")
    country: str | None = Field(default=None, description="public holidays of this country (ISO code)")
    subdivision: str | None = None
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[str]) -> list[str]:
        spans = sorted(_parse_span(v) for v in value)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if end is None or end > start:
                raise ValueError("working hours overlap")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CalendarConfig:
        if not self.always and not self.hours:
            raise ValueError("a business calendar needs working hours (or always: true)")
        if not self.always and not self.days:
            raise ValueError("a business calendar needs working days (or always: true)")
        if self.country is not None:
            try:
                holiday_data.country_holidays(self.country, subdiv=self.subdivision, years=2026)
            except NotImplementedError as exc:
                raise ValueError(f"no public holidays known for country {self.country!r}: {exc}") from exc
        if self.china and self.country:
            raise ValueError("give either china: true or a country, not both")
        return self

    @cached_property
    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar(self)


CHINA_FIRST, CHINA_LAST = 2004, 2026
"""The years the installed chinesecalendar knows (checked below at first use)."""


@lru_cache(maxsize=1)
def china_years() -> tuple[int, int]:
    """The first and last year chinesecalendar has official data for."""
    first, last = CHINA_FIRST, CHINA_LAST
    while True:
        try:
            chinese_calendar.is_workday(date(last + 1, 1, 1))
        except NotImplementedError:
            break
        last += 1
    return first, last


@dataclass(frozen=True)
class BusinessCalendar:
    config: CalendarConfig

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.config.time_zone)

    @cached_property
    def spans(self) -> tuple[tuple[time, time | None], ...]:
        return tuple(sorted(_parse_span(h) for h in self.config.hours))

    def knows(self, day: date) -> bool:
        """Whether official holiday data covers this day (False: the weekly pattern and lists decide)."""
        if self.config.china:
            first, last = china_years()
            return first <= day.year <= last
        return True

    def is_working_day(self, day: date) -> bool:
        c = self.config
        if c.always or day in c.workdays:
            return True
        if day in c.holidays:
            return False
        if c.china and self.knows(day):
            return bool(chinese_calendar.is_workday(day))
        if WEEKDAYS[day.weekday()] not in c.days:
            return False
        return c.country is None or day not in _country_holidays(c.country, c.subdivision, day.year)

    def working_spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working time as UTC intervals (empty on a day off)."""
        if not self.is_working_day(day):
            return []
        out = []
        for start, end in self.spans:
            begins = datetime.combine(day, start, self.zone).astimezone(UTC)
            if end is None:
                ends = datetime.combine(day + timedelta(days=1), time(0), self.zone).astimezone(UTC)
            else:
                ends = datetime.combine(day, end, self.zone).astimezone(UTC)
            if ends > begins:
                out.append((begins, ends))
        return out

    def _spans_from(self, at: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals from ``at`` on (the first one clipped to start at ``at``)."""
        day = at.astimezone(self.zone).date() - timedelta(days=1)  # yesterday's span may run past midnight
        for _ in range(SEARCH_DAYS):
            for begins, ends in self.working_spans(day):
                if ends > at:
                    yield max(begins, at), ends
            day += timedelta(days=1)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment when ``duration`` of working time has passed since ``start``."""
        start = start.astimezone(UTC)
        if self.config.always or duration <= timedelta(0):
            return start + max(duration, timedelta(0))
        left = duration
        for begins, ends in self._spans_from(start):
            if ends - begins >= left:
                return begins + left
            left -= ends - begins
        raise ValueError(f"calendar has no working time within {SEARCH_DAYS} days of {start.isoformat()}")

    def next_working(self, at: datetime) -> datetime:
        """``at`` if the clock runs then, else the start of the next working time."""
        at = at.astimezone(UTC)
        if self.config.always:
            return at
        for begins, _ in self._spans_from(at):
            return begins
        raise ValueError(f"calendar has no working time within {SEARCH_DAYS} days of {at.isoformat()}")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two moments (zero when ``end`` is not after ``start``)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return timedelta(0)
        if self.config.always:
            return end - start
        total = timedelta(0)
        for begins, ends in self._spans_from(start):
            if begins >= end:
                break
            total += min(ends, end) - begins
        return total


@lru_cache(maxsize=64)
def _country_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holiday_data.country_holidays(country, subdiv=subdivision, years=year).keys())


def unknown_years(config: CalendarConfig, years: list[int]) -> list[int]:
    """Which of ``years`` China's official data does not cover yet (for ``config check``)."""
    if not config.china:
        return []
    first, last = china_years()
    return [y for y in years if not first <= y <= last]
