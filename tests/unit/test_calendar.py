"""Business calendars (pure): working days, China's official holidays and make-up days, DST, midnight,
month and year ends, and a 24x7 calendar without gaps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.sla.calendar import CalendarConfig, china_years, unknown_years

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
CN = CalendarConfig(time_zone="Asia/Shanghai", hours=["09:00-12:00", "13:30-18:00"], china=True).calendar
OFFICE = CalendarConfig(time_zone="Europe/Berlin", hours=["09:00-18:00"]).calendar
ALWAYS = CalendarConfig(always=True).calendar
H = timedelta(hours=1)


def test_the_friday_evening_before_national_day_lands_on_the_make_up_sunday() -> None:
    # 2025: Oct 1-8 off; Sunday Sep 28 and Saturday Oct 11 are make-up working days
    friday = datetime(2025, 9, 26, 17, 0, tzinfo=SH)
    assert CN.add(friday, 4 * H) == datetime(2025, 9, 28, 12, 0, tzinfo=SH), "1 h on Friday, 3 h on the Sunday"
    assert not CN.is_working_day(date(2025, 9, 27)), "the Saturday before is off"
    assert CN.is_working_day(date(2025, 9, 28)), "the Sunday is a make-up working day"
    # from the last working hour on Sep 30, 8 hours later is Thursday Oct 9 after the holiday week
    assert CN.add(datetime(2025, 9, 30, 17, 0, tzinfo=SH), 8 * H) == datetime(2025, 10, 9, 17, 30, tzinfo=SH)
    assert CN.is_working_day(date(2025, 10, 11)), "and the Saturday after is a make-up working day"
    assert all(not CN.is_working_day(date(2025, 10, d)) for d in range(1, 9))


def test_lunch_break_and_the_end_of_the_day() -> None:
    morning = datetime(2025, 11, 24, 11, 0, tzinfo=SH)  # a Monday
    assert CN.add(morning, 2 * H) == datetime(2025, 11, 24, 14, 30, tzinfo=SH), "the lunch break does not count"
    assert CN.add(datetime(2025, 11, 24, 12, 15, tzinfo=SH), 30 * timedelta(minutes=1)) == datetime(
        2025, 11, 24, 14, 0, tzinfo=SH
    )
    assert CN.next_working(datetime(2025, 11, 24, 20, 0, tzinfo=SH)) == datetime(2025, 11, 25, 9, 0, tzinfo=SH)
    assert CN.elapsed(datetime(2025, 11, 24, 8, 0, tzinfo=SH), datetime(2025, 11, 24, 20, 0, tzinfo=SH)) == 7.5 * H


def test_month_and_year_ends_and_weekends() -> None:
    assert OFFICE.add(datetime(2027, 12, 31, 17, 0, tzinfo=BERLIN), 2 * H) == datetime(2028, 1, 3, 10, 0, tzinfo=BERLIN)
    assert OFFICE.add(datetime(2026, 2, 27, 17, 30, tzinfo=BERLIN), H) == datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN)
    assert OFFICE.add(datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN), H) == datetime(2026, 11, 30, 10, 0, tzinfo=BERLIN)


def test_working_hours_keep_their_wall_clock_across_dst() -> None:
    # Berlin springs forward on Sunday 2026-03-29; Friday 17:00 + 2 business hours is Monday 10:00 local
    friday = datetime(2026, 3, 27, 17, 0, tzinfo=BERLIN)
    monday = OFFICE.add(friday, 2 * H)
    assert monday == datetime(2026, 3, 30, 10, 0, tzinfo=BERLIN)
    assert monday.astimezone(UTC).hour == 8, "CEST now"
    assert OFFICE.elapsed(friday, monday) == 2 * H


def test_a_24x7_calendar_has_no_gap_at_midnight_or_dst() -> None:
    before = datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)
    assert ALWAYS.add(before, H) == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN), "01:30 CET + 1 h is 03:30 CEST"
    assert ALWAYS.elapsed(before, datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)) == H
    midnight = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert ALWAYS.add(midnight, H) == datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    round_clock = CalendarConfig(
        time_zone="Europe/Berlin", days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], hours=["00:00-24:00"]
    ).calendar
    assert round_clock.add(before, H) == ALWAYS.add(before, H), "00:00-24:00 every day is 24x7, across DST too"
    assert round_clock.add(midnight, H) == ALWAYS.add(midnight, H)


def test_country_holidays_and_listed_days() -> None:
    de = CalendarConfig(time_zone="Europe/Berlin", country="DE", hours=["09:00-17:00"]).calendar
    assert not de.is_working_day(date(2026, 12, 25))
    assert de.add(datetime(2026, 12, 24, 16, 0, tzinfo=BERLIN), 2 * H) == datetime(2026, 12, 28, 10, 0, tzinfo=BERLIN)
    listed = CalendarConfig(holidays=[date(2026, 11, 30)], workdays=[date(2026, 11, 29)]).calendar
    assert listed.is_working_day(date(2026, 11, 29)) and not listed.is_working_day(date(2026, 11, 30))


def test_years_china_has_not_published_fall_back_to_the_week_and_the_lists() -> None:
    first, last = china_years()
    assert first <= 2025 <= last
    later = date(last + 1, 1, 4)
    while later.weekday() != 0:
        later += timedelta(days=1)
    assert not CN.knows(later)
    assert CN.is_working_day(later), "a Monday of an unpublished year: the weekly pattern"
    listed = CalendarConfig(time_zone="Asia/Shanghai", china=True, holidays=[later]).calendar
    assert not listed.is_working_day(later), "an operator can list the days ahead of the package"
    assert unknown_years(CalendarConfig(china=True), [last, last + 1]) == [last + 1]
    assert unknown_years(CalendarConfig(), [last + 1]) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"time_zone": "Mars/Base"}, "unknown time zone"),
        ({"hours": ["18:00-09:00"]}, "end before they start"),
        ({"hours": ["9-18"]}, "HH:MM-HH:MM"),
        ({"hours": ["09:00-13:00", "12:00-18:00"]}, "overlap"),
        ({"hours": []}, "needs working hours"),
        ({"country": "XX"}, "no public holidays known"),
        ({"china": True, "country": "DE"}, "either"),
        ({"days": ["funday"]}, "days"),
    ],
)
def test_calendar_config_is_validated(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalendarConfig.model_validate(body)


moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 1), timezones=st.just(UTC))
durations = st.integers(min_value=1, max_value=60 * 24 * 20).map(lambda m: timedelta(minutes=m))


@given(moments, durations)
def test_elapsed_undoes_add(start: datetime, duration: timedelta) -> None:
    for calendar in (CN, OFFICE, ALWAYS):
        deadline = calendar.add(start, duration)
        assert deadline > start
        assert calendar.elapsed(start, deadline) == duration


@given(moments, durations, durations)
def test_add_is_monotonic_and_additive(start: datetime, a: timedelta, b: timedelta) -> None:
    for calendar in (CN, OFFICE):
        assert calendar.add(start, min(a, b)) <= calendar.add(start, max(a, b))
        assert calendar.add(calendar.add(start, a), b) == calendar.add(start, a + b)
