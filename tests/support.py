"""Starting the real processes tests run against: Celery workers (subprocesses), the API (uvicorn
in a thread, real HTTP, or `python -m api.serve` as a subprocess where processes matter), each
pointed at its own Redis database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from api.app import create_app
from shared import keys
from shared.embedded_redis import free_port
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent

#: Settings every test process shares: fast retries, no .env from the developer's checkout.
TEST_ENV = {
    "ENVIRONMENT": "test",
    "ENV_FILE": "/nonexistent",
    "LOG_LEVEL": "INFO",
    "LLM_BACKOFF_BASE": "0.2",
    "LLM_BACKOFF_CAP": "2",
    "LLM_MAX_ATTEMPTS": "3",
    "VISIBILITY_TIMEOUT": "30",
    "WORKER_CONCURRENCY": "4",
    "WORKER_HEARTBEAT_INTERVAL": "0.5",
    "GROQ_TIMEOUT": "5",
    "LEGACY_WAIT": "5",
    # Quotas out of the way; the rate-limit tests start their own API with small ones.
    "RATE_LIMIT_REQUESTS": "100000",
    "SUBMIT_RATE_LIMIT_REQUESTS": "100000",
    "POLL_RATE_LIMIT_REQUESTS": "100000",
    "AUTH_RATE_LIMIT_REQUESTS": "100000",
    # No shared Groq budget either; tests/integration/test_groq_budget.py sets one.
    "GROQ_RPM": "0",
    "GROQ_TPM": "0",
    # Workers serve metrics on a port of their own (`Worker` picks a free one), not all on 9808.
    "WORKER_METRICS_PORT": "0",
}

#: A password the policy accepts (long, not common, unrelated to the test emails).
TEST_PASSWORD = "correct horse battery staple 42"
_STRIPPED = ("GROQ_API_KEY", "GROQ_BASE_URL", "GROQ_MODEL", "REDIS_URL", "LLM_PROVIDER", "LLM_FALLBACK")


def groq_env(fake_groq_url: str, redis_url: str | None = None, **overrides: str) -> dict[str, str]:
    """Settings for processes that call the fake Groq; with `redis_url`, on that (emptied) database."""
    env = {"GROQ_API_KEY": "test-key-not-secret", "GROQ_BASE_URL": fake_groq_url, **overrides}
    if redis_url is not None:
        redis.Redis.from_url(redis_url).flushdb()
        env["REDIS_URL"] = redis_url
    return env


def environment(overrides: dict[str, str]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _STRIPPED}
    env.update(TEST_ENV)
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    return env


def stop_gracefully(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL if it is not over within `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Worker:
    """`celery -A worker.celery_app worker` as a subprocess, the same command production runs.

    Its metrics are on `metrics_url`. Its log lines (stderr) go to `log_path`, with Celery's console
    output (stdout: the banner) unless `split_streams`, which sends that to `console_path`.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, *, split_streams: bool = False) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.metrics_port = free_port()
        self.env = environment({"WORKER_METRICS_PORT": str(self.metrics_port), **env})
        self.log_path = log_dir / f"worker-{self.name.split('@')[0]}.log"
        self.console_path = self.log_path.with_suffix(".out") if split_streams else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60.0) -> Worker:
        with self.log_path.open("wb") as log, (self.console_path or Path(os.devnull)).open("wb") as console:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                 "-Q", f"{keys.QUEUE},{keys.WEBHOOK_QUEUE}", "-n", self.name, "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=self.env, stderr=log, stdout=console if self.console_path else log,
            )  # fmt: skip
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        deadline = time.monotonic() + timeout
        try:
            while client.zscore(keys.WORKERS, self.name) is None:
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.05)
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement, like a crashed host."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_gracefully(self.process)


class ServedApi:
    """`python -m api.serve` as a subprocess: the production command, with `WORKERS` processes whose
    metrics add up. Its log lines (stderr) go to `log_path`, anything on stdout to `console_path`."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "api") -> None:
        self.port = free_port()
        self.env = environment({**env, "PORT": str(self.port)})
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.console_path = self.log_path.with_suffix(".out")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServedApi:
        with self.log_path.open("ab") as log, self.console_path.open("ab") as console:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.serve"], cwd=ROOT, env=self.env, stdout=console, stderr=log
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"api.serve did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_gracefully(self.process)


class ApiServer:
    """The real app factory behind a real uvicorn server, in a background thread."""

    def __init__(self, env: dict[str, str], *, fast_path: bool = True) -> None:
        settings = load_settings(environment(env))
        self.port = free_port()
        self.app = create_app(settings, fast_path=fast_path)
        # proxy_headers off, as in production: TRUSTED_PROXIES alone decides whom to believe.
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"api-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0, *, wait_for_events: bool = True) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("API server did not start")
            time.sleep(0.02)
        if wait_for_events:
            self._wait_for_event_subscription()
        return self

    def _wait_for_event_subscription(self) -> None:
        # Long-poll tests rely on the event hub; wait until it listens on its channel.
        deadline = time.monotonic() + 10
        while not self.app.state.resources.events.subscribed:
            if time.monotonic() > deadline:
                raise RuntimeError("API event hub did not subscribe")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@dataclass(frozen=True)
class Account:
    email: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def new_account(client: httpx.AsyncClient, password: str = TEST_PASSWORD) -> Account:
    """Register a fresh user through the API and log in."""
    email = f"traveller-{uuid.uuid4().hex[:12]}@example.com"
    registered = await client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 201, registered.text
    tokens = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Account(email, registered.json()["id"], body["access_token"], body["refresh_token"])


async def poll_until(client: httpx.AsyncClient, job_id: str, status: str, timeout: float = 10.0) -> None:
    """Poll (long-polls only wake on final states) until the job shows `status`."""
    deadline = time.monotonic() + timeout
    while (await client.get(f"/api/v1/checklists/{job_id}")).json()["status"] != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never showed {status!r}")
        await asyncio.sleep(0.01)


async def wait_for_status(
    client: httpx.AsyncClient, job_id: str, statuses: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    """Long-poll the job until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"job {job_id} did not reach {statuses} within {timeout}s")
        response = await client.get(f"/api/v1/checklists/{job_id}", params={"wait": min(remaining, 10)})
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
