"""The router's memory per open alert: RSS of one router holding --alerts firing alerts in --groups tickets.

    python -m bench.router_memory [--alerts 1000000] [--groups 1000] [--timeout 900]

Issue 14's goal: a million open alerts in at most 512 MB, as the sla worker holds a million clocks. Each alert is
a ``members`` entry of its ticket (``ticket id \\x1f dedup key`` -> ``Member``), kept in memory as bytes and in the
table's compacted changelog.

1. Baseline: a router started on the empty topics, read once its four tasks are ready (its log's ``task_ready``,
   at INFO) and its RSS holds still; then stopped.
2. The storm: --alerts distinct firing alerts (their own dedup keys and ``instance`` labels) in --groups groups
   (routing ``group_by: [alertname, group]``, so each ticket gets alerts/groups of them), produced into the events
   topic in chunks before the router starts again (at WARNING: no log line per event). processed_s runs from
   that start until the router counted a ticket change per alert (``ticketloop_router_ticket_changes_total``);
   the bench then waits for the SQL projection to have read them all (``ticketloop_router_projected_events_total``)
   and for the RSS to hold still, and reads it: rss_mb.
3. Restart: the router stopped (SIGTERM) and started again (at INFO) loads its tables from their changelogs;
   reload_s runs from that start until each of its four tasks logged ``task_ready``; restarted_rss_mb once the
   RSS holds still after that.

mb_per_100k_alerts = (rss - baseline) / (alerts held / 100,000). RSS is VmRSS from /proc, as bench/sla_timers
reads it. Bounded: each wait gives up after --timeout seconds and the line says what was reached (processed=).
Last line: ``router_memory: alerts=... groups=... processed=... rss_mb=... baseline_rss_mb=...
mb_per_100k_alerts=... restarted_rss_mb=... restarted_mb_per_100k_alerts=... processed_s=... reload_s=...``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.router_storm import write_config
from bench.sla_timers import rss_bytes, value
from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from services.router.grouping import new_ticket_id
from services.router.lifecycle import Member
from services.router.service import RouterProcessor, member_key
from shared.events import EventKind, EventStatus, InboundEvent, Severity
from shared.streaming.codec import encode
from shared.streaming.topics import Topics, ensure_topics
from shared.streaming.transactional import changelog_topic

CHANGES = "ticketloop_router_ticket_changes_total"
PROJECTED = "ticketloop_router_projected_events_total"
CHUNK = 50_000
MB = 2**20


def storm_template(now: datetime) -> str:
    """One firing alert encoded with ``%(i)d`` (the alert) and ``%(g)d`` (its group) for its varying parts: a
    million events are filled in, not a million models built."""
    ev = InboundEvent(
        event_id="ev-@I@",
        kind=EventKind.alert,
        source="bench",
        dedup_key="bench/alert-@I@",
        status=EventStatus.firing,
        summary="storm alert for group @G@",
        severity=Severity.critical,
        labels={"alertname": "Storm", "group": "@G@", "instance": "host-@I@:9100"},
        occurred_at=now,
        received_at=now,
        trace_id="t@I@",
    )
    return encode(ev).decode().replace("%", "%%").replace("@I@", "%(i)d").replace("@G@", "%(g)d")


def storm_chunk(template: str, start: int, stop: int, groups: int) -> list[tuple[bytes, bytes]]:
    """Alerts ``start`` to ``stop - 1`` as (key, value) records of the events topic, keyed by dedup key as intake
    keys them; alert i is in group i % groups."""
    return [(f"bench/alert-{i}".encode(), (template % {"i": i, "g": i % groups}).encode()) for i in range(start, stop)]


def chunks(n: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges of at most ``size`` covering 0..n."""
    for start in range(0, n, size):
        yield start, min(n, start + size)


def mb_per_100k(rss: float, baseline: float, alerts: int) -> float:
    """MB of RSS above the baseline per 100,000 alerts held (nan without alerts or an RSS)."""
    if alerts <= 0 or math.isnan(rss) or math.isnan(baseline):
        return math.nan
    return (rss - baseline) / MB / (alerts / 100_000)


def held(changes: float, alerts: int) -> int:
    """Alerts held after ``changes`` ticket changes (one per alert in this storm; nan: none seen)."""
    return 0 if math.isnan(changes) else min(alerts, int(changes))


def settled(readings: list[int], window: int = 4, slack: int = MB) -> bool:
    """Whether the last ``window`` RSS readings lie within ``slack`` bytes of each other."""
    last = readings[-window:]
    return len(last) == window and max(last) - min(last) <= slack


def tasks_ready(lines: list[bytes]) -> dict[int, dict[str, int]]:
    """The driver's ``task_ready`` log lines: partition -> keys per table (the last line per partition)."""
    ready: dict[int, dict[str, int]] = {}
    for line in lines:
        if b"task_ready" not in line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("event") == "task_ready":
            ready[int(entry["partition"])] = {str(k): int(v) for k, v in entry.get("keys", {}).items()}
    return ready


@dataclass(frozen=True)
class Result:
    alerts: int
    groups: int
    processed: int
    baseline_rss: float
    rss: float
    restarted_rss: float
    restarted_members: int
    processed_s: float
    reload_s: float

    def line(self) -> str:
        mb = self.rss / MB
        return (
            f"router_memory: alerts={self.alerts} groups={self.groups} processed={self.processed} "
            f"rss_mb={mb:.0f} baseline_rss_mb={self.baseline_rss / MB:.0f} "
            f"mb_per_100k_alerts={mb_per_100k(self.rss, self.baseline_rss, self.processed):.1f} "
            f"restarted_rss_mb={self.restarted_rss / MB:.0f} "
            f"restarted_mb_per_100k_alerts="
            f"{mb_per_100k(self.restarted_rss, self.baseline_rss, self.restarted_members):.1f} "
            f"processed_s={self.processed_s:.1f} reload_s={self.reload_s:.1f}"
        )


def member_entry_bytes(n: int = 250_000) -> tuple[float, float, float]:
    """What one ``members`` entry costs in this interpreter, by tracemalloc over ``n`` entries shaped as the bench's
    (ticket ids, dedup keys and Member values as the router writes them; 250,000: one of four partitions' share
    of a million): (key bytes object, value bytes object, dict slot and growth) in bytes per entry."""
    tickets = [new_ticket_id(f"ev-{g}") for g in range(1000)]
    member = Member("firing", "ev-0")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        keys = [member_key(tickets[i % 1000], f"bench/alert-{i}") for i in range(n)]
        after_keys = tracemalloc.get_traced_memory()[0]
        values = [Member("firing", f"ev-{i}").encode() if i else member.encode() for i in range(n)]
        after_values = tracemalloc.get_traced_memory()[0]
        table = dict(zip(keys, values, strict=True))
        after_dict = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    list_slots = 8 * n  # the two lists' pointers, not part of a table
    out = (
        (after_keys - base - list_slots) / n,
        (after_values - after_keys - list_slots) / n,
        (after_dict - after_values) / n,
    )
    del table
    return out


def wait_for(what: str, probe: Callable[[], bool], stack: Stack, timeout: float) -> bool:
    """Poll ``probe`` until it holds (True) or ``timeout`` passes (False); a router that died fails the run."""
    deadline = time.monotonic() + timeout
    while not probe():
        stack.check_alive()
        if time.monotonic() > deadline:
            print(f"router_memory: gave up waiting for {what} after {timeout:.0f} s", flush=True)
            return False
        time.sleep(0.5)
    return True


def steady_rss(pid: int, stack: Stack, timeout: float = 60.0) -> int:
    """The process's RSS once it holds still for two seconds (or the last reading after ``timeout``)."""
    readings = [rss_bytes(pid)]
    deadline = time.monotonic() + timeout
    while not settled(readings) and time.monotonic() < deadline:
        stack.check_alive()
        time.sleep(0.5)
        readings.append(rss_bytes(pid))
    return readings[-1]


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def log_lines(path: Path, offset: int) -> list[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().splitlines()


async def produce(bootstrap: str, topic: str, n: int, groups: int) -> None:
    """The storm into ``topic``, a chunk at a time (the bench never holds more than one chunk's records)."""
    template = storm_template(datetime.now(UTC))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=50, max_batch_size=1024 * 1024, compression_type=None
    )
    await producer.start()
    try:
        for start, stop in chunks(n):
            futures = [await producer.send(topic, v, key=k) for k, v in storm_chunk(template, start, stop, groups)]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def changelog_offsets(bootstrap: str, group_id: str, partitions: int) -> dict[str, int]:
    """How many offsets each router table's changelog spans (its records and transaction markers: what a reload
    reads, as far as compaction has not removed old values yet)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, int] = {}
        for table in RouterProcessor.tables:
            tps = [TopicPartition(changelog_topic(group_id, table), p) for p in range(partitions)]
            first, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            out[table] = sum(end[tp] - first[tp] for tp in tps)
    finally:
        await consumer.stop()
    return out


def start_ready(stack: Stack, partitions: int, timeout: float) -> tuple[int, float, dict[int, dict[str, int]]]:
    """Start the router (at INFO) and wait until each task logged ``task_ready``: (pid, seconds, keys)."""
    log = stack.log_path("router")
    offset = log.stat().st_size if log.exists() else 0
    started = time.monotonic()
    pid = stack.start("router").pid
    ready: dict[int, dict[str, int]] = {}

    def all_ready() -> bool:
        ready.update(tasks_ready(log_lines(log, offset)))
        return len(ready) >= partitions

    wait_for("every task to be ready", all_ready, stack, timeout)
    return pid, time.monotonic() - started, ready


async def measure(bootstrap: str, args: argparse.Namespace, workdir: Path) -> tuple[Result, str]:
    prefix = f"bench{time.time_ns()}."
    topics = Topics(prefix, 4)
    await ensure_topics(bootstrap, topics.all())
    port = free_port()
    stack = Stack(
        bootstrap,
        f"sqlite:///{workdir / 'bench.db'}",
        write_config(workdir),
        workdir / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix, "TICKETLOOP_LOG_LEVEL": "INFO"},
        metrics_ports={"router": port},
    )
    n = args.alerts
    try:
        # 1. baseline: the same router holding nothing, its tasks ready
        pid, _, _ = start_ready(stack, topics.partitions, 120)
        baseline = steady_rss(pid, stack)
        stack.kill("router", signal.SIGTERM)

        # 2. the storm, then the router through it
        produce_started = time.monotonic()
        await produce(bootstrap, topics.events.name, n, args.groups)
        produce_s = time.monotonic() - produce_started
        stack.extra_env["TICKETLOOP_LOG_LEVEL"] = "WARNING"
        started = time.monotonic()
        pid = stack.start("router").pid
        done = wait_for("a ticket change per alert", lambda: value(port, CHANGES) >= n, stack, args.timeout)
        processed_s = time.monotonic() - started if done else math.nan
        remaining = max(10.0, args.timeout - (time.monotonic() - started))
        projected = wait_for("the projection", lambda: value(port, PROJECTED) >= n, stack, remaining)
        projected_s = time.monotonic() - started if projected else math.nan
        rss = steady_rss(pid, stack)
        processed = held(value(port, CHANGES), n)
        peak = peak_rss(pid)
        stack.kill("router", signal.SIGTERM)

        # 3. restarted: the tables loaded from their changelogs
        stack.extra_env["TICKETLOOP_LOG_LEVEL"] = "INFO"
        pid, reload_s, ready = start_ready(stack, topics.partitions, args.timeout)
        restarted = steady_rss(pid, stack)
        restarted_peak = peak_rss(pid)
    finally:
        stack.stop_all()
    keys = {table: sum(found.get(table, 0) for found in ready.values()) for table in RouterProcessor.tables}
    offsets = await changelog_offsets(bootstrap, f"{prefix}router", topics.partitions)
    key_b, value_b, slot_b = member_entry_bytes()
    details = (
        f"storm produced in {produce_s:.1f} s; the projection had read every change {projected_s:.1f} s after the "
        f"start; peak RSS {peak / MB:.0f} MB while processing, {restarted_peak / MB:.0f} MB while reloading; "
        f"reloaded (keys/changelog offsets): "
        + " ".join(f"{t}={keys[t]}/{offsets[t]}" for t in RouterProcessor.tables)
        + f"; one members entry (tracemalloc, 250,000 in a dict): key {key_b:.0f} B + value {value_b:.0f} B + "
        f"dict slot {slot_b:.0f} B = {key_b + value_b + slot_b:.0f} B"
    )
    members = keys["members"]
    result = Result(n, args.groups, processed, baseline, rss, restarted, members, processed_s, reload_s)
    return result, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on a wait after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticketloop-bench-") as tmp:
        if args.bootstrap:
            result, details = asyncio.run(measure(args.bootstrap, args, Path(tmp)))
        else:
            with LocalKafka() as broker:
                result, details = asyncio.run(measure(broker.bootstrap, args, Path(tmp)))
    print(details)
    print(result.line())


if __name__ == "__main__":
    main()
