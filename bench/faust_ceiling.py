"""What faust's per-event stream machinery allows on this machine, against a bare aiokafka forwarder in the same run.

    python -m bench.faust_ceiling [--records 20000] [--partitions 4] [--timeout 300] [--bootstrap HOST:PORT]
                                  [--variants NAME,...] [--baseline-runs 2]

Why: the project moves its hot paths from faust agents to a batched aiokafka loop
(shared/streaming/driver.py); this keeps that choice measured. One broker (a fresh LocalKafka, or
--bootstrap), one input topic of --records records of 1 KB (keys k0..kN spread over --partitions partitions)
produced once; then every variant reads all of it from
the start in a fresh subprocess with its own consumer group and its own output topic, one after the other:

- ``forwarder``: bare aiokafka consume → produce (bench.router_storm's baseline: getmany up to 2,000, send all
  with acks=all and linger 5 ms, await all, commit). Run first and last (--baseline-runs); the fastest counts,
  which flatters no other variant. Before it one unmeasured forwarder pass warms the broker (a fresh broker's
  first pass measured 9,057/s against 15,468/s for the last one of the same run; another fresh broker's first
  pass 14,619/s, so that was partly the load beside it).
- ``driver``: shared.streaming.driver.BatchDriver with the project's DriverConfig defaults (500 records a poll, commit
  every 0.5 s); its handler sends the batch with an aiokafka producer (acks=all, linger 5 ms) and awaits all.
- faust, through shared.streaming.app.create_faust_app (the services' own settings: acks=all, publish-on-commit, 0.2 s
  commit interval; under exactly_once shared/streaming/eos.py's per-source-partition transactions), raw key and value
  serializers, one worker:
  ``faust_consume_alo`` / ``faust_consume_eos``: an agent that only consumes (``stream.take(500, within=0.5)``);
  ``faust_forward``: ``async for event in stream.events(): await out.send(key, value)``, at_least_once;
  ``faust_forward_take``: ``stream.take_events(500, within=0.5)``, each event sent, at_least_once;
  ``faust_forward_take_eos``: the same under exactly_once (a detail line; the summary has no field for it).
  Each of these runs with the best faust configuration found (below) and, as ``..._project``, with the
  project's configuration as the services run it today.

Rates. A forwarding variant's rate comes from its output topic (read_committed): the broker timestamps of the
first and last output record, as in router_storm, so start-up and group joins are not counted. A consuming
variant has no output: its agent stamps each batch with time.monotonic() as it receives it (in the agent, not
by committed offsets: what the stream hands the agent is the machinery's rate). Either way the records stamped
at the first instant are the start line, not counted (steady_rate): a batch handed over at once is not counted
as if it took no time. ratio = per_s / forwarder_per_s of the same run.

What was tried to make faust faster, on this 2-core machine with the project's test suite running beside it
(run-to-run spread ±30%, so only what held in every run counts). 20,000 records, 4 partitions, records/s;
"a / b" are two runs one after the other, each change alone on top of the project configuration:

- at_least_once consume, take(500): project 4,448 / 4,425. Monitor off (``monitor=`` a Monitor whose
  per-message, per-event, per-send and per-commit calls do nothing) 4,671 / 4,633. ``broker_max_poll_records=
  5000`` with ``consumer_max_fetch_size=8 MB`` (faust: none, 1 MB) 8,668 / 10,118: one fetch takes a partition's
  whole backlog, in fewer rounds and fewer hand-overs from faust's consumer thread. The consumer's
  ``fetch_max_wait_ms`` 1,500 → 100 (faust hard-codes 1,500; shared/streaming/eos.py sets 100, likely why exactly_once
  consumed faster than at_least_once) 7,019 / 7,680: aiokafka keeps one fetch in flight per broker, and once a
  partition has nothing left that fetch waits out its full time, holding back partitions that still have
  records. All together 7,769 / 7,958, in two later runs 8,942 / 8,737 against 10,569 / 7,935 without the
  shorter wait: once the fetches are big the wait no longer shows beyond the noise.
- exactly_once consume, take(500): project 7,164 / 9,296; monitor off 6,860 / 7,927; the big fetches
  6,444 / 6,617; all together 8,480 / 6,195: nothing beyond the noise.
- at_least_once forward, take(500): project 3,336 / 2,376; monitor off 4,089 / 2,980; ``producer_linger=5 ms``
  with ``producer_max_batch_size=256 KB`` (faust: 0 and 16 KB; the forwarder lingers 5 ms too) 3,267 / 3,273;
  the big fetches 4,023 / 4,275; fetch wait 100 ms 3,222 / 2,839; all together 4,720 / 4,545 (later 4,628 /
  6,901, and 3,626 / 4,683 without the shorter wait). On top of all that, ``producer_threaded`` 4,347 /
  4,422 and ``stream_publish_on_commit=False`` 4,680 / 4,746: no gain.
- at_least_once forward per event: project 2,877 / 3,728, linger and batch size 4,062 / 4,412, all together
  3,984 / 3,755 (later 4,740 / 3,492).
- no effect beyond the noise (consume at_least_once, one run, project 4,721): ``stream_buffer_maxsize`` 512 /
  32,768 (faust: 4,096) 4,391 / 4,688; take(100) / take(2,000) 4,818 / 4,529; ``broker_commit_interval`` 2.8 s
  (faust's default; the project's 0.2 s) 4,200; one event at a time 5,161.

The best configuration found (``TUNED``), used by the summary's faust variants: monitor off, the big fetches,
fetch_max_wait_ms 100, producer linger 5 ms with 256 KB batches. ``--variants`` runs any variant in
``VARIANTS`` again, the single changes above included.

Bounded: every variant gives up after --timeout seconds (and each subprocess ends itself by SIGALRM if the
parent is gone); the subprocesses and the broker are stopped at the end. Output: one line per variant, then
``faust_ceiling: records=.. forwarder_per_s=.. driver_per_s=.. driver_ratio=.. faust_consume_alo_ratio=..
faust_consume_eos_ratio=.. faust_forward_ratio=.. faust_forward_take_ratio=..``; exit 1 when a variant did
not handle every record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.router_storm import forward, produce
from deploy.local.kafka_local import LocalKafka
from shared.streaming.driver import BatchDriver, DriverConfig, Record
from shared.streaming.topics import TopicSpec, ensure_topics

REPO = Path(__file__).resolve().parents[1]
VALUE_BYTES = 1024
TAKE_WITHIN_S = 0.5
"""How long a faust take waits for its batch to fill before it hands over what it has."""
STOP_GRACE_S = 15.0
FAUST_FETCH_WAIT_MS = 1500
"""What faust's aiokafka consumer waits for data in a fetch (hard-coded, no setting)."""
EOS_FETCH_WAIT_MS = 100
"""shared.streaming.eos.FETCH_MAX_WAIT_MS: its consumer's wait, under exactly_once (not imported: it imports faust)."""
ALO, EOS = "at_least_once", "exactly_once"
SUMMARY_KEYS = ("driver", "faust_consume_alo", "faust_consume_eos", "faust_forward", "faust_forward_take")
"""The variants whose ratio to the forwarder the summary line carries, in its order."""


@dataclass(frozen=True)
class Variant:
    """One way to move the input through: who does it, under which guarantee, and with which faust options."""

    name: str
    kind: str
    """"forwarder", "driver" or "faust"."""
    guarantee: str = ALO
    forwards: bool = True
    """Whether it writes one output record per input record (else it only consumes; faust only)."""
    take: int = 0
    """faust: events per ``take`` batch; 0 is one event at a time."""
    quiet: bool = False
    """faust: the Monitor sensor replaced by one that records nothing."""
    fetch_wait_ms: int = 0
    """faust at_least_once: the consumer's fetch_max_wait_ms (0: faust's fixed 1,500; exactly_once: always
    shared/streaming/eos.py's 100)."""
    options: tuple[tuple[str, Any], ...] = ()
    """faust: settings on top of the project's (``shared.streaming.app.create_faust_app``)."""
    max_records: int = 500
    """driver: records per poll (the project's DriverConfig default)."""

    def describe(self) -> str:
        parts = [f"kind={self.kind}"]
        if self.kind == "faust":
            parts += [
                f"guarantee={self.guarantee}",
                f"mode={'forward' if self.forwards else 'consume'}",
                f"take={self.take or 'per-event'}",
                f"monitor={'off' if self.quiet else 'on'}",
            ]
            parts.append(f"fetch_max_wait_ms={fetch_wait_of(self)}")
            parts += [f"{k}={v}" for k, v in self.options]
        elif self.kind == "driver":
            parts.append(f"max_records={self.max_records}")
        return " ".join(parts)


def fetch_wait_of(variant: Variant) -> int:
    """The fetch_max_wait_ms a faust variant's consumer runs with."""
    if variant.guarantee == EOS:
        return EOS_FETCH_WAIT_MS
    return variant.fetch_wait_ms or FAUST_FETCH_WAIT_MS


@dataclass(frozen=True)
class Rate:
    """``counted`` records over ``span_s``: those done after the first instant, over the span to the last one."""

    records: int
    counted: int
    span_s: float

    @property
    def per_s(self) -> float:
        return self.counted / self.span_s if self.span_s > 0 else math.nan


def steady_rate(marks: Sequence[tuple[float, int]]) -> Rate:
    """The rate of ``marks``, (time in seconds, records done then) in any order: the records of the first instant
    are the start line, so a batch handed over at once does not count as if it took no time."""
    if not marks:
        return Rate(0, 0, math.nan)
    first = min(t for t, _ in marks)
    last = max(t for t, _ in marks)
    return Rate(sum(n for _, n in marks), sum(n for t, n in marks if t > first), last - first)


def ratio(per_s: float, base_per_s: float) -> float:
    """``per_s`` as a share of the baseline's; NaN unless both are positive, finite numbers."""
    if not (0 < per_s < math.inf and 0 < base_per_s < math.inf):
        return math.nan
    return per_s / base_per_s


def best_rate(rates: Sequence[Rate]) -> float:
    """The fastest baseline run's records per second (NaN when none has a rate)."""
    return max((r.per_s for r in rates if r.per_s > 0), default=math.nan)


def detail_line(label: str, variant: Variant, rate: Rate, base_per_s: float) -> str:
    return (
        f"faust_ceiling[{label}]: {variant.describe()} records={rate.records} counted={rate.counted} "
        f"span_s={rate.span_s:.3f} per_s={rate.per_s:.0f} ratio={ratio(rate.per_s, base_per_s):.4f}"
    )


def summary_line(records: int, forwarder_per_s: float, per_s: Mapping[str, float]) -> str:
    """The last line: the forwarder's and the driver's rates, and each summary variant's ratio to the forwarder
    (NaN for a variant not run)."""
    parts = [
        f"faust_ceiling: records={records}",
        f"forwarder_per_s={forwarder_per_s:.0f}",
        f"driver_per_s={per_s.get('driver', math.nan):.0f}",
    ]
    parts += [f"{key}_ratio={ratio(per_s.get(key, math.nan), forwarder_per_s):.4f}" for key in SUMMARY_KEYS]
    return " ".join(parts)


def payloads(n: int, value_bytes: int = VALUE_BYTES) -> list[tuple[bytes, bytes]]:
    """n (key, value) records, each value ``value_bytes`` long, distinct keys (spread over the partitions)."""
    pad = b"." * value_bytes
    return [(f"k{i}".encode(), (f"{i:010d}".encode() + pad)[:value_bytes]) for i in range(n)]


FETCH = (("broker_max_poll_records", 5000), ("consumer_max_fetch_size", 8 * 1024 * 1024))
LINGER = (("producer_linger", 0.005), ("producer_max_batch_size", 256 * 1024))
TUNED: dict[str, Any] = {"quiet": True, "fetch_wait_ms": 100, "options": (*FETCH, *LINGER)}
"""The best faust configuration found (module doc). fetch_wait_ms only applies under at_least_once: under
exactly_once shared/streaming/eos.py's consumer sets 100 ms already."""

DEFAULT_VARIANTS = (
    Variant("driver", "driver"),
    Variant("faust_consume_alo", "faust", ALO, forwards=False, take=500, **TUNED),
    Variant("faust_consume_eos", "faust", EOS, forwards=False, take=500, **TUNED),
    Variant("faust_forward", "faust", ALO, **TUNED),
    Variant("faust_forward_take", "faust", ALO, take=500, **TUNED),
    Variant("faust_forward_take_eos", "faust", EOS, take=500, **TUNED),
    Variant("faust_consume_alo_project", "faust", ALO, forwards=False, take=500),
    Variant("faust_consume_eos_project", "faust", EOS, forwards=False, take=500),
    Variant("faust_forward_project", "faust", ALO),
    Variant("faust_forward_take_project", "faust", ALO, take=500),
    Variant("faust_forward_take_eos_project", "faust", EOS, take=500),
)
ONE_CHANGE = (
    # one change each (module doc), for --variants: on the project's configuration, or, named *_tuned_*, on TUNED
    Variant("consume_alo_quiet", "faust", ALO, forwards=False, take=500, quiet=True),
    Variant("consume_alo_fetch", "faust", ALO, forwards=False, take=500, options=FETCH),
    Variant("consume_alo_wait100", "faust", ALO, forwards=False, take=500, fetch_wait_ms=100),
    Variant("consume_alo_per_event", "faust", ALO, forwards=False),
    Variant("consume_alo_take100", "faust", ALO, forwards=False, take=100),
    Variant("consume_alo_take2000", "faust", ALO, forwards=False, take=2000),
    Variant("consume_alo_buffer512", "faust", ALO, forwards=False, take=500, options=(("stream_buffer_maxsize", 512),)),
    Variant(
        "consume_alo_buffer32k", "faust", ALO, forwards=False, take=500, options=(("stream_buffer_maxsize", 32768),)
    ),
    Variant(
        "consume_alo_commit2800ms", "faust", ALO, forwards=False, take=500, options=(("broker_commit_interval", 2.8),)
    ),
    Variant("consume_eos_quiet", "faust", EOS, forwards=False, take=500, quiet=True),
    Variant("consume_eos_fetch", "faust", EOS, forwards=False, take=500, options=FETCH),
    Variant("forward_linger", "faust", ALO, options=LINGER),
    Variant("forward_take_linger", "faust", ALO, take=500, options=LINGER),
    Variant("forward_take_fetch", "faust", ALO, take=500, options=FETCH),
    Variant("forward_take_wait100", "faust", ALO, take=500, fetch_wait_ms=100),
    Variant("forward_take_quiet", "faust", ALO, take=500, quiet=True),
    Variant(
        "forward_take_tuned_threaded",
        "faust",
        ALO,
        take=500,
        quiet=True,
        fetch_wait_ms=100,
        options=(*FETCH, *LINGER, ("producer_threaded", True)),
    ),
    Variant(
        "forward_take_tuned_no_publish_on_commit",
        "faust",
        ALO,
        take=500,
        quiet=True,
        fetch_wait_ms=100,
        options=(*FETCH, *LINGER, ("stream_publish_on_commit", False)),
    ),
    Variant("driver_2000", "driver", max_records=2000),
    Variant(
        "consume_alo_tuned_wait1500", "faust", ALO, forwards=False, take=500, quiet=True, options=(*FETCH, *LINGER)
    ),
    Variant("forward_tuned_wait1500", "faust", ALO, quiet=True, options=(*FETCH, *LINGER)),
    Variant("forward_take_tuned_wait1500", "faust", ALO, take=500, quiet=True, options=(*FETCH, *LINGER)),
)
FORWARDER = Variant("forwarder", "forwarder")
VARIANTS = {v.name: v for v in (FORWARDER, *DEFAULT_VARIANTS, *ONE_CHANGE)}


# ---- the child process: one variant in its own group, until it has handled every record ----


@dataclass(frozen=True)
class Job:
    variant: Variant
    bootstrap: str
    source: str
    sink: str
    prefix: str
    """Of this run's group ids (the faust app id carries it)."""
    records: int
    partitions: int
    timeout: float
    result: Path


class Tally:
    """What an agent or handler has done; once it has done every record, its rate goes to the result file."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.done = 0
        self.marks: list[tuple[float, int]] = []

    def add(self, n: int) -> None:
        self.done += n
        self.marks.append((time.monotonic(), n))
        if self.done >= self.job.records and not self.job.result.exists():
            rate = steady_rate(self.marks)
            tmp = self.job.result.with_suffix(".tmp")
            tmp.write_text(json.dumps({"records": rate.records, "counted": rate.counted, "span_s": rate.span_s}))
            tmp.replace(self.job.result)


async def run_forwarder(job: Job) -> None:
    await forward(job.bootstrap, job.source, job.sink, job.records, job.timeout)
    Tally(job).add(job.records)  # only says "done": its rate comes from the output's broker timestamps


async def run_driver(job: Job) -> None:
    tally = Tally(job)
    producer = AIOKafkaProducer(bootstrap_servers=job.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    stop = asyncio.Event()

    async def handle(records: list[Record]) -> None:
        futures = [await producer.send(job.sink, r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)
        tally.add(len(records))
        if tally.done >= job.records:
            stop.set()

    config = DriverConfig(job.bootstrap, f"{job.prefix}driver", (job.source,), max_records=job.variant.max_records)
    asyncio.get_running_loop().call_later(job.timeout, stop.set)
    try:
        await BatchDriver(config, handle).run(stop)
    finally:
        await producer.stop()


def quiet_monitor() -> Any:
    """faust's Monitor with every per-message, per-event, per-send and per-commit call doing nothing."""
    from faust.sensors import Monitor  # faust only in the child that runs it (the parent stays light)

    class QuietMonitor(Monitor):  # faust is untyped: Any
        def _nothing(self, *_: Any, **__: Any) -> None:
            return None

        on_message_in = on_stream_event_in = on_stream_event_out = on_message_out = _nothing
        on_send_initiated = on_send_completed = on_send_error = _nothing
        on_commit_initiated = on_commit_completed = on_tp_commit = track_tp_end_offset = _nothing

    return QuietMonitor()


def short_fetch_wait(app: Any, wait_ms: int) -> None:
    """faust's consumer with its fetches waiting at most ``wait_ms`` for data (as shared/streaming/eos.py's does)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

    class ShortWaitThread(AIOKafkaConsumerThread):  # faust is untyped: Any
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms  # faust passes 1500, with no setting
            return consumer

    class ShortWaitConsumer(Consumer):
        def _new_consumer_thread(self) -> Any:
            return ShortWaitThread(self, loop=self.loop, beacon=self.beacon)

    app.transport.Consumer = ShortWaitConsumer


def build_faust(job: Job) -> Any:
    from shared.infra.settings import CommonSettings
    from shared.streaming.app import create_faust_app

    v = job.variant
    settings = CommonSettings().model_copy(
        update={
            "kafka_bootstrap_servers": job.bootstrap,
            "topic_prefix": job.prefix,
            "partitions": job.partitions,
            "processing_guarantee": v.guarantee,
            "log_level": "WARNING",
        }
    )
    overrides: dict[str, Any] = dict(v.options)
    if v.quiet:
        overrides["monitor"] = quiet_monitor()
    app = create_faust_app("ceiling", settings, **overrides)
    if v.fetch_wait_ms and v.guarantee == ALO:
        short_fetch_wait(app, v.fetch_wait_ms)
    source = app.topic(job.source, key_serializer="raw", value_serializer="raw")
    out = app.topic(job.sink, key_serializer="raw", value_serializer="raw")
    tally = Tally(job)

    async def consume(stream: Any) -> None:
        if v.take:
            async for batch in stream.take(v.take, within=TAKE_WITHIN_S):
                tally.add(len(batch))
        else:
            async for _ in stream:
                tally.add(1)

    async def forward_each(stream: Any) -> None:
        async for event in stream.events():
            await out.send(key=event.key, value=event.value)
            tally.add(1)

    async def forward_batches(stream: Any) -> None:
        async for batch in stream.take_events(v.take, within=TAKE_WITHIN_S):
            for event in batch:
                await out.send(key=event.key, value=event.value)
            tally.add(len(batch))

    agent = (forward_batches if v.take else forward_each) if v.forwards else consume
    app.agent(source, name="ceiling")(agent)
    return app


def run_child(job: Job) -> None:
    signal.alarm(int(job.timeout) + 60)  # a child whose parent is gone ends by itself
    if job.variant.kind == "forwarder":
        asyncio.run(run_forwarder(job))
    elif job.variant.kind == "driver":
        asyncio.run(run_driver(job))
    else:
        import faust

        worker = faust.Worker(build_faust(job), loglevel="WARNING", redirect_stdouts=False, override_logging=False)
        worker.execute_from_commandline()  # until the parent's SIGTERM


# ---- the parent: input, one child per variant, rates ----


async def sink_marks(bootstrap: str, topic: str, n: int, within_s: float) -> list[tuple[float, int]]:
    """(broker timestamp in seconds, 1) per committed record of ``topic``, once n are there or at the timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    marks: list[tuple[float, int]] = []
    deadline = time.monotonic() + within_s
    try:
        while len(marks) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            marks.extend((r.timestamp / 1000.0, 1) for recs in batch.values() for r in recs)
    finally:
        await consumer.stop()
    return marks


async def stop_child(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM (faust's worker shuts down cleanly), SIGKILL after STOP_GRACE_S."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass(frozen=True)
class Options:
    records: int
    partitions: int
    timeout: float
    variants: tuple[str, ...]
    baseline_runs: int


async def run_variant(
    variant: Variant, label: str, bootstrap: str, source: str, prefix: str, opts: Options, workdir: Path
) -> Rate:
    """Run one variant in a fresh subprocess with its own group and output topic; its rate, once it has handled
    every record or --timeout passed."""
    sink = f"{prefix}{label}.out"
    await ensure_topics(bootstrap, [TopicSpec(sink, opts.partitions, "input key", "bench output")])
    result, log = workdir / f"{label}.json", workdir / f"{label}.log"
    # fmt: off
    command = [
        sys.executable, "-m", "bench.faust_ceiling", "--child", variant.name, "--bootstrap", bootstrap,
        "--source", source, "--sink", sink, "--prefix", f"{prefix}{label}.", "--records", str(opts.records),
        "--partitions", str(opts.partitions), "--timeout", str(opts.timeout), "--result", str(result),
    ]
    # fmt: on
    print(f"faust_ceiling: running {label}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + opts.timeout
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while not result.exists() and proc.returncode is None and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.2)
        if variant.forwards:
            left = max(5.0, deadline - time.monotonic())
            rate = steady_rate(await sink_marks(bootstrap, sink, opts.records, left))
        elif result.exists():
            found = json.loads(result.read_text())
            rate = Rate(int(found["records"]), int(found["counted"]), float(found["span_s"]))
        else:
            rate = Rate(0, 0, math.nan)
    finally:
        await stop_child(proc)
    if rate.records < opts.records:
        print(f"faust_ceiling[{label}]: {rate.records} of {opts.records} records; its log (tail):\n{tail(log)}")
    return rate


async def measure(bootstrap: str, opts: Options, workdir: Path) -> tuple[list[str], bool]:
    prefix = f"ceiling{time.time_ns()}."
    source = f"{prefix}in"
    await ensure_topics(bootstrap, [TopicSpec(source, opts.partitions, "k<i>", "bench input")])
    await produce(bootstrap, source, payloads(opts.records))

    await run_variant(FORWARDER, "warmup", bootstrap, source, prefix, opts, workdir)  # not counted (module doc)
    first = [("forwarder#1", await run_variant(FORWARDER, "forwarder1", bootstrap, source, prefix, opts, workdir))]
    rates = [
        (name, await run_variant(VARIANTS[name], name, bootstrap, source, prefix, opts, workdir))
        for name in opts.variants
    ]
    base = first + [
        (f"forwarder#{run}", await run_variant(FORWARDER, f"forwarder{run}", bootstrap, source, prefix, opts, workdir))
        for run in range(2, opts.baseline_runs + 1)
    ]

    base_per_s = best_rate([r for _, r in base])
    lines = [detail_line(label, FORWARDER, r, base_per_s) for label, r in base]
    lines += [detail_line(name, VARIANTS[name], r, base_per_s) for name, r in rates]
    lines.append(summary_line(opts.records, base_per_s, {name: r.per_s for name, r in rates}))
    complete = all(r.records >= opts.records for _, r in (*base, *rates))
    return lines, complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on any one variant after this long")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting a local one")
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in DEFAULT_VARIANTS),
        help=f"comma-separated, from: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--baseline-runs", type=int, default=2, help="forwarder runs (first, then last); fastest counts"
    )
    for hidden in ("--child", "--source", "--sink", "--prefix", "--result"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = Job(
            VARIANTS[args.child],
            args.bootstrap,
            args.source,
            args.sink,
            args.prefix,
            args.records,
            args.partitions,
            args.timeout,
            Path(args.result),
        )
        run_child(job)
        return
    names = tuple(n for n in args.variants.split(",") if n)
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    if len(set(names)) < len(names) or "forwarder" in names:
        parser.error("each variant at most once (its name names its topics); the forwarder runs anyway")
    if args.records < 2 or args.partitions < 1 or args.baseline_runs < 1 or args.timeout <= 0:
        parser.error("--records must be at least 2, --partitions and --baseline-runs at least 1, --timeout positive")
    opts = Options(args.records, args.partitions, args.timeout, names, args.baseline_runs)
    with tempfile.TemporaryDirectory(prefix="ticketloop-ceiling-") as tmp:
        if args.bootstrap:
            lines, complete = asyncio.run(measure(args.bootstrap, opts, Path(tmp)))
        else:
            with LocalKafka() as broker:
                lines, complete = asyncio.run(measure(broker.bootstrap, opts, Path(tmp)))
    print("\n".join(lines))
    if not complete:
        raise SystemExit("faust_ceiling: a variant did not handle every record (see the lines above)")


if __name__ == "__main__":
    main()
