"""Where ``ticketloop sla replay`` gets its ticket events (a JSON-lines file or the tickets topic) and how it
reports. The replay itself is pure (services.sla.replay)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from services.sla.policy import SlaConfig
from services.sla.replay import Replay, compare, replay
from shared.events import TicketEvent
from shared.streaming.codec import DecodeError, decode
from shared.streaming.reader import TopicReadError, read_all


class ReplayInputError(TopicReadError):
    """Events that cannot be replayed; str() names the file and line (or topic) and what is wrong. A topic that
    cannot be read at all is the reader's TopicReadError, of which this is one kind."""


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
    with tqdm(desc="reading", unit="record", disable=not progress, file=sys.stderr) as bar:

        def total(n: int) -> None:
            bar.total = n

        def read(k: int) -> None:
            bar.update(k)

        records = await read_all(bootstrap, topic, total=total, read=read, timeout_s=timeout_s)
    events: list[TicketEvent] = []
    for record in records:
        try:
            events.append(decode(TicketEvent, record.value or b""))
        except DecodeError as exc:
            raise ReplayInputError(f"{topic}[{record.partition}]@{record.offset}: {exc}") from exc
    return events


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
