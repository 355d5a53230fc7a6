"""The hypercare handover digest and the package notes: when a digest is due, what it says, how the notifier sends
it to both teams once (a digest sent again is not sent twice), and which open tickets get a note of a new package
version (a system note, which no SLA clock takes for a response)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from services.notifier.config import NotifyConfig
from services.notifier.pipeline import notice_for_handover, plan_notice
from services.notifier.service import Notifier
from services.notifier.templates import render_handover
from services.router.commands import apply_command
from services.router.handover import (
    GRACE,
    SETTLE,
    WINDOW,
    Seen,
    digest_for,
    digest_key,
    moved_text,
    names_version,
    package_notes,
    projects_due,
)
from services.router.lifecycle import TicketRecord
from services.router.projects import Project
from services.sla.clocks import on_ticket_event, start_clock
from shared.events import Action, Change, EventKind, HandoverDigest
from shared.store import outbox
from shared.streaming.codec import encode
from shared.streaming.driver import Record
from shared.streaming.topics import Topics
from tests.fakes import FakeChannel
from tests.unit.factories import ticket, ticket_event
from tests.unit.test_lanes import until
from tests.unit.test_notifier_service import notifier, sent_tickets
from tests.unit.test_sla_policy import RESPONDING

ENDS = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REASON = "handover: hypercare of project webshop ended 2026-12-01; from ian (implementation) to operations"


def project(**over: object) -> Project:
    fields: dict[str, object] = {
        "name": "webshop",
        "customer": "acme",
        "matchers": ['project="webshop"'],
        "go_live": ENDS - timedelta(days=30),
        "implementation": {"team": "implementation", "engineers": ["ian"]},
        "operations": {"team": "operations"},
        **over,
    }
    return Project.model_validate(fields)


def seen(ticket_id: str, handover: str | None, state: str = "open", phase: str | None = "operations") -> Seen:
    return Seen(ticket_id, f"summary of {ticket_id}", "P2", state, phase, handover)


def test_a_digest_is_due_from_settle_after_the_end_of_hypercare_for_a_week_until_done() -> None:
    p = project()
    assert projects_due([p], ENDS + SETTLE - timedelta(seconds=1), set()) == []
    assert projects_due([p], ENDS + SETTLE, set()) == [p]
    assert projects_due([p], ENDS + WINDOW, set()) == [p]
    assert projects_due([p], ENDS + WINDOW + timedelta(seconds=1), set()) == [], "too old: not sent on a restart"
    assert projects_due([p], ENDS + SETTLE, {digest_key("webshop", ENDS)}) == []


def test_the_digest_waits_for_tickets_still_in_hypercare_until_the_grace_then_names_them() -> None:
    p = project()
    rows = [seen("t1", REASON), seen("t2", None, phase="hypercare")]
    assert digest_for(p, rows, ENDS + SETTLE) is None, "t2 has not moved yet"
    late = digest_for(p, rows, ENDS + GRACE)
    assert late is not None
    assert [t.ticket_id for t in late.moved] == ["t1"] and [t.ticket_id for t in late.not_moved] == ["t2"]
    done = digest_for(p, [seen("t1", REASON), seen("t2", REASON, state="acknowledged")], ENDS + SETTLE)
    assert done is not None and done.not_moved == []
    assert [t.moved for t in done.moved] == ["from ian (implementation) to operations"] * 2
    assert (done.operations, done.implementation, done.digest_id) == (
        "operations",
        "implementation",
        digest_key("webshop", ENDS),
    )


def test_a_resolved_ticket_still_in_hypercare_does_not_hold_the_digest() -> None:
    digest = digest_for(project(), [seen("t1", None, state="resolved", phase="hypercare")], ENDS + SETTLE)
    assert digest is not None and digest.moved == [] and digest.not_moved == []


def test_moved_text_is_the_from_to_part_of_the_handover_entry() -> None:
    assert moved_text(REASON) == "from ian (implementation) to operations"
    assert moved_text("handover: something else") == "handover: something else"


def digest(**over: object) -> HandoverDigest:
    d = digest_for(
        project(package_version=3, package_lacks=["training", "contacts"]),
        [seen("t1", REASON), seen("t2", None, phase="hypercare")],
        ENDS + GRACE,
    )
    assert d is not None
    return d.model_copy(update=over)


def test_the_digest_message_lists_what_moved_what_did_not_and_the_package() -> None:
    message = render_handover(digest(), "http://tl.example/")
    assert message.kind == "handover" and message.actions == ()
    assert message.subject == "Handover: project webshop (acme), 1 ticket to operations"
    text = message.text
    assert "operations owns its tickets now, implementation is the next escalation level" in text
    assert "[P2] summary of t1 (open) — from ian (implementation) to operations" in text
    assert "http://tl.example/api/v1/tickets/t1" in text
    assert "Not moved yet" in text and "summary of t2" in text
    assert "Handover package: webshop v3; it still lacks training, contacts" in text
    empty = render_handover(digest(moved=[], not_moved=[], package=None, package_lacks=[]), "http://tl.example")
    assert "(no open tickets)" in empty.text and "none imported" in empty.text


def teams_config() -> NotifyConfig:
    hook = "http://127.0.0.1:9/h"
    return NotifyConfig.model_validate(
        {
            "teams": {
                "operations": {
                    "email": ["ops@example.test"],
                    "channels": [{"type": "webhook", "name": "ops-hook", "url": hook, "secret": "unit-test-secret"}],
                },
                "implementation": {
                    "email": ["impl@example.test", "ops@example.test"],
                    "channels": [{"type": "webhook", "name": "impl-hook", "url": hook, "secret": "unit-test-secret"}],
                },
            }
        }
    )


def test_the_digest_goes_once_to_each_target_of_both_teams() -> None:
    planned = plan_notice(notice_for_handover(digest(), "http://tl.example"), teams_config())
    targets = sorted((d.channel, d.target) for d in planned)
    assert targets == [
        ("email", "impl@example.test"),
        ("email", "ops@example.test"),
        ("webhook", "impl-hook"),
        ("webhook", "ops-hook"),
    ]
    assert {d.ticket_id for d in planned} == {digest_key("webshop", ENDS)}


def digest_notifier(engine: Engine, tmp_path: Path, channel: FakeChannel, new_from: int) -> Notifier:
    """A notifier over teams_config's webhooks (no email), assigned the handovers partition, which ended at
    ``new_from`` when assigned (records from there on are new to it)."""
    teams = {k: v.model_copy(update={"email": []}) for k, v in teams_config().teams.items()}
    config = teams_config().model_copy(update={"teams": teams})
    return notifier(engine, tmp_path, channel, new_from, config, Topics("", 1).handovers.name)


async def test_a_digest_sent_again_reaches_each_target_once(engine: Engine, tmp_path: Path) -> None:
    """Twice in one batch (two routers), then once more to a notifier started again after it was delivered (a
    restarted router): each webhook target gets it once, recorded in the delivery log under the digest's id."""
    key = digest_key("webshop", ENDS)
    handovers = Topics("", 1).handovers.name

    def record(offset: int) -> Record:
        return Record(handovers, 0, offset, key.encode(), encode(digest()), (), 0)

    first, again = FakeChannel(), FakeChannel()
    worker = digest_notifier(engine, tmp_path, first, new_from=0)
    try:
        await worker.handle([record(0), record(1)])
        await until("both targets told", lambda: sent_tickets(engine).count(key) == 2)
        await worker.checkpoint()
    finally:
        await worker.dispatcher.stop()
    restarted = digest_notifier(engine, tmp_path, again, new_from=2)
    try:
        await restarted.handle([record(2)])
        await restarted.checkpoint()
    finally:
        await restarted.dispatcher.stop()
    assert sorted(target for _, target in first.delivered) == ["impl-hook", "ops-hook"]
    assert all(m.kind == "handover" and m.actions == () for m, _ in first.delivered)
    assert again.delivered == [], "a digest the delivery log has is not sent again"
    assert outbox.pending(engine, [(handovers, 0)]) == []


def test_names_version_reads_whole_version_numbers() -> None:
    assert names_version(["route x; handover package v12"], 12)
    assert not names_version(["route x; handover package v12"], 1)
    assert names_version(["handover package v3 of project webshop is in force"], 3)
    assert not names_version([], 3)


def test_open_tickets_not_naming_the_package_in_force_get_one_note_each() -> None:
    p = project(package_version=4, package_lacks=["contacts"])
    now = ENDS
    notes = package_notes(
        p, {"t1": ["route r; handover package v3"], "t2": ["route r; handover package v4"], "t3": []}, now
    )
    assert [n.ticket_id for n in notes] == ["t1", "t3"]
    assert {n.action for n in notes} == {Action.note} and {n.actor for n in notes} == {"handover"}
    assert notes[0].reason == "handover package v4 of project webshop is in force; it still lacks contacts"
    again = package_notes(p, {"t1": [], "t3": []}, now + timedelta(minutes=1))
    assert [n.command_id for n in again] == [n.command_id for n in notes], "one id per ticket and version"
    assert package_notes(project(), {"t1": []}, now) == [], "no package: no notes"


def test_a_note_is_on_the_timeline_without_being_anyone_acting_or_a_response() -> None:
    t = ticket(kind=EventKind.feedback, last_action=None)
    note = package_notes(project(package_version=2), {t.ticket_id: []}, ENDS)[0]
    record, changes = apply_command(TicketRecord(ticket=t, seen=[]), note, ENDS)
    assert [c.change for c in changes] == [Change.noted]
    assert changes[0].reason.startswith("handover package v2 of project webshop") and changes[0].actor == "handover"
    assert record.ticket.last_action is None and record.ticket.version == t.version + 1
    again, none = apply_command(record, note, ENDS)
    assert none == [] and again == record, "the same note twice is applied once"
    clock = start_clock(t, RESPONDING)
    assert "first_response" in clock.targets
    after = on_ticket_event(clock, changes[0], RESPONDING)
    assert after is not None and "first_response" in after.targets, "a system note is no first response"
    v = record.ticket.version + 1
    commented = ticket_event(Change.commented, v, kind=EventKind.feedback, last_action=None)
    replied = on_ticket_event(after, commented, RESPONDING)
    assert replied is not None and "first_response" not in replied.targets, "while a person's comment is"
