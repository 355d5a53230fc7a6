"""bench.faust_ceiling's decisions: how a rate is computed, the ratio to the forwarder, and the lines printed."""

from __future__ import annotations

import math

from bench.faust_ceiling import (
    EOS_FETCH_WAIT_MS,
    SUMMARY_KEYS,
    VARIANTS,
    Rate,
    Variant,
    best_rate,
    detail_line,
    fetch_wait_of,
    payloads,
    ratio,
    steady_rate,
    summary_line,
)
from shared.streaming.eos import FETCH_MAX_WAIT_MS


def test_the_records_of_the_first_instant_are_the_start_line() -> None:
    # a first batch of 500 at t=10, then 500 more a second later: 500 records in one second, not 1000
    rate = steady_rate([(11.0, 500), (10.0, 500)])
    assert rate == Rate(records=1000, counted=500, span_s=1.0)
    assert rate.per_s == 500.0


def test_one_record_at_a_time_counts_all_but_the_first() -> None:
    rate = steady_rate([(0.0, 1), (0.5, 1), (1.0, 1), (2.0, 1)])
    assert (rate.records, rate.counted, rate.span_s) == (4, 3, 2.0)
    assert rate.per_s == 1.5


def test_no_span_has_no_rate() -> None:
    empty = steady_rate([])
    assert (empty.records, empty.counted) == (0, 0)
    assert math.isnan(empty.per_s)
    assert math.isnan(steady_rate([(5.0, 100)]).per_s)


def test_a_ratio_needs_two_positive_finite_rates() -> None:
    assert ratio(2000.0, 8000.0) == 0.25
    for per_s, base in [(math.nan, 1.0), (1.0, math.nan), (0.0, 1.0), (1.0, 0.0), (math.inf, 1.0), (1.0, -3.0)]:
        assert math.isnan(ratio(per_s, base))


def test_the_fastest_baseline_counts() -> None:
    assert best_rate([Rate(10, 9, 1.0), Rate(10, 9, 0.5), Rate(0, 0, math.nan)]) == 18.0
    assert math.isnan(best_rate([Rate(0, 0, math.nan)]))


def test_the_summary_line_has_every_field_in_order_and_nan_for_what_did_not_run() -> None:
    line = summary_line(20000, 16000.0, {"driver": 12000.0, "faust_consume_alo": 4000.0, "faust_forward": 3200.0})
    assert line == (
        "faust_ceiling: records=20000 forwarder_per_s=16000 driver_per_s=12000 driver_ratio=0.7500 "
        "faust_consume_alo_ratio=0.2500 faust_consume_eos_ratio=nan faust_forward_ratio=0.2000 "
        "faust_forward_take_ratio=nan"
    )
    assert all(key in VARIANTS for key in SUMMARY_KEYS)


def test_a_detail_line_says_how_the_variant_ran() -> None:
    variant = Variant(
        "x", "faust", "at_least_once", forwards=False, take=500, options=(("stream_buffer_maxsize", 512),)
    )
    line = detail_line("x", variant, Rate(20000, 19500, 3.9), 15600.0)
    assert line == (
        "faust_ceiling[x]: kind=faust guarantee=at_least_once mode=consume take=500 monitor=on "
        "fetch_max_wait_ms=1500 stream_buffer_maxsize=512 records=20000 counted=19500 span_s=3.900 per_s=5000 "
        "ratio=0.3205"
    )
    assert "max_records=2000" in VARIANTS["driver_2000"].describe()


def test_exactly_once_always_fetches_with_the_project_consumers_wait() -> None:
    assert EOS_FETCH_WAIT_MS == FETCH_MAX_WAIT_MS
    assert fetch_wait_of(Variant("e", "faust", "exactly_once")) == FETCH_MAX_WAIT_MS
    assert fetch_wait_of(Variant("a", "faust", "at_least_once", fetch_wait_ms=100)) == 100


def test_payloads_are_distinct_keys_with_values_of_the_size_asked() -> None:
    records = payloads(1000, 1024)
    assert len({k for k, _ in records}) == 1000
    assert {len(v) for _, v in records} == {1024}
    assert records[7][1].startswith(b"0000000007")
