"""`make run`'s restart policy: delays that double up to a cap and start over once a child is stable."""

from __future__ import annotations

import signal

from ops.supervisor import Backoff, describe_exit


def test_quick_crashes_double_the_delay_up_to_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=10.0, stable_after=30.0)

    delays = [backoff.delay(uptime=0.1) for _ in range(7)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_child_that_stayed_up_long_enough_is_restarted_quickly_again() -> None:
    backoff = Backoff(first=0.5, cap=10.0, stable_after=30.0)
    for _ in range(5):
        backoff.delay(uptime=1.0)

    assert backoff.delay(uptime=29.9) == 10.0
    assert backoff.delay(uptime=30.0) == 0.5
    assert backoff.delay(uptime=2.0) == 1.0


def test_exits_are_described_by_code_or_signal_name() -> None:
    assert describe_exit(0) == "code 0"
    assert describe_exit(3) == "code 3"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "signal SIGTERM"
