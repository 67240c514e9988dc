"""Process and load helpers for the benchmark: servers started with production commands, wrk,
a signed-in user, a finished job; CPU, memory and Redis command counts of what runs."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis

from shared import keys

ROOT = Path(__file__).resolve().parent.parent
#: Quotas far above what the benchmark sends: every request still pays for its limit check.
UNLIMITED = {
    "RATE_LIMIT_REQUESTS": "1000000000",
    "SUBMIT_RATE_LIMIT_REQUESTS": "1000000000",
    "POLL_RATE_LIMIT_REQUESTS": "1000000000",
    "AUTH_RATE_LIMIT_REQUESTS": "1000000000",
}
TRIP = b'{"location":"Lisbon, Portugal","days":4,"transport":"plane","occasion":"city break","origin":"London"}'
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


def raise_nofile() -> int:
    """Lift this process's open-file limit to its hard limit (children inherit it): thousands of
    waiting clients are thousands of sockets on each side. Returns the limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


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


def sign_in(api: str) -> dict[str, str]:
    """Register a bench user and log in; the Authorization header every request carries."""
    credentials = {"email": f"bench-{uuid.uuid4().hex[:8]}@example.com", "password": "bench pass phrase 2026"}
    httpx.post(f"{api}/api/v1/auth/register", json=credentials).raise_for_status()
    token = httpx.post(f"{api}/api/v1/auth/login", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def wait_worker(redis_url: str, timeout: float = 60.0) -> None:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while client.zcard(keys.WORKERS) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no worker announced itself")
        time.sleep(0.05)
    client.close()


def finished_job(api: str, redis_url: str, env: dict[str, str], auth: dict[str, str]) -> tuple[str, bytes]:
    """A succeeded job (the realistic thing to poll), made with a short-lived worker."""
    with celery_worker(env):
        wait_worker(redis_url)
        headers = {"content-type": "application/json", **auth}
        ident = httpx.post(f"{api}/api/v1/checklists", content=TRIP, headers=headers).json()["id"]
        doc = httpx.get(f"{api}/api/v1/checklists/{ident}", params={"wait": 20}, headers=auth, timeout=30).content
    redis.Redis.from_url(redis_url).delete(keys.WORKERS)
    return ident, doc


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and every process under it (uvicorn's workers, a prefork pool's children)."""
    return [root, *root.children(recursive=True)]


def tree_cpu(processes: list[psutil.Process]) -> float:
    """CPU seconds (user + system) used so far by the processes that are still there."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cpu_seconds(process)
    return total


def busy_cores() -> float:
    """CPU seconds the whole machine has spent busy so far (every process, ours or not)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def rss_mib(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


class RedisCommands:
    """Commands Redis processed, from INFO (each reading is one command more, subtracted here)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._total, self._by_command, self._at = self._read()

    def _read(self) -> tuple[int, dict[str, int], float]:
        stats = self.client.info("stats")
        commands = self.client.info("commandstats")
        by_command = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in commands.items()}
        return int(stats["total_commands_processed"]), by_command, time.monotonic()

    def since(self) -> tuple[float, dict[str, int]]:
        """Commands per second since the last reading (or creation), and the count per command."""
        total, by_command, at = self._read()
        rate = (total - self._total - 2) / (at - self._at)  # minus the two INFO calls of a reading
        delta = {name: calls - self._by_command.get(name, 0) for name, calls in by_command.items()}
        delta["info"] = delta.get("info", 0) - 2
        self._total, self._by_command, self._at = total, by_command, at
        return rate, {name: calls for name, calls in sorted(delta.items(), key=lambda kv: -kv[1]) if calls > 0}


@dataclass(frozen=True, slots=True)
class WrkRun:
    rate: float  # requests per second
    served: int  # requests in all
    cpu: float  # seconds of CPU wrk itself used


def wrk(
    url: str, *, seconds: float, connections: int, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[float, int]:
    """Requests per second and requests served in one wrk run (one thread: the other core serves)."""
    run = wrk_run(url, seconds=seconds, connections=connections, body=body, headers=headers)
    return run.rate, run.served


def wrk_run(
    url: str,
    *,
    seconds: float,
    connections: int,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    threads: int = 1,
) -> WrkRun:
    """One wrk run, with the CPU wrk spent (the rusage of children reaped meanwhile: only wrk)."""
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", url]
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
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors against {url}:\n{output}")
    match, count = _RPS.search(output), _COUNT.search(output)
    if match is None or count is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return WrkRun(float(match.group(1)), int(count.group(1)), cpu)
