from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.decision import decide_event
from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig
from shared.rules.maintenance import MaintenanceWindow, muted_until
from shared.rules.muting import MuteState, MutingConfig, mute_for
from shared.rules.oncall import TeamsConfig
from tests.unit.factories import event, ticket

SH = ZoneInfo("Asia/Shanghai")
NIGHTLY = MaintenanceWindow.model_validate(
    {
        "name": "db-patching",
        "matchers": ['service="db"'],
        "time_zone": "Asia/Shanghai",
        "weekdays": ["sat"],
        "start": "23:00",
        "end": "01:30",
    }
)
MOVE = MaintenanceWindow.model_validate(
    {
        "name": "dc-move",
        "matchers": ['site="bj-1"'],
        "from": "2026-12-05T20:00:00+08:00",
        "until": "2026-12-06T08:00:00+08:00",
    }
)
SAT = datetime(2026, 11, 28, tzinfo=SH)  # a Saturday


@pytest.mark.parametrize(
    ("local", "ends"),
    [
        (SAT.replace(hour=22, minute=59), None),
        (SAT.replace(hour=23), SAT + timedelta(days=1, hours=1, minutes=30)),
        (
            SAT + timedelta(days=1, hours=1, minutes=29),
            SAT + timedelta(days=1, hours=1, minutes=30),
        ),  # Sunday, after midnight
        (SAT + timedelta(days=1, hours=1, minutes=30), None),
        (SAT + timedelta(days=1, hours=23, minutes=30), None),  # Sunday night: not a window day
        (SAT - timedelta(days=1) + timedelta(hours=23, minutes=30), None),  # Friday night
    ],
)
def test_a_weekly_window_wraps_midnight_in_its_time_zone(local: datetime, ends: datetime | None) -> None:
    assert NIGHTLY.ends_after(local.astimezone(UTC)) == ends


def test_one_off_window() -> None:
    start = datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert MOVE.ends_after(start - timedelta(seconds=1)) is None
    assert MOVE.ends_after(start) == datetime(2026, 12, 6, 8, tzinfo=SH)
    assert MOVE.ends_after(datetime(2026, 12, 6, 0, tzinfo=UTC)) is None


def test_daily_window_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    w = MaintenanceWindow.model_validate(
        {"name": "n", "matchers": ['a="b"'], "time_zone": "Europe/Berlin", "start": "01:00", "end": "04:00"}
    )
    # 2026-03-29: clocks jump from 02:00 to 03:00; the window is two real hours long that night
    inside = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)
    end = w.ends_after(inside.astimezone(UTC))
    assert end is not None and (end.astimezone(UTC) - inside.astimezone(UTC)) == timedelta(hours=1, minutes=30)
    assert w.ends_after(datetime(2026, 3, 29, 4, 0, tzinfo=berlin).astimezone(UTC)) is None


@given(st.integers(min_value=0, max_value=14 * 24 * 60))
def test_inside_a_window_its_end_is_in_the_future_and_within_its_length(minutes: int) -> None:
    at = (SAT - timedelta(days=3) + timedelta(minutes=minutes)).astimezone(UTC)
    end = NIGHTLY.ends_after(at)
    if end is not None:
        assert at < end <= at + timedelta(hours=2, minutes=30)
        assert end.astimezone(SH).time().isoformat() == "01:30:00"


def test_labels_pick_the_windows_and_the_latest_end_wins() -> None:
    at = datetime(2026, 12, 5, 23, 30, tzinfo=SH)  # a Saturday night during the move
    until, names = muted_until({"service": "db", "site": "bj-1"}, at.astimezone(UTC), [NIGHTLY, MOVE])
    assert (until, names) == (datetime(2026, 12, 6, 8, tzinfo=SH), ["db-patching", "dc-move"])
    assert muted_until({"service": "web"}, at, [NIGHTLY, MOVE]) == (None, [])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"start": "01:00"}, "start and a different end"),
        ({"start": "01:00", "end": "01:00"}, "different end"),
        ({"from": "2026-12-05T20:00:00+08:00", "until": "2026-12-05T19:00:00+08:00"}, "before 'until'"),
        (
            {
                "start": "01:00",
                "end": "02:00",
                "from": "2026-12-05T20:00:00+08:00",
                "until": "2026-12-06T20:00:00+08:00",
            },
            "either",
        ),
        ({}, "either"),
        ({"start": "01:00", "end": "02:00", "time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"start": "01:00", "end": "02:00", "weekdays": ["funday"]}, "weekdays"),
    ],
)
def test_window_validation(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaintenanceWindow.model_validate({"name": "w", "matchers": ['a="b"'], **body})


def test_tickets_opened_in_a_window_are_muted_until_it_ends() -> None:
    at = datetime(2026, 12, 5, 23, 30, tzinfo=SH).astimezone(UTC)
    routing = RoutingConfig.model_validate(
        {"route": {"team": "ops"}, "maintenance_windows": [MOVE.model_dump(by_alias=True)]}
    )
    d = decide_event(event(labels={"site": "bj-1"}, received_at=at), routing, ProjectsConfig(), TeamsConfig(), [])
    assert d.muted_until == datetime(2026, 12, 6, 8, tzinfo=SH) and d.muted_by == ("dc-move",)
    assert "muted by dc-move until 2026-12-06T08:00:00+08:00" in d.explain()
    assert (
        decide_event(
            event(labels={"site": "sh-2"}, received_at=at), routing, ProjectsConfig(), TeamsConfig(), []
        ).muted_until
        is None
    )


def test_the_notifier_is_quiet_while_muted_and_speaks_afterwards() -> None:
    until = datetime(2026, 12, 6, tzinfo=UTC)
    mute = mute_for(ticket(muted_until=until), until - timedelta(seconds=1), MuteState())
    assert mute is not None and mute.cause == "maintenance" and until.isoformat() in mute.reason
    assert mute_for(ticket(muted_until=until), until, MuteState()) is None
    assert mute_for(ticket(), until, MuteState()) is None


def test_a_window_that_starts_later_mutes_tickets_that_were_already_open() -> None:
    """The window is checked when a notification is due, not only when the ticket opened."""
    config = MutingConfig(maintenance_windows=[MOVE])
    inside = datetime(2026, 12, 5, 23, 30, tzinfo=SH)
    opened_before = ticket(labels={"site": "bj-1"}, opened_at=inside - timedelta(days=2))
    mute = mute_for(opened_before, inside, MuteState(config=config))
    assert mute is not None and mute.reason == "in maintenance window dc-move until 2026-12-06T08:00:00+08:00"
    assert mute_for(opened_before, datetime(2026, 12, 6, 8, tzinfo=SH), MuteState(config=config)) is None
    assert mute_for(ticket(labels={"site": "sh-2"}), inside, MuteState(config=config)) is None
