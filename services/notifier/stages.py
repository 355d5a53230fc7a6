"""The notifier's stages after planning, as pure functions (Alertmanager's notify pipeline, one decision each):

    mute (shared.rules.muting) → plan (pipeline.plan_notice) → dedup (shared.store.outbox.add) → rate limit (``Window``)
    → circuit breaker (``Breaker``) → send (a channel) → retry schedule (``next_attempt``) or give up
    → record (``record``)

plus the digest (``fold``) that a target's backlog becomes when its rate limit is spent, and the parts
(``in_parts``) a list longer than its channel takes is sent as. The runtime that
applies them per target is services/notifier/lanes.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from services.notifier.channels.base import ActionLink, Mention, Message, RateLimit, cut_utf8
from shared.events import Delivery
from shared.store.outbox import OutboxItem, member_ids

# --- commit: what the items held only in memory need before their events' offsets are committed -------------


class AtCommit(NamedTuple):
    save: list[OutboxItem]
    """Held long enough to be written to the outbox now (a slow or dead target: they may wait for hours)."""
    caps: dict[tuple[str, int], int]
    """Per partition: the offset its commit stops at, the oldest event whose notifications are still held only
    in memory (a crash reads it again, and its replay sends what was not sent: notification ids are stable)."""


def at_commit(held: Iterable[Iterable[OutboxItem]], now: datetime, hold_s: float) -> AtCommit:
    """Before a commit, for the items sent first and not yet in the outbox: each one held ``hold_s`` or longer
    since it was planned is written; for the others, the commit stops below their events. A notifier that is
    behind for a moment then writes nothing for its backlog (writing every held item at every commit and deleting
    it once sent made each notification cost more the further behind it was: bench/notify_fanout at 2,700 a
    second, the outbox writes took a third of the notifier's time and it never caught up), while a crash re-reads
    at most ``hold_s`` and a commit interval of events.

    Each of ``held`` is one lane's items from one partition in planning order, which is their events' offset
    order (an item whose event offset is not known comes in a sequence of its own and is written). Only each
    sequence's front is looked at: its items held long enough are written, and the first younger one is where
    that partition's commit stops. A scan of every held item at every commit cost a storm in proportion to its
    size squared: a notifier draining a live storm of 24,000 notifications commits after every empty poll (about
    ten a second), and those scans took 56 µs of its CPU a notification against 12 in a burst (bench/notify_fanout,
    py-spy). Planning times follow planning order (the wall clock at each batch); were the clock set back, a
    held item behind a younger one is written at a later commit, its event still covered by the partition's
    stop."""
    save: list[OutboxItem] = []
    caps: dict[tuple[str, int], int] = {}
    for items in held:
        for item in items:
            if item.source_offset >= 0 and (now - item.created_at).total_seconds() < hold_s:
                tp = (item.source_topic, item.source_partition)
                caps[tp] = min(caps.get(tp, item.source_offset), item.source_offset)
                break
            save.append(item)
    return AtCommit(save, caps)


# --- in flight: when a lane that may have several messages on their way sends another -------------------------


def beside_wait_s(under_way: int, age_s: float, catch_up_s: float) -> float:
    """How long a lane whose kind allows several messages in flight waits before sending the next one beside the
    ``under_way`` ones: not at all when none is under way; else until the message has waited ``catch_up_s``
    since it was planned. A lane keeping up sends one at a time (a crash repeats at most one of its messages);
    one that is behind catches up several at once."""
    return 0.0 if under_way == 0 else max(0.0, catch_up_s - age_s)


# --- rate limit: a sliding window per target ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """When the last messages to a target went (monotonic seconds, oldest first): a vendor's "N per minute" is
    a sliding window (a token bucket of N refilled over the minute would let 2N through in some minute, and
    DingTalk then mutes the robot for ten)."""

    sent: tuple[float, ...] = ()


def shared_limit(limit: RateLimit, owned: int, total: int) -> RateLimit:
    """A worker's part of a vendor's limit per target while several notifier workers share the partitions (it
    owns ``owned`` of ``total``): the parts add up to at most the limit in any window, whichever worker a
    target's notifications come to (helper-34: two replicas each kept DingTalk's 20 a minute and WeCom's, and
    the robots refused the excess). A part of less than one message a window is one message in a window that
    many times longer: the same share of the rate, in bursts of one per worker."""
    if total <= 0 or owned >= total:
        return limit
    burst = limit.burst * owned // total
    if burst >= 1:
        return RateLimit(burst, limit.per_s)
    return RateLimit(1, limit.per_s * total / (limit.burst * max(owned, 1)))


def span_s(limit: RateLimit) -> float:
    """The window kept, a little longer than the vendor's: our send times and the vendor's receive times differ
    by network and scheduling jitter, and a vendor counting "3 in 3 s" must never see a fourth."""
    return limit.per_s * 1.05 + 0.05


def _recent(window: Window, limit: RateLimit, now: float) -> tuple[float, ...]:
    return tuple(t for t in window.sent if t > now - span_s(limit))


def take(window: Window, limit: RateLimit, now: float) -> tuple[Window, bool]:
    """Room for one more message now? (the window after, whether it may go)."""
    recent = _recent(window, limit, now)
    if len(recent) < limit.burst:
        return Window((*recent, now)), True
    return Window(recent), False


def answered(window: Window, taken_at: float, now: float) -> Window:
    """The window with the send taken at ``taken_at`` counted from when it was answered (``now``): the vendor got it
    somewhere between, so spacing the next sends from the answer keeps the vendor's own count under its limit
    however late the request reached it (a Teams workflow answered 429 to a send taken in time but slowed on a
    loaded machine)."""
    sent = list(window.sent)
    if taken_at not in sent:
        return window
    sent.remove(taken_at)
    return Window(tuple(sorted([*sent, max(now, taken_at)])))


def window_from(
    sent_at: Sequence[datetime], started_at: Sequence[datetime], wall_now: datetime, mono_now: float
) -> Window:
    """A window from the times messages went (the delivery log: a restarted worker must not send a vendor's whole
    limit again at once — DingTalk mutes a robot for ten minutes when it does), and one more for each notifier
    start in it (``started_at``): the worker that died before that start may have sent one it had not yet
    written down, at the latest then. Even when the log has none: that one may have been its first
    (tests/e2e/test_chaos.py once saw DingTalk's 20th message of a minute refused after a restart whose log held
    no send to it, and the robot's backlog then waited out the ten minutes); and two kills in one window are two
    such messages (helper-34: DingTalk refused the third message sent again within 13 s, and muted the robot).
    No start known (it could not be written): one counted now. A start costs a lane one message of its window."""
    times = [mono_now - (wall_now - at).total_seconds() for at in [*sent_at, *started_at]]
    return Window(tuple(sorted(times if started_at else [*times, mono_now])))


def remaining(window: Window, limit: RateLimit, now: float) -> int:
    """How many more messages may go now."""
    return limit.burst - len(_recent(window, limit, now))


def until_token(window: Window, limit: RateLimit, now: float) -> float:
    """Seconds until one more message may go."""
    recent = _recent(window, limit, now)
    if len(recent) < limit.burst:
        return 0.0
    return max(1e-6, recent[len(recent) - limit.burst] + span_s(limit) - now)  # never 0 while take says no


# --- circuit breaker per target ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 3
    """Consecutive failures that open the breaker."""
    open_s: float = 5.0
    """How long it stays open before one probe; doubled after each failed probe, up to ``max_open_s``."""
    max_open_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Breaker:
    state: Literal["closed", "open"] = "closed"
    failures: int = 0
    opened_at: float = 0.0
    open_for_s: float = 0.0


def breaker_wait(breaker: Breaker, now: float) -> float:
    """Seconds before the breaker lets a message (a probe) through; 0 when it does now."""
    if breaker.state != "open":
        return 0.0
    return max(0.0, breaker.opened_at + breaker.open_for_s - now)


def breaker_success(_breaker: Breaker) -> Breaker:
    return Breaker()


def breaker_failure(breaker: Breaker, policy: BreakerPolicy, now: float) -> Breaker:
    """Count a failure: the breaker opens at the threshold; a failed probe after an open period opens it for
    longer (until a success closes it)."""
    if breaker.state == "open":
        longer = min(policy.max_open_s, max(policy.open_s, breaker.open_for_s * 2))
        return Breaker("open", breaker.failures + 1, now, longer)
    failures = breaker.failures + 1
    if failures >= policy.failures:
        return Breaker("open", failures, now, policy.open_s)
    return Breaker("closed", failures, 0.0, 0.0)


# --- retry schedule ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 0.5
    max_s: float = 30.0
    give_up_s: float = 24 * 3600.0
    """A notification still undelivered this long after it was planned goes to the dead-letter topic."""

    def delay(self, attempt: int, jitter: float = 1.0) -> float:
        """Exponential backoff with jitter (``jitter`` in [0.5, 1]); ``attempt`` counts from 1."""
        return float(min(self.max_s, self.base_s * 2.0 ** (attempt - 1)) * jitter)


def next_attempt(
    item: OutboxItem, policy: RetryPolicy, now: datetime, error: str, retry_after_s: float | None, jitter: float
) -> OutboxItem | None:
    """The item rescheduled after a retryable failure, or None when it is to be given up (too old)."""
    if (now - item.created_at).total_seconds() >= policy.give_up_s:
        return None
    attempts = item.attempts + 1
    wait = max(policy.delay(attempts, jitter), retry_after_s or 0.0)
    return replace(item, attempts=attempts, due_at=now + timedelta(seconds=wait), last_error=error)


# --- digests -------------------------------------------------------------------------------------------------


def digest_budget(max_bytes: int) -> int:
    """How much text a digest may hold in a channel whose limit is ``max_bytes``: room is left for the title, the
    vendor's envelope and escaping (Slack's ``&amp;``), so the channel never has to cut a digest — a cut would
    drop its last lines, and they count as delivered."""
    return max(500, int(max_bytes * 0.75) - 300)


DIGEST_ID = "digest_id"
"""Where a digest's message names it (``data``), once it is kept in the outbox (services/notifier/lanes.py)."""


def digest_members(message: Message) -> list[str]:
    """The notification ids a digest's message holds (none: not a digest)."""
    return member_ids(message.data)


def same_source(item: OutboxItem, head: OutboxItem) -> bool:
    """Whether ``item`` may share a digest with ``head``: planned from the same partition. A digest is then owned,
    with all its members, by the one worker assigned that partition: a notifier that died while it was on its way
    is followed by one that loads it whole and sends it again as it was (helper-34's chaos runs: a digest across
    partitions, loaded in two assignments or by two workers, was folded anew and each member came twice)."""
    return (item.source_topic, item.source_partition) == (head.source_topic, head.source_partition)


def fold_size(due: int, tokens_left: int) -> int:
    """How many of the ``due`` notifications the message going now should carry, when the rate limit lets
    ``tokens_left`` more messages go after it: one (itself alone) while they all fit, one message each; else all
    but ``tokens_left`` (a digest's budget may hold fewer: the rest fold again in the next messages). A backlog so
    goes at once, as digests, on the messages the limit has now, instead of one notification a message until the
    last and then a digest, and the rest a window later (helper-37: the 166 notifications held through a
    5.5-minute DingTalk outage came as 19 alone and a digest of 43, and the other 123 a minute later)."""
    return max(1, due - tokens_left)


def fold(items: Sequence[OutboxItem], max_bytes: int) -> tuple[list[OutboxItem], Message]:
    """A digest of as many of ``items`` (in order, at least one) as fit in ``max_bytes`` of text: one line per
    notification, so nothing is dropped — the rest wait for the next message."""
    team = items[0].team
    # a storm, or what an outage held: either way more than the rate limit lets go one a message
    header = "{n} notifications for " + team + " (more than the channel's rate limit lets go one by one):"
    footer = "Open each ticket for its actions."
    budget = max_bytes - len(header.encode()) - len(footer.encode()) - 16
    members: list[OutboxItem] = []
    lines: list[str] = []
    used = 0
    for item in items:
        line = digest_line(item)
        size = len(line.encode()) + 1
        if members and used + size > budget:
            break
        members.append(item)
        lines.append(line)
        used += size
    text = "\n".join([header.format(n=len(members)), *lines, "", footer])
    subject = f"{len(members)} notifications for {team}"
    data: dict[str, object] = {
        "digest": [m.notification_id for m in members],
        "tickets": sorted({m.ticket_id for m in members}),
        "team": team,
    }
    return members, Message("digest", subject, cut_utf8(text, max_bytes), data)


# --- a long list in parts ----------------------------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def text_blocks(text: str) -> list[str]:
    """``text``'s lines grouped where a part may not begin: a line indented deeper than the one above it stays
    with it (a listed ticket's link under its line, a section's first ticket under its heading)."""
    blocks: list[list[str]] = []
    previous = ""
    for line in text.split("\n"):
        if blocks and line.strip() and _indent(line) > _indent(previous) and previous.strip():
            blocks[-1].append(line)
        else:
            blocks.append([line])
        previous = line
    return ["\n".join(block) for block in blocks]


def text_parts(text: str, max_bytes: int) -> list[str]:
    """``text`` as parts of at most ``max_bytes`` of UTF-8, cut only between blocks (``text_blocks``), as few as
    that allows, with no blank lines at a part's ends; a block longer than ``max_bytes`` alone is cut
    (``cut_utf8``), the only text that can be lost."""
    parts: list[list[str]] = [[]]
    used = 0
    for block in text_blocks(text):
        size = len(block.encode()) + 1
        if parts[-1] and used + size > max_bytes:
            parts.append([])
            used = 0
        parts[-1].append(block)
        used += size
    out = ["\n".join(part).strip("\n") for part in parts]
    return [cut_utf8(part, max_bytes) for part in out if part]


def in_parts(message: Message, max_bytes: int) -> list[Message]:
    """A list-like message (the hypercare handover digest) whose text is longer than ``max_bytes``, as several
    messages that each fit, in order, each saying which part it is: a chat with a small limit (WeCom's 4,096
    bytes, a Slack section's 3,000 characters) would otherwise cut it and drop the rest of the list. A message that
    fits is itself; each part keeps the message's data with ``part`` and ``parts`` added, and its actions."""
    if len(message.text.encode()) <= max_bytes:
        return [message]
    note = "(part 9999 of 9999, continued)\n"  # room for the longest note a part can carry
    texts = text_parts(message.text, max(1, max_bytes - len(note.encode())))
    n = len(texts)
    if n == 1:
        return [replace(message, text=texts[0])]
    return [
        replace(
            message,
            subject=f"{message.subject} ({k}/{n})",
            text=text if k == 1 else f"(part {k} of {n}, continued)\n{text}",
            data={**message.data, "part": k, "parts": n},
        )
        for k, text in enumerate(texts, start=1)
    ]


def digest_line(item: OutboxItem) -> str:
    """One notification in a digest: its subject (which names the ticket)."""
    return f"• {item.payload.get('subject', item.kind)}"


# --- messages in the outbox, and the delivery log's records ---------------------------------------------------


def message_to_json(message: Message) -> dict[str, Any]:
    return {
        "kind": message.kind,
        "subject": message.subject,
        "text": message.text,
        "data": message.data,
        "actions": [[a.action, a.label, a.url] for a in message.actions],
        "mention": None
        if message.mention is None
        else [message.mention.name, message.mention.mobile, message.mention.email],
    }


def message_from_json(payload: dict[str, Any]) -> Message:
    mention = payload.get("mention")
    return Message(
        kind=str(payload["kind"]),
        subject=str(payload["subject"]),
        text=str(payload["text"]),
        data=dict(payload.get("data") or {}),
        actions=tuple(ActionLink(str(a), str(b), str(c)) for a, b, c in payload.get("actions") or ()),
        mention=None if mention is None else Mention(str(mention[0]), mention[1], mention[2]),
    )


def record(item: OutboxItem, status: Literal["sent", "failed"], attempts: int, detail: str, now: datetime) -> Delivery:
    """The delivery log's record of one notification (``detail``: the error, or which digest carried it)."""
    return Delivery(
        notification_id=item.notification_id,
        ticket_id=item.ticket_id,
        kind=item.kind,
        channel=item.channel,
        recipient=item.target,
        status=status,
        attempts=attempts,
        error=detail,
        at=now,
    )
