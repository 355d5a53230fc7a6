"""The sla worker's timer index: clocks by due time, earliest first. Pure (no I/O, no clock of its own).

One heap per worker, driven by the one loop timer: a tick pops what is due instead of walking every clock, so
the cost of a tick follows what fires, not how many tickets are open. Entries are replaced lazily: setting a
key's due time again leaves the old heap entry behind, skipped when it surfaces (and compacted away when stale
entries outnumber live ones). The index is rebuilt from the clocks table after every rebalance.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime


class TimerIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: str, due: datetime | None) -> None:
        """When ``key`` is next due (None: never)."""
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()

    def pop_due(self, now: datetime) -> list[str]:
        """The keys due at ``now``, earliest first; they leave the index (set them again to re-arm)."""
        out: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def next_due(self) -> datetime | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def rebuild(self, items: Iterable[tuple[str, datetime | None]]) -> None:
        self._due = {key: due for key, due in items if due is not None}
        self._compact()

    def _compact(self) -> None:
        self._heap = [(due, key) for key, due in self._due.items()]
        heapq.heapify(self._heap)
