"""Helper threads that must not take the CPU from the event loop's thread when they wake.

A library that works on a thread of its own (the channels' HTTP client: a Tokio runtime thread, which writes each
request and reads each answer) wakes once or twice per request. Under Linux's scheduler a thread that wakes may
preempt the one running on its CPU; when the other CPU is busy too (a broker, a sink on the same machine), that is
the event loop's thread, which then waits for a CPU while the events it holds wait with it. ``SCHED_BATCH`` is the
ordinary time-sharing policy (same share of the CPU, same nice value) with one difference: a waking thread of it
never preempts the running one, it takes the next free CPU or the next turn. A request handed to the client then
waits at most until the loop's thread gives its CPU up (it does whenever it waits for I/O) or the other CPU frees,
and an answer read is handed to the loop, which takes it only when it has time anyway.

bench/notify_fanout at a fixed 1,400 notifications a second, two runs each, the median half second of the paced
stream (read from ``/proc``): the loop's thread was preempted 222-257 times a second against 1,058-1,444 before,
and waited for a CPU 0.08-0.10 s a second against 0.14-0.16; the client's thread woke 1,147-1,149 times a second
against 1,824-1,916 (more answers taken at each wake) and took 0.11 of a core against 0.14-0.15.

Linux only (elsewhere, or when a thread cannot be found or changed: nothing happens, the threads run as before).
An unprivileged process may set it on its own threads; nothing needs a capability.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from shared.infra.logging import get_logger

log = get_logger(__name__)
TASKS = Path("/proc/self/task")


def named(threads: Mapping[int, str], prefix: str) -> list[int]:
    """The ids of the threads whose name begins with ``prefix``, in id order."""
    return sorted(tid for tid, name in threads.items() if name.startswith(prefix))


def thread_names(tasks: Path = TASKS) -> dict[int, str]:
    """This process's threads: id → name (the kernel's ``comm``, at most 15 characters); empty where there is no
    ``/proc``. A thread that ends while it is read is left out."""
    names: dict[int, str] = {}
    try:
        entries = list(tasks.iterdir())
    except OSError:
        return names
    for entry in entries:
        try:
            names[int(entry.name)] = (entry / "comm").read_text().strip()
        except (OSError, ValueError):
            continue
    return names


def never_preempt(prefix: str) -> list[int]:
    """Make this process's threads named ``prefix…`` run as ``SCHED_BATCH``; returns the ids of those changed."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return []
    changed = []
    for tid in named(thread_names(), prefix):
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(0))
        except OSError as exc:  # gone meanwhile, or a sandbox that refuses: the thread runs as before
            log.warning("thread_policy_unchanged", thread=prefix, error=type(exc).__name__)
            continue
        changed.append(tid)
    return changed
