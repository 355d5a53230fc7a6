"""Notifications per second through the notifier alone, against a bare httpx POST loop in the same run, and the
produce → receive latency at 70% of the rate measured.

    python -m bench.notify_fanout [--tickets 2000] [--targets 4] [--paced-seconds 20] [--baseline-runs 2]
                                  [--paced-share 0.7 | --paced-rate N] [--warmup-seconds 2] [--timeout 300]
                                  [--broker-warmup-seconds 3] [--bootstrap HOST:PORT] [--workdir DIR]

Setup: one local broker (or --bootstrap), SQLite in a temp dir, only the notifier (deploy.local.stack), and one
receiving server (bench/fanout_sink.py: a bare HTTP/1.1 protocol on uvloop in its own process, records ticket id,
path and receive time, verifies nothing). notify.yaml gives the one team K ``webhook`` targets, each its own path
on that server: the generic webhook has no vendor rate limit, while the vendor kinds (slack, dingtalk, ...) are
limited by design to 1-20 messages a second or a minute per target, so they would measure the limit, not the
machinery. No email:
the team has no addresses and the tickets have no owner, so nothing is mailed.

1. Baseline: K x F concurrent loops (F in flight per target) post the notifier's very bodies (the webhook payload
   of the same kind of ticket, same sizes, signed the same way) with one httpx.AsyncClient; baseline_per_s = posts
   over the span between the first and last receive at the server, the fastest of --baseline-runs runs, which
   take turns with F = 1 and F = IN_FLIGHT (as many as a webhook lane may have): httpx posted about half as fast
   with four in flight per target as with one here, and a slow baseline would flatter the ratio.
2. Throughput: two storms of N ticket events (change=opened, one ticket each, keyed by ticket id, with the
   router's trace and ticket headers); notifs_per_s, the measured maximum, is the faster of the two (max_from in
   the details line says which); ratio = notifs_per_s / baseline_per_s.
   - The burst: the N events are on the tickets topic before the notifier starts, a backlog: every one lies below
     where its partition ended when the notifier was assigned it, so each is planned the careful way (into the
     outbox first, then sent from there: services/notifier/service.py ``replayed``). burst_notifs_per_s = N*K over
     the span from when the notifier's group was first seen Stable with a member (``stable_at``: it had its
     partitions; start-up and the group join are not counted) to the last receive. Nothing is received before
     the first poll's events are all planned into the outbox: counted from the first receive
     (burst_receives_per_s in the details line), that work was left out, and the burst read 29-33% faster than it
     went (4,657-5,662 a second against 3,585-4,264 in the same nine runs here).
   - The live storm: once the burst is committed, N more produced at once while the notifier runs, sent first
     as the paced stream's are: live_notifs_per_s over the span of their receives, which includes producing them
     (live_cpu_us_per_notif: the notifier's CPU from producing it to its last receive, a notification).
3. Latency: once the notifier has committed both storms (its group's offsets at the topic's end: their last
   writes and commits are no part of the paced phase), tickets are produced paced at 70% (--paced-share) of
   notifs_per_s (/K tickets a second) for --warmup-seconds and then --paced-seconds, one stream; each
   notification's latency is its receive time minus its ticket's produce time — the moment the producer's send()
   was called (also the record's CreateTime timestamp; linger_ms=0, acks=all), so it includes the broker append.
   p50 and p99 over the notifications after the warm-up: the warm-up's are delivered and checked as the rest, and
   their p99 is in the details line (warmup_p99_ms), as are the broker's garbage-collector pauses that began during
   the measured stream (broker_gc_pauses, broker_gc_max_ms, broker_gc_sum_ms: from its GC log, when the bench
   started the broker): with the notifier near a whole core, a pause holds every event meanwhile, and the
   notifier takes a while to catch up. The broker, started for this run, first serves a paced stream of its own
   (--broker-warmup-seconds, after the baseline, before the burst; ``warm_broker``): without it, the paced
   stream's first second was the first time it served single-record produces and small fetches, its JIT
   compiled 95-130 methods every 250 ms (``-XX:+PrintCompilation``), it took 0.69-0.78 of a core instead of
   0.3-0.4, and the notifier, near a whole core itself, then took seconds to drain the events held meanwhile
   (the median of a quarter second reached 242 and 480 ms in two runs here; in a third, the measured stream's
   first second still had a median of 165 ms after the 2 s warm-up). A broker in service has
   compiled them long before. With --workdir, each notification's produce time, latency and path are kept in
   paced_latencies.tsv and warmup_latencies.tsv. What the hypervisor took from this virtual machine meanwhile is
   in the details line too (bench/host_steal.py; host_steal_paced_cores for the measured stream and
   host_steal_burst_cores for the burst, from its start: the mean and the most in a quarter second, in cores of the
   machine's): here it took up to 1.2 of the 2 cores for seconds at a time, every process then ran slower, and a
   run's p99 then says what the host did, not what the notifier does.
   paced_share_of_live says what share of the live storm's rate the paced stream was.
   The producing process's garbage collector is off while it paces (a pause of it would send the next events
   bunched, not paced). A storm is drained in big batches; a paced stream arrives an event at a time, which costs
   more per event (see --paced-share for the latency at lower shares). --paced-rate N paces at N notifications a
   second instead (to compare two builds at the same load: the storms' rates swing from run to run here), and
   paced_share then says what share of this run's measured maximum that was. With --workdir, the broker's GC log
   is kept there too (broker_gc.log).
4. Latency baseline: the notifier stopped, the same number of tickets (warm-up too) produced at the same pace to
   a topic of their own and read by a bare loop in a process of its own (``bare_loop``: an aiokafka consumer, no
   group, the notifier's webhook body rendered and signed per record, F sequential httpx POST loops per path, F of
   the fastest baseline run); bare_p50_ms and bare_p99_ms as in 3. What the machine allows a bare loop at this rate,
   in the same run.

A lost notification or one received twice (by ticket id and path) fails the run (exit 1), not a slow one. Every
wait is bounded by --timeout; the notifier, the server and the broker are stopped at the end. Last line:
``notify_fanout: tickets=.. targets=.. delivered=.. dups=.. notifs_per_s=.. baseline_per_s=.. ratio=..
paced_share=.. paced_per_s=.. p50_ms=.. p99_ms=.. bare_p50_ms=.. bare_p99_ms=..``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.fanout_sink import REPO, FanoutSink, Received
from bench.host_steal import StealSampler, steal_summary
from bench.workdirs import reuse_problem
from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from services.notifier.channels.webhook import IN_FLIGHT, SIGNATURE_HEADER, TIMESTAMP_HEADER, payload, sign
from services.notifier.pipeline import notices_for_ticket_event
from shared.events import Change, EventKind, Severity, Ticket, TicketEvent, TicketState
from shared.infra.logging import make_headers
from shared.infra.settings import NotifierSettings
from shared.streaming.codec import encode
from shared.streaming.topics import Topics, TopicSpec, ensure_topics

TEAM = "operations"
SECRET = "bench-webhook-secret"  # noqa: S105 - a local test receiver's key, verified by nobody
PARTITIONS = 4
PACED_SHARE = 0.7
DATABASE = "bench.db"
"""The notifier's database in the work directory (a directory that holds one from an earlier run is refused)."""
SCATTER = 3_999_971
"""Ticket ids in no order (``ticket_ids``)."""
BURST_APART_S = 0.001
"""The burst's tickets opened a millisecond apart (a storm of a thousand tickets a second before the notifier
starts); the paced stream's open as they are produced."""
BROKER_WARMUP_S = 3.0
"""Before anything is measured, the broker serves a paced stream this long (``warm_broker``)."""
BROKER_WARMUP_PER_S = 700.0
"""Tickets a second of that stream: about the paced phase's rate here (0.7 of the burst is 2,100-3,500
notifications a second, 525-870 tickets); what the broker compiles depends on the kinds of request, not their
rate."""
STABLE_POLL_S = 0.005
"""How often ``stable_at`` asks whether the notifier's group has its partitions (a few hundred small requests in
all: the poll ends once it has)."""
WARMUP_S = 2.0
"""The paced stream's first seconds, delivered and checked but not in p50/p99 (``warmup_p99_ms`` apart)."""
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]
"""(key, value, headers) of one tickets-topic record."""


# --- what is produced and configured (pure) ------------------------------------------------------------------


def ticket_event(ticket_id: str, now: datetime) -> TicketEvent:
    """A newly opened alert ticket for the team, no owner, no group_wait: one notice to each of its targets."""
    ticket = Ticket(
        ticket_id=ticket_id,
        dedup_key=f"bench/{ticket_id}",
        kind=EventKind.alert,
        source="bench",
        state=TicketState.open,
        summary=f"Disk usage above 90% on /var/lib/postgresql of {ticket_id} for 10 minutes",
        severity=Severity.critical,
        priority="P1",
        team=TEAM,
        policy="default",
        rule="bench",
        labels={"alertname": "DiskFull", "instance": f"{ticket_id}:9100", "service": "billing-db"},
        occurrences=1,
        first_seen=now,
        last_seen=now,
        opened_at=now,
        version=1,
    )
    return TicketEvent(
        change_id=f"{ticket_id}:1",
        change=Change.opened,
        actor="bench",
        reason="matched route bench",
        at=now,
        ticket=ticket,
        trace_id=f"trace-{ticket_id}",
    )


def ticket_ids(prefix: str, n: int) -> list[str]:
    """Fixed-width ids (8 characters), so every phase's bodies have the same size; distinct, in no order (ticket k
    gets k times an odd number not divisible by 5, modulo 10**width: a permutation), as the router's ids are
    hashes: an index by ticket id is written at random places, as in production."""
    width = 8 - len(prefix)
    mod = 10**width
    return [f"{prefix}{(i * SCATTER) % mod:0{width}d}" for i in range(n)]


def records(ids: Iterable[str], first: datetime, apart_s: float) -> list[Record]:
    """Ticket events as the router writes them: keyed by ticket id, with its trace and ticket headers. Ticket k
    opened ``apart_s`` x k after ``first``, as tickets open one after another (not all in one instant: a ticket's
    notification ids begin with when it opened, shared/infra/ids.py ``ordered_id``)."""
    out = []
    for k, tid in enumerate(ids):
        ev = ticket_event(tid, first + timedelta(seconds=k * apart_s))
        out.append((tid.encode(), encode(ev), make_headers(trace_id=ev.trace_id, ticket_id=tid)))
    return out


def hook_paths(targets: int) -> list[str]:
    return [f"/hook/{k}" for k in range(targets)]


def notify_yaml(sink_url: str, targets: int) -> str:
    """One team, ``targets`` generic webhooks (no vendor rate limit), each to its own path; no email."""
    lines = ["teams:", f"  {TEAM}:", "    channels:"]
    lines += [
        f'      - {{type: webhook, name: bench-hook-{k}, url: "{sink_url}{path}", secret: {SECRET}}}'
        for k, path in enumerate(hook_paths(targets))
    ]
    return "\n".join(lines) + "\n"


def write_config(workdir: Path, sink_url: str, targets: int) -> Path:
    cfg = workdir / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "notify.yaml").write_text(notify_yaml(sink_url, targets))
    (cfg / "routing.yaml").write_text(f"route:\n  team: {TEAM}\n")
    (cfg / "teams.yaml").write_text("people: {}\nteams: {}\n")
    (cfg / "projects.yaml").write_text("projects: []\n")
    return cfg


def webhook_posts(ids: Sequence[str], public_url: str, now: datetime) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies and headers the notifier posts for these tickets (its own templates and webhook payload)."""
    out = []
    ts = int(now.timestamp())
    for tid in ids:
        (notice,) = notices_for_ticket_event(ticket_event(tid, now), public_url)
        body = payload(notice.message)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(SECRET, ts, body),
        }
        out.append((body, headers))
    return out


# --- what is measured (pure) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    expected: int
    delivered: int
    """Distinct (ticket id, path) pairs received of those expected."""
    span_s: float
    first_at: float = math.nan
    """When the first of them was received (``time.time()``; nan: none was)."""

    @property
    def per_s(self) -> float:
        return self.delivered / self.span_s if self.span_s > 0 else math.nan


def phase_of(received: Iterable[Received], prefix: str, paths: Sequence[str], n: int) -> Phase:
    """Delivered distinct notifications of the tickets starting with ``prefix``, and the span of their receives."""
    firsts: dict[tuple[str, str], float] = {}
    wanted = set(paths)
    for tid, path, at in received:
        if tid.startswith(prefix) and path in wanted:
            firsts[(tid, path)] = min(at, firsts.get((tid, path), at))
    times = firsts.values()
    span = max(times) - min(times) if len(firsts) > 1 else math.nan
    return Phase(n * len(paths), len(firsts), span, min(times, default=math.nan))


def from_start(phase: Phase, started_at: float) -> Phase:
    """``phase`` spanned from ``started_at`` (when the notifier had its partitions) to its last receive instead of
    from its first receive; unchanged when ``started_at`` is unknown (nan) or not before the first receive."""
    if math.isnan(started_at) or math.isnan(phase.first_at) or started_at >= phase.first_at:
        return phase
    return replace(phase, span_s=phase.first_at + phase.span_s - started_at, first_at=started_at)


def group_stable(groups: Sequence[Sequence[object]], group: str) -> bool:
    """Whether a DescribeGroups answer's row for ``group`` (error code, group id, state, protocol type, protocol,
    members, ...) says it is Stable with a member: its members have their partitions."""
    return any(
        len(row) > 5 and row[0] == 0 and row[1] == group and row[2] == "Stable" and bool(row[5]) for row in groups
    )


def duplicates(received: Iterable[Received]) -> int:
    """Notifications (ticket id, path) received more than once: the extra copies."""
    return sum(c - 1 for c in Counter((tid, path) for tid, path, _ in received).values() if c > 1)


def first_receives(
    received: Iterable[Received], produced: dict[str, float], paths: Sequence[str]
) -> dict[tuple[str, str], float]:
    """(ticket id, path) → when it was first received, for the tickets in ``produced`` on ``paths``."""
    firsts: dict[tuple[str, str], float] = {}
    wanted = set(paths)
    for tid, path, at in received:
        if tid in produced and path in wanted:
            firsts[(tid, path)] = min(at, firsts.get((tid, path), at))
    return firsts


def split_warmup(produced: dict[str, float], warmup_prefix: str) -> tuple[dict[str, float], dict[str, float]]:
    """A paced stream's produce times: (its warm-up's, the measured part's), by ticket id prefix."""
    warm = {tid: at for tid, at in produced.items() if tid.startswith(warmup_prefix)}
    return warm, {tid: at for tid, at in produced.items() if not tid.startswith(warmup_prefix)}


def latencies_ms(firsts: dict[tuple[str, str], float], produced: dict[str, float]) -> list[float]:
    """Produce → first receive (``first_receives``) of each paced notification, in milliseconds, sorted."""
    return sorted((at - produced[tid]) * 1000.0 for (tid, _), at in firsts.items())


def write_latencies(path: Path, firsts: dict[tuple[str, str], float], produced: dict[str, float]) -> None:
    """Each paced notification's produce time, latency (ms) and path, in produce order, for a look at when the
    slow ones came (kept with --workdir)."""
    rows = sorted((produced[tid], (at - produced[tid]) * 1000.0, where) for (tid, where), at in firsts.items())
    path.write_text("".join(f"{t:.6f}\t{ms:.3f}\t{where}\n" for t, ms, where in rows))


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_notif_us(cpu: float, notifications: int) -> str:
    return f"{cpu / notifications * 1e6:.0f}" if notifications and not math.isnan(cpu) else "nan"


def measured_max(*rates: float) -> float:
    """The most of the storms' rates that were measured (nan: none was)."""
    known = [r for r in rates if r > 0]
    return max(known) if known else math.nan


def paced_notifs_per_s(share: float, rate: float | None, max_per_s: float) -> float:
    """The paced phase's notifications a second: ``rate`` when given (two builds compared at the same load on a
    machine whose storms' rates swing from run to run), else ``share`` of the measured maximum."""
    return rate if rate is not None else share * max_per_s


GC_PAUSE = re.compile(r"^\[(\d+)ms\].*\bPause\b.*?(\d+(?:\.\d+)?)ms\s*$")
"""A stop-the-world pause in a JVM's GC log written with ``-Xlog:gc:file=...:timemillis`` (deploy/local/kafka_local.py
``gc_log``): ``[<wall clock ms>ms] GC(23) Pause Young (Normal) (G1 Evacuation Pause) 311M->176M(512M) 20.616ms``,
stamped when the pause ended."""


def gc_pauses(text: str) -> list[tuple[float, float]]:
    """Each pause of a broker's GC log: (when it began, in seconds since the epoch; how long it took, in ms)."""
    found = []
    for line in text.splitlines():
        m = GC_PAUSE.match(line)
        if m is not None:
            ms = float(m.group(2))
            found.append((int(m.group(1)) / 1000.0 - ms / 1000.0, ms))
    return found


def read_gc_log(path: Path | None) -> str | None:
    """The broker's GC log as it stands (None: not ours, or not there)."""
    return path.read_text(errors="replace") if path is not None and path.exists() else None


def pauses_within(pauses: Iterable[tuple[float, float]], start: float, end: float) -> list[float]:
    """How long each pause that began between ``start`` and ``end`` took (ms): the broker's pauses in a stream."""
    return [ms for at, ms in pauses if start <= at <= end]


def gc_summary(pauses: Sequence[float] | None) -> str:
    """The details line's part on the broker's pauses during the measured stream (their count, longest and sum in
    ms); "n/a" when the broker was not ours (``--bootstrap``) or its log could not be read."""
    if pauses is None:
        return "broker_gc_pauses=n/a"
    longest = max(pauses, default=0.0)
    return f"broker_gc_pauses={len(pauses)} broker_gc_max_ms={longest:.1f} broker_gc_sum_ms={sum(pauses):.1f}"


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile of sorted values (nan when there are none)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- the shells ----------------------------------------------------------------------------------------------


async def produce_all(bootstrap: str, topic: str, batch: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in batch]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_paced(
    bootstrap: str, topic: str, batch: list[Record], per_s: float
) -> tuple[dict[str, float], float]:
    """Send ``batch`` at ``per_s`` records a second; (ticket id → time send() was called, the achieved rate)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    # the topic's partitions known before the clock starts: else the first send() waits for them, and the records
    # due meanwhile go out together, a clump no steady producer sends
    await producer.partitions_for(topic)
    produced: dict[str, float] = {}
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        futures = []
        start = time.monotonic()
        for i, (k, v, h) in enumerate(batch):
            ahead = start + i / per_s - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            at = time.time()
            produced[k.decode()] = at
            futures.append(await producer.send(topic, v, key=k, headers=h, timestamp_ms=int(at * 1000)))
        elapsed = time.monotonic() - start
        await asyncio.gather(*futures)
    finally:
        gc.enable()
        gc.unfreeze()
        await producer.stop()
    return produced, (len(batch) - 1) / elapsed if elapsed > 0 else math.nan


async def warm_broker(bootstrap: str, topic: str, batch: list[Record], per_s: float, within_s: float) -> int:
    """Produce ``batch`` paced to ``topic`` (as the paced phase does) while a consumer reads it as the notifier
    does (read_committed, a fetch gathering 5 ms); returns how many records it read. A broker started for this run
    has not served single-record produces or small fetches yet: at the paced stream's start its JIT compiled
    95-130 methods every 250 ms for a second (``-XX:+PrintCompilation``) and it took 0.7-0.8 of a core instead of
    0.3-0.4, which the stream's first second waited out; a broker in service has compiled them long before."""
    if not batch:
        return 0
    settings = NotifierSettings.model_fields
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_min_bytes=settings["fetch_gather_bytes"].default,
        fetch_max_wait_ms=settings["fetch_gather_ms"].default,
    )
    await consumer.start()
    read = 0

    async def drain() -> None:
        nonlocal read
        while read < len(batch):
            polled = await consumer.getmany(timeout_ms=100)
            read += sum(len(records) for records in polled.values())

    reader = asyncio.create_task(drain())
    try:
        await produce_paced(bootstrap, topic, batch, per_s)
        await asyncio.wait_for(asyncio.shield(reader), within_s)
    except TimeoutError:
        pass
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
    return read


def baseline_in_flight(run: int) -> int:
    """How many posts per path the baseline's run number ``run`` has in flight: one, then as many as a webhook
    lane may have, by turns."""
    return 1 if run % 2 == 0 else IN_FLIGHT


async def baseline(
    sink: FanoutSink, posts: list[tuple[bytes, dict[str, str]]], paths: Sequence[str], in_flight: int
) -> None:
    """``in_flight`` sequential POST loops per path, all at once, each posting its share of ``posts``."""
    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=None)) as client:

        async def loop(path: str, share: Sequence[tuple[bytes, dict[str, str]]]) -> None:
            url = f"{sink.url}{path}"
            for body, headers in share:
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        await asyncio.gather(*(loop(p, posts[k::in_flight]) for p in paths for k in range(in_flight)))


async def bare_loop(
    bootstrap: str, topic: str, sink_url: str, paths: Sequence[str], public_url: str, n: int, in_flight: int
) -> None:
    """The latency baseline, run in a process of its own as the notifier is (``--bare-loop``): a bare aiokafka
    consumer (assigned every partition, no group, no state) renders and signs each record's webhook body as the
    notifier would and hands it to ``in_flight`` sequential httpx POST loops per path; it stops after
    ``n`` records are posted to every path. It prints ``ready`` once it knows where each partition starts: the
    paced stream begins only then, as the notifier's begins after its burst (a start-up is no part of latency)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    for tp in partitions:
        await consumer.position(tp)
    print("ready", flush=True)
    queues: dict[str, asyncio.Queue[tuple[bytes, dict[str, str]]]] = {p: asyncio.Queue() for p in paths}

    async def read() -> None:
        async for record in consumer:
            (post,) = webhook_posts([record.key.decode()], public_url, datetime.now(UTC))
            for q in queues.values():
                q.put_nowait(post)

    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=None)) as client:

        async def loop(path: str, share: int) -> None:
            url = f"{sink_url}{path}"
            for _ in range(share):
                body, headers = await queues[path].get()
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        reader = asyncio.create_task(read())
        cpu_at_ready = time.process_time()
        shares = [n // in_flight + (k < n % in_flight) for k in range(in_flight)]
        try:
            await asyncio.gather(*(loop(p, share) for p in paths for share in shares))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await consumer.stop()
        print(f"cpu {time.process_time() - cpu_at_ready:.3f}", flush=True)


@dataclass(frozen=True)
class BareLoop:
    """What the bare loop's process (``bare_loop``) reads and posts where."""

    bootstrap: str
    topic: str
    sink_url: str
    paths: Sequence[str]
    public_url: str
    n: int
    in_flight: int


def start_bare_loop(bare: BareLoop, within_s: float) -> subprocess.Popen[bytes]:
    """The bare loop's process, reading its topic from the start until it posted ``n`` records to every path,
    once it printed ``ready`` (bounded by ``within_s``); the caller waits for it, bounded."""
    argv = [sys.executable, "-m", "bench.notify_fanout", "--bare-loop", bare.bootstrap, bare.topic, bare.sink_url]
    argv += [bare.public_url, str(bare.n), str(bare.in_flight), *bare.paths]
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE)  # noqa: S603 - our own module
    ready: list[bytes] = []
    reader = threading.Thread(target=lambda: ready.append(child.stdout.readline() if child.stdout else b""))
    reader.start()
    reader.join(within_s)
    if not ready or ready[0].strip() != b"ready":
        child.kill()
        child.wait()
        raise RuntimeError("the bare loop did not start")
    return child


async def wait_settled(bootstrap: str, group: str, topic: str, within_s: float, stack: Stack) -> bool:
    """Wait until ``group`` has committed every record of ``topic`` (its offsets at the partitions' ends): the
    burst's last transactions are done, so none of their work falls into the paced phase. False after
    ``within_s`` (the notifier must stay alive)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            stack.check_alive()
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in tps):
                return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await admin.close()
        await consumer.stop()


async def stable_at(bootstrap: str, group: str, within_s: float) -> float:
    """When ``group`` was first seen Stable with a member (``time.time()`` as the poll that saw it was sent: at
    most its round trip early), polled every ``STABLE_POLL_S``; nan when not within ``within_s``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            asked = time.time()
            with contextlib.suppress(KafkaError):  # the group's coordinator not there yet: asked again
                answers = await admin.describe_consumer_groups([group])
                if any(group_stable(answer.groups, group) for answer in answers):
                    return asked
            await asyncio.sleep(STABLE_POLL_S)
        return math.nan
    finally:
        await admin.close()


async def wait_count(
    sink: FanoutSink, client: httpx.AsyncClient, want: int, within_s: float, stack: Stack | None
) -> int:
    """Poll the sink until it holds ``want`` records or ``within_s`` passed (the notifier must stay alive)."""
    deadline = time.monotonic() + within_s
    have = await sink.count(client)
    while have < want and time.monotonic() < deadline:
        if stack is not None:
            stack.check_alive()
        await asyncio.sleep(0.2)
        have = await sink.count(client)
    return have


@dataclass
class Options:
    tickets: int
    targets: int
    paced_seconds: float
    paced_max: int
    timeout: float
    baseline_runs: int
    paced_share: float = PACED_SHARE
    paced_rate: float | None = None
    """Notifications a second for the paced phase, whatever the burst measured (None: ``paced_share`` of it)."""
    warmup_seconds: float = WARMUP_S
    broker_warmup_seconds: float = BROKER_WARMUP_S


async def measure(bootstrap: str, opts: Options, workdir: Path, gc_log: Path | None = None) -> tuple[list[str], bool]:
    """The details and summary lines, and whether every notification arrived exactly once. ``gc_log``: the
    broker's GC log (ours), whose pauses during the measured stream the details line counts. The hypervisor's
    steal is sampled throughout (bench/host_steal.py)."""
    with StealSampler() as steal:
        return await _measure(bootstrap, opts, workdir, gc_log, steal)


async def _measure(
    bootstrap: str, opts: Options, workdir: Path, gc_log: Path | None, steal: StealSampler
) -> tuple[list[str], bool]:
    paths = hook_paths(opts.targets)
    now = datetime.now(UTC)
    prefix = f"fanout{time.time_ns()}."
    topics = Topics(prefix, PARTITIONS)
    bare_topic = TopicSpec(f"{prefix}bare", PARTITIONS, "ticket id", "the bare paced loop's input")
    warm_topic = TopicSpec(f"{prefix}warm", PARTITIONS, "ticket id", "the broker's warm-up stream")
    await ensure_topics(bootstrap, [*topics.all(), bare_topic, warm_topic])
    intake_port = free_port()
    public_url = f"http://127.0.0.1:{intake_port}"

    with FanoutSink(free_port(), workdir / "sink.log") as sink:
        async with httpx.AsyncClient(timeout=30.0) as client:
            bases = []
            for run in range(opts.baseline_runs):
                held = await sink.count(client)
                posts = webhook_posts(ticket_ids(f"B{run}", opts.tickets), public_url, now)
                await baseline(sink, posts, paths, baseline_in_flight(run))
                bases.append(phase_of(await sink.received(client, held), f"B{run}", paths, opts.tickets))
            fastest = max(range(len(bases)), key=lambda k: bases[k].per_s if bases[k].per_s > 0 else 0.0)
            base, base_in_flight = bases[fastest], baseline_in_flight(fastest)
            # after the baseline (no broker in it): by then the warm-up topic's partitions have their leaders
            broker_n = int(BROKER_WARMUP_PER_S * opts.broker_warmup_seconds)
            broker_batch = records(ticket_ids("X", broker_n), now, 1 / BROKER_WARMUP_PER_S)
            broker_read = await warm_broker(bootstrap, warm_topic.name, broker_batch, BROKER_WARMUP_PER_S, opts.timeout)

            await produce_all(
                bootstrap, topics.tickets.name, records(ticket_ids("T", opts.tickets), now, BURST_APART_S)
            )
            stack = Stack(
                bootstrap,
                f"sqlite:///{workdir / DATABASE}",
                write_config(workdir, sink.url, opts.targets),
                workdir / "logs",
                intake_port,
                9,
                extra_env={"TICKETLOOP_TOPIC_PREFIX": prefix, "TICKETLOOP_LOG_LEVEL": "WARNING"},
            )
            held = await sink.count(client)
            group = f"{prefix}notifier"
            joined = asyncio.create_task(stable_at(bootstrap, group, opts.timeout))
            stack.start("notifier")
            try:
                await wait_count(sink, client, held + opts.tickets * opts.targets, opts.timeout, stack)
                receives = phase_of(await sink.received(client, held), "T", paths, opts.tickets)
                # seen by now unless the group's description failed throughout: then the receives' span, as before
                seen = joined.done() and joined.exception() is None
                burst = from_start(receives, joined.result() if seen else math.nan)

                paced_per_s, paced_n, warm_n, tickets_per_s, live_n = math.nan, 0, 0, math.nan, opts.tickets
                warm_produced: dict[str, float] = {}
                paced_cpu_s = bare_cpu_s = live_cpu_s = math.nan
                produced: dict[str, float] = {}
                live = Phase(live_n * opts.targets, 0, math.nan)
                settled = await wait_settled(bootstrap, group, topics.tickets.name, opts.timeout, stack)
                if settled and burst.delivered == burst.expected and burst.per_s > 0:
                    # a storm that comes live: as many tickets as the burst, produced at once while the notifier runs
                    held = await sink.count(client)
                    storm = records(ticket_ids("L", live_n), datetime.now(UTC), BURST_APART_S)
                    cpu_before = cpu_s(stack.procs["notifier"].pid)
                    await produce_all(bootstrap, topics.tickets.name, storm)
                    await wait_count(sink, client, held + live_n * opts.targets, opts.timeout, stack)
                    live_cpu_s = cpu_s(stack.procs["notifier"].pid) - cpu_before
                    live = phase_of(await sink.received(client, held), "L", paths, live_n)
                    settled = await wait_settled(bootstrap, group, topics.tickets.name, opts.timeout, stack)
                top_per_s = measured_max(burst.per_s, live.per_s)
                if settled and live.delivered == live.expected and top_per_s > 0:
                    rate = paced_notifs_per_s(opts.paced_share, opts.paced_rate, top_per_s)
                    tickets_per_s = rate / opts.targets
                    paced_n = max(2, min(opts.paced_max, int(tickets_per_s * opts.paced_seconds)))
                    warm_n = int(tickets_per_s * opts.warmup_seconds)
                    held = await sink.count(client)
                    batch = records(
                        ticket_ids("W", warm_n) + ticket_ids("P", paced_n), datetime.now(UTC), 1 / tickets_per_s
                    )
                    cpu_before = cpu_s(stack.procs["notifier"].pid)
                    stream, achieved = await produce_paced(bootstrap, topics.tickets.name, batch, tickets_per_s)
                    warm_produced, produced = split_warmup(stream, "W")
                    paced_per_s = achieved * opts.targets
                    await wait_count(sink, client, held + (warm_n + paced_n) * opts.targets, opts.timeout, stack)
                    paced_cpu_s = cpu_s(stack.procs["notifier"].pid) - cpu_before
                stack.check_alive()
            finally:
                joined.cancel()
                stack.stop_all()
            bare_produced: dict[str, float] = {}
            if produced:
                # the same paced stream through a bare consume → POST loop in its own process, the notifier stopped
                child = await asyncio.to_thread(
                    start_bare_loop,
                    BareLoop(bootstrap, bare_topic.name, sink.url, paths, public_url, warm_n + paced_n, base_in_flight),
                    opts.timeout,
                )
                bare_ids = ticket_ids("V", warm_n) + ticket_ids("Q", paced_n)
                bare_batch: list[Record] = [(tid.encode(), b"{}", []) for tid in bare_ids]
                bare_stream, _ = await produce_paced(bootstrap, bare_topic.name, bare_batch, tickets_per_s)
                bare_produced = split_warmup(bare_stream, "V")[1]
                try:
                    out, _ = await asyncio.to_thread(child.communicate, None, opts.timeout)
                    bare_cpu_s = float(out.split()[-1]) if out.startswith(b"cpu ") else math.nan
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            everything = await sink.received(client)
            log_tail = stack.log_path("notifier").read_text(errors="replace")[-3000:]
            gc_text = read_gc_log(gc_log)
            if gc_text is not None:
                (workdir / "broker_gc.log").write_text(gc_text)

    paced = phase_of(everything, "P", paths, paced_n)
    warm = phase_of(everything, "W", paths, warm_n)
    warm_firsts = first_receives(everything, warm_produced, paths)
    warm_lat = latencies_ms(warm_firsts, warm_produced)
    write_latencies(workdir / "warmup_latencies.tsv", warm_firsts, warm_produced)
    firsts = first_receives(everything, produced, paths)
    lat = latencies_ms(firsts, produced)
    write_latencies(workdir / "paced_latencies.tsv", firsts, produced)
    bare = latencies_ms(first_receives(everything, bare_produced, paths), bare_produced)
    stream_window = (min(produced.values()), max(firsts.values())) if produced and firsts else (math.nan, math.nan)
    in_stream = (
        pauses_within(gc_pauses(gc_text), *stream_window) if gc_text is not None and produced and firsts else None
    )
    bare_ok = len(bare) == len(bare_produced) * len(paths)
    dups = duplicates(everything)
    ratio = top_per_s / base.per_s if base.per_s > 0 else math.nan
    ok = burst.delivered == burst.expected and paced.delivered == paced.expected and paced_n > 0 and dups == 0
    ok = ok and warm.delivered == warm.expected and live.delivered == live.expected
    ok = ok and bare_ok
    details = (
        f"notify_fanout details: broker_warmup={broker_read}/{broker_n} "
        f"baseline_per_s_runs={','.join(f'{b.per_s:.0f}' for b in bases)} "
        f"baseline_in_flight={base_in_flight} "
        f"baseline_posts={base.delivered}/{base.expected} baseline_span_s={base.span_s:.3f} "
        f"burst={burst.delivered}/{burst.expected} burst_notifs_per_s={burst.per_s:.0f} "
        f"burst_span_s={burst.span_s:.3f} "
        f"burst_receives_span_s={receives.span_s:.3f} burst_receives_per_s={receives.per_s:.0f} "
        f"warmup_s={opts.warmup_seconds:g} warmup={warm.delivered}/{warm.expected} "
        f"warmup_p99_ms={percentile(warm_lat, 0.99):.1f} "
        f"paced_tickets={paced_n} paced={paced.delivered}/{paced.expected} "
        f"p90_ms={percentile(lat, 0.9):.1f} max_ms={(lat[-1] if lat else math.nan):.1f} dups={dups} "
        f"bare={len(bare)}/{len(bare_produced) * len(paths)} bare_max_ms={(bare[-1] if bare else math.nan):.1f} "
        f"paced_cpu_us_per_notif={per_notif_us(paced_cpu_s, len(lat) + len(warm_lat))} "
        f"bare_cpu_us_per_notif={per_notif_us(bare_cpu_s, len(bare))} "
        f"{gc_summary(in_stream)} "
        f"{steal_summary('host_steal_burst_cores', steal.cores(burst.first_at, burst.first_at + burst.span_s))} "
        f"{steal_summary('host_steal_paced_cores', steal.cores(*stream_window))} "
        f"live={live.delivered}/{live.expected} live_notifs_per_s={live.per_s:.0f} "
        f"live_cpu_us_per_notif={per_notif_us(live_cpu_s, live.delivered)} "
        f"max_from={'live' if top_per_s == live.per_s else 'burst'} "
        f"paced_share_of_live={paced_per_s / live.per_s if live.per_s > 0 else math.nan:.3f}"
    )
    summary = (
        f"notify_fanout: tickets={opts.tickets} targets={opts.targets} delivered={burst.delivered} dups={dups} "
        f"notifs_per_s={top_per_s:.0f} baseline_per_s={base.per_s:.0f} ratio={ratio:.4f} "
        f"paced_share={opts.paced_share if opts.paced_rate is None else round(opts.paced_rate / top_per_s, 3)} "
        f"paced_per_s={paced_per_s:.0f} "
        f"p50_ms={percentile(lat, 0.5):.1f} p99_ms={percentile(lat, 0.99):.1f} "
        f"bare_p50_ms={percentile(bare, 0.5):.1f} bare_p99_ms={percentile(bare, 0.99):.1f}"
    )
    return ([details, summary] if ok else [f"notifier log (tail):\n{log_tail}", details, summary]), ok


def main() -> None:
    # uvloop.run: the producing process and the bare loop take less of the machine the notifier is measured on
    # (pacing 2,700-2,850 notifications a second here, the producing process took 0.20-0.23 of a core on asyncio's
    # own loop, 0.19-0.20 on uvloop; the receiver on uvloop 0.20-0.21, 0.22 before)
    if sys.argv[1:2] == ["--bare-loop"]:  # the latency baseline's own process (see bare_paced)
        bootstrap, topic, sink_url, public_url, n, in_flight, *paths = sys.argv[2:]
        uvloop.run(bare_loop(bootstrap, topic, sink_url, paths, public_url, int(n), int(in_flight)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=2000, help="tickets produced up front (N)")
    parser.add_argument("--targets", type=int, default=4, help="webhook targets of the team (K)")
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="how long the paced phase produces")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=WARMUP_S,
        help="the paced stream's first seconds: delivered and checked, not in p50/p99",
    )
    parser.add_argument(
        "--broker-warmup-seconds",
        type=float,
        default=BROKER_WARMUP_S,
        help="a paced stream through the broker alone before anything is measured (0: none)",
    )
    parser.add_argument("--paced-max", type=int, default=20_000, help="at most this many paced tickets")
    parser.add_argument(
        "--paced-share", type=float, default=PACED_SHARE, help="paced rate as a share of the burst rate (0.7)"
    )
    parser.add_argument(
        "--paced-rate", type=float, default=None, help="paced notifications a second, instead of --paced-share"
    )
    parser.add_argument("--baseline-runs", type=int, default=2, help="baseline runs; the fastest one counts")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on any wait after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the config, database and logs here")
    args = parser.parse_args()
    if min(args.tickets, args.targets, args.baseline_runs) < 1:
        parser.error("--tickets, --targets and --baseline-runs must be at least 1")
    if args.paced_rate is not None and args.paced_rate <= 0:
        parser.error("--paced-rate must be above 0")
    if min(args.warmup_seconds, args.broker_warmup_seconds) < 0:
        parser.error("--warmup-seconds and --broker-warmup-seconds must not be negative")
    problem = reuse_problem(args.workdir, DATABASE)
    if problem is not None:
        parser.error(problem)
    opts = Options(
        args.tickets,
        args.targets,
        args.paced_seconds,
        args.paced_max,
        args.timeout,
        args.baseline_runs,
        args.paced_share,
        args.paced_rate,
        args.warmup_seconds,
        args.broker_warmup_seconds,
    )
    with tempfile.TemporaryDirectory(prefix="ticketloop-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.bootstrap:
            lines, ok = uvloop.run(measure(args.bootstrap, opts, workdir))
        else:
            with LocalKafka(gc_log=True) as broker:
                lines, ok = uvloop.run(measure(broker.bootstrap, opts, workdir, broker.gc_log_path))
    print("\n".join(lines))
    if not ok:
        raise SystemExit("notify_fanout: a notification was lost or received twice (see the lines above)")


if __name__ == "__main__":
    main()
