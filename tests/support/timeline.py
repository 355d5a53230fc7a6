"""Reading ticket events as the router tells them."""

from __future__ import annotations

import re

_TOLD = re.compile(r"(?:^|; )[^;]*?(?: \((\d+) times\))?(?=;|$)")


def occurrences_told(reason: str) -> int:
    """How many occurrences a ticket event's reason counts: the router tells a ticket's occurrences of one
    transaction as one event, "another alert joined (19 times); fired again" standing for 20."""
    return sum(int(n) if n else 1 for n in _TOLD.findall(reason))
