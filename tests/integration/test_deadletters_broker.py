"""``ticketloop deadletters list|redrive`` on the real broker: a dead letter listed without its value, sent back to
its source topic as it was (once, unless asked again), and one that cannot go back refused with the reason."""

from __future__ import annotations

import asyncio
import io
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from services.cli import main
from shared.streaming.codec import encode
from shared.streaming.deadletters import dead_letter, dead_letter_of
from shared.streaming.reader import read_all
from shared.streaming.topics import Topics, ensure_topics

pytestmark = pytest.mark.integration


async def put(bootstrap: str, topics: Topics) -> None:
    await ensure_topics(bootstrap, topics.all())
    poison = dead_letter_of(
        "router", topics.events.name, 1, 41, b"fp-1", b'{"event_id": "e1", "secret": "x-9"}', "malformed JSON: ..."
    )
    given_up = dead_letter(
        service="notifier",
        topic=topics.tickets.name,
        partition=0,
        offset=-1,
        key=b"tl-1",
        value=b"{}",
        reason="gave up",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for d in (poison, given_up):
            await producer.send_and_wait(topics.deadletter.name, encode(d), key=d.topic.encode())
    finally:
        await producer.stop()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["deadletters", *argv], out=out), out.getvalue()


def test_a_dead_letter_is_listed_and_sent_back_to_where_it_came_from(kafka_bootstrap: str) -> None:
    prefix = f"dl{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix, 4)
    asyncio.run(put(kafka_bootstrap, topics))
    where = ["--kafka", kafka_bootstrap, "--topic-prefix", prefix]

    code, listed = run("list", *where)
    assert code == 0
    assert "0:0  " in listed and f"router  {prefix}events[1]@41" in listed and "malformed JSON" in listed
    assert "0:1  " in listed and "(a notification given up)" in listed
    assert "x-9" not in listed, "never the value"
    assert run("list", "--service", "notifier", *where)[1].count("\n") == 2, "one line and the count"

    code, said = run("redrive", "0:0", "0:1", "0:7", *where)
    assert code == 1, "one could not go back"
    assert f"0:0: back on {prefix}events" in said
    assert "0:1: not redriven: a notification given up" in said
    assert "0:7: not redriven: no such dead letter" in said
    back = asyncio.run(read_all(kafka_bootstrap, topics.events.name))
    assert [(r.key, r.value) for r in back] == [(b"fp-1", b'{"event_id": "e1", "secret": "x-9"}')]

    # sent back once: the listing says when, and a second redrive is refused unless asked for again
    code, listed = run("list", *where)
    assert code == 0 and "[redriven " in listed.splitlines()[0] and "2 dead letter(s)" in listed
    code, said = run("redrive", "0:0", *where)
    assert code == 1 and "0:0: not redriven: already redriven at" in said
    assert len(asyncio.run(read_all(kafka_bootstrap, topics.events.name))) == 1, "nothing sent twice by mistake"
    code, said = run("redrive", "0:0", "--again", *where)
    assert code == 0 and f"0:0: back on {prefix}events" in said
    assert len(asyncio.run(read_all(kafka_bootstrap, topics.events.name))) == 2


def test_a_missing_deadletter_topic_is_a_clear_error(kafka_bootstrap: str) -> None:
    code, said = run("list", "--kafka", kafka_bootstrap, "--topic-prefix", f"nope{uuid.uuid4().hex[:8]}.")
    assert code == 1 and "does not exist" in said
