"""What a worker's Kafka consumers and dead letters look like from Prometheus: consumer lag and dead-letter counts.

- ``ticketloop_consumer_lag_records_count{service,group,topic}``: per consumer group this process is a member of,
  how many records its assigned partitions of ``topic`` are behind their ends, as its last poll left them. Read
  from what the consumer already knows after a fetch (its position, and the partition's last stable offset or
  high watermark that every fetch response carries): no request to the broker. Only assigned partitions count:
  a revoked partition leaves the sum, and a topic with none assigned leaves the metric. Summed over a service's
  instances (``sum by (service, topic)``) it is the group's lag.
- ``ticketloop_consumer_last_poll_timestamp_seconds{service,group}``: when that consumer last polled (Unix time).
  A worker that stops polling (a database it waits on is down, a handler that hangs) keeps its last lag figure,
  which may read 0; the age of its last poll shows it (``TicketloopConsumerStalled``).
- ``ticketloop_deadletter_records_total{service,reason_kind}``: records moved to the dead-letter topic, by a small
  fixed set of kinds (``ReasonKind``), never the reason's text (long, and it may quote what was sent to us).

The decisions (a partition's lag, the sum per topic) are the pure functions here; ``StreamMetrics`` holds the
metrics of one process, made once on its registry in the service's main.py and handed to its drivers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Literal, NamedTuple, get_args

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.infra.metrics import check_name, counter

Partition = tuple[str, int]
"""(topic, partition)"""

ReasonKind = Literal["undecodable", "unknown_ticket", "handling_failed", "delivery_given_up"]
"""Why a record was dead-lettered: its value does not decode (or is not valid for its topic); a command names a
ticket that does not exist; its handling raised (a bug; the record is dead-lettered when read again); the notifier
gave up delivering a notification (retries used up, or the channel refused it for good)."""
REASON_KINDS: tuple[ReasonKind, ...] = get_args(ReasonKind)

LAG = "ticketloop_consumer_lag_records_count"
LAST_POLL = "ticketloop_consumer_last_poll_timestamp_seconds"
DEADLETTERS = "ticketloop_deadletter_records_total"


class Offsets(NamedTuple):
    """What a consumer knows of one partition after its last fetch (None: not known yet)."""

    position: int | None
    """The next offset this consumer will hand out."""
    highwater: int | None
    """The offset the next record written will get."""
    stable: int | None
    """The last stable offset: below it every transaction is decided (what ``read_committed`` can read; -1 when
    the consumer reads uncommitted)."""


def partition_lag(offsets: Offsets) -> int | None:
    """How many records the consumer is behind the partition's end (None: not known yet). The end is the last
    stable offset when the consumer reads committed records only (a record of an open transaction cannot be read
    yet, so it is not lag), else the high watermark. A transaction's commit marker takes an offset too: the
    consumer steps over it, so a caught-up consumer is 0 behind. Never negative: the end comes from the last
    fetch, the position may already be past it."""
    end = offsets.stable if offsets.stable is not None and offsets.stable >= 0 else offsets.highwater
    if offsets.position is None or end is None:
        return None
    return max(end - offsets.position, 0)


def lag_by_topic(offsets: Mapping[Partition, Offsets], assigned: Collection[Partition]) -> dict[str, int]:
    """Per topic, the lag summed over the ``assigned`` partitions whose lag is known (a partition not assigned any
    more is left out, whatever was last known of it). A topic none of whose assigned partitions has a known lag
    is left out too: not known is not 0."""
    out: dict[str, int] = {}
    for tp in assigned:
        known = offsets.get(tp)
        lag = partition_lag(known) if known is not None else None
        if lag is not None:
            out[tp[0]] = out.get(tp[0], 0) + lag
    return out


def held_back(offsets: Mapping[Partition, Offsets], held: Mapping[Partition, int]) -> dict[Partition, Offsets]:
    """The offsets with each ``held`` partition's position moved back to the first record its worker dropped and
    has not handled since (a task being rebuilt, or not built: the consumer has handed the records out, so its
    position is past them, but they will be read again and nothing of them is done)."""
    return {
        tp: o._replace(position=min(o.position, held[tp])) if tp in held and o.position is not None else o
        for tp, o in offsets.items()
    }


def known_offsets(consumer: AIOKafkaConsumer) -> dict[Partition, Offsets]:
    """What ``consumer`` knows of each of its assigned partitions, without a request: its position (aiokafka keeps
    it in the partition's state, as ``position()`` reads it; that coroutine waits when there is none yet, this
    does not), the high watermark and the last stable offset of the partition's last fetch."""
    out: dict[Partition, Offsets] = {}
    # aiokafka 0.14 (pinned) keeps each assigned partition's state here; its own highwater() reads it the same way
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:  # a rebalance under way: nothing is assigned
        return out
    for tp in assignment.tps:
        state: Any = assignment.state_value(tp)
        position = state.position if state.has_valid_position else None
        out[(tp.topic, tp.partition)] = Offsets(position, state.highwater, state.lso)
    return out


class ConsumerLag(Collector):
    """``ticketloop_consumer_lag_records_count{service,group,topic}``: the last lag each of the process's consumers
    reported (``set``), and ``ticketloop_consumer_last_poll_timestamp_seconds{service,group}``: when it did, exposed
    when Prometheus scrapes (from the metrics thread: each group's figures are replaced whole, never changed in
    place)."""

    def __init__(self, service: str, wall: Callable[[], float] = time.time) -> None:
        self.service = service
        self.wall = wall
        self.groups: dict[str, dict[str, int]] = {}
        self.polled_at: dict[str, float] = {}

    def set(self, group: str, lags: dict[str, int]) -> None:
        self.groups = {**self.groups, group: lags}
        self.polled_at = {**self.polled_at, group: self.wall()}

    def forget(self, group: str) -> None:
        """The consumer stopped: its partitions are nobody's here any more."""
        self.groups = {g: lags for g, lags in self.groups.items() if g != group}
        self.polled_at = {g: at for g, at in self.polled_at.items() if g != group}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            check_name(LAG),
            "Records the consumer's assigned partitions are behind their ends, per topic (as of its last poll)",
            labels=["service", "group", "topic"],
        )
        for group, lags in sorted(self.groups.items()):
            for topic, lag in sorted(lags.items()):
                family.add_metric([self.service, group, topic], lag)
        yield family
        polled = GaugeMetricFamily(
            check_name(LAST_POLL),
            "When the consumer last polled Kafka (Unix time): a worker that stopped polling keeps its last lag",
            labels=["service", "group"],
        )
        for group, at in sorted(self.polled_at.items()):
            polled.add_metric([self.service, group], at)
        yield polled


class StreamMetrics:
    """A worker process's consumer lag and dead-letter counts (made once per process, on its registry)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.lag = ConsumerLag(service)
        registry.register(self.lag)
        self.deadletters = counter(
            registry,
            DEADLETTERS,
            "Records moved to the dead-letter topic, by kind of reason (the reason itself is in the record)",
            ["service", "reason_kind"],
        )
        for kind in REASON_KINDS:  # every kind from 0: a first dead letter is an increase, not a new series
            self.deadletters.labels(service=service, reason_kind=kind)

    def observe_lag(self, group: str, consumer: AIOKafkaConsumer, held: Mapping[Partition, int] | None = None) -> None:
        """The lag of ``group``'s consumer now (right after a poll: no await between its reads); ``held``: per
        partition, the first record the worker dropped to read again and has not handled since."""
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        self.lag.set(group, lag_by_topic(held_back(known_offsets(consumer), held or {}), assigned))

    def dead_lettered(self, kind: ReasonKind, n: int = 1) -> None:
        self.deadletters.labels(service=self.service, reason_kind=kind).inc(n)
