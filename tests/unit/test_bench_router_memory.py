"""bench.router_memory's decisions: the storm it produces, the arithmetic, the log lines it reads, the line printed."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

from bench.router_memory import (
    MB,
    Result,
    chunks,
    held,
    mb_per_100k,
    settled,
    storm_chunk,
    storm_template,
    tasks_ready,
)
from shared.events import EventStatus, InboundEvent
from shared.streaming.codec import decode

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_storm_is_distinct_firing_alerts_spread_evenly_over_the_groups() -> None:
    records = storm_chunk(storm_template(NOW), 0, 1000, 10)
    events = [decode(InboundEvent, v) for _, v in records]
    assert [k for k, _ in records] == [e.dedup_key.encode() for e in events]
    assert len({e.dedup_key for e in events}) == len({e.event_id for e in events}) == 1000
    assert len({e.labels["instance"] for e in events}) == 1000
    assert {e.status for e in events} == {EventStatus.firing}
    assert {e.labels["alertname"] for e in events} == {"Storm"}
    assert Counter(e.labels["group"] for e in events) == {str(g): 100 for g in range(10)}
    assert events[37].labels == {"alertname": "Storm", "group": "7", "instance": "host-37:9100"}
    assert events[37].occurred_at == NOW


def test_chunks_pick_up_where_the_last_stopped() -> None:
    template = storm_template(NOW)
    whole = storm_chunk(template, 0, 25, 4)
    assert [r for start, stop in chunks(25, 10) for r in storm_chunk(template, start, stop, 4)] == whole
    assert list(chunks(25, 10)) == [(0, 10), (10, 20), (20, 25)]
    assert list(chunks(0, 10)) == []


def test_megabytes_per_100k_alerts_over_the_baseline() -> None:
    assert mb_per_100k(300 * MB, 100 * MB, 1_000_000) == 20.0
    assert mb_per_100k(150 * MB, 100 * MB, 200_000) == 25.0
    assert math.isnan(mb_per_100k(150 * MB, 100 * MB, 0))
    assert math.isnan(mb_per_100k(math.nan, 100 * MB, 10))


def test_alerts_held_are_the_changes_counted_at_most_the_storm() -> None:
    assert held(math.nan, 10) == 0
    assert held(7.0, 10) == 7
    assert held(12.0, 10) == 10


def test_rss_has_settled_when_the_last_readings_are_within_a_megabyte() -> None:
    assert not settled([100 * MB] * 3)
    assert settled([50 * MB, 100 * MB, 100 * MB, 100 * MB + MB // 2, 100 * MB])
    assert not settled([100 * MB, 100 * MB, 100 * MB, 102 * MB])


def test_task_ready_lines_give_each_partitions_keys() -> None:
    lines = [
        b'{"event": "service_started", "service": "router"}',
        b"not json task_ready",
        b'{"partition": 0, "keys": {"members": 10, "tickets": 1}, "seconds": 0.5, "event": "task_ready"}',
        b'{"partition": 1, "keys": {"members": 3}, "event": "task_ready"}',
        b'{"partition": 0, "keys": {"members": 12, "tickets": 1}, "event": "task_ready"}',
    ]
    assert tasks_ready(lines) == {0: {"members": 12, "tickets": 1}, 1: {"members": 3}}


def test_the_summary_line_has_every_field_in_order() -> None:
    result = Result(
        alerts=1_000_000,
        groups=1000,
        processed=1_000_000,
        baseline_rss=100 * MB,
        rss=330 * MB,
        restarted_rss=300 * MB,
        restarted_members=1_000_000,
        processed_s=400.04,
        reload_s=12.26,
    )
    assert result.line() == (
        "router_memory: alerts=1000000 groups=1000 processed=1000000 rss_mb=330 baseline_rss_mb=100 "
        "mb_per_100k_alerts=23.0 restarted_rss_mb=300 restarted_mb_per_100k_alerts=20.0 processed_s=400.0 "
        "reload_s=12.3"
    )


def test_a_run_that_gave_up_says_so_in_its_line() -> None:
    result = Result(1000, 10, 400, 100 * MB, 104 * MB, math.nan, 0, math.nan, math.nan)
    assert result.line() == (
        "router_memory: alerts=1000 groups=10 processed=400 rss_mb=104 baseline_rss_mb=100 mb_per_100k_alerts=1000.0 "
        "restarted_rss_mb=nan restarted_mb_per_100k_alerts=nan processed_s=nan reload_s=nan"
    )
