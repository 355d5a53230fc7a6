"""``ticketloop deadletters``: what a dead letter says to people (never its value) and which may go back."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from services.cli import main
from services.cli_deadletters import Found, listing_line, redrives, selected, why_not_redriven
from shared.events import DeadLetter, Redriven
from shared.streaming.topics import Topics

TOPICS = Topics("tl.", 4)
AT = datetime(2026, 12, 4, 5, 0, tzinfo=UTC)


def letter(
    topic: str = "tl.events", offset: int = 17, reason: str = "malformed JSON: x", service: str = "router"
) -> Found:
    return Found(
        "0:3",
        DeadLetter(
            service=service,
            topic=topic,
            partition=2,
            offset=offset,
            key="k1",
            value='{"token": "a-customer-secret"}',
            reason=reason,
            at=AT,
        ),
    )


def test_a_listing_line_says_where_from_and_why_but_not_what_was_sent() -> None:
    line = listing_line(letter())
    assert line == "0:3  2026-12-04T05:00:00+00:00  router  tl.events[2]@17  30 bytes  malformed JSON: x"
    assert "a-customer-secret" not in line
    long = listing_line(letter(reason="invalid TicketInput: " + "x" * 400))
    assert len(long) < 300 and long.endswith("…")
    assert "(a notification given up)" in listing_line(letter(topic="tl.tickets", offset=-1, service="notifier"))
    assert listing_line(Found("0:9", None)) == "0:9  (not a dead-letter record)"


def test_only_a_record_from_an_input_topic_of_this_deployment_goes_back() -> None:
    assert why_not_redriven(letter(), TOPICS) is None
    assert why_not_redriven(letter(topic="tl.router-grouped"), TOPICS) is None
    given_up = why_not_redriven(letter(topic="tl.tickets", offset=-1), TOPICS)
    assert given_up is not None and "ticketloop deliveries redrive" in given_up
    foreign = why_not_redriven(letter(topic="other.events"), TOPICS)
    assert foreign is not None and "not an input topic" in foreign
    assert why_not_redriven(letter(topic="tl.deadletter"), TOPICS) is not None, "never back onto the dead letters"
    assert why_not_redriven(None, TOPICS) == "no such dead letter"
    assert why_not_redriven(Found("0:1", None), TOPICS) == "not a dead-letter record"
    found = letter()
    assert found.letter is not None
    cut = Found(found.id, found.letter.model_copy(update={"cut_from": 3_000_000}))
    assert why_not_redriven(cut, TOPICS) == (
        "it keeps only the first part of a record of 3,000,000 bytes, too large to be handled"
    )


def test_a_listing_can_be_of_one_service() -> None:
    both = [letter(), letter(service="sla"), Found("0:9", None)]
    assert selected(both, "sla") == [both[1]]
    assert selected(both, None) == both


def test_a_dead_letter_sent_back_says_so_and_goes_again_only_when_asked() -> None:
    back = Redriven(redriven="0:3", topic="tl.events", at=AT)
    stored = [letter(), Found("0:4", None, back)]
    said = redrives(stored)
    assert said == {"0:3": back}
    assert selected(stored, None) == [stored[0]], "the redrive shows on its dead letter's line, not as one"
    assert listing_line(letter(), said["0:3"]).endswith("malformed JSON: x  [redriven 2026-12-04T05:00:00+00:00]")
    refused = why_not_redriven(letter(), TOPICS, said["0:3"])
    assert refused is not None and "already redriven at 2026-12-04T05:00:00+00:00" in refused and "--again" in refused
    assert why_not_redriven(letter(), TOPICS, said["0:3"], again=True) is None


@pytest.mark.parametrize(
    ("bootstrap", "why"),
    [
        ("127.0.0.1:1", "Kafka at 127.0.0.1:1 cannot be reached (KafkaConnectionError)"),
        ("host:port", "Kafka at host:port is not a bootstrap address (host:port[,host:port])"),
        ("[::1", "Kafka at [::1 is not a bootstrap address (host:port[,host:port])"),
    ],
)
def test_a_broker_that_cannot_be_reached_is_a_clear_error(bootstrap: str, why: str) -> None:
    for action in (["list"], ["redrive", "0:1"]):
        out = io.StringIO()
        assert main(["deadletters", *action, "--kafka", bootstrap], out) == 1
        assert out.getvalue() == f"error: cannot read 'ticketloop.deadletter': {why}\n"
