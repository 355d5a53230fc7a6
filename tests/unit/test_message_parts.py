"""A list longer than its channel takes (the hypercare handover digest) goes out in parts, cut between entries,
never cut by the channel: every listed ticket reaches WeCom's 4,096 bytes and Slack's 3,000-character section."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from services.notifier.channels import slack, wecom
from services.notifier.channels.base import CUT_MARKER, Message
from services.notifier.channels.registry import REGISTRY
from services.notifier.config import NotifyConfig
from services.notifier.pipeline import Dispatch, in_channel_parts, notice_for_handover
from services.notifier.service import EMAIL_MAX_BYTES
from services.notifier.stages import in_parts, text_blocks, text_parts
from services.notifier.templates import render_handover
from shared.events import HandoverDigest, MovedTicket
from shared.streaming.codec import encode
from shared.streaming.driver import Record
from shared.streaming.topics import Topics
from tests.fakes import FakeChannel
from tests.unit.test_lanes import until
from tests.unit.test_notifier_service import notifier

ENDED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MAX_BYTES = {**{k: kind.max_bytes for k, kind in REGISTRY.items()}, "email": EMAIL_MAX_BYTES}


def digest(moved: int, not_moved: int = 0) -> HandoverDigest:
    def listed(i: int, how: str) -> MovedTicket:
        return MovedTicket(
            ticket_id=f"tl-{i:04d}",
            summary=f"checkout fails for 支付 customers, case {i}",
            priority="P2",
            state="open",
            moved=how,
        )

    return HandoverDigest(
        digest_id="handover:webshop:2026-12-01",
        project="webshop",
        customer="acme",
        ended_at=ENDED,
        operations="operations",
        implementation="implementation",
        moved=[listed(i, "from ian (implementation) to operations") for i in range(moved)],
        not_moved=[listed(moved + i, "") for i in range(not_moved)],
        package="webshop v3",
        at=ENDED,
    )


def listed_ids(text: str) -> list[str]:
    return [w.rsplit("/", 1)[1] for w in text.split() if "/api/v1/tickets/tl-" in w]


def dispatch(channel: str, message: Message) -> Dispatch:
    return Dispatch("nid-1", "handover:webshop:2026-12-01", channel, "ops", message)


def test_a_listed_tickets_link_stays_with_its_line_and_a_heading_with_its_first_ticket() -> None:
    text = "Head\n\nMoved: 2\n  [P2] a\n    http://x/a\n  [P2] b\n    http://x/b\n\nPackage: v3"
    assert text_blocks(text) == [
        "Head",
        "",
        "Moved: 2\n  [P2] a\n    http://x/a",
        "  [P2] b\n    http://x/b",
        "",
        "Package: v3",
    ]


def test_parts_are_cut_between_blocks_and_only_an_oversized_block_is_cut() -> None:
    text = "Head\n\nMoved: 2\n  [P2] a\n    http://x/a\n  [P2] b\n    http://x/b"
    assert text_parts(text, 40) == ["Head\n\nMoved: 2\n  [P2] a\n    http://x/a", "  [P2] b\n    http://x/b"]
    assert text_parts(text, 1000) == [text]
    (cut,) = text_parts("x" * 300, 200)
    assert len(cut.encode()) <= 200 and cut.endswith(CUT_MARKER)


def test_a_message_that_fits_is_itself() -> None:
    message = render_handover(digest(3), "http://127.0.0.1:8080")
    assert in_parts(message, 10_000) == [message]
    assert in_channel_parts(dispatch("wecom", message), MAX_BYTES) == [dispatch("wecom", message)]


def test_a_fifty_ticket_digest_reaches_wecom_whole_in_parts_each_within_its_limit() -> None:
    message = render_handover(digest(40, not_moved=10), "http://127.0.0.1:8080")
    parts = in_channel_parts(dispatch("wecom", message), MAX_BYTES)
    assert len(parts) > 1
    contents = [wecom.payload(p.message)["markdown"]["content"] for p in parts]
    assert all(len(c.encode()) <= wecom.MARKDOWN_MAX_BYTES for c in contents)
    assert not any(CUT_MARKER.strip() in c for c in contents), "no part is cut by the channel"
    assert [i for c in contents for i in listed_ids(c)] == [f"tl-{i:04d}" for i in range(50)], "each once, in order"
    n = len(parts)
    assert [p.message.subject for p in parts] == [f"{message.subject} ({k}/{n})" for k in range(1, n + 1)]
    assert [(p.message.data["part"], p.message.data["parts"]) for p in parts] == [(k, n) for k in range(1, n + 1)]
    assert parts[0].notification_id == "nid-1", "the first part keeps the digest's id"
    assert len({p.notification_id for p in parts}) == n
    assert "Not moved yet" in "".join(contents) and "Handover package: webshop v3" in contents[-1]
    again = in_channel_parts(dispatch("wecom", message), MAX_BYTES)
    assert [p.notification_id for p in again] == [p.notification_id for p in parts], "stable: a replay dedups"


def test_a_fifty_ticket_digest_reaches_a_slack_section_whole() -> None:
    message = render_handover(digest(50), "http://127.0.0.1:8080")
    whole = slack.blocks(message)[1]["text"]["text"]
    assert CUT_MARKER.strip() in whole, "sent whole, the section would be cut"
    parts = in_channel_parts(dispatch("slack", message), MAX_BYTES)
    sections = [slack.blocks(p.message)[1]["text"]["text"] for p in parts]
    assert not any(CUT_MARKER.strip() in s for s in sections)
    assert [i for s in sections for i in listed_ids(s)] == [f"tl-{i:04d}" for i in range(50)]


def test_channels_with_room_and_other_kinds_are_not_parted() -> None:
    message = render_handover(digest(50), "http://127.0.0.1:8080")
    for channel in ("dingtalk", "feishu", "teams", "webhook", "email"):
        assert len(in_channel_parts(dispatch(channel, message), MAX_BYTES)) == 1, channel
    long = Message("assignment", "s", "line\n" * 2000)
    assert in_channel_parts(dispatch("wecom", long), MAX_BYTES) == [dispatch("wecom", long)], "a ticket's is cut"


async def test_the_notifier_sends_a_long_digest_to_wecom_in_order_as_parts(engine: Engine, tmp_path: Path) -> None:
    config = NotifyConfig.model_validate(
        {"teams": {"operations": {"channels": [{"type": "wecom", "name": "ops-wecom", "url": "http://127.0.0.1:9/w"}]}}}
    )
    handovers = Topics("", 1).handovers.name
    channel = FakeChannel()
    worker = notifier(engine, tmp_path, channel, 0, config, handovers, kind="wecom")
    d = digest(50)
    expected = in_channel_parts(dispatch("wecom", notice_for_handover(d, "http://127.0.0.1:8080").message), MAX_BYTES)
    try:
        await worker.handle([Record(handovers, 0, 0, d.digest_id.encode(), encode(d), (), 0)])
        await until("every part sent", lambda: len(channel.delivered) == len(expected))
        await worker.checkpoint()
    finally:
        await worker.dispatcher.stop()
    assert len(expected) > 1
    assert [m.subject for m, _ in channel.delivered] == [p.message.subject for p in expected], "in order"
    texts = [m.text for m, _ in channel.delivered]
    assert [i for t in texts for i in listed_ids(t)] == [f"tl-{i:04d}" for i in range(50)]
