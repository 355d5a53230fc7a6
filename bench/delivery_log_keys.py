"""What the delivery log's key costs the notifier's writer: notification ids that are hashes against ids that begin
with when their ticket opened (shared/infra/ids.py ``ordered_id``), in the same run.

    python -m bench.delivery_log_keys [--prefill 60000] [--rounds 400] [--per-round 185] [--targets 4]

Setup: a SQLite database file in a temp dir with the notifier's schema (shared/store/schema.py, the newest
revision; WAL, no automatic checkpoint, as the notifier's in-place writer has it), then the writer's own round
(``outbox.write`` with one ``Finish`` of ``--per-round`` records: a 50 ms journal round at 3,700 notifications a
second) repeated ``--rounds`` times, once for each keying, each in a database of its own:

- hashed: ``stable_id`` of the notice, channel and target, as every notification id was before;
- ordered: ``ordered_id``, the same with the ticket's opening time first.

Each database first gets ``--prefill`` records the same way (the log a notifier has after 16 s of that stream;
a production log is larger, which only makes each hashed row land on a page of its own more surely). Tickets open
a millisecond apart with ``--targets`` notifications each, and their ids are hashes, as the router's are, so the
index by ticket is written at random places in both runs. Only tickets' first notifications are written: a
ticket's later ones (updates, escalations, its resolution) go beside its first, inside the index, so a real mix
gains less than this. Figures: the writer's CPU a record (process time over
the rounds, the same process), and the write-ahead log's bytes a record (its file's size after the rounds, from
empty); ``cpu_ratio`` and ``wal_ratio`` are ordered over hashed. Last line: ``delivery_log_keys: rows=..
per_round=.. hashed_cpu_us=.. ordered_cpu_us=.. cpu_ratio=.. hashed_wal_bytes=.. ordered_wal_bytes=..
wal_ratio=..``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from shared.events import Delivery
from shared.infra.ids import ordered_id, stable_id
from shared.store import outbox
from shared.store.db import init_db, make_engine
from shared.store.outbox import Finish

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
Keying = Callable[[datetime, str, str], str]
"""(ticket opened at, notice id, target) -> notification id."""
KEYINGS: dict[str, Keying] = {
    "hashed": lambda _opened, notice, target: stable_id(notice, "webhook", target),
    "ordered": lambda opened, notice, target: ordered_id(opened, notice, "webhook", target),
}


@dataclass(frozen=True)
class Measured:
    cpu_us: float
    """The writer's CPU a record, in microseconds."""
    wal_bytes: float
    """The write-ahead log's growth a record, in bytes."""


def deliveries(keying: Keying, targets: int) -> Iterator[Delivery]:
    """Sent records of tickets opened a millisecond apart, ``targets`` each (pure, endless)."""
    k = 0
    while True:
        opened = T0 + timedelta(milliseconds=k)
        ticket_id = "tl-" + stable_id("ticket", str(k))[:16]
        for t in range(targets):
            target = f"hook-{t}"
            yield Delivery(
                notification_id=keying(opened, f"{ticket_id}:1", target),
                ticket_id=ticket_id,
                kind="assignment",
                channel="webhook",
                recipient=target,
                status="sent",
                attempts=1,
                at=opened,
            )
        k += 1


def write_rounds(engine: Engine, made: Iterator[Delivery], rounds: int, per_round: int) -> None:
    for _ in range(rounds):
        records = [next(made) for _ in range(per_round)]
        outbox.write(engine, [Finish([r.notification_id for r in records], records)])


def measure(directory: Path, keying: Keying, prefill: int, rounds: int, per_round: int, targets: int) -> Measured:
    db = directory / "notifier.db"
    engine = make_engine(f"sqlite:///{db}", wal_autocheckpoint=False)
    try:
        init_db(engine)
        made = deliveries(keying, targets)
        write_rounds(engine, made, max(1, prefill // 5000), min(prefill, 5000))
        with engine.connect() as conn:  # the log starts over: what follows is the rounds' own
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        wal = db.with_name(db.name + "-wal")
        before = wal.stat().st_size if wal.exists() else 0
        cpu = time.process_time()
        write_rounds(engine, made, rounds, per_round)
        cpu = time.process_time() - cpu
        n = rounds * per_round
        return Measured(cpu * 1e6 / n, (wal.stat().st_size - before) / n)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefill", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--per-round", type=int, default=185)
    parser.add_argument("--targets", type=int, default=4)
    args = parser.parse_args()
    found: dict[str, Measured] = {}
    for name, keying in KEYINGS.items():
        with tempfile.TemporaryDirectory(prefix=f"delivery-log-{name}-") as tmp:
            found[name] = measure(Path(tmp), keying, args.prefill, args.rounds, args.per_round, args.targets)
    hashed, ordered = found["hashed"], found["ordered"]
    print(
        f"delivery_log_keys: rows={args.rounds * args.per_round} per_round={args.per_round} "
        f"hashed_cpu_us={hashed.cpu_us:.1f} ordered_cpu_us={ordered.cpu_us:.1f} "
        f"cpu_ratio={ordered.cpu_us / hashed.cpu_us:.3f} hashed_wal_bytes={hashed.wal_bytes:.0f} "
        f"ordered_wal_bytes={ordered.wal_bytes:.0f} wal_ratio={ordered.wal_bytes / hashed.wal_bytes:.3f}"
    )


if __name__ == "__main__":
    main()
