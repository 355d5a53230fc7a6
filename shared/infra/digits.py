"""Whole numbers that arrive as text (headers, query strings, signed timestamps)."""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits 0-9: what ``int`` takes as a whole number, nothing else.
    ``str.isdigit`` alone also takes digits such as "²", which ``int`` and ``float`` refuse with a ValueError."""
    return text.isascii() and text.isdigit()
