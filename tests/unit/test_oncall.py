"""On-call rotations and overrides (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.rules.oncall import Override, OverrideRequest, Rotation, TeamsConfig, on_call, shift_at, upcoming_shifts

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
CONFIG = TeamsConfig.model_validate(
    {
        "people": {"olga": {"email": "olga@example.test"}, "oscar": {}, "otto": {}, "ian": {"email": "ian@x.test"}},
        "teams": {
            "operations": {
                "members": ["olga", "oscar", "otto"],
                "lead": "olga",
                "rotation": {
                    "every": "weekly",
                    "handoff": "09:00",
                    "time_zone": "Asia/Shanghai",
                    "start": "2026-11-02",
                },
            },
            "nightly": {
                "members": ["olga", "oscar"],
                "rotation": {
                    "every": "daily",
                    "handoff": "18:30",
                    "time_zone": "America/New_York",
                    "start": "2026-03-01",
                },
            },
            "implementation": {"members": ["ian"]},
        },
    }
)


def override(
    oid: str, person: str, start: datetime, hours: float, created: datetime, team: str = "operations"
) -> Override:
    return Override(
        override_id=oid,
        team=team,
        person=person,
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
        created_by="lead",
        created_at=created,
    )


def who(at: datetime, team: str = "operations", overrides: list[Override] | None = None) -> str | None:
    found = on_call(team, CONFIG, overrides or [], at)
    return found.person if found else None


def test_weekly_rotation_hands_off_at_the_local_handoff_time() -> None:
    assert who(datetime(2026, 11, 2, 9, 0, tzinfo=SH)) == "olga"
    assert who(datetime(2026, 11, 9, 8, 59, 59, tzinfo=SH)) == "olga", "one second before the handoff"
    assert who(datetime(2026, 11, 9, 9, 0, tzinfo=SH)) == "oscar"
    assert who(datetime(2026, 11, 16, 9, 0, tzinfo=SH)) == "otto"
    assert who(datetime(2026, 11, 23, 9, 0, tzinfo=SH)) == "olga", "round and round"
    assert who(datetime(2026, 11, 2, 8, 0, tzinfo=SH)) == "otto", "before the start the rotation runs backwards"


def test_the_shift_knows_when_it_ends() -> None:
    found = on_call("operations", CONFIG, [], datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    assert found is not None
    assert (found.person, found.source) == ("olga", "rotation")
    assert found.until == datetime(2026, 11, 30, 9, 0, tzinfo=SH)
    assert found.describe() == "on call for operations: olga (rotation, until 2026-11-30T09:00:00+08:00)"


def test_a_daily_handoff_stays_at_its_wall_clock_time_across_dst() -> None:
    rotation = CONFIG.teams["nightly"].rotation
    assert rotation is not None
    order = ["olga", "oscar"]
    # 2026-03-08 02:00 New York springs forward: that shift is 23 hours long, the handoff stays at 18:30
    before = shift_at(rotation, order, datetime(2026, 3, 7, 20, 0, tzinfo=NY))
    assert before.starts_at == datetime(2026, 3, 7, 18, 30, tzinfo=NY)
    assert before.ends_at == datetime(2026, 3, 8, 18, 30, tzinfo=NY)
    assert before.ends_at.astimezone(UTC) - before.starts_at.astimezone(UTC) == timedelta(hours=23)
    after = shift_at(rotation, order, datetime(2026, 3, 8, 18, 30, tzinfo=NY))
    assert after.person != before.person and after.starts_at == before.ends_at
    # 2026-11-01 falls back: a 25 hour shift
    fall = shift_at(rotation, order, datetime(2026, 11, 1, 12, 0, tzinfo=NY))
    assert fall.ends_at.astimezone(UTC) - fall.starts_at.astimezone(UTC) == timedelta(hours=25)


def test_the_newest_covering_override_wins_and_ends_on_time() -> None:
    at = datetime(2026, 11, 24, 12, 0, tzinfo=SH)
    first = override("o1", "oscar", at - timedelta(hours=1), 4, created=at - timedelta(days=2))
    second = override("o2", "otto", at - timedelta(hours=2), 3, created=at - timedelta(days=1))
    assert who(at, overrides=[first, second]) == "otto"
    assert who(at + timedelta(hours=1, minutes=30), overrides=[first, second]) == "oscar", "otto's has ended"
    assert who(at + timedelta(hours=3), overrides=[first, second]) == "olga", "both ended: the rotation again"
    found = on_call("operations", CONFIG, [first], at)
    assert found is not None and (found.source, found.override_id, found.until) == ("override", "o1", first.ends_at)
    other_team = override("o3", "ian", at - timedelta(hours=1), 4, created=at, team="implementation")
    assert who(at, overrides=[other_team]) == "olga"
    assert who(at, team="implementation", overrides=[other_team]) == "ian"


def test_a_team_without_rotation_or_override_has_nobody_on_call() -> None:
    assert on_call("implementation", CONFIG, [], datetime(2026, 11, 24, tzinfo=UTC)) is None
    assert on_call("nobody-knows", CONFIG, [], datetime(2026, 11, 24, tzinfo=UTC)) is None


def test_upcoming_shifts_follow_each_other() -> None:
    rotation = CONFIG.teams["operations"].rotation
    assert rotation is not None
    shifts = upcoming_shifts(rotation, ["olga", "oscar", "otto"], datetime(2026, 11, 24, tzinfo=UTC), 4)
    assert [s.person for s in shifts] == ["olga", "oscar", "otto", "olga"]
    assert all(a.ends_at == b.starts_at for a, b in itertools.pairwise(shifts))


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)),
    st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]),
    st.sampled_from(["daily", "weekly"]),
    st.times(),
)
@example(datetime(2026, 3, 8, 7, 0, tzinfo=UTC), "America/New_York", "daily", time(2, 30))
@example(datetime(2026, 11, 1, 5, 45, tzinfo=UTC), "America/New_York", "daily", time(1, 30))
def test_every_moment_falls_in_exactly_one_shift(at: datetime, zone: str, every: str, handoff: time) -> None:
    rotation = Rotation.model_validate(
        {"every": every, "handoff": handoff.replace(tzinfo=None), "time_zone": zone, "start": date(2026, 1, 5)}
    )
    order = ["a", "b", "c"]
    shift = shift_at(rotation, order, at)
    assert shift.starts_at <= at < shift.ends_at
    following = shift_at(rotation, order, shift.ends_at)
    assert following.starts_at == shift.ends_at
    assert order.index(following.person) == (order.index(shift.person) + 1) % 3


@pytest.mark.parametrize(
    ("teams", "message"),
    [
        ({"ops": {"members": ["zoe"]}}, "teams.ops.members: 'zoe' is not in people"),
        ({"ops": {"members": ["olga"], "lead": "oscar"}}, "lead 'oscar' is not a member"),
        (
            {"ops": {"members": [], "rotation": {"every": "daily", "handoff": "09:00", "start": "2026-01-01"}}},
            "needs members",
        ),
        (
            {
                "ops": {
                    "members": ["olga"],
                    "rotation": {"every": "daily", "handoff": "09:00", "start": "2026-01-01", "order": ["oscar"]},
                }
            },
            "not members",
        ),
        (
            {"ops": {"members": ["olga"], "rotation": {"every": "hourly", "handoff": "09:00", "start": "2026-01-01"}}},
            "every",
        ),
        (
            {
                "ops": {
                    "members": ["olga"],
                    "rotation": {"every": "daily", "handoff": "09:00", "start": "2026-01-01", "time_zone": "Moon/Base"},
                }
            },
            "unknown time zone",
        ),
    ],
)
def test_teams_config_is_validated(teams: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TeamsConfig.model_validate({"people": {"olga": {}, "oscar": {}}, "teams": teams})


def test_override_requests_need_an_end_in_the_future() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    ok = OverrideRequest.model_validate({"person": "oscar", "duration": "8h"})
    assert ok.window(now) == (now, now + timedelta(hours=8))
    with pytest.raises(ValidationError, match="exactly one"):
        OverrideRequest.model_validate({"person": "oscar"})
    with pytest.raises(ValueError, match="in the past"):
        OverrideRequest.model_validate({"person": "oscar", "ends_at": "2020-01-01T00:00:00Z"}).window(now)
    late = OverrideRequest.model_validate({"person": "o", "starts_at": "9000-12-31T23:00:00Z", "duration": "36500d"})
    with pytest.raises(ValueError, match="after 9000"):  # it ended in the year 9100 before
        late.window(now)
