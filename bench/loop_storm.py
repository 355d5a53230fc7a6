"""One alert storm through ticketloop's four services and through Debian's Alertmanager, side by side (issue 14).

    python -m bench.loop_storm [--alerts 10000] [--groups 20] [--batch 100] [--concurrency 4] [--timeout 300]
                               [--bootstrap HOST:PORT] [--workdir DIR]

The storm: --alerts distinct alerts (each its own ``instance``) in --groups groups (label ``group``, alert i in
group i mod groups), severity critical, in POSTs of --batch alerts of one group each (as Alertmanager's webhook
sends one group at a time), the groups' first POSTs first, --concurrency POSTs in flight, a POST that fails retried
a few times. Both sides get the very same batches, one side after the other, on the same machine; one receiving
server (bench/storm_sink.py, its own process) records every notification and when it arrived.

1. Alertmanager (``/usr/bin/prometheus-alertmanager``, 127.0.0.1): route ``group_by: [alertname, group]``,
   group_wait 0s, group_interval 1s, repeat_interval 4h, one webhook receiver (the sink). The storm is posted to
   its ``/api/v2/alerts`` (a JSON list of alerts per POST, as Prometheus does).
2. ticketloop (deploy.local.stack: intake, router, sla, notifier on the same broker, SQLite): routing.yaml
   ``group_by: [alertname, group]`` and ``group_interval: 1s`` (one ticket per group, no group_wait), the team's
   one channel a signed generic webhook to the sink; the storm is posted to intake's
   ``/api/v1/integrations/alertmanager`` as Alertmanager v4 webhook bodies.

Before each clock starts, one warm-up alert (its own alertname) has gone all the way to the sink, and for
ticketloop the four services have gone quiet (less than a tenth of a core between them for a second), so start-up
and group joins are not counted. The clock starts when the first POST of the storm is sent. Measured from there:

- ``*_first_notify_s``: until every group's first notification has arrived at the sink (its receive time);
- ``*_all_notified_s``: until, for every group, a notification listing all its alerts has arrived (Alertmanager
  re-sends the group each group_interval; ticketloop sends an update about joining alerts at most once per
  group_interval);
- ``tl_all_tickets_s`` / ``tl_all_alerts_s``: until intake's ticket API (``GET /api/v1/tickets``, polled every
  0.25 s) lists a ticket for every group / until those tickets' ``alerts`` add up to every alert of the storm.

``ratio`` = tl_first_notify_s / am_first_notify_s. Each side gives up after --timeout seconds and the line says
what was reached (``nan`` for what was not, with the counts); the bench then exits 1. The details line adds how
long posting took and the CPU seconds each process used from the clock's start to the end of that side's wait.
Last line: ``loop_storm: alerts=.. groups=.. am_first_notify_s=.. tl_first_notify_s=.. tl_all_tickets_s=..
tl_all_alerts_s=.. ratio=.. am_all_notified_s=.. tl_all_notified_s=.. am_groups_notified=.. tl_groups_notified=..
tl_tickets=.. tl_alerts=..``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.http_load import Posting, post_all
from bench.storm_sink import Notification, StormSink, group_key
from deploy.local.alertmanager import Alertmanager
from deploy.local.alertmanager import config as alertmanager_config
from deploy.local.kafka_local import LocalKafka, free_port
from deploy.local.stack import Stack
from shared.streaming.topics import Topics, ensure_topics

STORM = "LoopStorm"
WARMUP = "LoopStormWarmup"
GROUP_BY = ("alertname", "group")
TEAM = "operations"
INTEGRATION = "alertmanager"
AM_TOKEN = "bench-alertmanager-token-0123456789"  # noqa: S105 - a local bench's intake token
API_TOKEN = "bench-api-token-0123456789abcdef"  # noqa: S105
SECRET = "bench-webhook-secret"  # noqa: S105 - a local test receiver's key, verified by nobody
PARTITIONS = 4
ZERO_TIME = "0001-01-01T00:00:00Z"
POLL_S = 0.25
QUIET_SHARE = 0.1
"""Services are quiet when they use less than this share of one core between them over a second."""

Labels = dict[str, str]


# --- the storm (pure) ------------------------------------------------------------------------------------------


def group_name(g: int) -> str:
    return f"g{g:03d}"


def storm(n: int, groups: int, alertname: str = STORM) -> list[Labels]:
    """n distinct alerts' labels; alert i is in group i mod groups."""
    return [
        {"alertname": alertname, "group": group_name(i % groups), "instance": f"host-{i:06d}", "severity": "critical"}
        for i in range(n)
    ]


def expected_alerts(alerts: Iterable[Labels]) -> dict[str, int]:
    """Alerts per group, by group key (``alertname=..,group=..``)."""
    out: dict[str, int] = {}
    for labels in alerts:
        key = group_key(labels, list(GROUP_BY))
        out[key] = out.get(key, 0) + 1
    return out


def batches(alerts: Sequence[Labels], size: int) -> list[list[Labels]]:
    """Each group's alerts in chunks of ``size``, in the order: every group's first chunk, then every group's
    second chunk, and so on (a storm hits all groups at once)."""
    by_group: dict[str, list[Labels]] = {}
    for labels in alerts:
        by_group.setdefault(group_key(labels, list(GROUP_BY)), []).append(labels)
    chunked = [[members[i : i + size] for i in range(0, len(members), size)] for members in by_group.values()]
    rounds = max((len(c) for c in chunked), default=0)
    return [chunks[r] for r in range(rounds) for chunks in chunked if r < len(chunks)]


def fingerprint(labels: Labels) -> str:
    """A stable 16-hex id of the label set, as Alertmanager gives each alert."""
    return hashlib.sha256(",".join(f"{k}={v}" for k, v in sorted(labels.items())).encode()).hexdigest()[:16]


def api_alerts(batch: Sequence[Labels], starts: datetime) -> list[dict[str, Any]]:
    """The body of one POST to Alertmanager's ``/api/v2/alerts`` (as Prometheus sends it)."""
    return [
        {
            "labels": labels,
            "annotations": {"summary": f"{labels['alertname']} on {labels['instance']}"},
            "startsAt": starts.isoformat(),
            "generatorURL": "http://127.0.0.1:9090/graph",
        }
        for labels in batch
    ]


def webhook_body(batch: Sequence[Labels], starts: datetime) -> dict[str, Any]:
    """Alertmanager's v4 webhook body for one group's alerts (what intake's alertmanager integration takes)."""
    group_labels = {name: batch[0][name] for name in GROUP_BY}
    common = {k: v for k, v in batch[0].items() if all(labels.get(k) == v for labels in batch)}
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ticketloop",
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{labels['alertname']} on {labels['instance']}"},
                "startsAt": starts.isoformat(),
                "endsAt": ZERO_TIME,
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": fingerprint(labels),
            }
            for labels in batch
        ],
    }


# --- configuration (pure) --------------------------------------------------------------------------------------


def am_config(sink_url: str) -> str:
    return alertmanager_config(
        f"{sink_url}/am", group_by=GROUP_BY, group_wait="0s", group_interval="1s", repeat_interval="4h"
    )


def ticketloop_config(sink_url: str) -> dict[str, str]:
    """The config files: one integration, one team whose one channel is a webhook to the sink, grouping as
    Alertmanager's route, no deadline within the run (nothing escalates), nobody to mail."""
    return {
        "intake.yaml": (
            f"integrations:\n  - {{name: {INTEGRATION}, format: alertmanager, token: {AM_TOKEN}}}\n"
            f"api_clients:\n  - {{name: bench, token: {API_TOKEN}}}\n"
        ),
        "routing.yaml": f"route:\n  team: {TEAM}\n  group_by: [{', '.join(GROUP_BY)}]\n  group_interval: 1s\n",
        "notify.yaml": (
            f"teams:\n  {TEAM}:\n    channels:\n"
            f'      - {{type: webhook, name: bench-hook, url: "{sink_url}/tl", secret: {SECRET}}}\n'
        ),
        "sla.yaml": (
            "policies:\n  default:\n    acknowledge: {P1: 4h, P2: 4h, P3: 4h, P4: 4h, P5: 4h}\n"
            "    escalation:\n      - {after: 0s, team: owner}\n"
        ),
        "teams.yaml": "people: {}\nteams: {}\n",
        "projects.yaml": "projects: []\n",
    }


# --- what is measured (pure) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reached:
    """What one side's notifications reached, in seconds from the first POST (nan: not reached)."""

    groups_notified: int
    first_notify_s: float
    """Until every group's first notification arrived."""
    all_notified_s: float
    """Until, for every group, a notification listing all of its alerts arrived."""

    @property
    def complete(self) -> bool:
        return not math.isnan(self.all_notified_s)


def reached(notified: Iterable[tuple[str, int, float]], expected: Mapping[str, int], t0: float) -> Reached:
    """From (group key, alerts it lists, receive time) of each notification; groups not in ``expected`` are
    someone else's (the warm-up)."""
    first: dict[str, float] = {}
    full: dict[str, float] = {}
    for key, alerts, at in notified:
        if key not in expected:
            continue
        first[key] = min(at, first.get(key, at))
        if alerts >= expected[key]:
            full[key] = min(at, full.get(key, at))
    return Reached(
        len(first),
        max(first.values()) - t0 if len(first) == len(expected) else math.nan,
        max(full.values()) - t0 if len(full) == len(expected) else math.nan,
    )


@dataclass(frozen=True)
class Tickets:
    """The storm's tickets in the API: how many, their alerts added up, and each one's group key."""

    tickets: int
    alerts: int
    groups: dict[str, str]
    """ticket id -> group key"""


def tickets_of(rows: Iterable[Mapping[str, Any]], alertname: str = STORM) -> Tickets:
    """The API's ticket list, the storm's only (not the warm-up's)."""
    ours = [r for r in rows if r.get("labels", {}).get("alertname") == alertname]
    return Tickets(
        len(ours),
        sum(int(r.get("alerts", 0)) for r in ours),
        {str(r["ticket_id"]): group_key(r.get("labels", {}), list(GROUP_BY)) for r in ours},
    )


def tl_notified(received: Iterable[Notification], groups: Mapping[str, str]) -> list[tuple[str, int, float]]:
    """ticketloop's notifications by group (through the ticket id; a ticket not yet in the API is left out)."""
    return [(groups[n.key], n.alerts, n.at) for n in received if n.path == "/tl" and n.key in groups]


def am_notified(received: Iterable[Notification]) -> list[tuple[str, int, float]]:
    return [(n.key, n.alerts, n.at) for n in received if n.path == "/am"]


def count_kinds(received: Iterable[Notification], path: str, keys: Iterable[str] | None = None) -> dict[str, int]:
    """How many notifications of each kind arrived at ``path`` (only those with these keys, when given)."""
    wanted = None if keys is None else set(keys)
    out: dict[str, int] = {}
    for n in received:
        if n.path == path and (wanted is None or n.key in wanted):
            out[n.kind] = out.get(n.kind, 0) + 1
    return dict(sorted(out.items()))


def keys_notified(received: Iterable[Notification], path: str) -> int:
    """Distinct keys notified at ``path``: for ticketloop the tickets, also those the API does not list yet."""
    return len({n.key for n in received if n.path == path})


def ratio(tl_s: float, am_s: float) -> float:
    if not (math.isfinite(tl_s) and math.isfinite(am_s)) or am_s <= 0:
        return math.nan
    return tl_s / am_s


def cpu_ticks(stat: str) -> int:
    """utime + stime of a ``/proc/<pid>/stat`` line (the name in parentheses may hold spaces)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def quiet(cpu_s_used: float, over_s: float) -> bool:
    return cpu_s_used < QUIET_SHARE * over_s


@dataclass(frozen=True)
class Side:
    """One side's run: what was reached, and posting."""

    reached: Reached
    posted: int
    failed: int
    retries: int
    posted_s: float
    cpu_s: dict[str, float]
    tickets_s: float = math.nan
    alerts_s: float = math.nan
    tickets: Tickets = field(default_factory=lambda: Tickets(0, 0, {}))
    kinds: dict[str, int] = field(default_factory=dict)
    """Notifications of the storm received, by kind."""
    keys_notified: int = 0


def summary_line(n: int, groups: int, am: Side, tl: Side) -> str:
    return (
        f"loop_storm: alerts={n} groups={groups} am_first_notify_s={am.reached.first_notify_s:.3f} "
        f"tl_first_notify_s={tl.reached.first_notify_s:.3f} tl_all_tickets_s={tl.tickets_s:.3f} "
        f"tl_all_alerts_s={tl.alerts_s:.3f} "
        f"ratio={ratio(tl.reached.first_notify_s, am.reached.first_notify_s):.2f} "
        f"am_all_notified_s={am.reached.all_notified_s:.3f} tl_all_notified_s={tl.reached.all_notified_s:.3f} "
        f"am_groups_notified={am.reached.groups_notified} tl_groups_notified={tl.reached.groups_notified} "
        f"tl_tickets={tl.tickets.tickets} tl_alerts={tl.tickets.alerts}"
    )


def details_line(am: Side, tl: Side) -> str:
    def cpu(side: Side) -> str:
        return ",".join(f"{name}:{s:.1f}" for name, s in side.cpu_s.items())

    def received(side: Side) -> str:
        return ",".join(f"{kind}:{n}" for kind, n in side.kinds.items()) or "none"

    return (
        f"loop_storm details: am_posted_s={am.posted_s:.3f} am_posts={am.posted} am_post_failures={am.failed} "
        f"am_retries={am.retries} tl_posted_s={tl.posted_s:.3f} tl_posts={tl.posted} tl_post_failures={tl.failed} "
        f"tl_retries={tl.retries} am_received={received(am)} tl_received={received(tl)} "
        f"tl_tickets_notified={tl.keys_notified} am_cpu_s={cpu(am)} tl_cpu_s={cpu(tl)}"
    )


def complete(n: int, am: Side, tl: Side) -> bool:
    return (
        am.reached.complete
        and tl.reached.complete
        and not math.isnan(tl.tickets_s)
        and not math.isnan(tl.alerts_s)
        and tl.tickets.alerts == n
        and am.failed == tl.failed == 0
    )


# --- the shells ------------------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """CPU seconds a live process has used so far (nan once it is gone)."""
    try:
        return cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


class CpuMeter:
    """CPU seconds used by named processes (and this one, ``bench``) since it was made."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.start = {name: cpu_s(pid) for name, pid in self.pids.items()}
        self.own = time.process_time()

    def used(self) -> dict[str, float]:
        out = {name: cpu_s(pid) - self.start[name] for name, pid in self.pids.items()}
        out["bench"] = time.process_time() - self.own
        return out


async def wait_quiet(pids: Mapping[str, int], within_s: float) -> None:
    """Until the processes use less than QUIET_SHARE of a core between them for a second (at most within_s)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        meter = CpuMeter(pids)
        await asyncio.sleep(1.0)
        used = meter.used()
        used.pop("bench")
        if quiet(sum(v for v in used.values() if not math.isnan(v)), 1.0):
            return


async def wait_until(
    what: str, probe: Callable[[], Awaitable[bool]], within_s: float, alive: Callable[[], None]
) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        alive()
        if await probe():
            return
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"loop_storm: {what} did not happen within {within_s:.0f} s")


@dataclass
class Run:
    alerts: list[Labels]
    batches: list[list[Labels]]
    expected: dict[str, int]
    starts: datetime
    concurrency: int
    timeout: float
    workdir: Path
    broker_pid: int | None


def nothing() -> None:
    return None


async def alertmanager_side(run: Run, sink: StormSink, probe: httpx.AsyncClient, poster: httpx.AsyncClient) -> Side:
    with Alertmanager(run.workdir / "alertmanager", am_config(sink.url)) as am:
        if am.proc is None or sink.proc is None:
            raise RuntimeError("Alertmanager or the sink is not running")
        url = f"{am.url}/api/v2/alerts"
        bodies = [orjson.dumps(api_alerts(b, run.starts)) for b in run.batches]
        headers = {"Content-Type": "application/json"}

        held = await sink.count(probe)
        warm = orjson.dumps(api_alerts(storm(1, 1, WARMUP), run.starts))
        (await poster.post(url, content=warm, headers=headers)).raise_for_status()

        async def warmed() -> bool:
            return await sink.count(probe) > held

        await wait_until("Alertmanager's warm-up notification", warmed, 60, nothing)
        held = await sink.count(probe)

        pids = {"alertmanager": am.proc.pid, "sink": sink.proc.pid}
        if run.broker_pid is not None:
            pids["broker"] = run.broker_pid
        meter = CpuMeter(pids)
        posting = Posting()
        deadline = time.monotonic() + run.timeout
        t0 = time.time()
        sending = asyncio.create_task(post_all(url, bodies, headers, run.concurrency, deadline, posting))
        received: list[Notification] = []
        result = reached([], run.expected, t0)
        try:
            while time.monotonic() < deadline:
                received += await sink.received(probe, held + len(received))
                result = reached(am_notified(received), run.expected, t0)
                if sending.done() and result.complete:
                    break
                await asyncio.sleep(POLL_S)
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        used = meter.used()
        return Side(
            result,
            posting.posted,
            posting.failed,
            posting.retries,
            posting.done_at - t0,
            used,
            kinds=count_kinds(received, "/am", run.expected),
        )


async def ticketloop_side(
    run: Run, bootstrap: str, sink: StormSink, probe: httpx.AsyncClient, poster: httpx.AsyncClient
) -> Side:
    prefix = f"loopstorm{time.time_ns()}."
    await ensure_topics(bootstrap, Topics(prefix, PARTITIONS).all())
    cfg = run.workdir / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    for name, text in ticketloop_config(sink.url).items():
        (cfg / name).write_text(text)
    stack = Stack(
        bootstrap,
        f"sqlite:///{run.workdir / 'ticketloop.db'}",
        cfg,
        run.workdir / "logs",
        free_port(),
        9,
        extra_env={
            "TICKETLOOP_TOPIC_PREFIX": prefix,
            "TICKETLOOP_PARTITIONS": str(PARTITIONS),
            "TICKETLOOP_LOG_LEVEL": "WARNING",
        },
    )
    url = f"{stack.intake_url}/api/v1/integrations/{INTEGRATION}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"}
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    bodies = [orjson.dumps(webhook_body(b, run.starts)) for b in run.batches]

    async def tickets(last: Tickets) -> Tickets:
        """The storm's tickets in the API now (what was seen last while intake does not answer)."""
        try:
            response = await probe.get(f"{stack.intake_url}/api/v1/tickets", params={"limit": 1000}, headers=api)
            response.raise_for_status()
        except httpx.HTTPError:
            return last
        return tickets_of(response.json()["tickets"])

    stack.start_all()
    try:
        await asyncio.to_thread(stack.wait_ready, 120.0)
        held = await sink.count(probe)
        warm = orjson.dumps(webhook_body(storm(1, 1, WARMUP), run.starts))
        (await poster.post(url, content=warm, headers=headers)).raise_for_status()

        async def warmed() -> bool:
            return await sink.count(probe) > held

        await wait_until("ticketloop's warm-up notification", warmed, 120, stack.check_alive)
        services = {name: proc.pid for name, proc in stack.procs.items()}
        await wait_quiet(services, 60)
        held = await sink.count(probe)

        if sink.proc is None:
            raise RuntimeError("the sink is not running")
        pids = {**services, "sink": sink.proc.pid}
        if run.broker_pid is not None:
            pids["broker"] = run.broker_pid
        meter = CpuMeter(pids)
        posting = Posting()
        deadline = time.monotonic() + run.timeout
        t0 = time.time()
        sending = asyncio.create_task(post_all(url, bodies, headers, run.concurrency, deadline, posting))
        received: list[Notification] = []
        seen = Tickets(0, 0, {})
        result = reached([], run.expected, t0)
        tickets_s = alerts_s = math.nan
        n = len(run.alerts)
        try:
            while time.monotonic() < deadline:
                stack.check_alive()
                received += await sink.received(probe, held + len(received))
                seen = await tickets(seen)
                now = time.time()
                if math.isnan(tickets_s) and seen.tickets >= len(run.expected):
                    tickets_s = now - t0
                if math.isnan(alerts_s) and seen.alerts >= n:
                    alerts_s = now - t0
                result = reached(tl_notified(received, seen.groups), run.expected, t0)
                if sending.done() and result.complete and not math.isnan(alerts_s) and not math.isnan(tickets_s):
                    break
                await asyncio.sleep(POLL_S)
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        used = meter.used()
        return Side(
            result,
            posting.posted,
            posting.failed,
            posting.retries,
            posting.done_at - t0,
            used,
            tickets_s,
            alerts_s,
            seen,
            count_kinds(received, "/tl", seen.groups),
            keys_notified(received, "/tl"),
        )
    finally:
        stack.stop_all()


@dataclass(frozen=True)
class Options:
    alerts: int
    groups: int
    batch: int
    concurrency: int
    timeout: float


async def measure(bootstrap: str, broker_pid: int | None, opts: Options, workdir: Path) -> tuple[list[str], bool]:
    alerts = storm(opts.alerts, opts.groups)
    run = Run(
        alerts,
        batches(alerts, opts.batch),
        expected_alerts(alerts),
        datetime.now(UTC),
        opts.concurrency,
        opts.timeout,
        workdir,
        broker_pid,
    )
    limits = httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency)
    with StormSink(free_port(), workdir / "sink.log") as sink:
        async with (
            httpx.AsyncClient(timeout=30.0) as probe,
            httpx.AsyncClient(timeout=30.0, limits=limits) as poster,
        ):
            am = await alertmanager_side(run, sink, probe, poster)
            tl = await ticketloop_side(run, bootstrap, sink, probe, poster)
    return [details_line(am, tl), summary_line(opts.alerts, opts.groups, am, tl)], complete(opts.alerts, am, tl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=10_000, help="distinct alerts in the storm")
    parser.add_argument("--groups", type=int, default=20, help="groups (one ticket each)")
    parser.add_argument("--batch", type=int, default=100, help="alerts per POST (all of one group)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs in flight")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on either side after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the configs, database and logs here")
    args = parser.parse_args()
    if min(args.alerts, args.groups, args.batch, args.concurrency) < 1 or args.groups > args.alerts:
        parser.error("--alerts, --groups, --batch and --concurrency must be at least 1, and groups <= alerts")
    opts = Options(args.alerts, args.groups, args.batch, args.concurrency, args.timeout)
    with tempfile.TemporaryDirectory(prefix="ticketloop-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.bootstrap:
            lines, ok = asyncio.run(measure(args.bootstrap, None, opts, workdir))
        else:
            with LocalKafka() as broker:
                pid = broker.proc.pid if broker.proc is not None else None
                lines, ok = asyncio.run(measure(broker.bootstrap, pid, opts, workdir))
    print("\n".join(lines))
    if not ok:
        raise SystemExit(f"loop_storm: gave up after {args.timeout:.0f} s on a side that did not finish (see above)")


if __name__ == "__main__":
    main()
