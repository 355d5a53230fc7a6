"""bench/intake_cpu: its bodies, its summary line, and a tiny run through intake's app in-process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson

from bench.intake_cpu import Options, bodies, measure, summary_line


def test_bodies_are_webhooks_of_distinct_alerts() -> None:
    posts = [orjson.loads(b) for b in bodies(3, 4)]
    assert [len(p["alerts"]) for p in posts] == [4, 4, 4]
    assert len({a["fingerprint"] for p in posts for a in p["alerts"]}) == 12


def test_summary_line() -> None:
    assert summary_line(10000, 31.234, 5.5, 1.0, 4.321) == (
        "intake_cpu: alerts=10000 us_per_alert=31.23 parse_us=5.50 encode_us=1.00 publish_us=4.32"
    )


def test_a_tiny_run_posts_through_intake_and_prints_the_line(tmp_path: Path) -> None:
    line = asyncio.run(measure(Options(posts=2, batch=3, rounds=1), tmp_path))
    assert re.fullmatch(r"intake_cpu: alerts=6 us_per_alert=\S+ parse_us=\S+ encode_us=\S+ publish_us=\S+", line), line
