"""How fast intake takes alerts, against Debian's Alertmanager on the same machine, in one run (issue 15).

    python -m bench.intake_vs_alertmanager [--alerts 50000] [--batch 50] [--singles 3000] [--concurrency 8]
                                           [--timeout 300] [--bootstrap HOST:PORT] [--workers N]

The same alerts go to each side, one side after the other: --alerts distinct alerts in POSTs of --batch, then
--singles more, one alert a POST, over --concurrency keep-alive connections, one POST in flight on each (a POST
that fails is retried a few times). The client is bench/http_load.py, a bare HTTP/1.1 loop: through httpx the
client, not the servers, set both sides' single-post rates.
Alertmanager (``/usr/bin/prometheus-alertmanager``, 127.0.0.1) takes them at ``/api/v2/alerts`` as Prometheus
sends them, with a route that waits an hour before notifying (nothing but ingest is measured); intake (its own
process, a local broker) takes them as Alertmanager's v4 webhooks at ``/api/v1/integrations/<name>``, answering
202 only once the broker acknowledged every write (``acks=all``). Each rate is what was accepted over the time from
the first POST sent to the last answer received. After both, the events topic is read: every alert intake
accepted must be there. Each side warms up with one POST first. Intake runs as it does by default: one worker
process a CPU (services/intake/workers.py; at most 4), or --workers N. Then the single posts go once more, to
bench/lean_intake: the leanest server Python answers them with after the broker's acknowledgement (no parsing,
no token, no metrics), so ``lean_single_ratio`` is about as near as an intake in Python on aiokafka could come
here, whatever its own code; and once more to it answering each as soon as read (``lean_http_posts_per_s``: the
HTTP round trip alone, nothing produced). Last, the broker floor: intake's records produced by a bare aiokafka
loop, no HTTP. A post's answer waits for both round trips, one after the other, so with --concurrency in flight
a server that answers after the broker, and whose HTTP costs no more than this one's, takes at most about
1 / (1 / lean_http + 1 / floor_single) posts a second. Last line:
``intake_vs_alertmanager: alerts=.. singles=.. am_batch_alerts_per_s=.. tl_batch_alerts_per_s=.. batch_ratio=..
am_single_posts_per_s=.. tl_single_posts_per_s=.. single_ratio=.. accepted=.. on_kafka=.. tl_workers=..
lean_single_posts_per_s=.. lean_single_ratio=.. lean_http_posts_per_s=.. floor_batch_alerts_per_s=..
floor_single_posts_per_s=.. floor_single_ratio=..``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.http_load import Posting, post_all
from bench.loop_storm import Labels, api_alerts, storm, webhook_body
from deploy.local.alertmanager import Alertmanager
from deploy.local.alertmanager import config as alertmanager_config
from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from services.intake.workers import available_cpus, worker_count
from shared.streaming.topics import Topics, TopicSpec, ensure_topics

INTEGRATION = "alertmanager"
TOKEN = "bench-alertmanager-token-0123456789"  # noqa: S105 - a local bench's intake token
PARTITIONS = 4
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Phase:
    """One phase of one side: POSTs answered 2xx, alerts in them, failures, seconds from first send to last answer."""

    posts: int
    alerts: int
    failed: int
    seconds: float

    @property
    def alerts_per_s(self) -> float:
        return self.alerts / self.seconds if self.seconds > 0 else float("nan")

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else float("nan")


def chunks(alerts: Sequence[Labels], size: int) -> list[list[Labels]]:
    return [list(alerts[i : i + size]) for i in range(0, len(alerts), size)]


def ratio(tl: float, am: float) -> float:
    return tl / am if am > 0 else float("nan")


def summary_line(n: int, singles: int, phases: dict[str, Phase], accepted: int, on_kafka: int, workers: int = 1) -> str:
    am_b, tl_b, am_s, tl_s = (phases[k] for k in ("am_batch", "tl_batch", "am_single", "tl_single"))
    floor_b, floor_s, lean_s = phases.get("floor_batch"), phases.get("floor_single"), phases.get("lean_single")
    lean = (
        f" lean_single_posts_per_s={lean_s.posts_per_s:.0f}"
        f" lean_single_ratio={ratio(lean_s.posts_per_s, am_s.posts_per_s):.4f}"
        if lean_s is not None
        else ""
    )
    if (lean_http := phases.get("lean_http")) is not None:
        lean += f" lean_http_posts_per_s={lean_http.posts_per_s:.0f}"
    floor = (
        f" floor_batch_alerts_per_s={floor_b.alerts_per_s:.0f} floor_single_posts_per_s={floor_s.posts_per_s:.0f}"
        f" floor_single_ratio={ratio(floor_s.posts_per_s, am_s.posts_per_s):.4f}"
        if floor_b is not None and floor_s is not None
        else ""
    )
    return (
        f"intake_vs_alertmanager: alerts={n} singles={singles} "
        f"am_batch_alerts_per_s={am_b.alerts_per_s:.0f} tl_batch_alerts_per_s={tl_b.alerts_per_s:.0f} "
        f"batch_ratio={ratio(tl_b.alerts_per_s, am_b.alerts_per_s):.4f} "
        f"am_single_posts_per_s={am_s.posts_per_s:.0f} tl_single_posts_per_s={tl_s.posts_per_s:.0f} "
        f"single_ratio={ratio(tl_s.posts_per_s, am_s.posts_per_s):.4f} accepted={accepted} on_kafka={on_kafka} "
        f"tl_workers={workers}{lean}{floor}"
    )


async def phase(url: str, bodies: list[bytes], sizes: list[int], headers: dict[str, str], opts: Options) -> Phase:
    posting = Posting()
    started = time.time()
    await post_all(url, bodies, headers, opts.concurrency, time.monotonic() + opts.timeout, posting)
    alerts = sum(sizes) if posting.failed == 0 else round(sum(sizes) * posting.posted / len(bodies))
    return Phase(posting.posted, alerts, posting.failed, posting.done_at - started)


@dataclass(frozen=True)
class Options:
    alerts: int
    batch: int
    singles: int
    concurrency: int
    timeout: float
    workers: int = 0
    """intake's worker processes (0: its default, one a CPU)"""


Kept = list[tuple[bytes | None, bytes]]


async def lean_phase(bootstrap: str, topic: str, bodies: list[bytes], opts: Options, *, at_once: bool = False) -> Phase:
    """The single posts against bench/lean_intake, in its own process as intake is, after one to warm it up;
    ``at_once``: answered as soon as read, nothing produced (the HTTP round trip alone)."""
    await ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS, "posts", "the lean server's copy of the posts")])
    port = free_port()
    args = ["-m", "bench.lean_intake", "--port", str(port), "--bootstrap", bootstrap, "--topic", topic]
    args += ["--at-once"] if at_once else []
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"bench.lean_intake did not start (exit {proc.returncode}, printed {line!r})")
        url, headers = (
            f"http://127.0.0.1:{port}/api/v1/integrations/{INTEGRATION}",
            {"Content-Type": "application/json"},
        )
        await phase(url, bodies[:1], [1], headers, opts)
        return await phase(url, bodies, [1] * len(bodies), headers, opts)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def count_on_kafka(bootstrap: str, topic: str, expect: int, within_s: float) -> tuple[int, Kept]:
    """The records on ``topic``, read from the start until ``expect`` are there (bounded), and their keys and
    values (in no particular order across partitions)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    kept: Kept = []
    deadline = time.monotonic() + within_s
    try:
        while len(kept) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            kept.extend((r.key, r.value) for records in batch.values() for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return len(kept), kept


async def floor_phase(producer: AIOKafkaProducer, topic: str, posts: list[Kept], concurrency: int) -> Phase:
    """``posts`` produced by ``concurrency`` loops, each awaiting every acknowledgement of one post before its
    next (as intake answers one POST)."""
    queue = iter(posts)

    async def loop() -> None:
        for post in queue:
            sent = [await producer.send(topic, value=value, key=key) for key, value in post]
            await asyncio.gather(*sent)

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return Phase(len(posts), sum(len(p) for p in posts), 0, time.monotonic() - started)


async def broker_floor(bootstrap: str, prefix: str, kept: Kept, opts: Options) -> dict[str, Phase]:
    """The floor phases on intake's own records: --alerts of them in posts of --batch, then --singles one a post."""
    topic = f"{prefix}floor"
    await ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS, "as events", "the broker floor's copy of events")])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        batched, singles = kept[: opts.alerts], kept[opts.alerts : opts.alerts + opts.singles]
        warm = [kept[:1]]
        await floor_phase(producer, topic, warm, 1)
        posts = [batched[i : i + opts.batch] for i in range(0, len(batched), opts.batch)]
        return {
            "floor_batch": await floor_phase(producer, topic, posts, opts.concurrency),
            "floor_single": await floor_phase(producer, topic, [[r] for r in singles], opts.concurrency),
        }
    finally:
        await producer.stop()


async def measure(bootstrap: str, opts: Options, workdir: Path) -> tuple[str, bool]:
    alerts = storm(opts.alerts + opts.singles + 2, 1, "IntakeBench")
    warm, batched, singles = alerts[:2], alerts[2 : 2 + opts.alerts], alerts[2 + opts.alerts :]
    starts = datetime.now(UTC)
    groups = chunks(batched, opts.batch)
    ones = chunks(singles, 1)
    sizes = [len(g) for g in groups]
    limits = httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency)
    phases: dict[str, Phase] = {}
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        am_yml = alertmanager_config("http://127.0.0.1:9/none", group_wait="1h", group_interval="1h")
        with Alertmanager(workdir / "alertmanager", am_yml) as am:
            url, headers = f"{am.url}/api/v2/alerts", {"Content-Type": "application/json"}
            (await client.post(url, content=orjson.dumps(api_alerts(warm, starts)), headers=headers)).raise_for_status()
            phases["am_batch"] = await phase(
                url, [orjson.dumps(api_alerts(g, starts)) for g in groups], sizes, headers, opts
            )
            phases["am_single"] = await phase(
                url, [orjson.dumps(api_alerts(g, starts)) for g in ones], [1] * len(ones), headers, opts
            )

        prefix = f"intakebench{time.time_ns()}."
        await ensure_topics(bootstrap, Topics(prefix, PARTITIONS).all())
        cfg = workdir / "config"
        cfg.mkdir(parents=True, exist_ok=True)
        (cfg / "intake.yaml").write_text(
            f"integrations:\n  - {{name: {INTEGRATION}, format: alertmanager, token: {TOKEN}}}\n"
        )
        for name, text in {"routing.yaml": "route:\n  team: ops\n", "teams.yaml": "people: {}\nteams: {}\n"}.items():
            (cfg / name).write_text(text)
        stack = Stack(
            bootstrap,
            f"sqlite:///{workdir / 'intake.db'}",
            cfg,
            workdir / "logs",
            free_port(),
            9,
            extra_env={
                "TICKETLOOP_TOPIC_PREFIX": prefix,
                "TICKETLOOP_PARTITIONS": str(PARTITIONS),
                "TICKETLOOP_LOG_LEVEL": "WARNING",
                "TICKETLOOP_INTAKE_WORKERS": str(opts.workers),
            },
        )
        stack.start("intake")
        try:
            await asyncio.to_thread(stack.wait_ready, 120.0)
            url = f"{stack.intake_url}/api/v1/integrations/{INTEGRATION}"
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
            (
                await client.post(url, content=orjson.dumps(webhook_body(warm, starts)), headers=headers)
            ).raise_for_status()
            phases["tl_batch"] = await phase(
                url, [orjson.dumps(webhook_body(g, starts)) for g in groups], sizes, headers, opts
            )
            single_bodies = [orjson.dumps(webhook_body(g, starts)) for g in ones]
            phases["tl_single"] = await phase(url, single_bodies, [1] * len(ones), headers, opts)
            stack.check_alive()
        finally:
            stack.stop_all()
        phases["lean_single"] = await lean_phase(bootstrap, f"{prefix}lean", single_bodies, opts)
        phases["lean_http"] = await lean_phase(bootstrap, f"{prefix}lean", single_bodies, opts, at_once=True)
    accepted = len(warm) + phases["tl_batch"].alerts + phases["tl_single"].alerts
    on_kafka, kept = await count_on_kafka(bootstrap, f"{prefix}events", accepted, 120)
    failed = sum(p.failed for p in phases.values())
    if len(kept) >= opts.alerts + opts.singles:
        phases.update(await broker_floor(bootstrap, prefix, kept, opts))
    workers = worker_count(opts.workers, available_cpus())
    line = summary_line(opts.alerts, opts.singles, phases, accepted, on_kafka, workers)
    return line, failed == 0 and on_kafka >= accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=50_000, help="alerts sent in batches")
    parser.add_argument("--batch", type=int, default=50, help="alerts per batched POST")
    parser.add_argument("--singles", type=int, default=3_000, help="single-alert POSTs after the batches")
    parser.add_argument("--concurrency", type=int, default=8, help="POSTs in flight")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up a phase after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    parser.add_argument("--workers", type=int, default=0, help="intake's worker processes (0: its default)")
    args = parser.parse_args()
    if min(args.alerts, args.batch, args.singles, args.concurrency) < 1:
        parser.error("--alerts, --batch, --singles and --concurrency must be at least 1")
    opts = Options(args.alerts, args.batch, args.singles, args.concurrency, args.timeout, max(0, args.workers))
    with tempfile.TemporaryDirectory(prefix="ticketloop-bench-") as tmp:
        if args.bootstrap:
            line, ok = asyncio.run(measure(args.bootstrap, opts, Path(tmp)))
        else:
            with LocalKafka() as broker:
                line, ok = asyncio.run(measure(broker.bootstrap, opts, Path(tmp)))
    print(line)
    if not ok:
        raise SystemExit("intake_vs_alertmanager: a POST failed or an accepted alert is not on Kafka (see above)")


if __name__ == "__main__":
    main()
