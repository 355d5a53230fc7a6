"""When a process that died is started again: intake's supervisor for its workers (services/intake/workers.py)
and the local stack for its services (deploy/local/stack.py ``Stack.revive``)."""

from __future__ import annotations

import signal

STAYED_UP_S = 10.0
"""A process that ran this long before it died starts its count of deaths in a row over (as Docker's restart
policy resets its backoff once a container has run 10 s)."""


def restart_delay_s(recent_deaths: int) -> float:
    """How long before a dead process starts again: at once the first time, then doubling up to 5 s (one that
    cannot start must not spin)."""
    if recent_deaths <= 1:
        return 0.0
    return float(min(5.0, 0.25 * 2 ** (recent_deaths - 2)))


def deaths_in_a_row(before: int, stayed_up_s: float) -> int:
    """A process's deaths in a row, counting the one just seen: 1 again when it had stayed up ``STAYED_UP_S``."""
    return 1 if stayed_up_s >= STAYED_UP_S else before + 1


def restart_due(found_dead_at: float, in_a_row: int, now: float) -> bool:
    """Whether a process found dead at ``found_dead_at``, its ``in_a_row``-th death in a row, starts again now."""
    return now >= found_dead_at + restart_delay_s(in_a_row)


def exit_reason(code: int) -> str:
    """An exit code as a person reads it: "exit code 1", "killed by SIGKILL"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
