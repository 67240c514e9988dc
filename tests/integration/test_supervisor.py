"""The supervisor behind `make run`, with small real processes: restarts with backoff, kills what an
exited child left in its process group, stops by layers with a grace period, and hurries on request."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from ops.supervisor import Backoff, Child, Supervisor

#: Ignores SIGTERM, as a worker finishing a long job would.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def spawn(*command: str, stdout: Path | None = None) -> Callable[[], subprocess.Popen[bytes]]:
    def start() -> subprocess.Popen[bytes]:
        if stdout is None:
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        with stdout.open("ab") as out:
            return subprocess.Popen(command, stdout=out, start_new_session=True)

    return start


def until(condition: Callable[[], bool], supervisor: Supervisor | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        if supervisor is not None:
            supervisor.check()
        time.sleep(0.02)


def test_an_exited_child_is_restarted_with_growing_delays_and_its_leftovers_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # Leaves a grandchild in its process group, then crashes.
    crashing = spawn("sh", "-c", f"sleep 60 & echo $! >> {pids}; exit 3")
    said: list[str] = []
    child = Child("crasher", crashing, grace=1.0, layer=0, backoff=Backoff(first=0.1, cap=0.2))
    supervisor = Supervisor([child], said.append)
    supervisor.start()
    try:
        until(lambda: sum("restarted" in line for line in said) >= 2, supervisor)
    finally:
        supervisor.stop()

    exits = [line for line in said if "exited" in line]
    assert "exited with code 3" in exits[0]
    assert exits[0].endswith("restarting in 0.1 s")
    assert exits[1].endswith("restarting in 0.2 s")
    grandchildren = [int(pid) for pid in pids.read_text().split()]
    assert len(grandchildren) >= 2
    assert psutil.wait_procs(_still_there(grandchildren), timeout=5)[1] == []


def _still_there(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def test_stop_goes_down_the_layers_and_kills_a_child_still_running_after_its_grace(tmp_path: Path) -> None:
    said: list[str] = []
    up = tmp_path / "up"
    stubborn = Child("stubborn", spawn(sys.executable, "-c", STUBBORN, stdout=up), grace=0.5, layer=1)
    base = Child("base", spawn("sleep", "60"), grace=5.0, layer=0)
    supervisor = Supervisor([base, stubborn], said.append)
    supervisor.start()
    until(lambda: up.exists() and up.read_text() == "up\n")  # its SIGTERM handler is in place
    processes = [psutil.Process(child.process.pid) for child in (base, stubborn) if child.process]

    supervisor.stop()

    assert said == [
        "stubborn: still running after 0.5 s; killing it",
        "base stopped (signal SIGTERM)",
    ]
    assert not any(process.is_running() for process in processes)


def test_a_second_request_kills_at_once_what_is_still_stopping(tmp_path: Path) -> None:
    said: list[str] = []
    up = tmp_path / "up"
    stubborn = Child("stubborn", spawn(sys.executable, "-c", STUBBORN, stdout=up), grace=60.0, layer=0)
    supervisor = Supervisor([stubborn], said.append)
    supervisor.start()
    until(lambda: up.exists() and up.read_text() == "up\n")

    supervisor.stop(hurry=lambda: True)

    assert said == ["stubborn: asked again; killing it"]
    assert stubborn.process is not None
    assert stubborn.process.returncode is not None


def test_a_child_that_cannot_be_started_again_is_retried(tmp_path: Path) -> None:
    said: list[str] = []
    attempts: list[int] = []

    def flaky() -> subprocess.Popen[bytes]:
        attempts.append(1)
        if len(attempts) == 2:
            raise FileNotFoundError("no such binary")
        return spawn("sh", "-c", "exit 1")()

    child = Child("flaky", flaky, grace=1.0, layer=0, backoff=Backoff(first=0.05, cap=0.05))
    supervisor = Supervisor([child], said.append)
    supervisor.start()
    try:
        until(lambda: len(attempts) >= 3, supervisor)
    finally:
        supervisor.stop()

    assert any(line.startswith("could not restart flaky (no such binary)") for line in said), said
