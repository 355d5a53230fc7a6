"""The sla worker's timer index: clocks by due time, earliest first. Pure (no I/O, no clock of its own).

One index per worker, driven by the one loop timer: a tick pops what is due instead of walking every clock, so
the cost of a tick follows what fires, not how many tickets are open. It is a two-level timing wheel, because a
worker holds a million clocks and most of them are due hours or days away:

- what is due within the next ``slot_s`` (a minute) sits in a heap of ``(due, key)``, popped in order;
- everything later sits in one plain list of keys per ``slot_s``-wide slot (8 bytes a clock), and a slot's
  clocks move into the heap when the slot comes within ``slot_s`` of now.

The index keeps no due times of its own: ``due_of(key)`` reads a clock's current due time from where the clock
is stored (the clocks table keeps it in each value's header, services.sla.storage), and an entry whose clock has
moved on since is stale, skipped when it surfaces and compacted away when stale entries outnumber live ones.
Keys are the table's own key objects, so the index adds no copy of them either. It is rebuilt from the clocks
table after every rebalance.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

SLOT_S = 60.0


def to_ts(due: datetime | None) -> float | None:
    return None if due is None else due.timestamp()


class TimerIndex(Generic[K]):
    def __init__(self, due_of: Callable[[K], float | None], slot_s: float = SLOT_S) -> None:
        self._due_of = due_of
        self._slot_s = slot_s
        self._near: list[tuple[float, K]] = []
        self._slots: dict[int, list[K]] = {}
        self._slot_heap: list[int] = []
        self._near_until = -math.inf  # every due time before this goes to the heap, later ones to slots
        self._entries = 0  # heap entries plus slot entries
        self._stale = 0  # of which stale: their key was set again since
        self._taken: set[K] = set()  # popped and not set again yet: no entry of theirs is left

    def set(self, key: K, due: datetime | None, *, was: datetime | None = None) -> None:
        """``key`` was stored with this due time (None: nothing due), after ``was`` (the due time it was set
        with before, None: none); it pops once that time has come."""
        self.set_ts(key, to_ts(due), was=to_ts(was))

    def set_ts(self, key: K, due: float | None, *, was: float | None = None) -> None:
        if due == was and key not in self._taken:
            return  # armed for this time already
        if key in self._taken:
            self._taken.discard(key)
        elif was is not None:
            self._stale += 1  # its entry for ``was`` is stale now
        if due is not None:
            self._place(key, due)
        if self._stale > self._entries // 2 + 1024:
            self._compact()

    def pop_due(self, now: datetime) -> list[K]:
        """The keys whose stored due time has come at ``now``, earliest first, each once: they leave the index
        (set them again for their next due time)."""
        at = now.timestamp()
        self._promote(at)
        out: list[K] = []
        while self._near and self._near[0][0] <= at:
            due, key = heapq.heappop(self._near)
            self._entries -= 1
            if self._live(due, key):
                self._taken.add(key)
                out.append(key)
            else:
                self._stale = max(self._stale - 1, 0)
        return out

    def next_due(self) -> datetime | None:
        """The earliest due time; a later slot's start when nothing is near (a lower bound: waking then finds
        the real one)."""
        ts = self.next_due_ts()
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    def next_due_ts(self) -> float | None:
        while self._near and not self._live(*self._near[0]):
            heapq.heappop(self._near)
            self._entries -= 1
            self._stale = max(self._stale - 1, 0)
        if self._near:
            return self._near[0][0]
        while self._slot_heap:  # the first slot still holding a live key: its start
            slot = self._slot_heap[0]
            if any(self._live_in(key, slot) for key in self._slots[slot]):
                return slot * self._slot_s
            heapq.heappop(self._slot_heap)
            dropped = len(self._slots.pop(slot))
            self._entries -= dropped
            self._stale = max(self._stale - dropped, 0)
        return None

    def rebuild(self, items: Iterable[tuple[K, float | None]]) -> None:
        """Index exactly these keys at these due times (``due_of(key)``, read by the caller), dropping the rest."""
        pairs = [(key, due) for key, due in items if due is not None]
        self.rebuild_columns([key for key, _ in pairs], [due for _, due in pairs])

    def rebuild_columns(self, keys: Iterable[K], dues: Iterable[float]) -> int:
        """``rebuild`` from a column of keys and one of their due times (NaN: nothing due), as a worker holding a
        million clocks has them after a rebalance: one pass, no tuple per clock. How many were indexed."""
        near: list[tuple[float, K]] = []
        slots: dict[int, list[K]] = {}
        near_until, slot_s, floor = self._near_until, self._slot_s, math.floor
        indexed = 0
        for key, due in zip(keys, dues, strict=True):
            if due != due:  # noqa: PLR0124 - NaN: nothing due
                continue
            indexed += 1
            if due < near_until:
                near.append((due, key))
                continue
            slot = floor(due / slot_s)
            keys_in = slots.get(slot)
            if keys_in is None:
                slots[slot] = [key]
            else:
                keys_in.append(key)
        heapq.heapify(near)
        self._near, self._slots, self._slot_heap = near, slots, list(slots)
        heapq.heapify(self._slot_heap)
        self._entries, self._stale, self._taken = indexed, 0, set()
        return indexed

    def _slot(self, due: float) -> int:
        return math.floor(due / self._slot_s)

    def _live(self, due: float, key: K) -> bool:
        return key not in self._taken and self._due_of(key) == due

    def _live_in(self, key: K, slot: int) -> bool:
        due = self._due_of(key)
        return due is not None and key not in self._taken and self._slot(due) == slot

    def _place(self, key: K, due: float, *, push: bool = True) -> None:
        self._entries += 1
        if due < self._near_until:
            if push:
                heapq.heappush(self._near, (due, key))
            else:
                self._near.append((due, key))
            return
        slot = self._slot(due)
        keys = self._slots.get(slot)
        if keys is None:
            keys = self._slots[slot] = []
            heapq.heappush(self._slot_heap, slot)
        keys.append(key)

    def _promote(self, at: float) -> None:
        """Move every slot that starts within one slot's width of ``at`` into the heap."""
        horizon = at + self._slot_s
        while self._slot_heap and self._slot_heap[0] * self._slot_s <= horizon:
            slot = heapq.heappop(self._slot_heap)
            for key in self._slots.pop(slot):
                due = self._due_of(key)
                if due is not None and key not in self._taken and self._slot(due) == slot:
                    heapq.heappush(self._near, (due, key))
                else:
                    self._entries -= 1
                    self._stale = max(self._stale - 1, 0)
        # every slot up to the horizon's is in the heap now: so is what is set due before that slot's end
        self._near_until = max(self._near_until, (self._slot(horizon) + 1) * self._slot_s)

    def _compact(self) -> None:
        """Drop the stale entries (in place: no copy of a million keys is made to find them)."""
        self._near = [(due, key) for due, key in self._near if self._live(due, key)]
        heapq.heapify(self._near)
        for slot in list(self._slots):
            keys = [key for key in self._slots[slot] if self._live_in(key, slot)]
            if keys:
                self._slots[slot] = keys
            else:
                del self._slots[slot]
        self._slot_heap = list(self._slots)
        heapq.heapify(self._slot_heap)
        self._entries = len(self._near) + sum(len(keys) for keys in self._slots.values())
        self._stale = 0
