"""Whole numbers as text (shared/infra/digits.py)."""

from __future__ import annotations

import pytest

from shared.infra.digits import is_digits


@pytest.mark.parametrize("text", ["0", "42", "1700000000"])
def test_ascii_digits_are_a_whole_number(text: str) -> None:
    assert is_digits(text) and int(text) >= 0


@pytest.mark.parametrize("text", ["", "\u00b2", "1\u0662", "-1", "+1", " 1", "1.0", "0x10", "1_000"])
def test_anything_else_is_not(text: str) -> None:
    assert not is_digits(text)
