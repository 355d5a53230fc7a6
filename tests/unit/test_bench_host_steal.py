"""bench/host_steal.py: the hypervisor's steal read from /proc/stat and summed over a stretch of a run."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path

import pytest

from bench.host_steal import StealSampler, steal_cores, steal_summary, steal_ticks

STAT = """cpu  802511 610 96456 1573187 5509 0 27690 41000 0 0
cpu0 401000 300 48000 786000 2700 0 13800 20500 0 0
cpu1 401511 310 48456 787187 2809 0 13890 20500 0 0
intr 123456 0 0
"""


def test_steal_is_the_eighth_value_of_the_aggregate_cpu_line() -> None:
    assert steal_ticks(STAT) == 41000


@pytest.mark.parametrize(
    "stat",
    [
        "cpu  802511 610 96456 1573187 5509 0 27690\n",  # an old kernel: no steal column
        "cpu0 1 2 3 4 5 6 7 8 9 10\n",  # not the aggregate line first
        "cpu  1 2 3 4 5 6 7 x 9 10\n",
        "",
    ],
)
def test_no_steal_where_the_kernel_reports_none(stat: str) -> None:
    assert steal_ticks(stat) is None


def test_steal_over_a_stretch_in_cores_mean_and_most_in_one_interval() -> None:
    hz = 100.0
    # a quarter second apart: no steal, then 25 ticks twice (a quarter second of CPU each: one whole core), none
    samples = [(10.0, 1000), (10.25, 1000), (10.5, 1025), (10.75, 1050), (11.0, 1050)]
    found = steal_cores(samples, 10.0, 11.0, hz)
    assert found is not None
    whole, most = found
    assert whole == pytest.approx(0.5)  # 50 ticks = 0.5 s of CPU taken over 1 s
    assert most == pytest.approx(1.0)  # 25 ticks in a quarter second


def test_only_samples_within_the_stretch_count() -> None:
    hz = 100.0
    samples = [(9.0, 0), (10.0, 100), (10.5, 100), (11.0, 100), (12.0, 400)]
    found = steal_cores(samples, 10.0, 11.0, hz)
    assert found == (0.0, 0.0)  # the steal before and after the stretch is not in it


def test_too_few_samples_or_no_stretch_say_nothing() -> None:
    assert steal_cores([(10.0, 5)], 9.0, 11.0, 100.0) is None
    assert steal_cores([(10.0, 5), (10.0, 9)], 9.0, 11.0, 100.0) is None
    assert steal_cores([(10.0, 5), (10.5, 9)], math.nan, math.nan, 100.0) is None  # a phase with no receives
    assert steal_summary("host_steal_paced_cores", None) == "host_steal_paced_cores=n/a"
    assert steal_summary("host_steal_paced_cores", (0.046, 1.234)) == "host_steal_paced_cores=0.05/1.23"


def test_the_sampler_records_until_stopped_and_once_more_at_the_end() -> None:
    ticks = itertools.count(100, 7)
    clock = itertools.count(1000)
    read_twice = threading.Event()
    reads = 0

    def read() -> str:
        nonlocal reads
        reads += 1
        if reads >= 2:
            read_twice.set()
        return f"cpu  1 2 3 4 5 6 7 {next(ticks)} 0 0\n"

    with StealSampler(read, every_s=0.001, clock=lambda: float(next(clock))) as sampler:
        assert read_twice.wait(10.0)
    taken = len(sampler.samples)
    assert taken >= 3  # two from the thread at least, one at the stop
    assert [t for _, t in sampler.samples] == list(range(100, 100 + 7 * taken, 7))
    found = sampler.cores(1000.0, 1000.0 + taken)
    assert found is not None and found[0] > 0


def test_the_sampler_on_this_machine_reads_the_real_counter_or_nothing() -> None:
    with StealSampler(every_s=0.001) as sampler:
        pass
    stat = Path("/proc/stat")
    if stat.exists() and steal_ticks(stat.read_text()) is not None:
        assert sampler.samples and all(b[1] >= a[1] for a, b in itertools.pairwise(sampler.samples))
    else:
        assert sampler.samples == []


def test_a_read_that_fails_records_nothing() -> None:
    def gone() -> str:
        raise FileNotFoundError("/proc/stat")

    with StealSampler(gone, every_s=0.001) as sampler:
        pass
    assert sampler.samples == []
