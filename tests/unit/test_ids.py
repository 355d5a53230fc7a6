"""Deterministic ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared.infra.ids import ID_NAMESPACE, derived_id, epoch_ms, ordered_id, stable_id

ids = st.lists(st.text(max_size=40), min_size=1, max_size=5)


@given(ids)
def test_stable_id_is_exactly_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    assert stable_id(*parts) == uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)).hex


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)), ids)
def test_an_ordered_id_is_a_uuid7_of_its_time_and_otherwise_the_stable_id(at: datetime, parts: list[str]) -> None:
    made = ordered_id(at, *parts)
    as_uuid = uuid.UUID(made)
    assert as_uuid.version == 7 and as_uuid.variant == uuid.RFC_4122
    whole_ms = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) // 1000
    assert int(made[:12], 16) == whole_ms, "the first 48 bits: whole milliseconds since the epoch"
    assert made[13:] == stable_id(*parts)[13:], "the rest: the stable id's hash"
    assert ordered_id(at, *parts) == made, "the same time and parts: the same id"
    assert ordered_id(None, *parts) == stable_id(*parts)


@given(st.lists(st.datetimes(timezones=st.just(UTC), min_value=datetime(1971, 1, 1)), min_size=2, max_size=30), ids)
def test_ordered_ids_sort_as_their_times_to_the_millisecond(times: list[datetime], parts: list[str]) -> None:
    made = {at: ordered_id(at, *parts, at.isoformat()) for at in times}
    in_id_order = [at for at, _ in sorted(made.items(), key=lambda kv: kv[1])]
    ms = [int(made[at][:12], 16) for at in in_id_order]
    assert [epoch_ms(at) for at in in_id_order] == ms
    assert ms == sorted(ms)


def test_an_id_derived_from_an_ordered_one_keeps_its_place_in_time() -> None:
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    base = ordered_id(at, "tl-1:1", "slack", "ops")
    part = derived_id(base, "part 2")
    assert part[:12] == base[:12] and uuid.UUID(part).version == 7 and part != base
    assert derived_id(base, "part 2") == part
    plain = stable_id("tl-1:1")
    assert derived_id(plain, "part 2") == stable_id(plain, "part 2"), "from an unordered id: the stable id"


def test_a_time_without_a_zone_is_utc_and_times_out_of_range_are_clamped() -> None:
    """Two workers in different zones make the same id of one ticket; a time before 1970 does not wrap around."""
    aware = datetime(2026, 12, 6, 12, 0, 0, 123_999, tzinfo=UTC)
    assert ordered_id(aware.replace(tzinfo=None), "n") == ordered_id(aware, "n")
    assert ordered_id(aware.astimezone(timezone(timedelta(hours=8))), "n") == ordered_id(aware, "n")
    assert epoch_ms(aware) == 1_796_558_400_123, "whole milliseconds: 123.999 is 123"
    assert epoch_ms(datetime(1969, 12, 31, tzinfo=UTC)) == 0
    assert ordered_id(datetime(1969, 12, 31, tzinfo=UTC), "n")[:12] == "000000000000"
