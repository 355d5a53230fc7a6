"""The driver's decisions: the order a poll's records are handled in, what to commit, and when."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aiokafka import TopicPartition

from shared.streaming.driver import (
    IDLE_FETCH_WAIT_MS,
    BatchDriver,
    DriverConfig,
    Record,
    capped,
    commit_due,
    commit_offsets,
    fetch_wait,
    group_consumer,
    idle_fetch_wait_ms,
    records_of,
    wait_when_dry,
)


@dataclass
class Polled:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = b"v"
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


def test_a_poll_is_handled_partition_by_partition_each_in_offset_order() -> None:
    polled = {
        TopicPartition("t", 1): [Polled("t", 1, 7), Polled("t", 1, 8)],
        TopicPartition("t", 0): [Polled("t", 0, 3)],
    }
    assert [(r.partition, r.offset) for r in records_of(polled)] == [(0, 3), (1, 7), (1, 8)]


def test_the_offset_committed_is_the_next_one_to_read_per_partition() -> None:
    records = [Record("t", p, o, None, b"", (), 0) for p, o in [(0, 3), (1, 7), (1, 8), (0, 4)]]
    assert commit_offsets(records) == {("t", 0): 5, ("t", 1): 9}
    assert commit_offsets([]) == {}


def test_a_commit_stops_at_the_first_offset_still_needed_and_the_rest_stays_pending() -> None:
    pending = {("t", 0): 10, ("t", 1): 7, ("t", 2): 4}
    commit, keep = capped(pending, {("t", 0): 6, ("t", 1): 9, ("u", 0): 1}, {})
    assert commit == {("t", 0): 6, ("t", 1): 7, ("t", 2): 4}, "a cap above the handled offset holds nothing back"
    assert keep == {("t", 0): 10}


def test_no_caps_commit_everything_handled() -> None:
    assert capped({("t", 0): 10}, {}, {}) == ({("t", 0): 10}, {})


def test_an_offset_already_committed_is_not_committed_again_while_a_cap_holds_it() -> None:
    commit, keep = capped({("t", 0): 12, ("t", 1): 3}, {("t", 0): 6}, {("t", 0): 6, ("t", 1): 2})
    assert commit == {("t", 1): 3}
    assert keep == {("t", 0): 12}


def test_commits_wait_for_the_interval_while_busy_and_come_at_once_when_idle() -> None:
    assert not commit_due(True, committed_at=10.0, now=10.2, interval_s=0.5)
    assert commit_due(True, committed_at=10.0, now=10.5, interval_s=0.5)
    assert commit_due(False, committed_at=10.0, now=10.1, interval_s=0.5)


async def test_a_fetch_gathers_only_while_records_come_and_the_first_fetch_waits_for_the_first_record() -> None:
    """``gather_bytes``/``gather_ms`` are the next fetch's fetch.min.bytes and fetch.max.wait.ms after a poll that
    brought records (the notifier's paced stream then comes a few events a batch); after one that brought none,
    and at the start, a fetch is answered by the first record and waits ``poll_ms`` when idle."""
    base = DriverConfig(bootstrap="127.0.0.1:9", group_id="g", topics=("t",), poll_ms=100)
    gathering = replace(base, gather_bytes=65_536, gather_ms=5)
    consumer = BatchDriver(gathering, _ignore)._consumer()
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 100)
    assert fetch_wait(True, gathering) == (65_536, 5)
    assert fetch_wait(False, gathering) == (1, 100)
    assert fetch_wait(True, replace(gathering, gather_ms=None)) == (65_536, 100), "None: the idle poll's wait"
    assert fetch_wait(True, base) == fetch_wait(False, base) == (1, 100), "by default a fetch never gathers"


async def test_a_fetch_that_finds_nothing_is_held_at_least_the_idle_wait_however_short_the_poll() -> None:
    """A loop that wakes often (the sla's 20 ms timer) does not make its empty fetches as short: the broker holds
    them ``IDLE_FETCH_WAIT_MS`` (a record answers one at once); a longer poll holds them as long as it waits."""
    timer = DriverConfig(bootstrap="127.0.0.1:9", group_id="g", topics=("t",), poll_ms=20)
    consumer = BatchDriver(timer, _ignore)._consumer()
    assert consumer._fetch_max_wait_ms == IDLE_FETCH_WAIT_MS == idle_fetch_wait_ms(20) > 20
    assert fetch_wait(False, timer) == (1, IDLE_FETCH_WAIT_MS)
    assert fetch_wait(True, timer) == (1, IDLE_FETCH_WAIT_MS), "a driver that never gathers: the same either way"
    assert fetch_wait(True, replace(timer, gather_bytes=65_536, gather_ms=5)) == (65_536, 5), "gathering as set"
    assert idle_fetch_wait_ms(500) == 500
    tx = group_consumer("127.0.0.1:9", "g", None, 10.0, 1.0, poll_ms=20, max_records=10)
    assert tx._fetch_max_wait_ms == IDLE_FETCH_WAIT_MS, "the transactional driver's consumer too"


class _Fetcher:
    """aiokafka's fetcher as ``wait_when_dry`` sees it: the next request's two attributes and its fetch call."""

    def __init__(self, answers: list[bool]) -> None:
        self._fetch_min_bytes, self._fetch_max_wait_ms = 65_536, 5
        self.answers = answers

    async def _proc_fetch_request(self, _assignment: object, _node_id: int, _request: object) -> bool:
        return self.answers.pop(0)


class _Consumer:
    def __init__(self, fetcher: _Fetcher | None) -> None:
        self._fetcher = fetcher


async def test_a_gathering_fetch_that_brings_nothing_makes_the_next_fetches_wait_for_the_first_record() -> None:
    """A fetch that brought records leaves the gathering as it is; one that came back dry (the stream paused)
    switches the next requests to the wait after a poll with none, at once, not at the driver's next poll."""
    gathering = DriverConfig(
        bootstrap="127.0.0.1:9", group_id="g", topics=("t",), poll_ms=100, gather_bytes=65_536, gather_ms=5
    )
    fetcher = _Fetcher([True, False])
    wait_when_dry(_Consumer(fetcher), gathering)
    assert await fetcher._proc_fetch_request(None, 0, None) is True
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (65_536, 5)
    assert await fetcher._proc_fetch_request(None, 0, None) is False
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == fetch_wait(False, gathering) == (1, 100)
    wait_when_dry(_Consumer(None), gathering)  # a consumer not started has no fetcher: nothing to do
    plain = _Fetcher([])
    fetch = plain._proc_fetch_request
    wait_when_dry(_Consumer(plain), replace(gathering, gather_bytes=1, gather_ms=None))  # the same wait either way
    assert plain._proc_fetch_request == fetch


async def _ignore(_records: list[Record]) -> None:
    return None
