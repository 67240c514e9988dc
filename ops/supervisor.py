"""Keep `make run`'s processes up: restart a child that exits, with backoff, and stop them in order.

Each child runs in a session (and process group) of its own, so a terminal's Ctrl-C reaches only
the launcher, and everything a child started can be killed with its group. A child that exits is
restarted after a delay that doubles with each crash that follows quickly (0.5 s, 1 s, 2 s … up to
10 s) and starts again from 0.5 s once the child has stayed up for 30 s: a child that crashes at
once is retried every 10 s, never in a hot loop, and never given up on, because what makes it crash
(Redis away, a port taken) usually goes away on its own and the launcher's output says what is
happening. Stopping goes by layers, dependants first: each child of a layer gets SIGTERM, then
SIGKILL for its whole group if it has not exited within its grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "Child", "Supervisor", "describe_exit"]

#: The delay before the first restart, and again once a child has proved stable.
FIRST_DELAY = 0.5
#: The longest delay between two restarts of a child that keeps crashing.
MAX_DELAY = 10.0
#: Seconds a child must stay up for its next crash to count as a first one again.
STABLE_AFTER = 30.0
#: How often the supervisor looks at its children while they stop.
_POLL = 0.05


@dataclass
class Backoff:
    """Restart delays: doubling from `first` up to `cap`, reset after `stable_after` seconds up."""

    first: float = FIRST_DELAY
    cap: float = MAX_DELAY
    stable_after: float = STABLE_AFTER
    _next: float | None = None

    def delay(self, uptime: float) -> float:
        """The delay before restarting a child that has just exited after `uptime` seconds."""
        if self._next is None or uptime >= self.stable_after:
            self._next = self.first
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay


def describe_exit(returncode: int) -> str:
    """`code 1` or `signal SIGKILL`, from a `Popen.returncode`."""
    if returncode >= 0:
        return f"code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, without reaping it: until it is reaped, its pid (the id of its
    process group) cannot be taken by another process, so killing the group hits only its own."""
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped elsewhere
        return process.poll() is not None


def _end(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL what is left of an exited (or hopeless) child's group, then reap the child."""
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


@dataclass
class Child:
    """One supervised process. `spawn` must start it in a new session (`start_new_session=True`)."""

    name: str
    spawn: Callable[[], subprocess.Popen[bytes]]
    #: Seconds between SIGTERM and SIGKILL when stopping.
    grace: float
    #: Higher layers depend on lower ones and are stopped first.
    layer: int
    process: subprocess.Popen[bytes] | None = None
    #: When the process started (monotonic); a child handed over already running counts from now.
    started_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=Backoff)

    def start(self) -> None:
        self.process = self.spawn()
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    def __init__(self, children: list[Child], say: Callable[[str], None]) -> None:
        self.children = children
        self.say = say

    def start(self) -> None:
        """Start, lowest layer first, every child not already running (a child may come started)."""
        for child in sorted(self.children, key=lambda child: child.layer):
            if child.process is None:
                child.start()

    def exited(self) -> Child | None:
        """A child that has exited, if any (start-up uses this to fail fast instead of retrying)."""
        return next((child for child in self.children if child.process and _has_exited(child.process)), None)

    def check(self) -> None:
        """Notice children that exited and schedule their restart; restart those whose delay is over."""
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and _has_exited(child.process):
                self._schedule_restart(child, now)
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._restart(child, now)

    def _schedule_restart(self, child: Child, now: float) -> None:
        assert child.process is not None
        # What it started goes too: uvicorn's worker processes, say, would hold the port.
        returncode = _end(child.process)
        uptime = now - child.started_at
        delay = child.backoff.delay(uptime)
        self.say(
            f"{child.name} (pid {child.process.pid}) exited with {describe_exit(returncode)} "
            f"after {uptime:.1f} s; restarting in {delay:g} s"
        )
        child.process = None
        child.restart_at = now + delay

    def _restart(self, child: Child, now: float) -> None:
        try:
            child.start()
        except OSError as exc:
            delay = child.backoff.delay(0.0)
            self.say(f"could not restart {child.name} ({exc}); trying again in {delay:g} s")
            child.restart_at = now + delay
            return
        assert child.process is not None
        self.say(f"{child.name} restarted (pid {child.process.pid})")

    def stop(self, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop every child, highest layer first; `hurry()` turning true skips what is left of the grace."""
        for layer in sorted({child.layer for child in self.children}, reverse=True):
            self._stop_layer([child for child in self.children if child.layer == layer], hurry)

    def _stop_layer(self, children: list[Child], hurry: Callable[[], bool]) -> None:
        stopping: dict[str, tuple[Child, float]] = {}
        for child in children:
            child.restart_at = None
            if child.process is None:
                continue
            if not _has_exited(child.process):
                # os.kill, not Popen.send_signal, which may reap the child first (see _has_exited).
                os.kill(child.process.pid, signal.SIGTERM)
            stopping[child.name] = (child, time.monotonic() + child.grace)
        while stopping:
            for name, (child, deadline) in list(stopping.items()):
                assert child.process is not None
                if _has_exited(child.process):
                    self.say(f"{child.name} stopped ({describe_exit(_end(child.process))})")
                    del stopping[name]
                elif time.monotonic() >= deadline or hurry():
                    why = "asked again" if hurry() else f"still running after {child.grace:g} s"
                    self.say(f"{child.name}: {why}; killing it")
                    _end(child.process)
                    del stopping[name]
            if stopping:
                time.sleep(_POLL)
