"""Intake's workers (services/intake/workers.py): how many, who takes a connection, how a dead one comes back, what
the environment tells a worker; and the rate limits they share (services/intake/limits.py)."""

from __future__ import annotations

import multiprocessing
import os
from datetime import timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from services.intake.limits import Limiter, RateLimitConfig, SharedArrivals, shared_keys
from services.intake.workers import (
    GIVE_UP_DEATHS,
    GONE,
    MAX_AUTO,
    STATE_PREFIX,
    ConnectionCounts,
    WorkerRole,
    accept_now,
    available_cpus,
    cpu_quota,
    gives_up,
    stale_states,
    sweep_stale_states,
    worker_count,
    worker_role,
)
from shared.infra.restarts import restart_delay_s

LIMIT = RateLimitConfig(requests=3, per=timedelta(minutes=1))


def test_worker_count_is_the_setting_or_one_a_cpu_within_bounds() -> None:
    assert worker_count(3, 16) == 3
    assert worker_count(0, 2) == 2
    assert worker_count(0, 64) == MAX_AUTO
    assert worker_count(0, None) == 1
    assert worker_count(0, 1) == 1


def test_a_connection_goes_to_the_least_busy_worker_unless_it_waited_too_long() -> None:
    assert accept_now(0, [0], 0.0, 0.02)
    assert accept_now(3, [3, 4], 0.0, 0.02)
    assert not accept_now(4, [3], 0.0, 0.02)
    assert accept_now(4, [3], 0.02, 0.02)  # the others did not take it: no connection waits on a busy worker
    assert accept_now(9, [GONE], 0.0, 0.02)  # a dead worker takes nothing
    assert accept_now(5, [], 0.0, 0.02)


def test_a_worker_that_keeps_dying_is_started_later_and_later_then_given_up() -> None:
    delays = [restart_delay_s(n) for n in range(1, 9)]
    assert delays[0] == 0.0
    assert delays == sorted(delays)
    assert delays[-1] == 5.0
    assert not gives_up(GIVE_UP_DEATHS - 1)
    assert gives_up(GIVE_UP_DEATHS)


def test_a_workers_environment_gives_back_its_role(tmp_path: Path) -> None:
    role = WorkerRole(index=1, count=2, fd=7, parent=42, shared=tmp_path)
    env = role.env({"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")
    assert worker_role(env) == role
    assert worker_role({"PATH": "/bin"}) is None
    assert role.runs_smtp is False
    assert WorkerRole(0, 2, 7, 42, tmp_path).runs_smtp


def test_connection_counts_are_seen_by_every_worker(tmp_path: Path) -> None:
    one, two = ConnectionCounts(tmp_path / "c", 3), ConnectionCounts(tmp_path / "c", 3)
    one.set(0, 4)
    two.set(2, GONE)
    assert two.others(1) == [4, GONE]
    assert one.others(0) == [0, GONE]
    one.close()
    two.close()


def test_the_shared_keys_are_integrations_and_forms_in_one_order() -> None:
    assert shared_keys(["b", "a"], ["shop"]) == ["a", "b", "form/shop"]


def test_two_workers_share_an_integrations_limit(tmp_path: Path) -> None:
    keys = shared_keys(["am"], ["shop"])
    one, two = SharedArrivals(tmp_path, keys), SharedArrivals(tmp_path, keys)
    first, second = Limiter(shared=one), Limiter(shared=two)
    waits = [limiter.wait("am", LIMIT, 100.0) for limiter in (first, second, first, second)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] > 0  # the fourth request of three a minute, whichever worker it reached
    assert first.wait("form/shop", LIMIT, 100.0) == 0.0  # another key, its own limit
    one.close()
    two.close()


def test_a_key_without_a_shared_place_is_limited_per_process(tmp_path: Path) -> None:
    shared = SharedArrivals(tmp_path, ["am"])
    limiter = Limiter(shared=shared)
    assert [limiter.wait("survey/t1", LIMIT, 5.0) for _ in range(4)][-1] > 0
    assert "survey/t1" in limiter.arrivals
    shared.close()


def test_a_worker_with_another_config_keeps_limits_of_its_own(tmp_path: Path) -> None:
    """A worker restarted after intake.yaml changed must not read another key's slot, nor reset the others'."""
    old = SharedArrivals(tmp_path, ["beta", "gamma"])
    for _ in range(3):
        Limiter(shared=old).wait("beta", LIMIT, 1.0)
    new = SharedArrivals(tmp_path, ["alpha", "beta", "gamma"])
    assert Limiter(shared=new).wait("alpha", LIMIT, 1.0) == 0.0
    assert Limiter(shared=old).wait("beta", LIMIT, 1.0) > 0  # still spent: the new file did not reset the old
    assert Limiter(shared=old).wait("gamma", LIMIT, 1.0) == 0.0  # and alpha's request was not charged to gamma
    old.close()
    new.close()


def test_a_containers_cpu_limit_bounds_the_workers() -> None:
    assert cpu_quota("max 100000\n") is None
    assert cpu_quota("150000 100000") == 1.5
    assert cpu_quota("50000 100000") == 0.5
    assert cpu_quota("garbage") is None
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


ADMITTED = 20_000


def _admit_many(path: str, n: int, start: Barrier, out: multiprocessing.Queue[int]) -> None:
    shared = SharedArrivals(Path(path), ["am"])
    limiter = Limiter(shared=shared)
    limit = RateLimitConfig(requests=ADMITTED, per=timedelta(hours=1))
    start.wait(30)
    out.put(sum(limiter.wait("am", limit, 1.0) == 0.0 for _ in range(n)))
    shared.close()


@pytest.mark.timeout(120)
def test_processes_admitting_at_once_admit_no_more_than_the_limit(tmp_path: Path) -> None:
    """Four processes, started together, 10,000 requests each against 20,000 an hour: exactly 20,000 admitted
    (without the lock nearly all 40,000 were, tried: each read an arrival time another was about to move)."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = ctx.Queue()
    start = ctx.Barrier(4)
    path = str(tmp_path)
    procs = [ctx.Process(target=_admit_many, args=(path, ADMITTED // 2, start, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    admitted = sum(out.get(timeout=100) for _ in procs)
    for proc in procs:
        proc.join(10)
    assert admitted == ADMITTED


def test_the_state_a_killed_supervisor_left_is_stale_and_a_live_ones_is_not() -> None:
    alive = {100}.__contains__
    names = [f"{STATE_PREFIX}100-abc", f"{STATE_PREFIX}200-abc", f"{STATE_PREFIX}k3j_x9", "ticketloop-kafka-x", "tmp1"]
    assert stale_states(names, alive) == [f"{STATE_PREFIX}200-abc", f"{STATE_PREFIX}k3j_x9"]


def test_a_starting_supervisor_sweeps_what_killed_ones_left_and_nothing_else(tmp_path: Path) -> None:
    child = multiprocessing.get_context("spawn").Process(target=int)
    child.start()
    child.join()
    dead = child.pid
    assert dead is not None
    for name in (f"{STATE_PREFIX}{dead}-abc", f"{STATE_PREFIX}{os.getpid()}-abc", "something-else"):
        (tmp_path / name / "metrics").mkdir(parents=True)
    sweep_stale_states(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{STATE_PREFIX}{os.getpid()}-abc", "something-else"])
