"""How clocks are stored in the clocks table: compressed, with the due time readable up front (pure)."""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.sla.clocks import Clock, on_ticket_event
from services.sla.policy import SlaConfig
from services.sla.storage import DICTIONARY_V1, due_times, due_ts, pack, unpack
from shared.events import Change, EventKind
from shared.streaming.codec import DecodeError, encode
from tests.unit.factories import T0, ticket_event

CONFIG = SlaConfig.model_validate(
    {
        "policies": {
            "default": {
                "acknowledge": {"P1": "15m"},
                "resolve": {"P1": "4h"},
                "warnings": [0.75],
                "escalation": [{"after": "0s", "team": "owner"}, {"after": "30m", "team": "next", "lead": True}],
                "repeat": {"every": "1h", "limit": 3},
            }
        }
    }
)


def a_clock(**ticket: Any) -> Clock:
    clock = on_ticket_event(None, ticket_event(Change.opened, 1, **ticket), CONFIG)
    assert clock is not None
    return clock


def test_a_stored_clock_reads_back_equal_and_its_due_time_is_in_the_header() -> None:
    clock = a_clock(labels={"service": "db", "instance": "db-7"}, customer="acme", watchers=["operations"])
    raw = pack(clock)
    assert unpack(raw) == clock
    assert clock.next_due is not None and due_ts(raw) == clock.next_due.timestamp()


def test_a_clock_with_nothing_due_says_so_in_its_header() -> None:
    clock = a_clock()
    stopped = on_ticket_event(clock, ticket_event(Change.acknowledged, 2, state="acknowledged"), CONFIG)
    assert stopped is not None
    assert stopped.next_due is not None, "the resolve target runs on"
    paused = stopped.model_copy(update={"paused_at": T0})
    assert paused.next_due is None
    assert due_ts(pack(paused)) is None
    assert unpack(pack(paused)) == paused


def test_a_stored_clock_weighs_a_fraction_of_its_json() -> None:
    """What a worker holding a million clocks keeps in memory: the dictionary takes the field names away."""
    clock = a_clock(summary="Invoice PDF is empty for order 4711", kind=EventKind.feedback, customer="acme")
    assert len(pack(clock)) * 4 < len(encode(clock))


def test_a_clock_stored_as_json_by_an_earlier_version_still_reads() -> None:
    clock = a_clock()
    legacy = encode(clock)
    assert unpack(legacy) == clock
    assert clock.next_due is not None and due_ts(legacy) == clock.next_due.timestamp()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\x07" + bytes(20), "format byte"),
        (b"\x01\x00", "format byte"),
        (b"\x01" + bytes(8) + b"not deflate at all", "does not decompress"),
        (b'{"ticket_id": 1}', "invalid Clock"),
    ],
)
def test_a_value_that_is_not_a_stored_clock_is_a_clear_error(raw: bytes, says: str) -> None:
    with pytest.raises(DecodeError, match=says):
        unpack(raw)


# a_clock() as format 1 stored it when format 1 was made: it must read back forever
STORED_V1 = bytes.fromhex(
    "0141dac1552cc00000dd95e10a403014465fc503907d33c2737801252529f1dbbb9b6896bb649ac4ffbbb3edeeee3b64aae128"
    "1581808b82656b43efc7a1e220cedde4e09138f91a0829d359cbc750a8454c6692309062614d02339232664f8291049ed8a3b8"
    "42599b626f3564b7df54c47697681fc7ebe7971dd8564d0f6804078f945d58f738b1897cb9139f54cdd87ab5dcf29258a08be5"
    "4b4619dc2a85a61571092d2112a1253fb7c70c"
)


def test_format_1_is_fixed_and_what_it_stored_reads_back() -> None:
    """Stored clocks need exactly this dictionary to decompress: changing it is a new format byte."""
    assert hashlib.sha256(DICTIONARY_V1).hexdigest() == (
        "d05f0562ac3abd07eb6e92da1db55a78acd2aa2033b96bfbc16cde628fd92999"
    )
    assert unpack(STORED_V1) == a_clock()


@given(
    st.text(max_size=200),
    st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=8),
    st.integers(0, 10**6),
)
def test_any_clock_survives_storage(summary: str, labels: dict[str, str], minutes: int) -> None:
    clock = a_clock(summary=summary, labels=labels, opened_at=T0 + timedelta(minutes=minutes))
    assert unpack(pack(clock)) == clock


@pytest.mark.parametrize("with_legacy", [False, True], ids=["format 1 only", "with plain JSON"])
def test_due_times_reads_every_header_as_due_ts_does(with_legacy: bool) -> None:
    """The rebuild after a rebalance reads a million headers at once; NaN stands for nothing due."""
    running = a_clock()
    paused = running.model_copy(update={"paused_at": T0})
    raws = [pack(running), pack(paused), pack(a_clock(ticket_id="tl-2"))]
    if with_legacy:
        raws.append(encode(running))
    dues = list(due_times(raws))
    expected = [due_ts(raw) for raw in raws]
    assert [None if math.isnan(d) else d for d in dues] == expected
    assert expected[1] is None
    assert all(d is not None for i, d in enumerate(expected) if i != 1)
