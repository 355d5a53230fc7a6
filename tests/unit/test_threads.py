"""Which of a process's threads are its helper threads, read from a /proc-like folder (shared/infra/threads.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from shared.infra.threads import named, never_preempt, thread_names


def test_named_takes_the_threads_whose_name_begins_so() -> None:
    threads = {12: "python", 40: "pyreqwest-worke", 31: "pyreqwest", 7: "asyncio_0", 50: "xpyreqwest"}
    assert named(threads, "pyreqwest") == [31, 40]
    assert named(threads, "nothing") == []


def test_thread_names_reads_each_threads_comm_and_skips_what_it_cannot(tmp_path: Path) -> None:
    for tid, name in ((3, "python\n"), (9, "pyreqwest\n")):
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / "comm").write_text(name)
    (tmp_path / "17").mkdir()  # a thread that ended while it was read: no comm any more
    (tmp_path / "not-a-thread").mkdir()
    (tmp_path / "not-a-thread" / "comm").write_text("x\n")
    assert thread_names(tmp_path) == {3: "python", 9: "pyreqwest"}
    assert thread_names(tmp_path / "missing") == {}


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")
def test_never_preempt_changes_only_the_named_threads() -> None:
    """A real thread of this process, named through /proc, becomes SCHED_BATCH; the calling thread does not."""
    ready, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def helper() -> None:
        tid.append(threading.get_native_id())
        Path(f"/proc/self/task/{tid[0]}/comm").write_text("tl-helper-test")
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=helper)
    thread.start()
    try:
        assert ready.wait(10)
        assert never_preempt("tl-helper-") == tid
        assert os.sched_getscheduler(tid[0]) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        done.set()
        thread.join()
