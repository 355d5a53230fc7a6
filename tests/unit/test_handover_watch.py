"""The router's handover watch over a real SQLite read model, with a recording sender in place of Kafka: a hypercare
shortened to an end long past still moves the tickets opened before; the digest waits for the tickets it has just
ticked; one project's failure does not stop the others; notes go once per process and reach a reopened ticket; a
digest of many tickets stays small, says its times in UTC, and is never folded by a rate-limited chat."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from sqlalchemy import Engine

from services.notifier.channels.base import RateLimit
from services.notifier.lanes import Dispatcher
from services.notifier.stages import message_to_json
from services.notifier.templates import render_handover
from services.router.commands import handover_reason_prefix
from services.router.handover import GRACE, LISTED, SETTLE, Seen, digest_for, digest_key
from services.router.handover_watch import HandoverWatch
from services.router.packages import ProjectsWatcher
from shared.events import Action, Change, Command, HandoverDigest, TicketEvent, TicketState
from shared.store import db, outbox
from shared.store.outbox import OutboxItem
from shared.streaming.codec import encode
from shared.streaming.topics import Topics
from tests.fakes import FakeChannel
from tests.unit.factories import ticket
from tests.unit.test_handover_digest import project
from tests.unit.test_lanes import Sinks, deps, items, until

CST = timezone(timedelta(hours=8))
TOPICS = Topics("", 1)


class Recorder:
    """What the watch sends, in order; ``refuse``: topics whose records the 'broker' refuses."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, str, BaseModel]] = []
        self.refuse = refuse

    async def __call__(
        self, topic: str, key: str, value: BaseModel, _headers: Sequence[tuple[str, bytes]] | None = None
    ) -> None:
        if topic in self.refuse:
            raise RuntimeError("MessageSizeTooLargeError")
        self.sent.append((topic, key, value))

    def ticks(self) -> list[str]:
        return [v.ticket_id for _, _, v in self.sent if isinstance(v, Command) and v.action is Action.tick]

    def notes(self) -> list[str]:
        return [v.ticket_id for _, _, v in self.sent if isinstance(v, Command) and v.action is Action.note]

    def digests(self) -> list[HandoverDigest]:
        return [v for _, _, v in self.sent if isinstance(v, HandoverDigest)]


def projects_yaml(root: Path, *entries: str) -> ProjectsWatcher:
    (root / "projects.yaml").write_text("projects:\n" + "".join(entries))
    return ProjectsWatcher(root)


def entry(name: str, go_live: datetime, hypercare: str = "30d") -> str:
    return f"""  - name: {name}
    customer: acme
    matchers: ['project="{name}"']
    go_live: {go_live.isoformat()}
    hypercare: {hypercare}
    implementation: {{team: implementation, engineers: [ian]}}
    operations: {{team: operations}}
"""


def put(engine: Engine, ticket_id: str, version: int, change: Change, reason: str, **over: Any) -> None:
    """A ticket event of project webshop (phase hypercare unless ``over`` says otherwise) into the read model."""
    fields: dict[str, Any] = {"project": "webshop", "phase": "hypercare", **over}
    t = ticket(ticket_id=ticket_id, version=version, **fields)
    at = datetime.now(UTC)
    ev = TicketEvent(
        change_id=f"{ticket_id}:{version}", change=change, actor="a", reason=reason, at=at, ticket=t, trace_id="t"
    )
    db.project(engine, [ev])


def watch(engine: Engine, projects: ProjectsWatcher, send: Recorder) -> HandoverWatch:
    return HandoverWatch(projects, engine, TOPICS, send, CollectorRegistry())


async def test_a_hypercare_shortened_to_an_end_over_a_week_ago_still_moves_the_tickets_opened_before(
    engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    projects = projects_yaml(tmp_path, entry("webshop", now - timedelta(days=25), "14d"))
    put(engine, "t1", 1, Change.opened, "route r")
    send = Recorder()
    w = watch(engine, projects, send)
    await w.round()
    assert send.ticks() == ["t1"]
    assert send.digests() == [], "the ticket it has just ticked is not called 'not moved'"
    # the tick moved it; the read model has the move: the digest lists it as moved
    moved = f"{handover_reason_prefix('webshop')} 2026-11-17; from ian (implementation) to operations"
    put(engine, "t1", 2, Change.reassigned, moved, phase="operations", team="operations")
    await w.round()
    (digest,) = send.digests()
    assert [t.ticket_id for t in digest.moved] == ["t1"] and digest.not_moved == []
    await w.round()
    assert len(send.digests()) == 1, "done: not sent again by this process"


async def test_a_ticket_that_never_moves_is_named_late_grace_after_it_was_first_seen_waiting(
    engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    projects = projects_yaml(tmp_path, entry("webshop", now - timedelta(days=2), "47h"))  # ended an hour ago
    put(engine, "t1", 1, Change.opened, "route r")
    w = watch(engine, projects, Recorder())
    await w.round()
    key = digest_key("webshop", projects.current.projects[0].hypercare_ends)
    first = w.waiting_since[key]
    p = projects.current.projects[0]
    seen = [Seen("t1", "s", "P1", "open", "hypercare", None)]
    assert digest_for(p, seen, first + GRACE - timedelta(seconds=1), first) is None
    late = digest_for(p, seen, first + GRACE, first)
    assert late is not None and [t.ticket_id for t in late.not_moved] == ["t1"]


async def test_one_project_s_failing_digest_does_not_stop_another_project_s_notes(
    engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    root = tmp_path / "cfg"
    root.mkdir()
    projects = projects_yaml(
        root, entry("bigshop", now - timedelta(days=30, minutes=1)), entry("webshop", now - timedelta(days=3))
    )
    (root / "handover" / "webshop").mkdir(parents=True)
    (root / "handover" / "webshop" / "v2.yaml").write_text(
        "project: webshop\nversion: 2\nknown_issues: [{id: W-1, title: t, keywords: [k], workaround: w}]\n"
    )
    assert projects.poll() == "reloaded"
    put(engine, "b1", 1, Change.opened, "route r", project="bigshop", phase="operations")
    moved = f"{handover_reason_prefix('bigshop')} 2026-11-03; from ian (implementation) to operations"
    put(engine, "b1", 2, Change.reassigned, moved, project="bigshop", phase="operations")
    put(engine, "w1", 1, Change.opened, "route r: ...; handover package v1", phase="operations")
    send = Recorder(refuse=(TOPICS.handovers.name,))
    await watch(engine, projects, send).round()
    assert send.notes() == ["w1"], "webshop's note goes although bigshop's digest was refused"


async def test_notes_go_once_per_process_and_reach_a_ticket_reopened_later(engine: Engine, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    projects = projects_yaml(tmp_path, entry("webshop", now - timedelta(days=3)))
    (tmp_path / "handover" / "webshop").mkdir(parents=True)
    (tmp_path / "handover" / "webshop" / "v2.yaml").write_text(
        "project: webshop\nversion: 2\nknown_issues: [{id: W-1, title: t, keywords: [k], workaround: w}]\n"
    )
    assert projects.poll() == "reloaded"
    put(engine, "t1", 1, Change.opened, "route r; handover package v1", phase="operations")
    put(engine, "t0", 1, Change.opened, "route r; handover package v1", phase="operations")
    put(engine, "t0", 2, Change.resolved, "fixed", phase="operations", state=TicketState.resolved)
    send = Recorder()
    w = watch(engine, projects, send)
    await w.round()
    assert send.notes() == ["t1"]
    w.notes_at = float("-inf")  # a minute later; the read model has not caught up with the note yet
    await w.round()
    assert send.notes() == ["t1"], "a note this process sent is not sent again (a busy ticket forgets ids)"
    put(engine, "t0", 3, Change.reopened, "again", phase="operations")
    w.notes_at = float("-inf")
    await w.round()
    assert send.notes() == ["t1", "t0"], "a ticket reopened after the import is noted too"


def test_a_digest_of_many_long_tickets_stays_small_and_counts_what_it_does_not_list() -> None:
    p = project()
    summary = "结算页面点击提交订单按钮没有任何反应" * 50
    moved = f"{handover_reason_prefix('webshop')} 2026-12-10; from ian (implementation) to operations"
    seen = [Seen(f"tl-{i:04d}", summary, "P3", "open", "operations", moved) for i in range(400)]
    digest = digest_for(p, seen, p.hypercare_ends + SETTLE)
    assert digest is not None
    assert len(digest.moved) == LISTED and digest.moved_unlisted == 400 - LISTED
    assert len(encode(digest)) < 200_000, "one Kafka record (1 MiB by default), with room"
    text = render_handover(digest, "http://tl.example").text
    assert "Moved to operations: 400 tickets" in text and f"... and {400 - LISTED} more" in text


def test_the_digest_says_its_times_in_utc_and_its_id_is_one_per_instant() -> None:
    p = project(go_live=datetime(2026, 11, 10, 9, 0, tzinfo=CST))
    assert p.hypercare_ends == datetime(2026, 12, 10, 1, 0, tzinfo=UTC)
    digest = digest_for(p, [], p.hypercare_ends + SETTLE)
    assert digest is not None
    wire = HandoverDigest.model_validate_json(encode(digest))
    assert "ended 2026-12-10 01:00 UTC" in render_handover(wire, "http://tl.example").text
    ends = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)
    assert digest_key("webshop", ends) == digest_key("webshop", ends.astimezone(CST))
    assert digest_key("webshop", ends) != digest_key("webshop", datetime(2026, 12, 10, 1, 0, tzinfo=CST))


async def test_a_rate_limited_chat_gets_the_digest_whole_not_folded_into_subject_lines(engine: Engine) -> None:
    """At the end of hypercare the moved tickets' assignments queue for a chat allowing few messages; the digest
    comes into that backlog and is sent as itself, its ticket list whole."""
    channel, sinks = FakeChannel(), Sinks()
    dispatcher = Dispatcher(deps(engine, channel, sinks, limits={"fake": RateLimit(1, 0.5)}))
    p = project(package_version=3, package_lacks=["contacts"])
    moved = [
        Seen(f"tl-{i}", f"moved ticket {i}", "P2", "open", "operations", "handover: x; from ian") for i in range(3)
    ]
    digest = digest_for(p, moved, p.hypercare_ends + SETTLE)
    assert digest is not None
    now = datetime.now(UTC)
    message = render_handover(digest, "http://tl.example")
    digest_item = OutboxItem(
        notification_id=f"{digest.digest_id}:chat",
        seq=100,
        ticket_id=digest.digest_id,
        team="operations",
        channel="fake",
        target="chat",
        kind=message.kind,
        payload=message_to_json(message),
        source_topic="handovers",
        source_partition=0,
        created_at=now,
        due_at=now,
    )
    try:
        dispatcher.submit(outbox.add(engine, [*items("chat", 3), digest_item]))
        await until("everything recorded", lambda: len(sinks.records) >= 4)
    finally:
        await dispatcher.stop()
    texts = "\n".join(m.text for m, _ in channel.delivered)
    assert "Moved to operations: 3 tickets" in texts and "Handover package: webshop v3" in texts, texts
