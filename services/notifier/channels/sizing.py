"""Fitting a message's text into a vendor's size limit when the limit counts more than the text.

DingTalk and Feishu limit the whole request body, WeCom the content that wraps our text with a title, links and
mentions. ``fit_text`` cuts only the text (with ``cut_utf8`` and its marker) so the whole stays within the limit,
whatever the wrapping adds (JSON escapes of newlines and quotes included).
"""

from __future__ import annotations

from collections.abc import Callable

from services.notifier.channels.base import cut_utf8


def fit_text(text: str, max_bytes: int, size: Callable[[str], int]) -> str:
    """``text``, or its cut, such that ``size(result) <= max_bytes`` (``size``: bytes of the whole it is put in).

    When even the bare marker does not fit, the shortest cut is returned and the caller's whole stays too big.
    """
    if size(text) <= max_bytes:
        return text
    budget = max_bytes - size("")
    fitted = cut_utf8(text, max(budget, 0))
    while size(fitted) > max_bytes and budget > 0:
        budget -= size(fitted) - max_bytes
        fitted = cut_utf8(text, max(budget, 0))
    return fitted
