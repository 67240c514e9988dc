"""Process and load helpers for the benchmark: servers started with production commands, wrk."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from shared import keys

ROOT = Path(__file__).resolve().parent.parent
#: Quotas far above what the benchmark sends: every request still pays for its limit check.
UNLIMITED = {
    "RATE_LIMIT_REQUESTS": "1000000000",
    "SUBMIT_RATE_LIMIT_REQUESTS": "1000000000",
    "POLL_RATE_LIMIT_REQUESTS": "1000000000",
    "AUTH_RATE_LIMIT_REQUESTS": "1000000000",
}
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_COUNT = re.compile(r"(\d+) requests in")


def ensure_wrk() -> str:
    """wrk from Debian's packages; installed on first use where we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("make bench needs wrk (Debian package 'wrk')")
    return found


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROQ_", "LLM_"))}
    env.update({"ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"})
    env.update(overrides)
    return env


@contextmanager
def api_server(port: int, env: dict[str, str], workers: int = 1, log: Path | None = None) -> Iterator[str]:
    """The API as `make run` and its container start it (`python -m api.serve`); its log lines go to
    `log` (the access log costs what it costs in production), or to this terminal."""
    command = [sys.executable, "-m", "api.serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with _served(command, env, f"http://127.0.0.1:{port}", "/health", log) as base:
        yield base


@contextmanager
def bare_server(port: int, env: dict[str, str]) -> Iterator[str]:
    """The bare baseline, on the uvicorn options `api.serve` uses (one process, no access log)."""
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "bench.bare:create_bare_app", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
    ]  # fmt: skip
    with _served(command, env, f"http://127.0.0.1:{port}", "/bare/x", None) as base:
        yield base


@contextmanager
def _served(command: list[str], env: dict[str, str], base: str, probe: str, log: Path | None) -> Iterator[str]:
    with open(log, "ab") if log is not None else contextlib.nullcontext() as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=output)
    try:
        wait_http(f"{base}{probe}")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def celery_worker(env: dict[str, str], *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
               "-Q", f"{keys.QUEUE},{keys.WEBHOOK_QUEUE}",
               "--loglevel", "WARNING", "--without-mingle", "--without-gossip", *extra]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def server_process(port: int) -> psutil.Process:
    """The server process this benchmark started for `port` (to read its CPU time)."""
    for child in psutil.Process().children(recursive=True):
        command = child.cmdline()
        if ("uvicorn" in command or "api.serve" in command) and str(port) in command:
            return child
    raise RuntimeError(f"no server process for port {port}")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def wrk(
    url: str, *, seconds: float, connections: int, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[float, int]:
    """Requests per second and requests served in one wrk run (one thread: the other core serves)."""
    command = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds:g}s", url]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.TemporaryDirectory() as scratch:
        if body is not None:
            script = Path(scratch) / "post.lua"
            escaped = body.decode().replace("\\", "\\\\").replace('"', '\\"')
            script.write_text(
                f'wrk.method = "POST"\nwrk.body = "{escaped}"\nwrk.headers["Content-Type"] = "application/json"\n'
            )
            command[1:1] = ["-s", str(script)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors against {url}:\n{output}")
    match, count = _RPS.search(output), _COUNT.search(output)
    if match is None or count is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return float(match.group(1)), int(count.group(1))
