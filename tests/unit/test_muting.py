"""Silences, inhibition and the notifier's mute stage (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.rules.inhibition import InhibitRule, inhibited_by
from shared.rules.muting import MuteState, MutingConfig, mute_for
from shared.rules.silences import Silence, SilenceRequest, silenced_by, ticket_labels
from tests.unit.factories import T0, ticket


def silence(sid: str = "s1", matchers: list[str] | None = None, **over: object) -> Silence:
    data: dict[str, object] = {
        "silence_id": sid,
        "matchers": matchers or ['service="db"'],
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=2),
        "created_by": "olga",
        "comment": "failover drill",
        "created_at": T0,
    }
    data.update(over)
    return Silence.model_validate(data)


SITE_DOWN = InhibitRule(
    name="site-down",
    source_matchers=['alertname="SiteDown"'],
    target_matchers=['severity=~"warning|error|critical"'],
    equal=["site"],
)


def test_a_silence_is_pending_then_active_then_expired() -> None:
    s = silence()
    assert s.state(T0 - timedelta(seconds=1)) == "pending"
    assert s.state(T0) == "active"
    assert s.state(T0 + timedelta(hours=2) - timedelta(microseconds=1)) == "active"
    assert s.state(T0 + timedelta(hours=2)) == "expired"


def test_silenced_by_needs_every_matcher_and_an_active_silence() -> None:
    both = silence(matchers=['service="db"', 'site="bj-1"'])
    assert silenced_by({"service": "db", "site": "bj-1"}, [both], T0) == both
    assert silenced_by({"service": "db", "site": "sh-2"}, [both], T0) is None
    assert silenced_by({"service": "db", "site": "bj-1"}, [both], T0 - timedelta(minutes=1)) is None
    longer = silence("s2", ends_at=T0 + timedelta(hours=5))
    assert silenced_by({"service": "db"}, [silence(), longer], T0) == longer


def test_ticket_labels_carry_severity_source_and_kind() -> None:
    labels = ticket_labels(ticket(labels={"service": "db"}))
    assert labels == {"service": "db", "severity": "critical", "source": "am", "kind": "alert"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"matchers": [], "duration": "1h"}, "matchers"),
        ({"matchers": ["service"], "duration": "1h"}, "matchers.0: not a matcher"),
        ({"matchers": ['a=~"("'], "duration": "1h"}, "invalid regular expression"),
        ({"matchers": ['a="b"']}, "exactly one of 'ends_at' or 'duration'"),
        ({"matchers": ['a="b"'], "duration": "1h", "ends_at": "2026-11-24T12:00:00Z"}, "exactly one"),
        ({"matchers": ['a="b"'], "duration": "soon"}, "not a duration"),
        ({"matchers": ['a="b"'], "ends_at": "2026-11-24T12:00:00"}, "timezone"),
        ({"matchers": ['a="b"'], "duration": "1h", "created_by": ""}, "created_by"),
        ({"matchers": ['a="b"'], "duration": "1h", "comment": ""}, "comment"),
        ({"matchers": ['a="b"'], "duration": "1h", "colour": "red"}, "colour"),
    ],
)
def test_silence_requests_are_validated(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SilenceRequest.model_validate({"created_by": "olga", "comment": "drill", **body})


def test_a_silence_window_must_end_in_the_future_and_after_its_start() -> None:
    ok = SilenceRequest.model_validate({"matchers": ['a="b"'], "duration": "90m", "created_by": "o", "comment": "c"})
    assert ok.window(T0) == (T0, T0 + timedelta(minutes=90))
    past = SilenceRequest.model_validate(
        {"matchers": ['a="b"'], "ends_at": T0 - timedelta(minutes=1), "created_by": "o", "comment": "c"}
    )
    with pytest.raises(ValueError, match="in the past"):
        past.window(T0)
    backwards = SilenceRequest.model_validate(
        {
            "matchers": ['a="b"'],
            "starts_at": T0 + timedelta(hours=3),
            "ends_at": T0 + timedelta(hours=2),
            "created_by": "o",
            "comment": "c",
        }
    )
    with pytest.raises(ValueError, match="after starts_at"):
        backwards.window(T0)
    forever = SilenceRequest.model_validate(
        {"matchers": ['a="b"'], "duration": "400d", "created_by": "o", "comment": "c"}
    )
    with pytest.raises(ValueError, match="at most 366 days"):
        forever.window(T0)


def test_inhibition_needs_a_firing_source_with_equal_labels() -> None:
    target = {"alertname": "HostDown", "site": "bj-1", "severity": "critical"}
    source = ("tl-src", {"alertname": "SiteDown", "site": "bj-1", "severity": "critical"})
    assert inhibited_by("tl-t", target, [source], [SITE_DOWN]) == (SITE_DOWN, "tl-src")
    other_site = ("tl-src", {"alertname": "SiteDown", "site": "sh-2"})
    assert inhibited_by("tl-t", target, [other_site], [SITE_DOWN]) is None
    assert inhibited_by("tl-t", {**target, "severity": "info"}, [source], [SITE_DOWN]) is None, "not a target"
    assert inhibited_by("tl-t", target, [], [SITE_DOWN]) is None, "nothing fires"


def test_a_ticket_never_inhibits_itself() -> None:
    labels = {"alertname": "SiteDown", "site": "bj-1", "severity": "critical"}
    assert inhibited_by("tl-1", labels, [("tl-1", labels)], [SITE_DOWN]) is None
    assert inhibited_by("tl-2", labels, [("tl-1", labels)], [SITE_DOWN]) == (SITE_DOWN, "tl-1")


def test_labels_missing_on_both_sides_count_as_equal() -> None:
    rule = SITE_DOWN.model_copy(update={"equal": ["site", "rack"]})
    target = {"alertname": "HostDown", "site": "bj-1", "severity": "error"}
    assert inhibited_by("t", target, [("s", {"alertname": "SiteDown", "site": "bj-1"})], [rule]) is not None
    assert inhibited_by("t", target, [("s", {"alertname": "SiteDown", "site": "bj-1", "rack": "r1"})], [rule]) is None


@given(
    st.dictionaries(st.sampled_from(["site", "rack", "alertname"]), st.sampled_from(["a", "b", ""]), max_size=3),
    st.dictionaries(st.sampled_from(["site", "rack", "alertname"]), st.sampled_from(["a", "b", ""]), max_size=3),
)
def test_inhibition_is_exactly_source_and_target_and_equal(source: dict[str, str], target: dict[str, str]) -> None:
    rule = InhibitRule(name="r", source_matchers=['alertname="a"'], target_matchers=['alertname!="a"'], equal=["site"])
    expected = (
        source.get("alertname", "") == "a"
        and target.get("alertname", "") != "a"
        and source.get("site", "") == target.get("site", "")
    )
    assert (inhibited_by("t", target, [("s", source)], [rule]) is not None) == expected


def test_the_mute_stage_says_what_muted_a_ticket() -> None:
    t = ticket(labels={"service": "db", "site": "bj-1", "alertname": "HostDown"})
    mute = mute_for(t, T0 + timedelta(minutes=5), MuteState(silences=[silence()]))
    assert mute is not None and mute.cause == "silence"
    assert mute.reason == "silence s1 by olga until 2026-11-24T11:00:00+00:00: failover drill"
    assert mute_for(t, T0 + timedelta(hours=2), MuteState(silences=[silence()])) is None, "the silence has ended"
    source = ("tl-src", {"alertname": "SiteDown", "site": "bj-1"})
    inhibiting = MuteState(firing=[source], config=MutingConfig(inhibit_rules=[SITE_DOWN]))
    mute = mute_for(t, T0, inhibiting)
    assert mute is not None and mute.cause == "inhibition"
    assert mute.reason == "inhibited by firing ticket tl-src (rule site-down)"
    assert mute_for(t, T0, MuteState()) is None


def test_muting_config_reads_only_its_part_of_routing_yaml() -> None:
    config = MutingConfig.model_validate(
        {"route": {"team": "ops"}, "inhibit_rules": [SITE_DOWN.model_dump()], "reopen_window": "1h"}
    )
    assert config.inhibit_rules == [SITE_DOWN]
    with pytest.raises(ValidationError, match="source_matchers"):
        MutingConfig.model_validate({"inhibit_rules": [{"name": "x", "target_matchers": ['a="b"']}]})


def test_now_is_timezone_aware_in_silence_states() -> None:
    assert silence().state(datetime(2026, 11, 24, 10, tzinfo=UTC)) == "active"
