"""Events per second through the router on the real broker, against a bare aiokafka forwarder in the same run.

    python -m bench.router_storm [--events 5000] [--groups 20]

Both read the same pre-produced storm from an ``events`` topic. The forwarder writes one record per input record;
the router writes its ticket changes, a commit's occurrences of a ticket told as one change whose ticket counts
them all. Each rate is the inputs accounted for (forwarded records; the tickets' occurrences) over the span
between the first and last output record's broker timestamp, so start-up and group joins are not counted.
Each side's CPU per event is printed too: the router's (from /proc, from its first output read here to its last,
so its start-up is left out) and the forwarder's (this process's, the whole forwarding loop); they say where the
time goes on a machine where the two rates swing with the broker's mood. Bounded: gives up after --timeout
seconds. Last line: ``router_storm: events=... tickets=... events_per_s=... baseline_per_s=...
ratio_vs_forwarder=... cpu_us_per_event=... baseline_cpu_us_per_event=...``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from shared.events import EventKind, EventStatus, InboundEvent, Severity
from shared.streaming.codec import encode
from shared.streaming.topics import Topics, ensure_topics

ROUTING = "route:\n  team: operations\n  group_by: [alertname, group]\n"


def storm(n: int, groups: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        key = f"bench/g{i % groups}"
        ev = InboundEvent(
            event_id=f"ev-{i}",
            kind=EventKind.alert,
            source="bench",
            dedup_key=key,
            status=EventStatus.firing,
            summary=f"storm alert for group {i % groups}",
            severity=Severity.critical,
            labels={"alertname": "Storm", "group": str(i % groups), "instance": f"host-{i}"},
            occurred_at=now,
            received_at=now,
            trace_id=f"t{i}",
        )
        out.append((key.encode(), encode(ev)))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def forward(bootstrap: str, source: str, sink: str, n: int, within_s: float) -> None:
    """The baseline: consume → produce with acks=all, committing as it goes, nothing else."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"fwd-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    deadline = time.monotonic() + within_s
    try:
        while done < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            futures = [await producer.send(sink, r.value, key=r.key) for recs in batch.values() for r in recs]
            await asyncio.gather(*futures)
            done += len(futures)
            if futures:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


async def span_of(
    bootstrap: str,
    topic: str,
    n: int,
    within_s: float,
    counted: Callable[[list[ConsumerRecord]], int] = len,
    cpu: Callable[[], float] = time.process_time,
) -> tuple[int, float, float]:
    """(inputs accounted for, seconds between the first and last output's broker timestamp, ``cpu`` seconds
    from the first output read to the last) once ``counted`` says n are there, or at the timeout."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    recs: list[ConsumerRecord] = []
    done = 0
    cpu_first = cpu_last = float("nan")
    deadline = time.monotonic() + within_s
    try:
        while done < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batch and not recs:
                cpu_first = cpu()
            recs.extend(r for rs in batch.values() for r in rs)
            done = counted(recs)
        cpu_last = cpu()
    finally:
        await consumer.stop()
    if len(recs) < 2:
        return done, float("nan"), float("nan")
    stamps = [r.timestamp for r in recs]
    return done, (max(stamps) - min(stamps)) / 1000.0, cpu_last - cpu_first


def cpu_of(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def occurrences(records: list[ConsumerRecord]) -> int:
    """Events the router has accounted for on the tickets topic: each ticket's occurrences as its latest change
    states them (the router tells a commit's occurrences of a ticket as one change)."""
    last: dict[str, int] = {}
    for r in records:
        ticket = orjson.loads(r.value)["ticket"]
        last[ticket["ticket_id"]] = int(ticket["occurrences"])
    return sum(last.values())


async def measure(bootstrap: str, n: int, groups: int, within_s: float, workdir: Path) -> str:
    prefix = f"bench{time.time_ns()}."
    topics = Topics(prefix, 4)
    await ensure_topics(bootstrap, topics.all())
    baseline_in, baseline_out = f"{prefix}fwd-in", f"{prefix}fwd-out"
    records = storm(n, groups)
    await produce(bootstrap, topics.events.name, records)
    await produce(bootstrap, baseline_in, records)

    cpu0 = time.process_time()
    await forward(bootstrap, baseline_in, baseline_out, n, within_s)
    fwd_cpu = time.process_time() - cpu0
    fwd_n, fwd_s, _ = await span_of(bootstrap, baseline_out, n, 30)

    stack = Stack(
        bootstrap,
        f"sqlite:///{workdir / 'bench.db'}",
        write_config(workdir),
        workdir / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix, "TICKETLOOP_LOG_LEVEL": "WARNING"},
    )
    router = stack.start("router")
    try:
        out_n, out_s, cpu_s = await span_of(
            bootstrap, topics.tickets.name, n, within_s, occurrences, lambda: cpu_of(router.pid)
        )
        stack.check_alive()  # a router that died is a failed run, not a slow one
    finally:
        stack.stop_all()
    rate = out_n / out_s if out_s > 0 else float("nan")
    base = fwd_n / fwd_s if fwd_s > 0 else float("nan")
    return (
        f"router_storm: events={n} groups={groups} tickets={groups} processed={out_n} events_per_s={rate:.0f} "
        f"baseline_per_s={base:.0f} ratio_vs_forwarder={rate / base:.4f} cpu_us_per_event={cpu_s / n * 1e6:.1f} "
        f"baseline_cpu_us_per_event={fwd_cpu / n * 1e6:.1f}"
    )


def write_config(workdir: Path) -> Path:
    cfg = workdir / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "routing.yaml").write_text(ROUTING)
    (cfg / "projects.yaml").write_text("projects: []\n")
    (cfg / "teams.yaml").write_text("people: {}\nteams: {}\n")
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=240.0, help="give up on either side after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticketloop-bench-") as tmp:
        if args.bootstrap:
            line = asyncio.run(measure(args.bootstrap, args.events, args.groups, args.timeout, Path(tmp)))
        else:
            with LocalKafka() as broker:
                line = asyncio.run(measure(broker.bootstrap, args.events, args.groups, args.timeout, Path(tmp)))
    print(line)
    if f"processed={args.events} " not in line:
        raise SystemExit("router_storm: the router did not process every event (see the line above)")


if __name__ == "__main__":
    main()
