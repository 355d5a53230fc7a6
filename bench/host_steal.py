"""How much CPU the hypervisor took from this machine while a benchmark measured (``steal`` in /proc/stat).

On a virtual machine the host may run other guests on our cores: the time our vCPUs were ready to run and did
not is counted as steal. While it lasts, every process here runs slower without using more CPU of its own, so a
latency measured then says little about the code. bench/notify_fanout (2026-12-07, this machine: 2 vCPUs): steal
of 0.6-1.2 of the 2 cores for five seconds in a paced stream at 1,500 notifications a second (0.50 of that run's
burst); the notifier's own CPU fell from 0.77 to 0.54-0.68 of a core (it was not given more), its lanes held up to
2,666 notifications, and the median latency of a second rose from 12 ms to 1.8 s. ``StealSampler`` reads the
counter a few times a second beside a run; ``steal_cores`` says how much was taken during a stretch of it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Self

SAMPLE_S = 0.25
"""How often the sampler reads /proc/stat (a read is a few tens of microseconds)."""
PROC_STAT = Path("/proc/stat")

Sample = tuple[float, int]
"""(``time.time()``, the machine's steal so far in clock ticks)."""


def steal_ticks(stat: str) -> int | None:
    """The machine's CPU time stolen so far, in clock ticks: the 8th value of /proc/stat's aggregate ``cpu``
    line (user nice system idle iowait irq softirq steal ...). None: the kernel reports no steal."""
    first = stat.split("\n", 1)[0].split()
    if len(first) < 9 or first[0] != "cpu":
        return None
    try:
        return int(first[8])
    except ValueError:
        return None


def steal_cores(samples: Sequence[Sample], start: float, end: float, hz: float) -> tuple[float, float] | None:
    """The steal between ``start`` and ``end`` in cores (1.0: one whole core taken): over the whole stretch, and
    the most in one interval between samples. Only samples taken within the stretch count; None when fewer than
    two were (too short a stretch, or no sampler)."""
    within = [(t, ticks) for t, ticks in samples if start <= t <= end]
    if len(within) < 2 or within[-1][0] <= within[0][0]:
        return None
    spans = [((b - a) / hz / (u - t)) for (t, a), (u, b) in pairwise(within) if u > t]
    whole = (within[-1][1] - within[0][1]) / hz / (within[-1][0] - within[0][0])
    return whole, max(spans)


def steal_summary(name: str, found: tuple[float, float] | None) -> str:
    """The details line's part: ``<name>=<mean>/<most in one interval>`` in cores, or ``n/a``."""
    return f"{name}=n/a" if found is None else f"{name}={found[0]:.2f}/{found[1]:.2f}"


class StealSampler:
    """A daemon thread that records ``(time, steal ticks)`` every ``every_s`` until stopped (a context manager).
    Records nothing where the kernel reports no steal."""

    def __init__(
        self,
        read: Callable[[], str] = PROC_STAT.read_text,
        every_s: float = SAMPLE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read = read
        self.every_s = every_s
        self.clock = clock
        self.samples: list[Sample] = []
        self.hz = float(os.sysconf("SC_CLK_TCK"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        try:
            ticks = steal_ticks(self.read())
        except OSError:
            return
        if ticks is not None:
            self.samples.append((self.clock(), ticks))

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="steal sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()  # the end of the last stretch is covered

    def cores(self, start: float, end: float) -> tuple[float, float] | None:
        return steal_cores(list(self.samples), start, end, self.hz)
