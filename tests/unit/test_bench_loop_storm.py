"""bench.loop_storm's decisions: the storm and its bodies, the configs, what a side reached, the lines printed; and
the storm sink's reading of a notification body."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml

from bench.loop_storm import (
    GROUP_BY,
    STORM,
    WARMUP,
    Reached,
    Side,
    Tickets,
    am_config,
    am_notified,
    api_alerts,
    batches,
    complete,
    count_kinds,
    cpu_ticks,
    details_line,
    expected_alerts,
    fingerprint,
    keys_notified,
    quiet,
    ratio,
    reached,
    storm,
    summary_line,
    ticketloop_config,
    tickets_of,
    tl_notified,
    webhook_body,
)
from bench.storm_sink import Notification, group_key, notification_of
from services.cli import config_check
from services.intake.formats.alertmanager import to_events
from services.router.rules import RoutingConfig

STARTS = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_storm_is_distinct_alerts_spread_evenly_over_the_groups() -> None:
    alerts = storm(10_000, 20)
    assert len({a["instance"] for a in alerts}) == 10_000
    assert expected_alerts(alerts) == {f"alertname={STORM},group=g{g:03d}": 500 for g in range(20)}
    assert expected_alerts(storm(7, 3)) == {
        f"alertname={STORM},group=g000": 3,
        f"alertname={STORM},group=g001": 2,
        f"alertname={STORM},group=g002": 2,
    }


def test_batches_hold_one_group_each_and_every_group_comes_first_once_before_any_second_batch() -> None:
    alerts = storm(10, 2)
    out = batches(alerts, 2)
    assert [[a["instance"] for a in b] for b in out] == [
        ["host-000000", "host-000002"],
        ["host-000001", "host-000003"],
        ["host-000004", "host-000006"],
        ["host-000005", "host-000007"],
        ["host-000008"],
        ["host-000009"],
    ]
    big = batches(storm(10_000, 20), 100)
    assert len(big) == 100
    assert all(len({a["group"] for a in b}) == 1 for b in big)
    assert [b[0]["group"] for b in big[:20]] == [f"g{g:03d}" for g in range(20)]
    assert sorted(a["instance"] for b in big for a in b) == sorted(a["instance"] for a in storm(10_000, 20))


def test_intake_reads_each_webhook_body_as_its_alerts_with_distinct_dedup_keys() -> None:
    batch = batches(storm(40, 2), 10)[1]
    body = orjson.loads(orjson.dumps(webhook_body(batch, STARTS)))
    assert body["groupLabels"] == {"alertname": STORM, "group": "g001"}
    assert body["commonLabels"] == {"alertname": STORM, "group": "g001", "severity": "critical"}
    events = to_events(body, integration="alertmanager", received_at=STARTS, trace_id="t")
    assert [e.labels for e in events] == batch
    assert len({e.dedup_key for e in events}) == len({e.event_id for e in events}) == 10
    assert fingerprint(batch[0]) == fingerprint(dict(reversed(batch[0].items())))


def test_alertmanager_gets_the_same_alerts_as_a_list() -> None:
    batch = batches(storm(4, 1), 4)[0]
    body = api_alerts(batch, STARTS)
    assert [a["labels"] for a in body] == batch
    assert {a["startsAt"] for a in body} == {STARTS.isoformat()}
    assert "endsAt" not in body[0]


def test_ticketloops_config_passes_its_check(tmp_path: Path) -> None:
    for name, text in ticketloop_config("http://127.0.0.1:1").items():
        (tmp_path / name).write_text(text)
    out = io.StringIO()
    assert config_check(tmp_path, out) == 0, out.getvalue()
    assert "error" not in out.getvalue()


def test_both_sides_group_by_alertname_and_group_without_waiting() -> None:
    am = yaml.safe_load(am_config("http://127.0.0.1:1"))
    assert am["route"]["group_by"] == list(GROUP_BY)
    assert (am["route"]["group_wait"], am["route"]["group_interval"]) == ("0s", "1s")
    assert am["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:1/am"
    files = ticketloop_config("http://127.0.0.1:1")
    routing = RoutingConfig.model_validate(yaml.safe_load(files["routing.yaml"]))
    assert routing.route.group_by == list(GROUP_BY)
    assert routing.route.group_wait is None
    assert yaml.safe_load(files["notify.yaml"])["teams"]["operations"]["channels"][0]["url"] == "http://127.0.0.1:1/tl"


def test_what_a_side_reached_counts_the_storms_groups_only() -> None:
    expected = {"a": 2, "b": 2}
    notified = [("warm", 1, 100.5), ("a", 1, 101.0), ("b", 1, 102.0), ("a", 2, 103.0), ("a", 2, 101.5)]
    assert reached(notified, expected, 100.0) == Reached(2, 2.0, math.nan)
    done = reached([*notified, ("b", 2, 104.0)], expected, 100.0)
    assert done == Reached(2, 2.0, 4.0)
    assert done.complete
    partial = reached([("a", 2, 101.0)], expected, 100.0)
    assert (partial.groups_notified, math.isnan(partial.first_notify_s)) == (1, True)


def test_ticketloop_notifications_find_their_group_through_the_ticket() -> None:
    rows = [
        {"ticket_id": "tl-1", "alerts": 3, "labels": {"alertname": STORM, "group": "g000", "instance": "h1"}},
        {"ticket_id": "tl-2", "alerts": 1, "labels": {"alertname": WARMUP, "group": "g000", "instance": "h0"}},
    ]
    seen = tickets_of(rows)
    assert seen == Tickets(1, 3, {"tl-1": f"alertname={STORM},group=g000"})
    received = [
        Notification("/tl", "tl-1", "assignment", 1, 5.0),
        Notification("/tl", "tl-2", "assignment", 1, 4.0),
        Notification("/tl", "tl-9", "assignment", 1, 6.0),
        Notification("/am", f"alertname={STORM},group=g000", "alertmanager", 3, 7.0),
    ]
    assert tl_notified(received, seen.groups) == [(f"alertname={STORM},group=g000", 1, 5.0)]
    assert am_notified(received) == [(f"alertname={STORM},group=g000", 3, 7.0)]
    assert count_kinds(received, "/tl", seen.groups) == {"assignment": 1}
    assert count_kinds(received, "/tl") == {"assignment": 3}
    assert keys_notified(received, "/tl") == 3
    assert count_kinds(received, "/am", [f"alertname={STORM},group=g000"]) == {"alertmanager": 1}


def test_the_sink_reads_alertmanager_and_ticketloop_bodies() -> None:
    am = {"groupLabels": {"group": "g001", "alertname": STORM}, "alerts": [{"status": "firing"}] * 3}
    am["alerts"] = [*am["alerts"], {"status": "resolved"}]
    assert notification_of(orjson.dumps(am)) == (f"alertname={STORM},group=g001", "alertmanager", 3)
    assert notification_of(orjson.dumps({"ticket_id": "tl-1", "kind": "assignment"})) == ("tl-1", "assignment", 1)
    update = {"ticket_id": "tl-1", "kind": "update", "alerts": 480}
    assert notification_of(orjson.dumps(update)) == ("tl-1", "update", 480)
    for junk in (b"not json", b"[1]", b"{}"):
        assert notification_of(junk) == ("", "unknown", 0)
    assert group_key({"b": "2", "a": "1", "c": "3"}, ["b", "a"]) == "a=1,b=2"


def test_cpu_of_a_proc_stat_line_with_a_spaced_name() -> None:
    stat = "4242 (python -m x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 25 0 0 20 0 3 0 12345 0 0"
    assert cpu_ticks(stat) == 175
    assert quiet(0.05, 1.0)
    assert not quiet(0.2, 1.0)


def side(first: float, every: float) -> Side:
    return Side(Reached(20, first, every), 100, 0, 0, 1.0, {})


def test_the_summary_line_and_the_ratio() -> None:
    am = side(0.5, 1.5)
    tl = Side(Reached(20, 2.0, 9.0), 100, 0, 0, 4.0, {}, 3.0, 8.0, Tickets(20, 10_000, {}))
    assert summary_line(10_000, 20, am, tl) == (
        "loop_storm: alerts=10000 groups=20 am_first_notify_s=0.500 tl_first_notify_s=2.000 tl_all_tickets_s=3.000 "
        "tl_all_alerts_s=8.000 ratio=4.00 am_all_notified_s=1.500 tl_all_notified_s=9.000 am_groups_notified=20 "
        "tl_groups_notified=20 tl_tickets=20 tl_alerts=10000"
    )
    assert complete(10_000, am, tl)
    assert ratio(2.0, 0.5) == 4.0
    for tl_s, am_s in [(math.nan, 1.0), (1.0, math.nan), (1.0, 0.0)]:
        assert math.isnan(ratio(tl_s, am_s))


def test_a_side_that_gave_up_prints_what_it_reached() -> None:
    am = side(0.5, 1.5)
    tl = Side(Reached(13, math.nan, math.nan), 100, 0, 0, 4.0, {}, math.nan, math.nan, Tickets(13, 6100, {}))
    line = summary_line(10_000, 20, am, tl)
    assert "tl_first_notify_s=nan " in line
    assert "ratio=nan " in line
    assert line.endswith("tl_groups_notified=13 tl_tickets=13 tl_alerts=6100")
    assert not complete(10_000, am, tl)


def test_the_details_line_says_what_was_posted_received_and_what_each_process_used() -> None:
    am = Side(Reached(20, 0.1, 1.1), 100, 0, 0, 0.4, {"alertmanager": 0.74, "bench": 0.2}, kinds={"alertmanager": 40})
    tl = Side(
        Reached(20, 30.0, 70.0),
        100,
        1,
        3,
        2.8,
        {"router": 45.8},
        kinds={"assignment": 20, "update": 700},
        keys_notified=20,
    )
    assert details_line(am, tl) == (
        "loop_storm details: am_posted_s=0.400 am_posts=100 am_post_failures=0 am_retries=0 tl_posted_s=2.800 "
        "tl_posts=100 tl_post_failures=1 tl_retries=3 am_received=alertmanager:40 tl_received=assignment:20,update:700 "
        "tl_tickets_notified=20 am_cpu_s=alertmanager:0.7,bench:0.2 tl_cpu_s=router:45.8"
    )
    assert "tl_received=none " in details_line(am, side(1.0, 2.0))
