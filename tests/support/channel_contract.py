"""The contract every channel kind keeps, checked against its vendor's local imitation (deploy/local/vendors).

Like Alertmanager's notify/test helpers: one set of checks, run for every channel.

- a message reaches the vendor, readable: its subject, its action buttons or links, the person mentioned;
- the vendor's retryable answers (429, 5xx, "busy" codes) raise a retryable DeliveryError, its other refusals a
  final one, and a dropped connection a retryable one;
- no error ever carries a secret: the webhook URL, a token or a signing key;
- a message over the vendor's size limit is cut with a marker and accepted, never refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from deploy.local.vendors.base import Answer, VendorSink
from services.notifier.channels.base import (
    CUT_MARKER,
    ActionLink,
    Channel,
    ChannelContext,
    DeliveryError,
    Http,
    Mention,
    Message,
)
from services.notifier.channels.registry import REGISTRY
from services.notifier.stages import digest_budget, fold, message_to_json
from shared.store.outbox import OutboxItem

ACTIONS = (
    ActionLink("ack", "Acknowledge", "http://127.0.0.1:8080/act/tok-ack"),
    ActionLink("take", "Take it", "http://127.0.0.1:8080/act/tok-take"),
)
MENTION = Mention("Olga Ops", mobile="13800000000", email="olga@example.test")


def sample_message(text: str = "Disk full on db-1.\nOwner: operations") -> Message:
    return Message(
        "assignment",
        "[P1] New ticket tl-1: disk full",
        text,
        {"ticket_id": "tl-1", "summary": "disk full", "priority": "P1", "team": "operations", "state": "open"},
        actions=ACTIONS,
        mention=MENTION,
    )


@dataclass(frozen=True)
class ContractCase:
    """How one channel kind meets its vendor imitation."""

    kind: str
    vendor: str
    prefix: str
    """The sink path prefix of the target (outages and programmed answers are set on it)."""
    make: Callable[[VendorSink, ChannelContext], tuple[Channel, str]]
    """The channel, configured against the sink, and the target to send to."""
    secrets: tuple[str, ...]
    """Strings that must never appear in an error: the URL, tokens, signing keys."""
    retryable: tuple[Answer, ...]
    permanent: tuple[Answer, ...]
    max_bytes: int
    mentions: bool = True
    """Whether the vendor shows who is mentioned (DingTalk, WeCom: by mobile)."""


def context() -> ChannelContext:
    return ChannelContext(Http(5.0), time.time)


async def check_delivers_readable_message(case: ContractCase, sink: VendorSink) -> None:
    channel, target = case.make(sink, context())
    before = len(sink.received(case.vendor))
    await channel.send(sample_message(), target)
    got = sink.received(case.vendor)[before:]  # recorded before the sink answered
    assert len(got) == 1, got
    seen = got[0]
    assert "tl-1" in seen.title + seen.text
    assert "disk full" in seen.title + seen.text
    labels = [label for label, _ in seen.actions]
    urls = [url for _, url in seen.actions]
    assert "Acknowledge" in labels and "Take it" in labels, seen.actions
    assert ACTIONS[0].url in urls
    if case.mentions:
        assert MENTION.mobile in seen.mentions, seen.mentions


async def check_classifies_answers(case: ContractCase, sink: VendorSink) -> None:
    channel, target = case.make(sink, context())
    for answer, retryable in [(a, True) for a in case.retryable] + [(a, False) for a in case.permanent]:
        sink.answer_next(case.prefix, answer)
        with pytest.raises(DeliveryError) as caught:
            await channel.send(sample_message(), target)
        assert caught.value.retryable is retryable, (answer, str(caught.value))
        assert_no_secret(case, str(caught.value))


async def check_dropped_connection_is_retryable_and_secret_free(case: ContractCase, sink: VendorSink) -> None:
    channel, target = case.make(sink, context())
    sink.down(case.prefix, 30, mode="drop")
    try:
        with pytest.raises(DeliveryError) as caught:
            await channel.send(sample_message(), target)
    finally:
        sink.up(case.prefix)
    assert caught.value.retryable
    assert_no_secret(case, str(caught.value))
    assert_no_secret(case, repr(caught.value))


async def check_long_text_is_cut_not_refused(case: ContractCase, sink: VendorSink) -> None:
    channel, target = case.make(sink, context())
    before = len(sink.received(case.vendor))
    long_text = "Log line with detail 日志 " * (3 * case.max_bytes // 20)
    await channel.send(sample_message(long_text), target)
    got = sink.received(case.vendor)[before:]
    assert len(got) == 1, got
    assert CUT_MARKER.strip() in got[0].text


async def check_a_full_digest_is_never_cut(case: ContractCase, sink: VendorSink) -> None:
    """A digest folded to the kind's budget reaches the vendor whole: every line, no cut marker (a cut line
    would be a notification counted as delivered that nobody saw)."""
    channel, target = case.make(sink, context())
    now = datetime.now(UTC)
    summary = "磁盘已满 disk full & <latency> on db-" + "x" * 40
    items = [
        OutboxItem(
            notification_id=f"n{i}",
            seq=i,
            ticket_id=f"tl-{i:016x}",
            team="operations",
            channel=case.kind,
            target=target,
            kind="assignment",
            payload=message_to_json(Message("assignment", f"[P1] New ticket tl-{i:016x}: {summary}", "t")),
            source_topic="tickets",
            source_partition=0,
            created_at=now,
            due_at=now,
        )
        for i in range(2000)
    ]
    members, digest = fold(items, digest_budget(REGISTRY[case.kind].max_bytes))
    assert len(members) > 5
    before = len(sink.received(case.vendor))
    await channel.send(digest, target)
    got = sink.received(case.vendor)[before:]
    assert len(got) == 1, got
    seen = got[0].title + "\n" + got[0].text
    assert CUT_MARKER.strip() not in seen
    assert all(m.ticket_id in seen for m in members), "every member of the digest is in the message"


def assert_no_secret(case: ContractCase, text: str) -> None:
    for secret in case.secrets:
        assert secret not in text, f"{case.kind} error shows a secret: {text!r}"


async def check_contract(case: ContractCase, sink: VendorSink) -> None:
    """Every check, in order."""
    await check_delivers_readable_message(case, sink)
    await check_classifies_answers(case, sink)
    await check_dropped_connection_is_retryable_and_secret_free(case, sink)
    await check_long_text_is_cut_not_refused(case, sink)
    await check_a_full_digest_is_never_cut(case, sink)
