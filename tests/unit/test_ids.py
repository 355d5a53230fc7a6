"""Deterministic ids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from shared.infra.ids import ID_NAMESPACE, stable_id


@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_stable_id_is_exactly_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    assert stable_id(*parts) == uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)).hex
