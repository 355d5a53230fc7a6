"""Intake's CPU per alert on its HTTP ingest path for Alertmanager webhooks, in-process (issue 15, item 7).

    python -m bench.intake_cpu [--posts 200] [--batch 50] [--rounds 5]

No broker and no sockets: intake's ASGI app (``create_app``, as tests/unit build it) with an in-memory publisher
that keeps nothing, driven by httpx's ASGI transport. Each round posts --posts Alertmanager v4 webhooks of --batch
distinct alerts (the bodies of bench/intake_vs_alertmanager.py, made before the clock starts) and takes the
process's CPU time (``time.process_time``: other processes on the machine matter less than to wall time), client
included, per alert. Then the parse step alone (one body's bytes to the encoded events intake publishes, as it
makes them: ``api.lean_batch``, else ``api.pydantic_batch``; encoding included) and the encode step alone (the
same events to their bytes: ``codec.encode_wire`` on the lean path, ``codec.encode`` on pydantic's) are timed the
same way, and so is the publisher's own part, which the run above leaves out: ``KafkaPublisher.publish`` of one
body's records with a producer that builds aiokafka's record batches but sends none (publish_us). Each number is
the median of --rounds rounds. Last line:
``intake_cpu: alerts=.. us_per_alert=.. parse_us=.. encode_us=.. publish_us=..`` (all per alert).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bench.loop_storm import storm, webhook_body
from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.edge import IntakeDeps
from services.intake.ingest import lean_batch, pydantic_batch
from services.intake.publisher import KafkaPublisher, Record
from shared.events import InboundEvent, InboundEventWire
from shared.infra.logging import configure_logging
from shared.store import db
from shared.streaming.codec import decode, encode, encode_wire
from shared.streaming.topics import Topics

INTEGRATION = "alertmanager"
TOKEN = "bench-alertmanager-token-0123456789"  # noqa: S105 - an in-process bench's intake token
MAX_POSTS = 10_000
MAX_ROUNDS = 50
MICRO_REPEATS = 100
PARTITIONS = 4


class BatchingOnlyProducer(AIOKafkaProducer):  # type: ignore[misc]
    """aiokafka's producer, never started: it builds record batches as ever; a topic has PARTITIONS partitions and
    a batch is acknowledged as it is handed over (nothing is sent)."""

    async def partitions_for(self, _topic: str) -> set[int]:
        return set(range(PARTITIONS))

    async def send_batch(self, _batch: Any, _topic: str, *, partition: int) -> asyncio.Future[None]:  # noqa: ARG002
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        """One record, as a batch of its own (without a partition: aiokafka's partitioner picks it, as send does)."""
        if partition is None:
            every = sorted(await self.partitions_for(topic))
            partition = self._partitioner(key, every, every)
        batch = self.create_batch()
        batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers or [])
        return await self.send_batch(batch, topic, partition=partition)


class DiscardingPublisher:
    """Acknowledges every write at once and keeps nothing (a broker of no cost); counts the records."""

    def __init__(self) -> None:
        self.records = 0

    @property
    def ready(self) -> bool:
        return True

    async def check(self) -> bool:
        return True

    async def publish(self, records: Sequence[Record]) -> None:
        self.records += len(records)


@dataclass(frozen=True)
class Options:
    posts: int
    batch: int
    rounds: int


def bodies(posts: int, batch: int) -> list[bytes]:
    """``posts`` webhook bodies of ``batch`` distinct alerts each, as Alertmanager sends them."""
    alerts = storm(posts * batch, 1, "IntakeCpu")
    starts = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    return [orjson.dumps(webhook_body(alerts[i : i + batch], starts)) for i in range(0, len(alerts), batch)]


def cpu_us_per(n: int, run: Callable[[], object]) -> float:
    """CPU microseconds of one ``run()`` divided by ``n``."""
    started = time.process_time()
    run()
    return (time.process_time() - started) * 1e6 / n


async def post_round(client: httpx.AsyncClient, url: str, posts: Sequence[bytes], headers: dict[str, str]) -> None:
    for body in posts:
        resp = await client.post(url, content=body, headers=headers)
        if resp.status_code != 202:
            raise RuntimeError(f"intake answered {resp.status_code}: {resp.text[:300]}")


def summary_line(alerts: int, per_alert: float, parse_us: float, encode_us: float, publish_us: float) -> str:
    return (
        f"intake_cpu: alerts={alerts} us_per_alert={per_alert:.2f} parse_us={parse_us:.2f} encode_us={encode_us:.2f} "
        f"publish_us={publish_us:.2f}"
    )


async def publish_us_per_record(records: list[Record], rounds: int) -> float:
    """CPU microseconds of ``KafkaPublisher.publish`` per record (median of ``rounds``), batches built, none sent."""
    producer = BatchingOnlyProducer(bootstrap_servers="127.0.0.1:9", acks="all", enable_idempotence=True)
    publisher = KafkaPublisher("127.0.0.1:9", timeout_s=30.0)
    publisher._producer = producer  # the bench's seam: a producer that only builds batches
    per: list[float] = []
    try:
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(MICRO_REPEATS):
                await publisher.publish(records)
            per.append((time.process_time() - started) * 1e6 / (MICRO_REPEATS * len(records)))
    finally:
        await producer.stop()
    return statistics.median(per)


async def measure(opts: Options, workdir: Path) -> str:
    engine = db.make_engine(f"sqlite:///{workdir / 'intake.db'}")
    db.init_db(engine)
    config = IntakeConfig.model_validate(
        {"integrations": [{"name": INTEGRATION, "format": "alertmanager", "token": TOKEN}]}
    )
    publisher = DiscardingPublisher()
    app = create_app(IntakeDeps(config, publisher, engine, Topics("bench.", PARTITIONS), CollectorRegistry()))
    posts = bodies(opts.posts, opts.batch)
    url = f"/api/v1/integrations/{INTEGRATION}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    alerts = opts.posts * opts.batch
    rounds: list[float] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        await post_round(client, url, posts[:2], headers)  # warm up
        for _ in range(opts.rounds):
            started = time.process_time()
            await post_round(client, url, posts, headers)
            rounds.append((time.process_time() - started) * 1e6 / alerts)
    engine.dispose()
    if publisher.records < alerts * opts.rounds:
        raise RuntimeError(f"only {publisher.records} records published")

    integration = config.integrations[0]
    raw = posts[0]
    now = datetime.now(UTC)
    lean = lean_batch(integration, raw, now, "trace")
    events = [decode(InboundEvent, e.value) for e in (lean or pydantic_batch(integration, raw, now, "trace")).events]
    wires = [InboundEventWire(**e.model_dump()) for e in events]

    def parse_all() -> None:
        for _ in range(MICRO_REPEATS):
            lean_batch(integration, raw, now, "trace") or pydantic_batch(integration, raw, now, "trace")

    def encode_all() -> None:
        for _ in range(MICRO_REPEATS):
            if lean is not None:
                for w in wires:
                    encode_wire(w)
            else:
                for e in events:
                    encode(e)

    n = MICRO_REPEATS * len(events)
    parse_us = statistics.median(cpu_us_per(n, parse_all) for _ in range(opts.rounds))
    encode_us = statistics.median(cpu_us_per(n, encode_all) for _ in range(opts.rounds))
    records = [Record("bench.events", e.dedup_key, encode(e), [("trace_id", b"t"), ("event_id", b"e")]) for e in events]
    publish_us = await publish_us_per_record(records, opts.rounds)
    return summary_line(alerts, statistics.median(rounds), parse_us, encode_us, publish_us)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200, help="webhooks a round (at most 10000)")
    parser.add_argument("--batch", type=int, default=50, help="alerts a webhook")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported (at most 50)")
    args = parser.parse_args()
    opts = Options(min(max(args.posts, 2), MAX_POSTS), max(args.batch, 1), min(max(args.rounds, 1), MAX_ROUNDS))
    configure_logging("intake", "WARNING")
    with tempfile.TemporaryDirectory(prefix="intake-cpu-") as tmp:
        print(asyncio.run(measure(opts, Path(tmp))))


if __name__ == "__main__":
    main()
