"""bench/notify_fanout.py's decisions: the paced phase's rate, its warm-up and the percentiles it reports."""

from __future__ import annotations

import math

from bench.notify_fanout import (
    Phase,
    baseline_in_flight,
    from_start,
    gc_pauses,
    gc_summary,
    group_stable,
    measured_max,
    paced_notifs_per_s,
    pauses_within,
    percentile,
    split_warmup,
    ticket_ids,
)
from services.notifier.channels.webhook import IN_FLIGHT


def test_the_paced_rate_is_a_share_of_the_measured_maximum_unless_a_rate_is_given() -> None:
    assert paced_notifs_per_s(0.7, None, 2000.0) == 1400.0
    assert paced_notifs_per_s(0.7, 1300.0, 2500.0) == 1300.0  # two builds compared at the same load


def test_the_measured_maximum_is_the_faster_storm_of_those_measured() -> None:
    assert measured_max(4200.0, 5150.0) == 5150.0  # the live storm outran the backlog
    assert measured_max(5600.0, 5150.0) == 5600.0
    assert measured_max(4200.0, math.nan) == 4200.0  # the live storm was not measured
    assert math.isnan(measured_max(math.nan, math.nan))


def test_a_storm_spans_from_when_the_notifier_had_its_partitions_to_its_last_receive() -> None:
    receives = Phase(8000, 8000, 1.4, first_at=100.5)
    burst = from_start(receives, 100.0)
    # the first poll's events were planned into the outbox before anything was received: that time counts too
    assert (burst.delivered, round(burst.span_s, 9), burst.first_at) == (8000, 1.9, 100.0)
    assert round(burst.per_s) == 4211 and round(receives.per_s) == 5714
    assert from_start(receives, math.nan) == receives  # not known: the receives' span, as before
    assert from_start(receives, 100.6) == receives  # a start after the first receive is no start
    nothing = Phase(8000, 0, math.nan)
    assert from_start(nothing, 100.0) == nothing


def test_the_group_is_stable_once_a_member_has_its_partitions() -> None:
    member = ("consumer-1", "client", "/127.0.0.1", b"", b"assignment")
    assert group_stable([(0, "g.notifier", "Stable", "consumer", "range", [member])], "g.notifier")
    assert not group_stable([(0, "g.notifier", "PreparingRebalance", "consumer", "range", [member])], "g.notifier")
    assert not group_stable([(0, "g.notifier", "Stable", "consumer", "range", [])], "g.notifier")  # no member
    assert not group_stable([(16, "g.notifier", "Dead", "", "", [])], "g.notifier")  # not its coordinator yet
    assert not group_stable([(0, "other", "Stable", "consumer", "range", [member])], "g.notifier")
    assert not group_stable([], "g.notifier")


def test_percentiles_are_nearest_rank_and_nan_without_values() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 0.5) == 50.0
    assert percentile(ordered, 0.99) == 99.0
    assert math.isnan(percentile([], 0.99))


def test_the_baseline_runs_take_turns_one_in_flight_and_as_many_as_a_webhook_lane() -> None:
    assert [baseline_in_flight(run) for run in range(4)] == [1, IN_FLIGHT, 1, IN_FLIGHT]
    assert IN_FLIGHT > 1


def test_ticket_ids_are_distinct_of_one_width_and_in_no_order() -> None:
    ids = ticket_ids("P", 20_000)
    assert len(set(ids)) == 20_000 and {len(i) for i in ids} == {8} and all(i.startswith("P") for i in ids)
    assert ids != sorted(ids), "scattered, as the router's hashed ids are"


def test_the_warm_up_is_split_from_the_measured_stream_by_its_ticket_ids() -> None:
    ids = ticket_ids("W", 3) + ticket_ids("P", 2)
    stream = {tid: float(k) for k, tid in enumerate(ids)}
    warm, measured = split_warmup(stream, "W")
    assert sorted(warm) == ["W0000000", "W3999971", "W7999942"]
    assert measured == {"P0000000": 3.0, "P3999971": 4.0}
    assert split_warmup(stream, "X") == ({}, stream)  # no warm-up: everything is measured


GC_LOG = """\
[1796599480000ms] Using G1
[1796599481020ms] GC(3) Pause Young (Normal) (G1 Evacuation Pause) 311M->176M(512M) 20.000ms
[1796599482000ms] GC(4) Concurrent Mark Cycle
[1796599482503ms] GC(4) Pause Remark 200M->200M(512M) 3.000ms
[1796599489010ms] GC(5) Pause Young (Normal) (G1 Evacuation Pause) 259M->176M(512M) 10.000ms
[1796599489500ms] GC(4) Concurrent Mark Cycle 1500.123ms
"""


def test_the_broker_s_pauses_are_read_from_its_gc_log_with_when_they_began() -> None:
    pauses = gc_pauses(GC_LOG)
    assert [round(at, 3) for at, _ in pauses] == [1796599481.0, 1796599482.5, 1796599489.0]
    assert [ms for _, ms in pauses] == [20.0, 3.0, 10.0]  # a concurrent phase is no pause
    assert gc_pauses("garbage\n[12ms] GC(1) Pause Young 5M->1M(8M)\n") == []  # no duration: not counted


def test_only_the_pauses_that_began_during_the_measured_stream_count() -> None:
    pauses = gc_pauses(GC_LOG)
    assert pauses_within(pauses, 1796599481.5, 1796599488.0) == [3.0]
    assert pauses_within(pauses, 1796599470.0, 1796599490.0) == [20.0, 3.0, 10.0]
    assert pauses_within(pauses, 1796599490.0, 1796599499.0) == []


def test_the_details_line_says_how_many_pauses_how_long_and_when_it_cannot_know() -> None:
    assert gc_summary([20.0, 3.0]) == "broker_gc_pauses=2 broker_gc_max_ms=20.0 broker_gc_sum_ms=23.0"
    assert gc_summary([]) == "broker_gc_pauses=0 broker_gc_max_ms=0.0 broker_gc_sum_ms=0.0"
    assert gc_summary(None) == "broker_gc_pauses=n/a"
