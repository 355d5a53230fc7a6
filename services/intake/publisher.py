"""Producing to Kafka with acks=all; intake answers 2xx only once every write is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from shared.infra.logging import get_logger
from shared.streaming.topics import partition_of

log = get_logger(__name__)


class PublishUnavailableError(RuntimeError):
    """The broker did not acknowledge in time: the sender should retry (HTTP 503)."""


class PublishTooLargeError(ValueError):
    """A record the producer or the broker will never take, however often it is sent (HTTP 413)."""


class Record(NamedTuple):
    """One write to Kafka. A NamedTuple, not a frozen dataclass: intake makes one per alert, in a third of the time."""

    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]


PROBE_TIMEOUT_S = 2.0
PROBE_KEPT_S = 1.0
"""A probe's answer is kept this long: readiness checks in a burst ask the broker once."""


def unwritable(
    required: Iterable[str], partitions: dict[str, set[int] | None], leaders: dict[str, set[int] | None]
) -> list[str]:
    """The required topics a producer cannot write to yet, by one metadata answer: unknown (not created, or not in
    the answer yet) or with a partition that has no leader (just created, or its broker is down). ``partitions`` and
    ``leaders`` give each topic's partitions and those with a leader, ``None`` for a topic the answer lacks."""
    out = []
    for topic in required:
        every, led = partitions.get(topic), leaders.get(topic)
        if not every or led is None or every - led:
            out.append(topic)
    return out


class Publisher(Protocol):
    @property
    def ready(self) -> bool:
        """Connected (once): the producer exists."""
        ...

    async def check(self) -> bool:
        """Whether the broker answers now (``/readyz``)."""
        ...

    async def publish(self, records: Sequence[Record]) -> None: ...


class KafkaPublisher:
    """An idempotent aiokafka producer, connected in the background so intake starts even while Kafka is down."""

    def __init__(self, bootstrap: str, *, timeout_s: float, required: Sequence[str] = ()) -> None:
        self._bootstrap = bootstrap
        self._required = tuple(required)
        self._timeout = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._probed: tuple[float, bool] = (float("-inf"), False)

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def check(self) -> bool:
        """Connected, and the brokers answered a metadata request within PROBE_TIMEOUT_S (kept PROBE_KEPT_S) in
        which every topic intake writes to exists and has a leader for each partition: ready means a publish can be
        acknowledged now, not only that a broker answers (a fresh broker answers before its new topics have leaders,
        and the first requests would fail their publish timeout)."""
        producer = self._producer
        if producer is None:
            return False
        loop = asyncio.get_running_loop()
        at, answered = self._probed
        if loop.time() - at < PROBE_KEPT_S:
            return answered
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                cluster = await producer.client.fetch_all_metadata()
            missing = unwritable(
                self._required,
                {t: cluster.partitions_for_topic(t) for t in self._required},
                {t: cluster.available_partitions_for_topic(t) for t in self._required},
            )
            answered = not missing
            if missing:
                log.info("kafka_topics_not_writable", topics=missing)
        except (KafkaError, TimeoutError, OSError):
            answered = False
        self._probed = (loop.time(), answered)
        return answered

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect())

    async def connected(self, within_s: float) -> bool:
        """Whether the producer connected within ``within_s`` (waiting no longer)."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), within_s)
        return self.ready

    async def _connect(self) -> None:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                # no linger: a request's records go at once, and the ones that come while a send is in flight
                # gather behind it (bench/intake_vs_alertmanager, interleaved: 11,800-14,000 alerts/s in batches
                # against 7,400-11,400 with linger_ms=2)
                linger_ms=0,
                request_timeout_ms=int(self._timeout * 1000) + 1000,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                log.warning("kafka_unavailable", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._producer = producer
            log.info("kafka_connected", bootstrap=self._bootstrap)
            return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @staticmethod
    async def _by_partition(
        producer: AIOKafkaProducer, records: Sequence[Record]
    ) -> dict[tuple[str, int], list[tuple[bytes, Record]]]:
        """A request's records by the partition a keyed send would pick (murmur2 of the key, as the Java client
        and aiokafka's default partitioner), in order, each with its key's bytes (encoded once): one record batch
        per partition instead of a future per record (aiokafka's batch API)."""
        partitions: dict[str, list[int]] = {}
        out: dict[tuple[str, int], list[tuple[bytes, Record]]] = {}
        for r in records:
            every = partitions.get(r.topic)
            if every is None:
                every = partitions[r.topic] = sorted(await producer.partitions_for(r.topic))
            key = r.key.encode()
            out.setdefault((r.topic, every[partition_of(key, len(every))]), []).append((key, r))
        return out

    async def publish(self, records: Sequence[Record]) -> None:
        producer = self._producer
        if producer is None:
            raise PublishUnavailableError("not connected to Kafka yet")
        try:
            async with asyncio.timeout(self._timeout):
                grouped = await self._by_partition(producer, records)
                if len(records) == 1:  # one send, its partition given: aiokafka's partitioner is murmur2 in Python
                    [((topic, partition), [(key, r)])] = grouped.items()
                    await (await producer.send(topic, r.value, key=key, partition=partition, headers=r.headers))
                    return
                futures = []
                for (topic, partition), group in grouped.items():
                    batch = producer.create_batch()
                    for key, r in group:
                        if batch.append(key=key, value=r.value, timestamp=None, headers=r.headers) is None:
                            futures.append(await producer.send_batch(batch, topic, partition=partition))
                            batch = producer.create_batch()
                            batch.append(key=key, value=r.value, timestamp=None, headers=r.headers)
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                await asyncio.gather(*futures)
        except MessageSizeTooLargeError as exc:  # no retry will fit it: the sender's 413, not a 503 for ever
            raise PublishTooLargeError("a record is over what the broker takes (max_request_size)") from exc
        except (KafkaError, TimeoutError) as exc:
            raise PublishUnavailableError(f"Kafka did not acknowledge: {exc!r}") from exc
