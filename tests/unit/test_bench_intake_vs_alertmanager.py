"""bench/intake_vs_alertmanager's pure parts: the batches, the rates and the summary line."""

from __future__ import annotations

import math

from bench.intake_vs_alertmanager import Phase, chunks, ratio, summary_line
from bench.loop_storm import storm


def test_chunks_keep_every_alert_once_in_order() -> None:
    alerts = storm(123, 1, "X")
    parts = chunks(alerts, 50)
    assert [len(p) for p in parts] == [50, 50, 23]
    assert [a for p in parts for a in p] == alerts


SIDES = {
    "am_batch": Phase(posts=100, alerts=5000, failed=0, seconds=0.5),
    "tl_batch": Phase(posts=100, alerts=5000, failed=0, seconds=2.0),
    "am_single": Phase(posts=300, alerts=300, failed=0, seconds=0.1),
    "tl_single": Phase(posts=300, alerts=300, failed=0, seconds=0.3),
}
"""Both sides' phases; the floor's and the lean server's join them where a test measures those."""
FLOOR = {
    "floor_batch": Phase(posts=100, alerts=5000, failed=0, seconds=0.25),
    "floor_single": Phase(posts=300, alerts=300, failed=0, seconds=0.2),
}


def test_rates_are_per_second_of_the_phase_and_the_line_carries_both_ratios() -> None:
    phases = SIDES
    line = summary_line(5000, 300, phases, accepted=5302, on_kafka=5302)
    assert line == (
        "intake_vs_alertmanager: alerts=5000 singles=300 am_batch_alerts_per_s=10000 tl_batch_alerts_per_s=2500 "
        "batch_ratio=0.2500 am_single_posts_per_s=3000 tl_single_posts_per_s=1000 single_ratio=0.3333 "
        "accepted=5302 on_kafka=5302 tl_workers=1"
    )
    assert math.isnan(ratio(1.0, 0.0)) and math.isnan(Phase(0, 0, 0, 0.0).alerts_per_s)


def test_the_broker_floor_joins_the_line_when_measured() -> None:
    phases = SIDES | FLOOR
    line = summary_line(5000, 300, phases, accepted=5302, on_kafka=5302, workers=2)
    assert line.endswith(
        "on_kafka=5302 tl_workers=2 floor_batch_alerts_per_s=20000 floor_single_posts_per_s=1500 floor_single_ratio=0.5000"
    )


def test_the_lean_servers_single_posts_join_the_line_before_the_floor() -> None:
    lean = {
        "lean_single": Phase(posts=300, alerts=300, failed=0, seconds=0.15),
        "lean_http": Phase(posts=300, alerts=300, failed=0, seconds=0.01),
    }
    phases = SIDES | lean | FLOOR
    line = summary_line(5000, 300, phases, accepted=5302, on_kafka=5302)
    assert line.endswith(
        "tl_workers=1 lean_single_posts_per_s=2000 lean_single_ratio=0.6667 lean_http_posts_per_s=30000"
        " floor_batch_alerts_per_s=20000"
        " floor_single_posts_per_s=1500 floor_single_ratio=0.5000"
    )
