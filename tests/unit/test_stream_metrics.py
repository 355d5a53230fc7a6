"""Consumer lag and dead-letter counts (shared/streaming/stream_metrics.py): a partition's lag from what the consumer
knows, the sum per topic over assigned partitions only, and the metrics as Prometheus reads them. No broker (the
broker tests run the drivers with them)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shared.streaming.stream_metrics import (
    DEADLETTERS,
    LAG,
    LAST_POLL,
    REASON_KINDS,
    ConsumerLag,
    Offsets,
    StreamMetrics,
    lag_by_topic,
    partition_lag,
)


@pytest.mark.parametrize(
    ("offsets", "lag"),
    [
        (Offsets(position=10, highwater=25, stable=20), 10),  # read committed: an open transaction is not lag
        (Offsets(position=20, highwater=25, stable=20), 0),
        (Offsets(position=10, highwater=25, stable=-1), 15),  # read uncommitted: the high watermark
        (Offsets(position=10, highwater=25, stable=None), 15),  # a broker that does not say
        (Offsets(position=30, highwater=25, stable=25), 0),  # the position passed the last fetch's end
        (Offsets(position=None, highwater=25, stable=25), None),  # no position yet
        (Offsets(position=0, highwater=None, stable=None), None),  # not fetched yet
        (Offsets(position=0, highwater=0, stable=0), 0),  # an empty partition
    ],
)
def test_a_partitions_lag_is_its_end_less_the_consumers_position(offsets: Offsets, lag: int | None) -> None:
    assert partition_lag(offsets) == lag


def test_the_lag_per_topic_sums_the_assigned_partitions_whose_lag_is_known() -> None:
    offsets = {
        ("events", 0): Offsets(5, 10, 10),
        ("events", 1): Offsets(0, 7, 7),
        ("events", 2): Offsets(None, 9, 9),  # assigned, no position yet: left out of the sum
        ("commands", 0): Offsets(3, 3, 3),
        ("tickets", 0): Offsets(None, None, None),  # nothing known: the topic is left out, not 0
    }
    assert lag_by_topic(offsets, offsets.keys()) == {"events": 12, "commands": 0}


def test_a_revoked_partition_leaves_the_sum_and_a_topic_with_none_assigned_leaves_the_figures() -> None:
    offsets = {("events", 0): Offsets(5, 10, 10), ("events", 1): Offsets(0, 7, 7), ("commands", 0): Offsets(0, 4, 4)}
    assert lag_by_topic(offsets, {("events", 1)}) == {"events": 7}
    assert lag_by_topic(offsets, set()) == {}
    assert lag_by_topic({}, {("events", 0)}) == {}, "assigned, never fetched: not known"


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


def test_the_lag_gauge_shows_each_consumers_last_figures_until_it_stops() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag("router")
    registry.register(lag)
    assert samples(registry, LAG) == {}
    assert LAG in generate_latest(registry).decode(), "the family is exposed before any figure (no panel 404s)"
    lag.set("t.router", {"t.events": 12, "t.commands": 0})
    lag.set("t.router-project", {"t.tickets": 3})
    assert samples(registry, LAG) == {
        (("group", "t.router"), ("service", "router"), ("topic", "t.events")): 12,
        (("group", "t.router"), ("service", "router"), ("topic", "t.commands")): 0,
        (("group", "t.router-project"), ("service", "router"), ("topic", "t.tickets")): 3,
    }
    lag.set("t.router", {"t.commands": 1})  # a rebalance took its events partitions
    lag.forget("t.router-project")
    assert samples(registry, LAG) == {(("group", "t.router"), ("service", "router"), ("topic", "t.commands")): 1}


def test_each_consumers_last_poll_is_a_timestamp_that_stands_still_when_it_stops_polling() -> None:
    now = [1000.0]
    registry = CollectorRegistry()
    lag = ConsumerLag("notifier", wall=lambda: now[0])
    registry.register(lag)
    assert samples(registry, LAST_POLL) == {}
    assert LAST_POLL in generate_latest(registry).decode(), "the family is exposed before any poll"
    lag.set("t.notifier", {"t.tickets": 0})
    now[0] = 1005.0
    lag.set("t.router-project", {})  # a poll with nothing assigned (a rebalance) is a poll too
    assert samples(registry, LAST_POLL) == {
        (("group", "t.notifier"), ("service", "notifier")): 1000.0,
        (("group", "t.router-project"), ("service", "notifier")): 1005.0,
    }
    now[0] = 1600.0  # the notifier waits on its database: no poll, its lag still reads 0, its last poll ages
    assert samples(registry, LAST_POLL)[(("group", "t.notifier"), ("service", "notifier"))] == 1000.0
    assert samples(registry, LAG)[(("group", "t.notifier"), ("service", "notifier"), ("topic", "t.tickets"))] == 0
    lag.forget("t.notifier")
    assert samples(registry, LAST_POLL) == {(("group", "t.router-project"), ("service", "notifier")): 1005.0}


def test_dead_letters_are_counted_by_service_and_kind_every_kind_from_zero() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry, "sla")
    name = DEADLETTERS
    assert samples(registry, name) == {(("reason_kind", k), ("service", "sla")): 0.0 for k in REASON_KINDS}
    metrics.dead_lettered("undecodable")
    metrics.dead_lettered("handling_failed", 2)
    counted = samples(registry, name)
    assert counted[(("reason_kind", "undecodable"), ("service", "sla"))] == 1
    assert counted[(("reason_kind", "handling_failed"), ("service", "sla"))] == 2
    assert sum(counted.values()) == 3
    assert set(REASON_KINDS) == {"undecodable", "unknown_ticket", "handling_failed", "delivery_given_up"}
