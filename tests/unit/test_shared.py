from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from prometheus_client import CollectorRegistry

from shared.events import InboundEvent
from shared.infra.logging import (
    RepeatFilter,
    bind_ids,
    configure_logging,
    get_logger,
    ids_from_headers,
    make_headers,
)
from shared.infra.metrics import counter, histogram
from shared.streaming.codec import DecodeError, decode, encode
from shared.streaming.topics import Topics
from tests.unit.factories import event, ticket


def test_codec_round_trip() -> None:
    ev = event()
    assert decode(InboundEvent, encode(ev)) == ev


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{nope", "malformed JSON"),
        (b'{"event_id": 5}', "invalid InboundEvent: event_id"),
        (b'{"schema_version": 2}', "schema_version"),
    ],
)
def test_decode_errors_say_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(InboundEvent, data)


def test_metric_names_follow_the_convention() -> None:
    registry = CollectorRegistry()
    counter(registry, "ticketloop_x_things_total", "d")
    histogram(registry, "ticketloop_x_wait_seconds", "d")
    with pytest.raises(ValueError, match="does not follow"):
        counter(registry, "things_total", "d")
    with pytest.raises(ValueError, match="does not follow"):
        histogram(registry, "ticketloop_x_wait", "d")


def test_headers_round_trip_and_skip_none() -> None:
    headers = make_headers(trace_id="t", event_id=None, ticket_id="tl")
    assert headers == [("trace_id", b"t"), ("ticket_id", b"tl")]
    assert ids_from_headers([*headers, ("other", b"x")]) == {"trace_id": "t", "ticket_id": "tl"}


def test_topic_registry_copartitions_ticket_keyed_topics() -> None:
    topics = Topics("p.", 6)
    keyed = [topics.commands, topics.ticket_inputs, topics.tickets, topics.escalations]
    assert {t.partitions for t in keyed} == {6}
    assert all(t.name.startswith("p.") for t in topics.all())
    assert len({t.name for t in topics.all()}) == len(topics.all())


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    bind_ids()  # the ids live in their own context variable now, which clear_contextvars does not touch


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_are_json_with_the_bound_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO")
    bind_ids(trace_id="tr", ticket_id="tl-1", event_id=None)
    get_logger("x").info("hello", n=1)
    logging.getLogger("faust.something").warning("from a library")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0] | {"timestamp": None} == {
        "event": "hello",
        "n": 1,
        "service": "svc",
        "trace_id": "tr",
        "ticket_id": "tl-1",
        "level": "info",
        "timestamp": None,
    }
    assert lines[1]["event"] == "from a library"
    assert (lines[1]["trace_id"], lines[1]["level"], lines[1]["logger"]) == ("tr", "warning", "faust.something")
    bind_ids(trace_id="t2")  # the next message: its ids only, none of the last one's
    get_logger("x").warning("next")
    get_logger("x").warning("own", trace_id="own")
    nxt, own = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert (nxt["trace_id"], "ticket_id" in nxt, nxt["service"]) == ("t2", False, "svc")
    assert own["trace_id"] == "own", "a line's own field wins"


def test_encoded_values_cost_what_they_weigh() -> None:
    """Values held in tables for every open ticket: orjson's buffer capacity must not come along (it made a
    1 KiB clock cost 16 KiB)."""
    import sys
    import tracemalloc

    model = ticket(summary="x" * 1000)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        kept = [encode(model) for _ in range(100)]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_value = (after - before) / len(kept)
    assert per_value < 2 * sys.getsizeof(kept[0]), f"{per_value:.0f} bytes held per {len(kept[0])}-byte value"


class Writes(io.StringIO):
    """A stream that remembers each write() it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return super().write(s)


@pytest.mark.usefixtures("restore_logging")
def test_each_log_line_is_one_write_with_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake's workers share one log file (O_APPEND): a line written in two parts could run into another's."""
    stream = Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("svc", "INFO")
    get_logger("x").info("hello", n=1)
    logging.getLogger("lib").warning("from a library")
    assert len(stream.calls) == 2 and all(c.endswith("\n") and c.count("\n") == 1 for c in stream.calls), stream.calls


def test_a_librarys_repeated_line_goes_out_once_a_window_and_the_next_says_how_many_were_left_out() -> None:
    """aiokafka logs each failed connect: thousands of lines a service while a broker restarts."""
    now = [0.0]
    kept = RepeatFilter(clock=lambda: now[0])

    def line(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, args, None)

    out = []
    for i in range(500):  # 50 s of one failed connect every 0.1 s
        now[0] = i * 0.1
        record = line("Unable connect to node with id %s: %s", 1, "refused")
        if kept.filter(record):
            out.append((now[0], record.getMessage()))
    assert [round(t) for t, _ in out] == [0, 10, 20, 30, 40]
    assert out[0][1] == "Unable connect to node with id 1: refused"
    assert out[1][1] == "Unable connect to node with id 1: refused (99 more like it left out)"
    assert kept.filter(line("Unable connect to node with id %s: %s", 1, "x", level=logging.WARNING)), "another level"
    assert kept.filter(line("Unable connect to node with id %s: %s", 1, "x", name="uvicorn")), "another logger"
    assert kept.filter(line("Another message")), "another message"


@pytest.mark.usefixtures("restore_logging")
def test_the_services_logging_writes_a_librarys_repeated_line_once(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO")
    for _ in range(3):
        logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s", 1)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["Unable connect to node with id 1"]
