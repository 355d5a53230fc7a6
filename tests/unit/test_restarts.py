"""shared/infra/restarts.py: when a process that died starts again, and its exit as a person reads it."""

from __future__ import annotations

from shared.infra.restarts import STAYED_UP_S, deaths_in_a_row, exit_reason, restart_delay_s


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
