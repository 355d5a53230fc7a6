"""The read model's batch projection decisions: which version each ticket's row gets, and what counts as applied."""

from __future__ import annotations

from datetime import timedelta

from shared.events import Change, TicketEvent
from shared.store.db import newest_per_ticket, versions_applied
from tests.unit.factories import T0, ticket


def change(ticket_id: str, version: int) -> TicketEvent:
    return TicketEvent(
        change_id=f"{ticket_id}:{version}",
        change=Change.occurred,
        actor="router",
        reason="r",
        at=T0 + timedelta(seconds=version),
        ticket=ticket(ticket_id=ticket_id, version=version),
        trace_id="t",
    )


def test_each_ticket_row_gets_the_newest_version_of_the_batch_whatever_the_order() -> None:
    batch = [change("a", 2), change("b", 1), change("a", 3), change("a", 1)]
    assert {tid: t.version for tid, t in newest_per_ticket(batch).items()} == {"a": 3, "b": 1}


def test_a_change_counts_as_applied_only_when_it_moves_its_ticket_forward() -> None:
    batch = [change("a", 2), change("a", 1), change("a", 3), change("b", 1)]
    assert versions_applied(batch, {}) == 3, "a:1 came after a:2"
    assert versions_applied(batch, {"a": 2, "b": 5}) == 1, "only a:3 is newer than the read model"
    assert versions_applied([], {"a": 1}) == 0
