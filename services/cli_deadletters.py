"""``ticketloop deadletters list|redrive``: the records the services could not handle, and sending them back.

    ticketloop deadletters list --kafka 127.0.0.1:9092 [--service router] [--topic-prefix ticketloop.]
    ticketloop deadletters redrive 0:17 0:18 --kafka 127.0.0.1:9092 [--again]

A record that does not decode, or whose handling raised, goes to the ``deadletter`` topic with where it came from
and why (shared/streaming/deadletters.py); nothing is lost, but nothing sends it back either. ``list`` prints each
dead letter's id (the deadletter topic's partition:offset), when, which service, its source and the reason, never
its value (what a sender sent us). ``redrive`` puts the chosen ones back on their source topic as they were (key and
value), once the cause is fixed (a new release, a corrected config); each is handled again as a new record. Once it
is back (acknowledged by every replica), a ``Redriven`` record on the deadletter topic says so: ``list`` shows when,
and ``redrive`` refuses it a second time unless ``--again`` (a second redrive would handle it twice). A notification
given up is redriven from the outbox instead (``ticketloop deliveries redrive``: its dead letter carries no source
record), and a dead letter whose source is not one of this deployment's topics is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer

from shared.events import DeadLetter, Redriven
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.reader import StoredRecord, TopicReadError, read_all
from shared.streaming.topics import Topics

REASON_CHARS = 160


@dataclass(frozen=True, slots=True)
class Found:
    """A record of the deadletter topic: its id there, and the dead letter it is, or the redrive it tells of (both
    None: neither)."""

    id: str
    letter: DeadLetter | None
    redrive: Redriven | None = None


def letter_id(record: StoredRecord) -> str:
    return f"{record.partition}:{record.offset}"


def found_of(record: StoredRecord) -> Found:
    value = record.value or b""
    try:
        return Found(letter_id(record), decode(DeadLetter, value))
    except DecodeError:
        pass
    try:
        return Found(letter_id(record), None, decode(Redriven, value))
    except DecodeError:
        return Found(letter_id(record), None)


def redrives(found: Sequence[Found]) -> dict[str, Redriven]:
    """Each redriven dead letter's id, and its latest redrive."""
    return {f.redrive.redriven: f.redrive for f in found if f.redrive is not None}


def listing_line(found: Found, redriven: Redriven | None = None) -> str:
    """One dead letter for people: id, when, service, source record, the value's size, reason (cut), and when it
    was sent back if it was."""
    d = found.letter
    if d is None:
        return f"{found.id}  (not a dead-letter record)"
    reason = d.reason if len(d.reason) <= REASON_CHARS else d.reason[: REASON_CHARS - 1] + "…"
    source = f"{d.topic}[{d.partition}]@{d.offset}" if d.offset >= 0 else f"{d.topic} (a notification given up)"
    back = f"  [redriven {redriven.at.isoformat(timespec='seconds')}]" if redriven is not None else ""
    return (
        f"{found.id}  {d.at.isoformat(timespec='seconds')}  {d.service}  {source}  "
        f"{len(d.value.encode())} bytes  {reason}{back}"
    )


def selected(found: Sequence[Found], service: str | None) -> list[Found]:
    """The dead letters to list (the redrive records are not listed: each shows on its dead letter's line)."""
    return [
        f
        for f in found
        if f.redrive is None and (service is None or (f.letter is not None and f.letter.service == service))
    ]


def why_not_redriven(
    found: Found | None, topics: Topics, redriven: Redriven | None = None, *, again: bool = False
) -> str | None:
    """Why this dead letter cannot go back to its source (None: it can). One already sent back goes again only when
    asked (``again``)."""
    if found is None:
        return "no such dead letter"
    d = found.letter
    if d is None:
        return "not a dead-letter record"
    if redriven is not None and not again:
        return f"already redriven at {redriven.at.isoformat(timespec='seconds')} (--again sends it once more)"
    return _not_sendable(d, topics)


def _not_sendable(d: DeadLetter, topics: Topics) -> str | None:
    """Why this letter's record cannot go back to its source, whoever asks (None: it can)."""
    if d.offset < 0:
        return "a notification given up: send it again with ticketloop deliveries redrive"
    if d.cut_from is not None:
        return f"it keeps only the first part of a record of {d.cut_from:,} bytes, too large to be handled"
    if d.topic not in {spec.name for spec in topics.all()} - {topics.deadletter.name, topics.deliveries.name}:
        return f"its source {d.topic!r} is not an input topic of this deployment (--topic-prefix {topics.prefix!r})"
    return None


def add_deadletter_commands(sub: Any) -> None:
    letters = sub.add_parser("deadletters", help="records the services could not handle").add_subparsers(
        dest="action", required=True
    )
    listing = letters.add_parser("list", help="list dead letters, oldest first")
    listing.add_argument("--service", default=None, help="only this service's (router, sla, notifier)")
    redrive = letters.add_parser("redrive", help="put dead letters back on their source topic")
    redrive.add_argument("ids", nargs="+", metavar="PARTITION:OFFSET", help="as `list` prints them")
    redrive.add_argument("--again", action="store_true", help="send back also those redriven before")
    for p in (listing, redrive):
        p.add_argument(
            "--kafka", metavar="BOOTSTRAP", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        )
        p.add_argument("--topic-prefix", default=os.environ.get("TICKETLOOP_TOPIC_PREFIX", "ticketloop."))


def deadletter_command(args: argparse.Namespace, out: TextIO) -> int:
    topics = Topics(args.topic_prefix, 1)
    try:
        found = [found_of(r) for r in asyncio.run(read_all(args.kafka, topics.deadletter.name))]
    except TopicReadError as exc:
        print(f"error: {exc}", file=out)
        return 1
    back = redrives(found)
    if args.action == "list":
        shown = selected(found, args.service)
        for f in shown:
            print(listing_line(f, back.get(f.id)), file=out)
        print(f"{len(shown)} dead letter(s)", file=out)
        return 0
    by_id = {f.id: f for f in found if f.redrive is None}
    refused = {
        i: why
        for i in dict.fromkeys(args.ids)
        if (why := why_not_redriven(by_id.get(i), topics, back.get(i), again=args.again)) is not None
    }
    for i, why in refused.items():
        print(f"{i}: not redriven: {why}", file=out)
    chosen = {
        i: letter for i in dict.fromkeys(args.ids) if i not in refused and (letter := by_id[i].letter) is not None
    }
    if chosen:
        asyncio.run(_send_back(args.kafka, topics.deadletter.name, chosen))
    for i, letter in chosen.items():
        print(f"{i}: back on {letter.topic}", file=out)
    return 1 if refused else 0


async def _send_back(bootstrap: str, deadletters: str, letters: dict[str, DeadLetter]) -> None:
    """Each one's key and value on its source topic, acknowledged by every replica (``acks=all``), then its
    ``Redriven`` record on the deadletter topic (a run cut between the two leaves one sent back but not marked: a
    later redrive would send it again, never lose it)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, d in letters.items():
            key = d.key.encode() if d.key is not None else None
            await producer.send_and_wait(d.topic, d.value.encode(), key=key)
            mark = Redriven(redriven=i, topic=d.topic, at=datetime.now(UTC))
            await producer.send_and_wait(deadletters, encode(mark), key=f"redriven:{i}".encode())
    finally:
        await producer.stop()
