"""`make run`'s launcher: it starts everything, its printed example works, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil

from shared.embedded_redis import free_port
from tests.support import ROOT, environment


def test_make_run_serves_the_printed_example_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = environment({"PORT": str(port), "LOCAL_DATA_DIR": str(tmp_path), "WORKER_CONCURRENCY": "2"})
    env.pop("REDIS_URL", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "ops.run_local"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert launcher.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not lines or "Press Ctrl-C" not in lines[-1]:
            assert time.monotonic() < deadline, "".join(lines)
            line = launcher.stdout.readline()
            assert line or launcher.poll() is None, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        start = next(i for i, line in enumerate(lines) if line.startswith("Try it")) + 1
        end = next(i for i in range(start, len(lines)) if not lines[i].strip())
        example = "".join(lines[start:end])
        children = psutil.Process(launcher.pid).children(recursive=True)

        began = time.monotonic()
        output = subprocess.run(["bash", "-c", example], capture_output=True, text=True, timeout=30, check=True)
        elapsed = time.monotonic() - began
        job = msgspec.json.decode(output.stdout.strip().splitlines()[-1])

        assert f"http://127.0.0.1:{port}" in text
        assert "(embedded" in text
        assert job["status"] == "succeeded", output.stdout
        assert job["result"]["generated_by"]["provider"] == "offline"
        assert elapsed < 10
        assert {child.name() for child in children} >= {"redis-server"}
    finally:
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=60)
        assert launcher.stdout is not None
        launcher.stdout.close()

    assert code == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert len(gone) == len(children)
    assert (tmp_path / "redis").is_dir()
    assert not os.path.exists(f"/proc/{launcher.pid}")
