"""bench/delivery_log_keys: what it writes and that it measures (small sizes; the figures are the bench's)."""

from __future__ import annotations

import itertools
from pathlib import Path

from sqlalchemy import text

from bench.delivery_log_keys import KEYINGS, deliveries, measure
from shared.store.db import make_engine


def test_ordered_keys_come_in_order_and_hashed_ones_do_not() -> None:
    ordered = [d.notification_id for d in itertools.islice(deliveries(KEYINGS["ordered"], 4), 400)]
    hashed = [d.notification_id for d in itertools.islice(deliveries(KEYINGS["hashed"], 4), 400)]
    tickets = [d.ticket_id for d in itertools.islice(deliveries(KEYINGS["ordered"], 4), 400)]
    assert [n[:12] for n in ordered] == sorted(n[:12] for n in ordered)
    assert hashed != sorted(hashed) and len(set(hashed)) == len(set(ordered)) == 400
    assert len(set(tickets)) == 100 and tickets[::4] != sorted(tickets[::4]), "ticket ids are hashes"


def test_a_measure_writes_every_record_into_the_delivery_log(tmp_path: Path) -> None:
    found = measure(tmp_path, KEYINGS["ordered"], prefill=20, rounds=3, per_round=7, targets=4)
    assert found.cpu_us > 0 and found.wal_bytes > 0
    engine = make_engine(f"sqlite:///{tmp_path / 'notifier.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 20 + 3 * 7
    engine.dispose()
