"""The SQL projection's splitter: a refused change next to an escalation is left out, the escalation written."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shared.events import Change, Escalation, TicketEvent
from tests.unit.factories import T0, ticket
from tests.unit.test_router_service import projecting_router


def test_a_refused_change_batched_with_one_escalation_is_left_out_without_recursing_forever(tmp_path: Path) -> None:
    router, _, registry = projecting_router(tmp_path)
    beyond = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12)))
    bad = TicketEvent(
        change_id="tl-b:1",
        change=Change.opened,
        actor="am",
        at=T0,
        ticket=ticket(ticket_id="tl-b", snoozed_until=beyond),
        trace_id="t",
    )
    esc = Escalation(
        escalation_id="tl-1:acknowledge:1",
        ticket_id="tl-1",
        level=1,
        target_team="leads",
        deadline=T0,
        fired_at=T0,
        reason="not acknowledged",
        ticket=ticket(),
        trace_id="t",
    )
    asyncio.run(router.write([bad], [esc]))
    assert registry.get_sample_value("ticketloop_router_projection_refused_total") == 1
