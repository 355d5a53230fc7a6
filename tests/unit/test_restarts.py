"""shared/infra/restarts.py: when a process that died starts again, and its exit as a person reads it."""

from __future__ import annotations

from shared.infra.restarts import STAYED_UP_S, deaths_in_a_row, exit_reason, restart_delay_s, restart_due


def test_deaths_in_a_row_count_until_the_process_stays_up() -> None:
    assert deaths_in_a_row(0, 0.5) == 1
    assert deaths_in_a_row(1, 0.5) == 2
    assert deaths_in_a_row(4, 3.0) == 5
    assert deaths_in_a_row(4, STAYED_UP_S) == 1  # it ran long enough: the next restart is at once again
    assert restart_delay_s(deaths_in_a_row(4, STAYED_UP_S)) == 0.0
    assert restart_delay_s(deaths_in_a_row(4, 1.0)) == 2.0


def test_exits_read_as_codes_or_signals() -> None:
    assert exit_reason(1) == "exit code 1"
    assert exit_reason(0) == "exit code 0"
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(-15) == "killed by SIGTERM"
    assert exit_reason(-200) == "killed by signal 200"


def test_a_restart_is_due_at_once_the_first_time_then_after_a_growing_pause() -> None:
    assert restart_due(100.0, 1, 100.0)  # the first death: at once
    assert not restart_due(100.0, 3, 100.4) and restart_due(100.0, 3, 100.5)  # the third in a row: 0.5 s
    assert not restart_due(100.0, 9, 104.9) and restart_due(100.0, 9, 105.0)  # never more than 5 s
