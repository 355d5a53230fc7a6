"""The notifier's stages after planning: rate limit, circuit breaker, retry schedule, digest, outbox payloads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.channels.base import ActionLink, Mention, Message, RateLimit
from services.notifier.main import breaker_policy, retry_policy
from services.notifier.stages import (
    Breaker,
    BreakerPolicy,
    RetryPolicy,
    Window,
    answered,
    at_commit,
    breaker_failure,
    breaker_success,
    breaker_wait,
    digest_line,
    fold,
    message_from_json,
    message_to_json,
    next_attempt,
    remaining,
    shared_limit,
    take,
    until_token,
)
from shared.infra.settings import NotifierSettings
from shared.store.outbox import OutboxItem
from tests.unit.factories import T0


def item(n: int, subject: str = "", created_at_offset_s: float = 0.0) -> OutboxItem:
    return OutboxItem(
        notification_id=f"n{n}",
        seq=n,
        ticket_id=f"tl-{n}",
        team="operations",
        channel="dingtalk",
        target="ops-ding",
        kind="assignment",
        payload=message_to_json(Message("assignment", subject or f"[P1] New ticket tl-{n}: disk full", "t")),
        source_topic="tickets",
        source_partition=0,
        created_at=T0 + timedelta(seconds=created_at_offset_s),
        due_at=T0,
    )


def test_a_window_lets_the_limit_through_then_the_next_as_the_oldest_leaves() -> None:
    limit = RateLimit(20, 60.0)  # DingTalk: 20 a minute
    window = Window()
    allowed = 0
    for n in range(25):
        window, ok = take(window, limit, n * 0.1)
        allowed += ok
    assert allowed == 20
    assert remaining(window, limit, 2.4) == 0
    assert until_token(window, limit, 2.4) == pytest.approx(63.05 - 2.4), "60 s and a margin for jitter"
    assert take(window, limit, 60.0)[1] is False
    assert take(window, limit, 63.06)[1] is True


def test_a_send_counts_from_its_answer_so_a_late_arrival_never_crowds_the_vendors_window() -> None:
    """Teams takes 4 a second. Four sends taken at 0.0 reach the vendor late, answered at 0.4: counted from 0.0 the
    fifth would go at 1.1 and the vendor (counting arrivals, up to 0.4) would see five in a second."""
    limit = RateLimit(4, 1.0)
    window = Window()
    for _ in range(4):
        window, ok = take(window, limit, 0.0)
        assert ok
        window = answered(window, 0.0, 0.4)
    assert window.sent == (0.4, 0.4, 0.4, 0.4)
    assert take(window, limit, 1.2)[1] is False, "1.1 s after the taking, but not after the answers"
    assert until_token(window, limit, 1.2) == pytest.approx(0.4 + 1.1 - 1.2)
    assert answered(window, 9.0, 10.0) == window, "a send not in the window changes nothing"


@given(st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=80))
def test_a_window_never_allows_more_than_the_limit_in_any_window(gaps: list[float]) -> None:
    limit = RateLimit(3, 1.0)
    window, now, sent = Window(), 0.0, []
    for gap in gaps:
        now += gap
        if until_token(window, limit, now) == 0.0:
            window, ok = take(window, limit, now)
            assert ok
            sent.append(now)
        else:
            assert take(window, limit, now)[1] is False
    for i, t in enumerate(sent):
        assert len([s for s in sent[i:] if s < t + limit.per_s + 0.05]) <= limit.burst, "even with 50 ms of jitter"


def test_by_default_a_target_that_comes_back_is_sent_to_again_within_30_s_however_long_it_was_away() -> None:
    """Hours of failed probes, with the notifier's default settings: the breaker's next probe and the held item's
    next attempt are each at most 30 s away (at 120 and 60 s a returned DingTalk waited 66-82 s, helper-37)."""
    settings = NotifierSettings()
    breakers, retry = breaker_policy(settings), retry_policy(settings)  # as services/notifier/main.py wires them
    assert (breakers, retry) == (BreakerPolicy(), RetryPolicy()), "the stages' defaults are the service's"
    breaker, now, held = Breaker(), 0.0, item(1)
    for _ in range(500):  # about four hours of probes
        breaker = breaker_failure(breaker, breakers, now)
        now += breaker_wait(breaker, now)
        later = next_attempt(held, retry, T0 + timedelta(seconds=now), "HTTP 503", None, 1.0)
        assert later is not None
        held = later
    assert breaker.open_for_s == 30.0
    assert (held.due_at - (T0 + timedelta(seconds=now))).total_seconds() == 30.0


def test_the_breaker_opens_after_the_threshold_and_probes_again_for_longer() -> None:
    policy = BreakerPolicy(failures=3, open_s=5.0, max_open_s=12.0)
    b = Breaker()
    b = breaker_failure(b, policy, 0.0)
    b = breaker_failure(b, policy, 1.0)
    assert b.state == "closed" and breaker_wait(b, 1.0) == 0.0
    b = breaker_failure(b, policy, 2.0)
    assert b.state == "open" and breaker_wait(b, 2.0) == 5.0 and breaker_wait(b, 7.0) == 0.0
    b = breaker_failure(b, policy, 7.0)  # the probe failed
    assert breaker_wait(b, 7.0) == 10.0
    b = breaker_failure(b, policy, 17.0)
    assert breaker_wait(b, 17.0) == 12.0, "capped"
    assert breaker_success(b) == Breaker()


def test_a_failure_is_rescheduled_with_backoff_or_the_vendors_retry_after_until_the_give_up_time() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=30.0, give_up_s=3600.0)
    first = next_attempt(item(1), policy, T0, "HTTP 503", None, 1.0)
    assert first is not None and first.attempts == 1 and first.due_at == T0 + timedelta(seconds=1)
    second = next_attempt(first, policy, T0, "HTTP 503", None, 1.0)
    assert second is not None and second.due_at == T0 + timedelta(seconds=2)
    throttled = next_attempt(item(1), policy, T0, "130101", 600.0, 1.0)
    assert throttled is not None and throttled.due_at == T0 + timedelta(seconds=600)
    assert next_attempt(item(1), policy, T0 + timedelta(hours=1), "HTTP 503", None, 1.0) is None


def test_a_digest_lists_every_member_and_leaves_the_rest_for_the_next_one() -> None:
    items = [item(n) for n in range(100)]
    members, message = fold(items, 2000)
    assert 1 < len(members) < 100
    assert members == items[: len(members)]
    assert len(message.text.encode()) <= 2000
    for m in members:
        assert digest_line(m) in message.text
    assert message.kind == "digest"
    assert message.subject == f"{len(members)} notifications for operations"
    assert message.data["digest"] == [m.notification_id for m in members]
    rest, _ = fold(items[len(members) :], 2000)
    assert rest[0] is items[len(members)]


def test_a_digest_takes_one_member_even_when_it_alone_is_over_the_size() -> None:
    members, message = fold([item(1, subject="x" * 5000)], 1000)
    assert len(members) == 1 and len(message.text.encode()) <= 1000


def test_a_message_survives_the_outbox() -> None:
    message = Message(
        "escalation",
        "s",
        "t",
        {"ticket_id": "tl-1", "level": 2},
        (ActionLink("ack", "Acknowledge", "http://x/act/a"),),
        Mention("Olga", "138", "o@x"),
    )
    assert message_from_json(message_to_json(message)) == message


def held(n: int, partition: int, offset: int, age_s: float) -> OutboxItem:
    """An item sent first and held only in memory, planned ``age_s`` before T0 from the event at ``offset``."""
    return replace(item(n, created_at_offset_s=-age_s), source_partition=partition, source_offset=offset)


def test_at_a_commit_young_held_items_hold_their_partition_below_the_oldest_event_and_are_not_written() -> None:
    # two lanes' items of partition 0 and one lane's of partition 1, each in planning order
    plan = at_commit([[held(2, 0, 4, 1.0), held(1, 0, 7, 0.1)], [held(4, 0, 6, 0.5)], [held(3, 1, 9, 2.0)]], T0, 5.0)
    assert plan.save == []
    assert plan.caps == {("tickets", 0): 4, ("tickets", 1): 9}


def test_at_a_commit_items_held_the_hold_time_are_written_and_hold_nothing_back() -> None:
    old, young = held(1, 0, 3, 5.0), held(2, 0, 8, 4.9)
    plan = at_commit([[old, young]], T0, hold_s=5.0)
    assert plan.save == [old]
    assert plan.caps == {("tickets", 0): 8}


def test_at_a_commit_only_the_front_of_each_sequence_is_looked_at() -> None:
    def sequence() -> Iterator[OutboxItem]:
        yield held(1, 0, 3, 6.0)
        yield held(2, 0, 5, 1.0)
        raise AssertionError("read past the first young item")

    old = held(1, 0, 3, 6.0)
    assert at_commit([sequence()], T0, hold_s=5.0) == ([old], {("tickets", 0): 5})


def test_at_a_commit_an_item_held_long_behind_a_younger_one_waits_under_its_partitions_stop() -> None:
    # planning times out of order (the wall clock set back): the older one is written once it reaches the front
    young, older = held(1, 0, 3, 1.0), held(2, 0, 5, 9.0)
    assert at_commit([[young, older]], T0, hold_s=5.0) == ([], {("tickets", 0): 3})


def test_at_a_commit_an_item_whose_event_offset_is_not_known_is_written() -> None:
    unknown, unknown_young = item(1), item(2, created_at_offset_s=-0.1)
    assert at_commit([[unknown, unknown_young]], T0, hold_s=5.0) == ([unknown, unknown_young], {})
    assert at_commit([], T0, hold_s=5.0) == ([], {})
    assert at_commit([[]], T0, hold_s=5.0) == ([], {})


def test_workers_sharing_the_partitions_share_each_vendors_limit_and_never_add_up_to_more() -> None:
    dingtalk = RateLimit(20, 60.0)
    assert shared_limit(dingtalk, 12, 12) == dingtalk, "one worker: the whole limit"
    assert shared_limit(dingtalk, 6, 12) == RateLimit(10, 60.0)
    parts = [shared_limit(dingtalk, owned, 12) for owned in (6, 3, 3)]  # three workers, 4 partitions a topic
    assert sum(p.burst for p in parts) <= 20 and all(p.per_s == 60.0 for p in parts)
    assert shared_limit(dingtalk, 1, 12) == RateLimit(1, 60.0)
    slack = RateLimit(1, 1.0)
    assert shared_limit(slack, 6, 12) == RateLimit(1, 2.0), "under one message a window: the window grows"
    assert shared_limit(slack, 0, 12) == RateLimit(1, 12.0)
    assert shared_limit(slack, 3, 0) == slack
    assert shared_limit(RateLimit(3, 3.0), 1, 12) == RateLimit(1, 12.0), "a twelfth of one a second"
