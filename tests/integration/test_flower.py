"""Flower as `make flower` runs it (`python -m ops.flower`), beside a real API and worker: it asks
everyone for credentials (its /metrics too), shows a finished task to whoever signs in, and a task
revoked there cancels its job; in production it does not start without authentication."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.embedded_redis import free_port
from tests.fakes.groq_server import FakeGroq, Reply
from tests.support import ROOT, TEST_PASSWORD, ApiServer, Worker, environment, groq_env, wait_for_status

TRIP = {"location": "Porto", "days": 2, "transport": "train", "occasion": "visit"}
ADMIN = ("admin", "flower-admin-password")
PROMETHEUS = ("prometheus", "flower-scrape-password")


@dataclass
class Monitored:
    api: ApiServer
    worker: Worker
    flower: str  # Flower's base URL
    headers: dict[str, str]


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthcheck", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Flower did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def monitored(redis_base_url: str, log_dir: Path, fake_groq: FakeGroq) -> Iterator[Monitored]:
    """An API, one worker with a single slot calling the fake Groq, and Flower watching them."""
    env = groq_env(fake_groq.base_url, f"{redis_base_url}/9", WORKER_CONCURRENCY="1")
    worker = Worker(env, log_dir).start()
    api = ApiServer(env).start()
    port = free_port()
    log = log_dir / "flower.log"
    flower_env = environment(
        {**env, "FLOWER_PORT": str(port), "FLOWER_BASIC_AUTH": ",".join(":".join(pair) for pair in (ADMIN, PROMETHEUS))}
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.flower"], cwd=ROOT, env=flower_env, stdout=output, stderr=output
        )
    base = f"http://127.0.0.1:{port}/flower"
    try:
        _wait_until_up(base, process, log)
        # Flower hears the worker (its heartbeat events) before the tests make it do anything.
        deadline = time.monotonic() + 30
        while (
            f'flower_worker_online{{worker="{worker.name}"}} 1.0'
            not in httpx.get(f"{base}/metrics", auth=PROMETHEUS).text
        ):
            assert time.monotonic() < deadline, "Flower never saw the worker"
            time.sleep(0.2)
        with httpx.Client(base_url=api.base_url) as client:
            headers = _headers(client)
        yield Monitored(api=api, worker=worker, flower=base, headers=headers)
    finally:
        process.terminate()
        process.wait(timeout=20)
        api.stop()
        worker.stop()


def _headers(client: httpx.Client) -> dict[str, str]:
    login = {"email": f"flower-{uuid.uuid4().hex[:10]}@example.com", "password": TEST_PASSWORD}
    assert client.post("/api/v1/auth/register", json=login).status_code == 201
    return {"Authorization": f"Bearer {client.post('/api/v1/auth/login', json=login).json()['access_token']}"}


@pytest.mark.parametrize("path", ["/", "/tasks", "/api/tasks", "/api/workers", "/metrics"])
def test_flower_refuses_whoever_does_not_sign_in(monitored: Monitored, path: str) -> None:
    anonymous = httpx.get(f"{monitored.flower}{path}")
    wrong = httpx.get(f"{monitored.flower}{path}", auth=("admin", "not-the-password"))

    assert anonymous.status_code == wrong.status_code == 401
    if not path.startswith("/api/"):  # Flower's API answers a bare 401
        assert anonymous.headers["www-authenticate"].startswith("Basic")


def _flower_task(monitored: Monitored, job_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        tasks = httpx.get(f"{monitored.flower}/api/tasks", auth=ADMIN).json()
        task: dict[str, Any] = tasks.get(job_id, {})
        if task.get("state") == state:
            return task
        assert time.monotonic() < deadline, f"Flower did not show {job_id} as {state}: {task}"
        time.sleep(0.2)


async def test_flower_shows_a_finished_task_to_someone_signed_in(monitored: Monitored, groq: FakeGroq) -> None:
    async with httpx.AsyncClient(base_url=monitored.api.base_url, headers=monitored.headers, timeout=30) as client:
        job_id = (await client.post("/api/v1/checklists", json=TRIP)).json()["id"]
        await wait_for_status(client, job_id, {"succeeded"})

    task = _flower_task(monitored, job_id, "SUCCESS")

    assert task["name"] == "checklists.generate"
    assert task["args"] == f"('{job_id}',)"  # the job id: nothing of the trip
    assert task["worker"] == monitored.worker.name
    assert task["runtime"] > 0
    async with httpx.AsyncClient(auth=PROMETHEUS) as prometheus:
        scraped = await prometheus.get(f"{monitored.flower}/metrics")
    assert 'flower_events_total{task="checklists.generate",type="task-succeeded"' in scraped.text


async def test_a_task_revoked_in_flower_cancels_its_job(monitored: Monitored, groq: FakeGroq) -> None:
    groq.script(Reply.slow(2.0))  # the worker's one slot is busy with the first job meanwhile
    async with httpx.AsyncClient(base_url=monitored.api.base_url, headers=monitored.headers, timeout=30) as client:
        busy = (await client.post("/api/v1/checklists", json=TRIP)).json()["id"]
        waiting = (await client.post("/api/v1/checklists", json=TRIP)).json()["id"]

        async with httpx.AsyncClient(auth=ADMIN) as operator:
            revoked = await operator.post(f"{monitored.flower}/api/task/revoke/{waiting}")
        assert revoked.status_code == 200, revoked.text

        first = await wait_for_status(client, busy, {"succeeded", "failed", "canceled"})
        second = await wait_for_status(client, waiting, {"succeeded", "failed", "canceled"})

    assert first["status"] == "succeeded"
    assert second["status"] == "canceled"
    assert second["attempts"] == 0
    _flower_task(monitored, waiting, "REVOKED")


def test_flower_does_not_start_without_authentication_in_production(redis_base_url: str) -> None:
    production = {
        "ENVIRONMENT": "production",
        "REDIS_URL": f"{redis_base_url}/9",
        "SECRET_KEY": "k" * 40,
        "LLM_PROVIDER": "offline",
        "METRICS_TOKEN": "m" * 32,
        "FLOWER_PORT": str(free_port()),
    }
    env = {name: value for name, value in environment(production).items() if not name.startswith("FLOWER_AUTH")}
    env.pop("FLOWER_BASIC_AUTH", None)

    result = subprocess.run(
        [sys.executable, "-m", "ops.flower"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 2
    assert "FLOWER_BASIC_AUTH" in result.stderr
    redis.Redis.from_url(production["REDIS_URL"]).flushdb()
