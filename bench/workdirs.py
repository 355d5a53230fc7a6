"""What a benchmark that keeps its files in ``--workdir`` checks of it first (bench/notify_fanout)."""

from __future__ import annotations

from pathlib import Path


def reuse_problem(workdir: Path | None, database: str) -> str | None:
    """Why ``workdir`` cannot take this run (None: it can): it holds an earlier run's database. bench/notify_fanout
    produces the same ticket ids every run, so the notifier finds their notifications already in that database's
    delivery log and drops them as repeats (as it must: the log is how a notifier read again sends nothing twice),
    and the run reports every one lost."""
    if workdir is None or not (workdir / database).exists():
        return None
    return (
        f"--workdir {workdir} holds an earlier run's database ({database}): the same ids would be dropped as "
        "repeats; give an empty or new directory"
    )
