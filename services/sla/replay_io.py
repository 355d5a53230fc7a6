"""Where ``ticketloop sla replay`` gets its ticket events (a JSON-lines file or the tickets topic) and how it
reports. The replay itself is pure (services.sla.replay)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from tqdm import tqdm

from services.sla.policy import SlaConfig
from services.sla.replay import Replay, compare, replay
from shared.events import TicketEvent
from shared.streaming.codec import DecodeError, decode

POLL_MS = 1_000  # one fetch wait; the read gives up after timeout_s without any progress


class ReplayInputError(ValueError):
    """Events that cannot be replayed; str() names the file and line (or topic) and what is wrong."""


def read_events(path: Path) -> list[TicketEvent]:
    """Ticket events from a JSON-lines file (blank lines are skipped)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ReplayInputError(f"{path}: {exc.strerror or exc}") from exc
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(decode(TicketEvent, line))
        except DecodeError as exc:
            raise ReplayInputError(f"{path}:{number}: {exc}") from exc
    return events


async def read_topic(bootstrap: str, topic: str, progress: bool, timeout_s: float = 60.0) -> list[TicketEvent]:
    """Every committed ticket event on ``topic``, from the start up to the end as it was when reading began.
    A record that is not a ticket event stops the read with its partition and offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        left = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}
        events: list[TicketEvent] = []
        total = sum(ends[tp] - starts[tp] for tp in tps)
        with tqdm(total=total, desc="reading", unit="record", disable=not progress, file=sys.stderr) as bar:
            at = {tp: starts[tp] for tp in left}
            loop = asyncio.get_running_loop()
            progress_at = loop.time()
            while left:
                batches = await consumer.getmany(*left, timeout_ms=POLL_MS)
                for tp, records in batches.items():
                    for record in records:
                        try:
                            events.append(decode(TicketEvent, record.value))
                        except DecodeError as exc:
                            raise ReplayInputError(f"{topic}[{tp.partition}]@{record.offset}: {exc}") from exc
                    bar.update(len(records))
                # a fetch of aborted records and control markers only returns nothing, yet moves the position on
                moved = False
                for tp in list(left):
                    position = await consumer.position(tp)
                    moved = moved or position != at[tp]
                    at[tp] = position
                    if position >= ends[tp]:
                        left.pop(tp)
                if batches or moved:
                    progress_at = loop.time()
                elif loop.time() - progress_at > timeout_s:
                    raise ReplayInputError(f"{topic}: no records within {timeout_s:.0f} s before the end offsets")
        return events
    finally:
        await consumer.stop()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # listing first: describing (a metadata request for the topic) would auto-create a missing topic on a
        # broker that allows it, and a mistyped prefix must not leave a stray topic behind
        if topic not in await admin.list_topics():
            raise ReplayInputError(f"topic {topic!r} does not exist on {bootstrap}")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [d for d in described if d.get("topic") == topic and d.get("error_code") == 0]
    if not found:
        raise ReplayInputError(f"topic {topic!r} does not exist on {bootstrap}")
    return sorted(p["partition"] for p in found[0]["partitions"])


def report(before: Replay, after: Replay, proposed: Path, horizon: datetime) -> str:
    b, a = before.totals(), after.totals()
    lines = [
        f"replayed {before.events} ticket events of {len(before.tickets)} tickets, clocks run to {horizon.isoformat()}",
        f"{'':12}{f'live v{before.version}':>10}{f'{proposed.name} v{after.version}':>16}",
        f"{'breached':12}{b.breaches:>10}{a.breaches:>16}",
        f"{'warnings':12}{b.warnings:>10}{a.warnings:>16}",
        f"{'escalations':12}{b.escalations:>10}{a.escalations:>16}",
    ]
    differences = compare(before, after)
    if not differences:
        lines.append("no ticket would have been treated differently")
    else:
        lines.append(f"{len(differences)} ticket(s) would have been treated differently:")
        lines.extend(f"  {d.ticket_id}: {d.before.describe()} -> {d.after.describe()}" for d in differences)
    return "\n".join(lines)


def replay_report(
    events: list[TicketEvent], live: SlaConfig, proposed: SlaConfig, path: Path, horizon: datetime, progress: bool
) -> str:
    """What the live and the proposed sla.yaml each do to the recorded tickets up to ``horizon``, in words."""
    with tqdm(total=2 * len(events), desc="replaying", unit="event", disable=not progress, file=sys.stderr) as bar:
        before = replay(events, live, until=horizon, progress=bar.update)
        after = replay(events, proposed, until=horizon, progress=bar.update)
    return report(before, after, path, horizon)
