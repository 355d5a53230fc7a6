"""The SQL read model against both SQLite and PostgreSQL (Debian's package, started by the fixture)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import pytest
from sqlalchemy import Engine

from shared.events import Change, Delivery, Escalation, TicketEvent, TicketState
from shared.store import db, outbox
from tests.unit.factories import T0, ticket

pytestmark = pytest.mark.integration


def tev(change: Change, version: int, **over: Any) -> TicketEvent:
    return TicketEvent(
        change_id=f"tl-1:{version}",
        change=change,
        actor="a",
        reason=change.value,
        at=T0 + timedelta(seconds=version),
        ticket=ticket(version=version, **over),
        trace_id="t",
    )


def test_projection_is_idempotent_and_only_moves_forward(engine: Engine) -> None:
    events = [
        tev(Change.opened, 1),
        tev(Change.occurred, 2, occurrences=2),
        tev(Change.acknowledged, 3, occurrences=2, state=TicketState.acknowledged, acknowledged_at=T0),
    ]
    assert db.project(engine, events) == 3
    assert db.project(engine, events) == 0, "a replay changes nothing"
    assert db.project(engine, [tev(Change.opened, 1)]) == 0, "an old version never overwrites a newer one"
    found = db.get_ticket(engine, "tl-1")
    assert found is not None
    row, timeline = found
    assert (row.state, row.version, row.occurrences) == ("acknowledged", 3, 2)
    assert db.as_utc(row.acknowledged_at) == T0
    assert [t.change for t in timeline] == ["opened", "occurred", "acknowledged"]


def late_escalation() -> Escalation:
    return Escalation(
        escalation_id="tl-1:acknowledge:1",
        ticket_id="tl-1",
        level=1,
        target_team="leads",
        deadline=T0,
        fired_at=T0 + timedelta(seconds=30),
        reason="late",
        ticket=ticket(),
        trace_id="t",
    )


def test_escalations_join_the_timeline_once(engine: Engine) -> None:
    db.project(engine, [tev(Change.opened, 1)])
    esc = late_escalation()
    db.project(engine, [], [esc])
    db.project(engine, [], [esc])
    found = db.get_ticket(engine, "tl-1")
    assert found is not None
    assert [(t.change, t.actor) for t in found[1]] == [("opened", "a"), ("escalated", "sla")]
    assert "level 1 to leads" in found[1][1].reason


def test_list_filters(engine: Engine) -> None:
    db.project(engine, [tev(Change.opened, 1)])
    db.project(
        engine,
        [
            TicketEvent(
                change_id="tl-2:1",
                change=Change.opened,
                actor="a",
                at=T0,
                ticket=ticket(ticket_id="tl-2", team="web"),
                trace_id="t",
            )
        ],
    )
    assert {r.ticket_id for r in db.list_tickets(engine)} == {"tl-1", "tl-2"}
    assert [r.ticket_id for r in db.list_tickets(engine, team="web")] == ["tl-2"]
    assert db.list_tickets(engine, state="resolved") == []
    assert len(db.list_tickets(engine, limit=1)) == 1


def test_delivery_log_keeps_the_first_success(engine: Engine) -> None:
    def delivery(status: Literal["sent", "failed"], attempts: int) -> Delivery:
        return Delivery(
            notification_id="n1",
            ticket_id="tl-1",
            kind="assignment",
            channel="email",
            recipient="a@x",
            status=status,
            attempts=attempts,
            at=T0,
        )

    assert not db.was_delivered(engine, "n1")
    db.record_delivery(engine, delivery("failed", 5))
    assert not db.was_delivered(engine, "n1")
    db.record_delivery(engine, delivery("sent", 1))
    db.record_delivery(engine, delivery("failed", 9))
    assert db.was_delivered(engine, "n1")
    [row] = db.list_deliveries(engine, "tl-1")
    assert (row.status, row.attempts) == ("sent", 1)


def test_the_timeline_records_the_client_a_person_acted_through(engine: Engine) -> None:
    opened = tev(Change.opened, 1)
    acked = tev(Change.acknowledged, 2, state=TicketState.acknowledged).model_copy(
        update={"actor": "alice", "via": "console"}
    )
    esc = late_escalation()
    db.project(engine, [opened, acked], [esc])
    found = db.get_ticket(engine, "tl-1")
    assert found is not None
    assert [(t.change, t.actor, t.via) for t in found[1]] == [
        ("opened", "a", None),
        ("acknowledged", "alice", "console"),
        ("escalated", "sla", None),
    ]


def outbox_item(n: int, target: str = "ops-slack") -> outbox.OutboxItem:
    return outbox.OutboxItem(
        notification_id=f"n{n}",
        seq=n,
        ticket_id=f"tl-{n}",
        team="operations",
        channel="slack",
        target=target,
        kind="assignment",
        payload={"kind": "assignment", "subject": f"s{n}", "text": "t", "actions": [["ack", "Acknowledge", "u"]]},
        source_topic="tickets",
        source_partition=n % 2,
        created_at=T0,
        due_at=T0,
    )


def sent(n: int, status: Literal["sent", "failed"] = "sent", detail: str = "") -> Delivery:
    return Delivery(
        notification_id=f"n{n}",
        ticket_id=f"tl-{n}",
        kind="assignment",
        channel="slack",
        recipient="ops-slack",
        status=status,
        attempts=1,
        error=detail,
        at=T0,
    )


def test_the_outbox_takes_each_notification_once_and_hands_it_to_the_delivery_log(engine: Engine) -> None:
    assert [i.notification_id for i in outbox.add(engine, [outbox_item(1), outbox_item(2), outbox_item(3)])] == [
        "n1",
        "n2",
        "n3",
    ]
    assert outbox.add(engine, [outbox_item(1), outbox_item(4)]) == [outbox_item(4)], "a replay adds only the new"
    assert [i.notification_id for i in outbox.pending(engine, [("tickets", 1)])] == ["n1", "n3"]
    assert outbox.pending(engine, [("tickets", 1)])[0].payload["actions"] == [["ack", "Acknowledge", "u"]]
    outbox.write(engine, [outbox.Finish(["n1", "n3"], [sent(1), sent(3, detail="in a digest of 2")])])
    assert outbox.pending(engine, [("tickets", 1)]) == []
    assert outbox.add(engine, [outbox_item(1)]) == [], "delivered: never planned again"
    outbox.write(engine, [outbox.Finish([], [sent(1, "failed", "late replay")])])
    assert db.was_delivered(engine, "n1"), "a sent record is never overwritten"
    outbox.write(engine, [outbox.GiveUp(sent(2, "failed", "slack ops-slack: invalid_auth"))])
    assert [(i.notification_id, i.last_error) for i in outbox.failed(engine)] == [
        ("n2", "slack ops-slack: invalid_auth")
    ]
    assert outbox.redrive(engine, "n2", T0 + timedelta(hours=30))
    (back,) = outbox.take_redriven(engine, [("tickets", 0)])
    assert (back.status, back.attempts, back.created_at) == ("pending", 0, T0 + timedelta(hours=30))
    outbox.write(engine, [outbox.Finish(["n2"], [sent(2)])])
    assert db.was_delivered(engine, "n2"), "a failed record is replaced by the later success"


def test_a_ticket_with_its_last_action_projects(engine: Engine) -> None:
    """The wire ticket carries who acted last (for messages); the read model keeps that on the timeline."""
    db.project(engine, [tev(Change.opened, 1), tev(Change.acknowledged, 2, last_action="acknowledged by a")])
    found = db.get_ticket(engine, "tl-1")
    assert found is not None and found[0].version == 2


def test_the_notifiers_writes_go_in_order_in_one_round(engine: Engine) -> None:
    """The notifier's one writer: a save of an item held in memory (sent first, now waiting), its reschedule, and
    a save again (a checkpoint racing with it) that leaves the row as it is; then its finish, all in one round."""
    later = T0 + timedelta(minutes=5)
    outbox.write(
        engine,
        [
            outbox.Save([outbox_item(7)]),
            outbox.Reschedule("n7", later, 1, "webhook ops: HTTP 503"),
            outbox.Save([outbox_item(7)]),
        ],
    )
    (held,) = outbox.pending(engine, [("tickets", 1)])
    assert (held.notification_id, held.attempts, held.due_at, held.last_error) == (
        "n7",
        1,
        later,
        "webhook ops: HTTP 503",
    )
    outbox.write(engine, [outbox.Finish(["n7"], [sent(7)]), outbox.Finish([], [])])
    assert outbox.pending(engine, [("tickets", 1)]) == []
    assert db.was_delivered(engine, "n7")


def test_the_handover_watch_reads_what_moved_what_did_not_and_which_tickets_name_a_package(engine: Engine) -> None:
    prefix = "handover: hypercare of project webshop ended"
    ends = T0 + timedelta(seconds=10)

    def change(ticket_id: str, change: Change, version: int, reason: str, **over: Any) -> TicketEvent:
        t = ticket(ticket_id=ticket_id, version=version, **{"project": "webshop", "phase": "hypercare", **over})
        at = T0 + timedelta(seconds=version * 10)
        return TicketEvent(
            change_id=f"{ticket_id}:{version}", change=change, actor="a", reason=reason, at=at, ticket=t, trace_id="t"
        )

    route = "route r: owner ian (implementation); project webshop (acme), phase hypercare; handover package v1"
    db.project(
        engine,
        [
            change("moved", Change.opened, 1, route),
            change(
                "moved",
                Change.reassigned,
                2,
                f"{prefix} 2026-11-24; from ian (implementation) to operations",
                phase="operations",
                team="operations",
            ),
            change("waiting", Change.opened, 1, route),
            change("done", Change.opened, 1, "route r"),
            change("done", Change.resolved, 2, "fixed", state=TicketState.resolved, resolved_at=T0),
            change("noted", Change.opened, 1, "route r"),
            change("noted", Change.noted, 2, "handover package v2 of project webshop is in force"),
            change("other", Change.opened, 1, route.replace("webshop", "shop"), project="shop"),
        ],
    )
    rows = db.handover_rows(engine, "webshop", prefix, ends)
    assert [(r[0], r[4], r[5] is not None) for r in rows] == [
        ("moved", "operations", True),
        ("noted", "hypercare", False),
        ("waiting", "hypercare", False),
    ]
    later = db.handover_rows(engine, "webshop", prefix, T0 + timedelta(seconds=30))
    assert [r[0] for r in later] == ["noted", "waiting"], "a handover entry from before ``since`` is another one"
    assert db.waiting_projects(engine, ["webshop", "shop", "none"]) == {"webshop", "shop"}
    assert db.waiting_projects(engine, []) == set()
    mentions = db.package_mentions(engine, "webshop")
    assert mentions == {
        "moved": [route],
        "waiting": [route],
        "noted": ["handover package v2 of project webshop is in force"],
    }
    assert not db.was_told(engine, "handover:webshop:x")
    db.record_delivery(
        engine,
        Delivery(
            notification_id="n1",
            ticket_id="handover:webshop:x",
            kind="handover",
            channel="email",
            recipient="ops@example.test",
            status="sent",
            attempts=1,
            at=T0,
        ),
    )
    assert db.was_told(engine, "handover:webshop:x")
