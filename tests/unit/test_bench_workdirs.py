"""bench/workdirs.py: a --workdir that holds an earlier run's database is refused, an empty or new one taken."""

from __future__ import annotations

from pathlib import Path

from bench.workdirs import reuse_problem


def test_a_workdir_with_an_earlier_runs_database_is_refused_saying_why(tmp_path: Path) -> None:
    assert reuse_problem(None, "bench.db") is None
    assert reuse_problem(tmp_path / "new", "bench.db") is None
    assert reuse_problem(tmp_path, "bench.db") is None, "empty"
    (tmp_path / "sink.log").write_text("")
    assert reuse_problem(tmp_path, "bench.db") is None, "other files are written over"
    (tmp_path / "bench.db").write_bytes(b"")
    problem = reuse_problem(tmp_path, "bench.db")
    assert problem is not None
    assert str(tmp_path) in problem and "bench.db" in problem and "repeats" in problem
