"""Hypothesis strategies shared by the fuzz tests: JSON shaped like the bodies a receiver reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st


def json_objects(fields: Sequence[str], text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """JSON objects keyed mostly by ``fields`` (the names a receiver looks up, any other now and then), any JSON
    value under each, nested up to 20 leaves; ``text``: the strings to put at the leaves besides short ones."""
    keys = st.sampled_from(list(fields)) | st.text(max_size=6)
    leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16)
    values = st.recursive(
        leaf if text is None else leaf | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=20,
    )
    return st.dictionaries(keys, values, min_size=1, max_size=6)


def json_values(fields: Sequence[str]) -> st.SearchStrategy[Any]:
    """Any JSON value at the top, objects among them as ``json_objects`` makes them."""
    return json_objects(fields) | json_objects(fields).flatmap(lambda o: st.sampled_from([o, [o], list(o.values())]))
