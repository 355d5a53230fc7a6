"""deploy/local/vendors/base.py ``body_length``: which Content-Length the local vendor sinks read, and what they
answer to the others."""

from __future__ import annotations

import pytest

from deploy.local.vendors.base import Answer, body_length


@pytest.mark.parametrize(("value", "length"), [(None, 0), ("", 0), ("0", 0), ("17", 17), ("1024", 1024)])
def test_a_number_of_bytes_is_the_length(value: str | None, length: int) -> None:
    assert body_length(value, limit=1024) == length


@pytest.mark.parametrize("value", ["abc", "-5", "1e3", " 12", "12 ", "０", "²", "0x10"])
def test_anything_else_is_answered_400(value: str) -> None:
    answer = body_length(value, limit=1024)
    assert isinstance(answer, Answer)
    assert answer.status == 400
    assert b"Content-Length" in answer.body


def test_over_the_limit_is_answered_413_and_says_the_limit() -> None:
    answer = body_length("1025", limit=1024)
    assert isinstance(answer, Answer)
    assert (answer.status, answer.body) == (413, b"a body may have at most 1024 bytes")
