"""The sla service as a process on the real broker: pre-breach warnings, then the escalation, in order; a full
chain with repeats survives a SIGKILL mid-chain with nothing lost or repeated; acknowledgement stops it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.kafka_local import free_port
from deploy.local.stack import Stack
from services.sla.replay_io import read_topic
from shared.events import Change, TicketEvent, TicketState
from shared.streaming.codec import encode
from shared.streaming.reader import TopicReadError, partitions_of
from shared.streaming.topics import Topics, TopicSpec, ensure_topics
from tests.support.configs import write_config
from tests.support.kafka_io import produce, read_all
from tests.support.waiting import wait_for
from tests.unit.factories import ticket

pytestmark = pytest.mark.integration

SLA = """
policies:
  default:
    acknowledge: {P1: 6s}
    warnings: [0.5]
    escalation:
      - {after: 0s, team: owner}
"""


CHAIN = """
policies:
  default:
    acknowledge: {P1: 3s}
    escalation:
      - {after: 0s, team: owner}
      - {after: 3s, team: ops-leads}
    repeat: {every: 3s, limit: 2}
"""


@contextmanager
def sla_stack(
    kafka_bootstrap: str, tmp_path: Path, sla: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Stack, Topics]]:
    topics = Topics(f"it-sla-{time.time_ns()}.", 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    stack = Stack(
        kafka_bootstrap,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        write_config(tmp_path, sla=sla),
        tmp_path / "logs",
        free_port(),
        9,
        extra_env={"TICKETLOOP_TOPIC_PREFIX": topics.prefix, **(env or {})},
    )
    try:
        stack.start("sla")
        worker_ready(stack)
        yield stack, topics
    finally:
        stack.stop_all()


def worker_ready(stack: Stack, name: str = "sla") -> None:
    """Until the worker has its partitions, recovered its table and armed its clocks: a ticket opened before
    then could see its first deadline pass before the worker ever read it."""
    log = stack.log_path(name)
    wait_for(f"{name} to index its clocks", lambda: "clock_index_rebuilt" in log.read_text(), stack=stack)


def open_ticket(kafka_bootstrap: str, topics: Topics, ticket_id: str) -> datetime:
    opened_at = datetime.now(UTC)
    t = ticket(ticket_id=ticket_id, opened_at=opened_at, first_seen=opened_at, last_seen=opened_at)
    opened = TicketEvent(
        change_id=f"{ticket_id}:1", change=Change.opened, actor="am", at=opened_at, ticket=t, trace_id="t"
    )
    asyncio.run(produce(kafka_bootstrap, topics.tickets.name, [(ticket_id, encode(opened))]))
    return opened_at


def acknowledge(kafka_bootstrap: str, topics: Topics, ticket_id: str, opened_at: datetime, at: datetime) -> None:
    """The ticket's version 2: acknowledged by alice at ``at``."""
    t = ticket(
        ticket_id=ticket_id,
        state=TicketState.acknowledged,
        version=2,
        opened_at=opened_at,
        first_seen=opened_at,
        last_seen=opened_at,
        acknowledged_at=at,
    )
    ack = TicketEvent(
        change_id=f"{ticket_id}:2", change=Change.acknowledged, actor="alice", at=at, ticket=t, trace_id="t"
    )
    asyncio.run(produce(kafka_bootstrap, topics.tickets.name, [(ticket_id, encode(ack))]))


def escalations(kafka_bootstrap: str, topics: Topics, expect: int, within_s: float = 60) -> list[dict[str, Any]]:
    records = asyncio.run(
        read_all(kafka_bootstrap, topics.escalations.name, expect=expect, within_s=within_s, committed_only=True)
    )
    return [orjson.loads(r.value) for r in records]


def test_a_warning_before_the_deadline_then_the_escalation(kafka_bootstrap: str, tmp_path: Path) -> None:
    with sla_stack(kafka_bootstrap, tmp_path, SLA) as (stack, topics):
        opened_at = open_ticket(kafka_bootstrap, topics, "tl-1")
        fired = escalations(kafka_bootstrap, topics, expect=3)
        stack.check_alive()
    assert [(f["kind"], f["level"]) for f in fired] == [("warning", 1), ("breach", 1), ("escalation", 1)]
    warned_at = datetime.fromisoformat(fired[0]["fired_at"])
    assert warned_at - opened_at >= (datetime.fromisoformat(fired[0]["deadline"]) - opened_at) / 2
    assert datetime.fromisoformat(fired[1]["fired_at"]) >= datetime.fromisoformat(fired[1]["deadline"])
    assert datetime.fromisoformat(fired[2]["fired_at"]) >= datetime.fromisoformat(fired[2]["deadline"])
    assert "50% of the acknowledge target used" in fired[0]["reason"]


@pytest.mark.parametrize("snapshots", [False, True], ids=["changelog", "snapshot"])
def test_sigkill_mid_chain_loses_no_escalation_and_repeats_none(
    kafka_bootstrap: str, tmp_path: Path, snapshots: bool
) -> None:
    """The breach and level 1 at the deadline, level 2 three seconds later, then level 2 again twice (repeat
    limit 2): four escalations. The sla worker is killed right after the first and restarted; the chain continues
    from its changelog (or from its local snapshot and the changelog after it) and every escalation is published
    exactly once."""
    env = {"TICKETLOOP_STATE_DIR": str(tmp_path / "state"), "TICKETLOOP_SNAPSHOT_INTERVAL_S": "1"} if snapshots else {}
    with sla_stack(kafka_bootstrap, tmp_path, CHAIN, env) as (stack, topics):
        log = stack.log_path("sla")
        open_ticket(kafka_bootstrap, topics, "tl-chain")
        first = escalations(kafka_bootstrap, topics, expect=2)
        if snapshots:  # the clock as the worker committed it, in a snapshot taken at a commit
            wait_for("a snapshot", lambda: '"snapshot_written"' in log.read_text(), stack=stack)
        before_restart = len(log.read_bytes())
        stack.kill("sla")
        stack.start("sla")
        fired = escalations(kafka_bootstrap, topics, expect=5)
        # the chain is exhausted: a further wait (bounded) shows nothing more
        time.sleep(5)
        fired = escalations(kafka_bootstrap, topics, expect=6, within_s=5)
        stack.check_alive()
        restarted = log.read_bytes()[before_restart:].decode(errors="replace")
    assert ('"snapshot_loaded"' in restarted) == snapshots
    assert [f["kind"] for f in first] == ["breach", "escalation"]
    ids = [f["escalation_id"] for f in fired]
    assert len(ids) == len(set(ids)), f"repeated: {ids}"
    assert [f["kind"] for f in fired].count("breach") == 1
    levels = [(f["level"], f["target_team"]) for f in fired if f["kind"] == "escalation"]
    assert levels == [(1, "ops"), (2, "ops-leads"), (3, "ops-leads"), (4, "ops-leads")]


def test_acknowledgement_stops_the_chain_at_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    with sla_stack(kafka_bootstrap, tmp_path, CHAIN) as (stack, topics):
        opened_at = open_ticket(kafka_bootstrap, topics, "tl-ack")
        assert [f["kind"] for f in escalations(kafka_bootstrap, topics, expect=2)] == ["breach", "escalation"]
        acknowledge(kafka_bootstrap, topics, "tl-ack", opened_at, datetime.now(UTC))
        # level 2 was due 3 s after level 1, the repeats 3 s apart: wait past all of them (bounded)
        time.sleep(10)
        fired = escalations(kafka_bootstrap, topics, expect=3, within_s=3)
        stack.check_alive()
    assert [(f["kind"], f["level"]) for f in fired] == [("breach", 1), ("escalation", 1)]


PAUSE = """
policies:
  default:
    acknowledge: {P1: 4s}
    escalation:
      - {after: 0s, team: owner}
"""


def test_waiting_on_the_customer_holds_the_deadline_and_the_reply_resumes_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with sla_stack(kafka_bootstrap, tmp_path, PAUSE) as (stack, topics):
        opened_at = open_ticket(kafka_bootstrap, topics, "tl-wait")

        def change(version: int, change: Change, waiting: bool) -> datetime:
            at = datetime.now(UTC)
            t = ticket(ticket_id="tl-wait", version=version, opened_at=opened_at, waiting_on_customer=waiting)
            ev = TicketEvent(change_id=f"tl-wait:{version}", change=change, actor="ann", at=at, ticket=t, trace_id="t")
            asyncio.run(produce(kafka_bootstrap, topics.tickets.name, [("tl-wait", encode(ev))]))
            return at

        paused_at = change(2, Change.waiting_on_customer, True)
        time.sleep(max(0.0, (opened_at + timedelta(seconds=7) - datetime.now(UTC)).total_seconds()))
        assert escalations(kafka_bootstrap, topics, expect=1, within_s=2) == [], "nothing while waiting"
        resumed_at = change(3, Change.customer_replied, False)
        fired = escalations(kafka_bootstrap, topics, expect=2)
        stack.check_alive()
    left = timedelta(seconds=4) - (paused_at - opened_at)
    assert [f["kind"] for f in fired] == ["breach", "escalation"]
    deadline = datetime.fromisoformat(fired[0]["deadline"])
    assert deadline >= resumed_at + left - timedelta(milliseconds=50), "the time left when it paused, from the reply"
    assert datetime.fromisoformat(fired[0]["fired_at"]) >= deadline


def test_sla_replay_reads_the_recorded_tickets_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``ticketloop sla replay --kafka``: the tickets topic, read committed from the start, against a proposal."""
    from services.cli import main
    from tests.unit.test_sla_replay import STREAM, configs

    topics = Topics(f"it-replay-{time.time_ns()}.", 4)
    asyncio.run(ensure_topics(kafka_bootstrap, topics.all()))
    asyncio.run(produce(kafka_bootstrap, topics.tickets.name, [(e.ticket.ticket_id, encode(e)) for e in STREAM]))
    config_dir, proposed = configs(tmp_path)
    out = io.StringIO()
    argv = ["sla", "replay", "--kafka", kafka_bootstrap, "--topic-prefix", topics.prefix, "--proposed", str(proposed)]
    assert main([*argv, "--config-dir", str(config_dir), "--until", "2026-11-24T10:00:00+00:00"], out) == 0, (
        out.getvalue()
    )
    text = out.getvalue()
    assert "replayed 5 ticket events of 3 tickets" in text
    assert "2 ticket(s) would have been treated differently" in text
    out = io.StringIO()
    nope = f"nope-{time.time_ns()}-"
    missing = ["sla", "replay", "--kafka", kafka_bootstrap, "--topic-prefix", nope, "--proposed", str(proposed)]
    assert main([*missing, "--config-dir", str(config_dir), "--no-progress"], out) == 1
    assert f"topic {nope + 'tickets'!r} does not exist" in out.getvalue()
    with contextlib.suppress(TopicReadError):
        asyncio.run(partitions_of(kafka_bootstrap, f"{nope}tickets"))
        raise AssertionError("looking for a missing topic created it")


def test_a_resolved_tickets_clock_is_forgotten_with_a_tombstone(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The clocks table holds open tickets only: resolving deletes the clock (a null record in its changelog)."""
    hour = "policies:\n  default:\n    acknowledge: {P1: 1h}\n    escalation: [{after: 0s, team: owner}]\n"
    with sla_stack(kafka_bootstrap, tmp_path, hour) as (stack, topics):
        opened_at = open_ticket(kafka_bootstrap, topics, "tl-done")
        changelog = f"{topics.prefix}sla-clocks-changelog"
        deadline = time.monotonic() + 60
        while True:  # the worker creates its changelog topic; subscribing first would auto-create it wrongly
            with contextlib.suppress(TopicReadError):
                asyncio.run(partitions_of(kafka_bootstrap, changelog))
                break
            stack.check_alive()
            assert time.monotonic() < deadline, "the worker never created its changelog topic"
            time.sleep(0.5)
        assert asyncio.run(read_all(kafka_bootstrap, changelog, expect=1, within_s=60, committed_only=True))
        t = ticket(
            ticket_id="tl-done", state=TicketState.resolved, version=2, opened_at=opened_at, resolved_at=opened_at
        )
        done = TicketEvent(
            change_id="tl-done:2", change=Change.resolved, actor="am", at=opened_at, ticket=t, trace_id="t"
        )
        asyncio.run(produce(kafka_bootstrap, topics.tickets.name, [("tl-done", encode(done))]))
        records = asyncio.run(read_all(kafka_bootstrap, changelog, expect=2, within_s=60, committed_only=True))
        stack.check_alive()
    assert [r.key for r in records] == [b"tl-done", b"tl-done"]
    assert records[0].value is not None and records[1].value is None


RESOLVE = """
policies:
  default:
    acknowledge: {P1: 4s}
    resolve: {P1: 8s}
    warnings: [0.5]
    escalation:
      - {after: 0s, team: owner}
"""


def test_the_resolve_clock_runs_on_after_acknowledgement_then_breaches(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Acknowledged at once: the acknowledge clock stops, the resolve clock warns at half its target and breaches
    at its deadline; the resolve breach is an escalations record like any other (the notifier sends it)."""
    with sla_stack(kafka_bootstrap, tmp_path, RESOLVE) as (stack, topics):
        opened_at = open_ticket(kafka_bootstrap, topics, "tl-res")
        acknowledge(kafka_bootstrap, topics, "tl-res", opened_at, opened_at)
        fired = escalations(kafka_bootstrap, topics, expect=2)
        # nothing else is due: the acknowledge clock stopped and the resolve clock breaches once (bounded wait)
        time.sleep(3)
        fired = escalations(kafka_bootstrap, topics, expect=3, within_s=3)
        stack.check_alive()
    assert [(f["clock"], f["kind"]) for f in fired] == [("resolve", "warning"), ("resolve", "breach")]
    deadline = datetime.fromisoformat(fired[1]["deadline"])
    assert deadline == opened_at + timedelta(seconds=8)
    assert datetime.fromisoformat(fired[0]["fired_at"]) >= opened_at + timedelta(seconds=4)
    assert datetime.fromisoformat(fired[1]["fired_at"]) >= deadline
    assert fired[1]["reason"].startswith("resolve target missed: not resolved by")


def test_sla_replay_reads_a_transactional_topic_whose_tail_was_aborted(kafka_bootstrap: str) -> None:
    """As the router writes the tickets topic (exactly_once): committed transactions, control markers, and after
    a crash an aborted transaction at the end. The replay reads the committed events only and knows it is done,
    though the aborted tail and its marker give it no record to stop on."""
    from tests.unit.test_sla_replay import STREAM

    topic = f"it-replay-txn-{time.time_ns()}.tickets"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1, "ticket id", "replay probe")]))

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-writer")
        await producer.start()
        try:
            async with producer.transaction():
                for e in STREAM[:3]:
                    await producer.send_and_wait(topic, encode(e), key=e.ticket.ticket_id.encode())
            await producer.begin_transaction()
            # more than one fetch's worth (1 MiB a partition): the last fetches hold aborted records only
            for _ in range(1_000):
                for e in STREAM[3:]:
                    await producer.send(topic, encode(e), key=e.ticket.ticket_id.encode())
            await producer.flush()
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(write())
    events = asyncio.run(read_topic(kafka_bootstrap, topic, progress=False, timeout_s=10))
    assert [e.change_id for e in events] == [e.change_id for e in STREAM[:3]]


def test_a_second_worker_takes_over_half_the_clocks_and_every_escalation_fires_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two sla workers: the second joins mid-chain, the group rebalances and the clocks' partitions are shared
    out (each new owner recovers the clocks table and rebuilds its timer index). Every ticket's chain still
    fires completely, and no escalation twice."""
    ids = [f"tl-rb{n}" for n in range(8)]  # spread over the 4 partitions
    with sla_stack(kafka_bootstrap, tmp_path, CHAIN) as (stack, topics):
        for ticket_id in ids:
            open_ticket(kafka_bootstrap, topics, ticket_id)
        first = escalations(kafka_bootstrap, topics, expect=2 * len(ids))  # each ticket's breach and level 1
        stack.start("sla", name="sla-2")
        # per ticket: breach, levels 1 and 2, two repeats; the rebalance can only delay them (bounded wait)
        fired = escalations(kafka_bootstrap, topics, expect=5 * len(ids), within_s=120)
        time.sleep(5)
        fired = escalations(kafka_bootstrap, topics, expect=5 * len(ids) + 1, within_s=5)
        stack.check_alive()
        second_log = stack.log_path("sla-2").read_text(errors="replace")
    assert len(first) >= 2 * len(ids)
    escalation_ids = [f["escalation_id"] for f in fired]
    assert len(escalation_ids) == len(set(escalation_ids)), "an escalation fired twice"
    for ticket_id in ids:
        mine = [(f["kind"], f["level"]) for f in fired if f["ticket_id"] == ticket_id]
        assert sorted(mine) == [
            ("breach", 1),
            ("escalation", 1),
            ("escalation", 2),
            ("escalation", 3),
            ("escalation", 4),
        ], ticket_id
    rebuilt = [orjson.loads(line) for line in second_log.splitlines() if '"clock_index_rebuilt"' in line]
    assert any(r["clocks"] > 0 for r in rebuilt), "the second worker took clocks over"
