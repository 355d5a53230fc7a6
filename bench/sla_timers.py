"""One sla worker holding many open tickets: memory per ticket, escalation lateness under load, recovery time.

    python -m bench.sla_timers [--tickets 1000000] [--due 2000] [--load 10000] [--window 20] [--timeout 3600]

1. Load: ``--tickets`` open tickets whose deadlines are a day away (nothing fires). RSS of the sla worker is read
   from /proc before and after; bytes_per_ticket is the difference over the tickets.
2. Fire under load: ``--due`` tickets with a 20 s acknowledge target are opened over ``--window`` seconds while
   ``--load`` updates to the held tickets arrive. Each one's breach is read from the escalations topic; its
   lateness is fired_at - deadline. The baseline is a plain 10 ms asyncio timer in the same worker
   (``ticketloop_sla_probe_lateness_seconds``, over the same window; its p99 is a histogram bucket's upper bound).
3. Recovery: the worker (a named group member, TICKETLOOP_GROUP_INSTANCE_ID, with its own TICKETLOOP_STATE_DIR
   and the default snapshot interval) is SIGKILLed and restarted, twice. First as on its own host: it loads its
   last local snapshot (shared/streaming/snapshots.py) and reads the changelog after it. Then as on a fresh host:
   the state directory is deleted first, so it reads the whole changelog. Each recovery runs from the restart
   until every held clock is armed again (``ticketloop_sla_armed_clocks_count``). The baseline is a bare aiokafka
   consumer
   reading the same changelog topic from the start to its end, run just before each restart, with the page cache
   emptied before both (when run as root; this machine's kernel pages out file pages idle for a minute anyway):
   recovery_ratio = recovery_s / that (from the snapshot), fresh_recovery_ratio = fresh_recovery_s / its own.
   restore_s is the part of the first after the worker got its partitions (from its log: assigned until its
   timer index is rebuilt), without the process start and the group join that the bare consumer does not pay;
   restore_ratio = restore_s / the same baseline.

Bounded: each phase gives up after --timeout seconds. Last line:
``sla_timers: tickets=... rss_mb=... bytes_per_ticket=... lateness_p50_ms=... lateness_p99_ms=... probe_p99_ms=...
recovery_s=... recovery_ratio=... restore_s=... restore_ratio=... fresh_recovery_s=... fresh_recovery_ratio=...``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from shared.events import Change, EventKind, Severity, Ticket, TicketEvent, TicketState
from shared.streaming.codec import encode
from shared.streaming.topics import Topics, ensure_topics

SLA = """
policies:
  default:
    acknowledge: {P1: 20s, P3: 1d}
    escalation:
      - {after: 0s, team: owner}
"""
TARGET = timedelta(seconds=20)
ARMED = "ticketloop_sla_armed_clocks_count"


def template(priority: str) -> Callable[[str, int, datetime], bytes]:
    """Fast encoding of many ticket events: one encoded event with placeholders, filled in per ticket."""
    at = datetime(2000, 1, 1, tzinfo=UTC)
    ticket = Ticket(
        ticket_id="TICKETID",
        dedup_key="bench/TICKETID",
        kind=EventKind.alert,
        source="bench",
        state=TicketState.open,
        summary="Disk usage above 90% on /var/lib/postgresql of TICKETID for 10 minutes",
        severity=Severity.warning,
        priority=priority,
        team="operations",
        customer="acme",
        policy="default",
        rule="bench",
        labels={
            "alertname": "DiskFull",
            "instance": "TICKETID:9100",
            "job": "node",
            "mountpoint": "/var/lib/postgresql",
            "service": "billing-db",
            "cluster": "prod-eu-1",
            "severity": "warning",
        },
        occurrences=1,
        first_seen=at,
        last_seen=at,
        opened_at=at,
        version=1,
    )
    raw = encode(
        TicketEvent(change_id="TICKETID:1", change=Change.opened, actor="bench", at=at, ticket=ticket, trace_id="t")
    )
    stamp = at.isoformat().replace("+00:00", "Z")
    text = raw.decode()
    assert stamp in text, "the template's time must appear verbatim"

    def fill(ticket_id: str, version: int, when: datetime) -> bytes:
        out = text.replace("TICKETID", ticket_id).replace(stamp, when.isoformat().replace("+00:00", "Z"))
        if version != 1:
            out = out.replace(f'"{ticket_id}:1"', f'"{ticket_id}:{version}"').replace(
                '"version":1', f'"version":{version}'
            )
            out = out.replace('"change":"opened"', '"change":"occurred"')
        return out.encode()

    return fill


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        for start in range(0, len(records), 50_000):
            futures = [await producer.send(topic, v, key=k) for k, v in records[start : start + 50_000]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(port: int, name: str) -> float:
    samples = _samples_at(port).get(name, [])
    return sum(v for _, v in samples) if samples else math.nan


def _samples_at(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    try:
        return _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    except httpx.HTTPError:
        return {}


def buckets(port: int, name: str) -> dict[float, float]:
    return {float(labels["le"]): v for labels, v in _samples_at(port).get(f"{name}_bucket", [])}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile of what was observed between two scrapes."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return math.nan
    for le, cumulative in counts:
        if cumulative >= q * total:
            return le
    return math.inf


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def wait(what: str, probe: Callable[[], bool], stack: Stack, timeout: float) -> float:
    started = time.monotonic()
    while not probe():
        stack.check_alive()
        if time.monotonic() - started > timeout:
            raise SystemExit(f"sla_timers: gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


async def breaches(bootstrap: str, topic: str, expect: int, within_s: float) -> list[float]:
    """Lateness (ms) of each breach on the escalations topic, read committed, once ``expect`` are there."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    late: list[float] = []
    deadline = time.monotonic() + within_s
    try:
        while len(late) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    esc = orjson.loads(r.value)
                    if esc["kind"] == "breach":
                        fired = datetime.fromisoformat(esc["fired_at"])
                        late.append((fired - datetime.fromisoformat(esc["deadline"])).total_seconds() * 1000)
    finally:
        await consumer.stop()
    return late


async def read_changelog(bootstrap: str, topic: str, partitions: int) -> tuple[int, float]:
    """The baseline: a bare consumer reading ``topic`` from the start to its end; (records, seconds)."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        n = 0
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=2000, max_records=10_000)
            for tp, records in batch.items():
                n += len(records)
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return n, time.monotonic() - started


RECOVERY_STEPS = {
    "Joined group": "group joined",
    "Setting newly assigned partitions": "partitions assigned",
    "snapshot_loaded": "snapshot loaded",
    "task_ready": "tables loaded",
    "clock_index_rebuilt": "index rebuilt",
}
LAST_OF = {"snapshot loaded", "tables loaded", "index rebuilt"}
"""Steps each partition's task logs once: the last one counts (the worker builds its tasks one after another)."""


def recovery_steps(log: Path, offset: int, since: datetime) -> list[tuple[str, float]]:
    """When (seconds after the restart) each step of the worker's recovery was logged: the first occurrence of
    each, the last for the steps of ``LAST_OF``."""
    seen: dict[str, float] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            text, at = str(entry.get("event", "")), entry.get("timestamp")
            for marker, step in RECOVERY_STEPS.items():
                if marker in text and at and (step not in seen or step in LAST_OF):
                    seen[step] = (datetime.fromisoformat(at) - since).total_seconds()
    return sorted(seen.items(), key=lambda kv: kv[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


async def measure(bootstrap: str, args: argparse.Namespace, workdir: Path) -> tuple[str, str]:
    prefix = f"bench{time.time_ns()}."
    topics = Topics(prefix, 4)
    await ensure_topics(bootstrap, topics.all())
    config = workdir / "config"
    config.mkdir()
    (config / "sla.yaml").write_text(SLA)
    port = free_port()
    stack = Stack(
        bootstrap,
        f"sqlite:///{workdir / 'bench.db'}",
        config,
        workdir / "logs",
        free_port(),
        9,
        extra_env={
            "TICKETLOOP_TOPIC_PREFIX": prefix,
            "TICKETLOOP_LOG_LEVEL": "WARNING",
            "TICKETLOOP_SLA_PROBE_INTERVAL_S": "0.01",
            # a named worker, as a deployment with stable worker names (pods, hosts) runs it: the restart after
            # the SIGKILL rejoins at once instead of waiting out the dead worker's session
            "TICKETLOOP_GROUP_INSTANCE_ID": "bench-sla-0",
            # its own state volume, as a deployment gives each worker: snapshots at the default interval
            "TICKETLOOP_STATE_DIR": str(workdir / "state"),
        },
        metrics_ports={"sla": port},
    )
    held = template("P3")
    state = workdir / "state" / "sla"
    try:
        pid = stack.start("sla").pid
        wait("the sla worker to serve metrics", lambda: value(port, ARMED) == 0, stack, 120)
        idle = rss_bytes(pid)
        now = datetime.now(UTC)
        ids = [f"tl-{i:07d}" for i in range(args.tickets)]
        await produce(bootstrap, topics.tickets.name, [(t.encode(), held(t, 1, now)) for t in ids])
        load_s = wait(
            "every ticket to be held",
            lambda: value(port, ARMED) >= args.tickets,
            stack,
            args.timeout,
        )
        loaded = rss_bytes(pid)

        # fire under load: due tickets opened over the window, updates to held tickets alongside
        due = template("P1")
        probe_before = buckets(port, "ticketloop_sla_probe_lateness_seconds")
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            steps = max(1, int(args.window * 10))
            for step in range(steps):
                at = datetime.now(UTC)
                batch = [
                    (f"tl-due-{i:05d}".encode(), due(f"tl-due-{i:05d}", 1, at))
                    for i in range(step * args.due // steps, (step + 1) * args.due // steps)
                ]
                batch += [(t.encode(), held(t, 2, at)) for t in random.sample(ids, min(len(ids), args.load // steps))]
                await asyncio.gather(*[await producer.send(topics.tickets.name, v, key=k) for k, v in batch])
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()
        late = await breaches(
            bootstrap, topics.escalations.name, args.due, within_s=TARGET.total_seconds() + args.window + 120
        )
        probe_after = buckets(port, "ticketloop_sla_probe_lateness_seconds")
        if len(late) < args.due:
            raise SystemExit(f"sla_timers: only {len(late)} of {args.due} breaches arrived")

        snapshot_mb = sum(f.stat().st_size for f in state.glob("*.snap")) / 2**20
        stack.extra_env["TICKETLOOP_LOG_LEVEL"] = "INFO"  # the recovery's steps, for the breakdown
        changelog = f"{prefix}sla-clocks-changelog"
        # Each recovery against a bare read of the changelog just before it, both from the same page cache:
        # emptied before each when the bench may (root), as this machine's kernel pages out what was not touched
        # for a minute anyway (DAMON); measured the other way round, a cold restart met a warm baseline.
        caches = drop_caches()
        records, baseline_s = await read_changelog(bootstrap, changelog, topics.partitions)
        # recovery after SIGKILL, on the same host: from the local snapshot, then the changelog after it
        drop_caches()
        local = restart(stack, port, args)
        # and on a fresh host (no snapshot): the whole changelog
        drop_caches()
        _, fresh_baseline_s = await read_changelog(bootstrap, changelog, topics.partitions)
        stack.kill("sla", signal.SIGKILL)
        shutil.rmtree(state)
        drop_caches()
        fresh = restart(stack, port, args)
    finally:
        stack.stop_all()
    probe_p99 = bucket_quantile(probe_before, probe_after, 0.99) * 1000
    return (
        f"sla_timers: tickets={args.tickets} rss_mb={loaded / 2**20:.0f} "
        f"bytes_per_ticket={(loaded - idle) / args.tickets:.0f} "
        f"lateness_p50_ms={percentile(late, 0.5):.1f} lateness_p99_ms={percentile(late, 0.99):.1f} "
        f"probe_p99_ms={probe_p99:.1f} recovery_s={local.seconds:.1f} "
        f"recovery_ratio={local.seconds / baseline_s:.2f} restore_s={local.restore_s:.1f} "
        f"restore_ratio={local.restore_s / baseline_s:.2f} fresh_recovery_s={fresh.seconds:.1f} "
        f"fresh_recovery_ratio={fresh.seconds / fresh_baseline_s:.2f}",
        f"loaded in {load_s:.0f} s; idle worker {idle / 2**20:.0f} MB; snapshots {snapshot_mb:.0f} MB on disk; "
        f"{len(late)} breaches measured; page cache {caches} before each read; the changelog's {records} records "
        f"read by a bare consumer in {baseline_s:.1f} s, and {fresh_baseline_s:.1f} s before the fresh host's restart"
        f"\nrecovery from the snapshot: {local.describe()}\nrecovery on a fresh host: {fresh.describe()}",
    )


def drop_caches() -> str:
    """Empty the kernel's page cache if this process may ("cold"); else leave it ("as it was")."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return "as it was"
    return "cold"


@dataclass
class Recovery:
    seconds: float
    up_s: float
    timeline: list[tuple[str, float]]

    @property
    def restore_s(self) -> float:
        """What recovering costs once the worker has its partitions (process start and the group join excluded)."""
        step_at = dict(self.timeline)
        return step_at.get("index rebuilt", math.nan) - step_at.get("partitions assigned", math.nan)

    def describe(self) -> str:
        steps = ", ".join(f"{what} at {at:.1f} s" for what, at in self.timeline)
        return f"{self.seconds:.1f} s; metrics up at {self.up_s:.1f} s, {steps}"


def restart(stack: Stack, port: int, args: argparse.Namespace) -> Recovery:
    """SIGKILL the worker, start it again, and time it until every ticket is held and armed again."""
    stack.kill("sla", signal.SIGKILL)
    log_from = stack.log_path("sla").stat().st_size
    restarted = time.monotonic()
    restarted_at = datetime.now(UTC)
    stack.start("sla")
    up_s = wait("the restarted worker to serve metrics", lambda: not math.isnan(value(port, ARMED)), stack, 120)
    wait(
        "the restarted worker to hold every ticket again",
        lambda: value(port, ARMED) >= args.tickets,
        stack,
        args.timeout,
    )
    seconds = time.monotonic() - restarted
    return Recovery(seconds, up_s, recovery_steps(stack.log_path("sla"), log_from, restarted_at))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=2000)
    parser.add_argument("--load", type=int, default=10_000, help="updates to held tickets during the window")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on a phase after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticketloop-bench-") as tmp:
        if args.bootstrap:
            line, details = asyncio.run(measure(args.bootstrap, args, Path(tmp)))
        else:
            with LocalKafka() as broker:
                line, details = asyncio.run(measure(broker.bootstrap, args, Path(tmp)))
    print(details)
    print(line)


if __name__ == "__main__":
    main()
