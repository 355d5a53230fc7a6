"""The topic registry: every topic's name, partition count and key, defined in one place."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from murmurhash2 import murmurhash2 as _murmurhash2

from shared.infra.logging import get_logger

log = get_logger(__name__)

KAFKA_MURMUR2_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """The Java client's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``, the hash aiokafka's default
    partitioner computes in pure Python): MurmurHash2 with Kafka's seed, from the ``murmurhash2`` package's compiled
    code, 0.2 against 3.0 us for a 35-byte dedup key (measured here); it was 8% of intake's CPU in a storm."""
    return _murmurhash2(data, KAFKA_MURMUR2_SEED)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands on, as the Java client and aiokafka's default partitioner pick it
    (murmur2 of the key over all the topic's partitions)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    description: str
    compacted: bool = False
    """A table's changelog: only the latest value of each key is kept."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one deployment. ``commands``, ``ticket_inputs``, ``tickets`` and ``sla_due`` are keyed
    by ticket id and share a partition count, so they are co-partitioned with the tables keyed by ticket id."""

    prefix: str = "ticketloop."
    partitions: int = 4

    @property
    def events(self) -> TopicSpec:
        return TopicSpec(f"{self.prefix}events", self.partitions, "dedup key", "normalised inbound events")

    @property
    def commands(self) -> TopicSpec:
        return TopicSpec(f"{self.prefix}commands", self.partitions, "ticket id", "acknowledge/resolve commands")

    @property
    def ticket_inputs(self) -> TopicSpec:
        return TopicSpec(
            f"{self.prefix}router-ticket-inputs", self.partitions, "ticket id", "events re-keyed by ticket id"
        )

    @property
    def grouped(self) -> TopicSpec:
        return TopicSpec(
            f"{self.prefix}router-grouped",
            self.partitions,
            "group key (of a batch: its first item's)",
            "events hopping to their group's partition (a transaction's hops to one partition: one JSON array)",
        )

    @property
    def key_updates(self) -> TopicSpec:
        return TopicSpec(
            f"{self.prefix}router-key-updates", self.partitions, "dedup key", "ticket state back to the dedup-key map"
        )

    @property
    def tickets(self) -> TopicSpec:
        return TopicSpec(
            f"{self.prefix}tickets", self.partitions, "ticket id", "ticket events, a commit's occurrences folded"
        )

    @property
    def escalations(self) -> TopicSpec:
        return TopicSpec(f"{self.prefix}escalations", self.partitions, "ticket id", "escalations from sla")

    @property
    def sla_due(self) -> TopicSpec:
        return TopicSpec(f"{self.prefix}sla-due", self.partitions, "ticket id", "sla clocks due, proposed by its timer")

    @property
    def handovers(self) -> TopicSpec:
        return TopicSpec(
            f"{self.prefix}handovers", self.partitions, "digest id", "hypercare handover digests, for the notifier"
        )

    @property
    def deliveries(self) -> TopicSpec:
        return TopicSpec(f"{self.prefix}deliveries", self.partitions, "ticket id", "notification delivery records")

    @property
    def deadletter(self) -> TopicSpec:
        return TopicSpec(f"{self.prefix}deadletter", 1, "source topic", "poison messages with the reason")

    def all(self) -> list[TopicSpec]:
        return [
            self.events,
            self.commands,
            self.ticket_inputs,
            self.grouped,
            self.key_updates,
            self.tickets,
            self.escalations,
            self.sla_due,
            self.handovers,
            self.deliveries,
            self.deadletter,
        ]


COMPACTED_SEGMENT_MS = 3_600_000
"""A compacted changelog rolls its segment every hour: Kafka compacts only rolled segments, and by default (a
segment a week or a gigabyte) a table's changelog was never compacted in practice, so a worker reloading its
tables read every version of every key ever written instead of the last of each."""


def topic_configs(spec: TopicSpec) -> dict[str, str]:
    """The configs a topic is created with: a changelog is compacted and rolls hourly; the rest keep the
    broker's defaults."""
    if not spec.compacted:
        return {}
    return {"cleanup.policy": "compact", "segment.ms": str(COMPACTED_SEGMENT_MS)}


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], *, attempts: int | None = None) -> None:
    """Create the topics that do not exist yet (idempotent; safe when several services race). Tried again until
    the broker answers, each wait a warning and longer than the last, up to ``RETRY_MAX_S``: a service started
    while its broker restarts waits for it (it used to give up after 30 tries and exit, and nothing started it
    again); ``attempts``: give up (raise) after that many."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await _create_missing(bootstrap, specs)
        except KafkaError as exc:  # not reachable (KafkaConnectionError), or it failed over mid-request
            if attempts is not None and attempt >= attempts:
                raise
            wait = min(RETRY_MAX_S, 0.5 * attempt)
            log.warning("kafka_not_answering_waiting", attempt=attempt, error=type(exc).__name__, retry_in_s=wait)
            await asyncio.sleep(wait)
            continue
        return


RETRY_MAX_S = 5.0
"""The longest wait between two tries of a broker that does not answer."""


async def _create_missing(bootstrap: str, specs: list[TopicSpec]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=1,
                topic_configs=topic_configs(s),
            )
            for s in specs
            if s.name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
