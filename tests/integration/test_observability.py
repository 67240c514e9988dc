"""Metrics, logs and request ids with real processes: `python -m api.serve` (several processes),
Celery workers, the fake Groq, Redis.

- counters add up across API processes, and neither a crashed process nor a restart loses or
  double-counts them;
- job metrics move as jobs go through each provider;
- queue depth and the oldest waiting message's age are right with no worker running;
- a client's X-Request-ID is in the API's and the worker's lines for its job; every log line is
  JSON, and none holds a password, token, key or trip note planted in a full run.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
import pytest
import redis
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack
from tests.fakes.groq_server import FakeGroq
from tests.fakes.receiver import Receiver
from tests.support import TEST_PASSWORD, ApiServer, ServedApi, Worker, groq_env, new_account, wait_for_status

TRIP = {"location": "Lisbon, Portugal", "days": 3, "transport": "plane", "occasion": "city break"}
HEALTH = {"method": "GET", "route": "/health", "status_class": "2xx"}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus exposition, or None when it is not there."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(key) == value for key, value in labels.items()):
                return float(found.value)
    return None


def scrape(url: str, **headers: str) -> str:
    response = httpx.get(url, headers=headers, timeout=10.0)
    assert response.status_code == 200, response.text
    return response.text


def scraped_until(url: str, expected: float, name: str, **labels: str) -> float | None:
    """The sample once a scrape shows `expected`, or the last value seen after 5 s. API processes
    write their request counts every half second (`metrics.TALLIES`): another process's requests
    show up within that, so a test polls for them rather than sleeping a guessed time."""
    deadline = time.monotonic() + 5
    while True:
        value = sample(scrape(url), name, **labels)
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def redis_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


# --- several API processes -------------------------------------------------------------------------


def _health_count_by_process(directory: Path) -> dict[int, float]:
    """/health answers counted by each API process, from its own sample file."""
    counts = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
        for metric in MultiProcessCollector.merge([path]):  # type: ignore[no-untyped-call]
            for found in metric.samples:
                if found.name == "tripcheck_http_requests_total" and found.labels == HEALTH:
                    counts[pid] = found.value
    return counts


def _children(api: ServedApi) -> list[psutil.Process]:
    assert api.process is not None
    return [child for child in psutil.Process(api.process.pid).children() if child.status() != psutil.STATUS_ZOMBIE]


def _open_long_poll(api: ServedApi, path: str, token: str) -> socket.socket:
    """A long-poll held open on a raw connection, whose local port tells which process serves it."""
    connection = socket.create_connection(("127.0.0.1", api.port))
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n"
    connection.sendall(request.encode())
    return connection


def _serving(api: ServedApi, connection: socket.socket) -> psutil.Process:
    port = connection.getsockname()[1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for child in _children(api):
            if any(c.raddr and c.raddr.port == port for c in child.net_connections(kind="tcp")):
                return child
        time.sleep(0.05)
    raise AssertionError("no API process holds the long-poll")


def test_counters_add_up_across_api_processes_and_a_crash_or_restart_neither_loses_nor_doubles(
    redis_base_url: str, log_dir: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    env = {"REDIS_URL": f"{redis_base_url}/13", "WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    api = ServedApi(env, log_dir).start()
    try:
        # A new connection per request, until both processes have answered some (start-up's
        # readiness probes included).
        sent = 0
        while (len(_health_count_by_process(directory)) < 2 or sent < 10) and sent < 400:
            assert httpx.get(f"{api.base_url}/health").status_code == 200
            sent += 1
        assert len(_health_count_by_process(directory)) == 2, "one process answered everything"
        sent += 1  # start-up's readiness probe
        # Once each process has written its tallies, the files add up to every answer...
        deadline = time.monotonic() + 5
        while sum(_health_count_by_process(directory).values()) != sent:
            assert time.monotonic() < deadline, (_health_count_by_process(directory), sent)
            time.sleep(0.05)
        # ...and whichever process answers a scrape reports every process's count.
        for _ in range(6):
            assert sample(scrape(f"{api.base_url}/metrics"), "tripcheck_http_requests_total", **HEALTH) == sent

        # A process dies (SIGKILL) in the middle of a long-poll; uvicorn starts another.
        with httpx.Client(base_url=api.base_url) as client:
            account_token = _signed_in(client)
            job_id = client.post("/api/v1/checklists", json=TRIP, headers=_bearer(account_token)).json()["id"]
        poll = _open_long_poll(api, f"/api/v1/checklists/{job_id}?wait=25", account_token)
        victim = _serving(api, poll)
        # The long-poll and the scrape (the long-poll's process writes it within half a second).
        assert scraped_until(f"{api.base_url}/metrics", 2, "tripcheck_http_requests_in_flight") == 2
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        poll.close()
        text = scrape(f"{api.base_url}/metrics")
        assert sample(text, "tripcheck_http_requests_in_flight") == 1  # the dead process's long-poll is gone
        assert sample(text, "tripcheck_http_requests_total", **HEALTH) == sent  # its answers still count
        deadline = time.monotonic() + 30
        while len(_children(api)) < 2:
            assert time.monotonic() < deadline, "uvicorn did not replace the killed process"
            time.sleep(0.1)
        for _ in range(10):
            assert httpx.get(f"{api.base_url}/health").status_code == 200
        assert (
            scraped_until(f"{api.base_url}/metrics", sent + 10, "tripcheck_http_requests_total", **HEALTH) == sent + 10
        )
    finally:
        api.stop()

    # A restart starts from an empty directory: the last run's samples are not added again.
    api = ServedApi(env, log_dir).start()
    try:
        probes = scraped_until(f"{api.base_url}/metrics", 1, "tripcheck_http_requests_total", **HEALTH)
        assert probes == 1  # start-up's readiness probe; the last run's (over 20) are gone
        for _ in range(3):
            assert httpx.get(f"{api.base_url}/health").status_code == 200
        assert scraped_until(f"{api.base_url}/metrics", 4, "tripcheck_http_requests_total", **HEALTH) == 4
    finally:
        api.stop()


def _signed_in(client: httpx.Client) -> str:
    login = {"email": f"metrics-{uuid.uuid4().hex[:10]}@example.com", "password": TEST_PASSWORD}
    assert client.post("/api/v1/auth/register", json=login).status_code == 201
    token: str = client.post("/api/v1/auth/login", json=login).json()["access_token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- jobs through each provider ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["offline", "groq"])
async def test_job_metrics_move_as_a_job_goes_through_each_provider(
    provider: str, offline_stack: Stack, groq_stack: Stack, groq: FakeGroq
) -> None:
    stack = offline_stack if provider == "offline" else groq_stack
    assert stack.worker is not None
    async with await _client(stack) as client:
        api_before, worker_before = (await client.get("/metrics")).text, scrape(stack.worker.metrics_url)

        submitted = await client.post("/api/v1/checklists", json=TRIP)
        job = await wait_for_status(client, submitted.json()["id"], {"succeeded"})

        api_after = (await client.get("/metrics")).text
    worker_after = scrape(stack.worker.metrics_url)

    def moved(before: str, after: str, name: str, **labels: str) -> float:
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    assert moved(api_before, api_after, "tripcheck_jobs_submitted_total", api="v1") == 1
    assert moved(worker_before, worker_after, "tripcheck_jobs_finished_total", status="succeeded", error_code="") == 1
    assert moved(worker_before, worker_after, "tripcheck_job_queue_wait_seconds_count") == 1
    assert moved(worker_before, worker_after, "tripcheck_job_duration_seconds_count") == 1
    assert moved(worker_before, worker_after, "tripcheck_job_attempts_sum") == job["attempts"] == 1
    groq_calls = moved(worker_before, worker_after, "tripcheck_groq_requests_total", outcome="ok", status="200")
    prompt_tokens = moved(worker_before, worker_after, "tripcheck_groq_tokens_total", kind="prompt")
    if provider == "groq":
        assert groq_calls == 1
        assert prompt_tokens == job["usage"]["prompt_tokens"] == 100  # the fake's `usage`
    else:
        assert groq_calls == prompt_tokens == 0


async def _client(stack: Stack) -> httpx.AsyncClient:
    if stack.account is None:
        async with stack.client() as anonymous:
            stack.account = await new_account(anonymous)
    return stack.client()


# --- the queue, with no worker -----------------------------------------------------------------------


@pytest.fixture
def workerless_api(redis_base_url: str) -> Iterator[ApiServer]:
    url = f"{redis_base_url}/14"
    redis.Redis.from_url(url).flushdb()
    api = ApiServer({"REDIS_URL": url, "WEBHOOK_ALLOW_PRIVATE": "true"}).start()
    yield api
    api.stop()


def test_queue_depth_and_the_oldest_waiting_message_age_are_right_with_no_worker(
    workerless_api: ApiServer,
) -> None:
    client = redis.Redis.from_url(workerless_api.app.state.resources.settings.redis_url)
    with httpx.Client(base_url=workerless_api.base_url) as api:
        headers = _bearer(_signed_in(api))
        before_first = redis_time(client)
        first = api.post("/api/v1/checklists", json=TRIP, headers=headers).json()["id"]
        after_first = redis_time(client)
        time.sleep(1.0)
        before_others = redis_time(client)
        for _ in range(2):
            assert api.post("/api/v1/checklists", json=TRIP, headers=headers).status_code == 202

        scraped_from = redis_time(client)
        text = scrape(f"{workerless_api.base_url}/metrics")
        scraped_until = redis_time(client)
        assert sample(text, "tripcheck_queue_depth", queue="checklists") == 3
        age = sample(text, "tripcheck_queue_oldest_message_age_seconds", queue="checklists")
        assert age is not None
        assert scraped_from - after_first <= age <= scraped_until - before_first
        assert sample(text, "tripcheck_workers_alive") == 0

        # A worker takes the oldest message (from the tail, as kombu does): the next one is the oldest.
        taken = json.loads(cast(bytes, client.rpop("checklists")))
        assert taken["headers"]["id"] == first
        text = scrape(f"{workerless_api.base_url}/metrics")
        assert sample(text, "tripcheck_queue_depth", queue="checklists") == 2
        age = sample(text, "tripcheck_queue_oldest_message_age_seconds", queue="checklists")
        assert age is not None
        assert age <= redis_time(client) - before_others

        client.delete("checklists")
        text = scrape(f"{workerless_api.base_url}/metrics")
        assert sample(text, "tripcheck_queue_depth", queue="checklists") == 0
        assert sample(text, "tripcheck_queue_oldest_message_age_seconds", queue="checklists") == 0

        # The webhook queue: a ping's delivery message waits there (the API pushes it itself).
        assert sample(text, "tripcheck_queue_depth", queue="webhooks") == 0
        endpoint = api.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=headers).json()["id"]
        before_ping = redis_time(client)
        assert api.post(f"/api/v1/webhooks/{endpoint}/test", headers=headers).status_code == 202
        time.sleep(0.5)
        text = scrape(f"{workerless_api.base_url}/metrics")
        assert sample(text, "tripcheck_queue_depth", queue="webhooks") == 1
        age = sample(text, "tripcheck_queue_oldest_message_age_seconds", queue="webhooks")
        assert age is not None
        assert 0.5 <= age <= redis_time(client) - before_ping


def test_open_event_streams_are_counted_while_they_are_open(workerless_api: ApiServer) -> None:
    base = workerless_api.base_url
    with httpx.Client(base_url=base, timeout=10.0) as api:
        headers = _bearer(_signed_in(api))
        job_id = api.post("/api/v1/checklists", json=TRIP, headers=headers).json()["id"]
        before = sample(scrape(f"{base}/metrics"), "tripcheck_sse_streams_open")
        with api.stream("GET", f"/api/v1/checklists/{job_id}/events", headers=headers) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)  # the job's current state: the stream is open
            during = sample(scrape(f"{base}/metrics"), "tripcheck_sse_streams_open")
        deadline = time.monotonic() + 10
        while (after := sample(scrape(f"{base}/metrics"), "tripcheck_sse_streams_open")) != before:
            assert time.monotonic() < deadline, "the closed stream is still counted"
            time.sleep(0.05)

    assert during == (before or 0) + 1
    assert after == before


# --- one job's life in the logs, and nothing secret in them --------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path} is empty"
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line in {path.name}: {line!r}") from None
        assert {"timestamp", "level", "logger", "message"} <= set(record), line
        assert record["timestamp"].endswith("Z"), line  # UTC
        parsed.append(record)
    return parsed


def test_a_request_id_follows_its_job_through_api_worker_and_webhook_and_no_line_holds_a_secret(
    redis_base_url: str, log_dir: Path, groq: FakeGroq, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex[:12]
    planted = {
        "password": f"planted password {marker} horse battery",
        "wrong password": f"another planted password {marker} staple",
        "groq key": f"gsk_planted{marker}",
        "secret key": f"planted-secret-key-{marker}-{'s' * 24}",
        "metrics token": f"planted-metrics-token-{marker}",
        "notes": f"PLANTED-NOTE-{marker} the spare key is under the mat",
        "webhook token": f"hooktoken{marker}",  # in the receiver's URL, as many receivers want it
    }
    env = {
        **groq_env(groq.base_url, f"{redis_base_url}/11", GROQ_API_KEY=planted["groq key"]),
        "LOG_FORMAT": "json",
        "SECRET_KEY": planted["secret key"],
        "METRICS_TOKEN": planted["metrics token"],
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    request_id = f"client-{marker}"
    receiver = Receiver().start()
    worker = Worker(env, log_dir, split_streams=True).start()
    api = ServedApi({**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}, log_dir).start()
    try:
        with httpx.Client(base_url=api.base_url, timeout=30.0) as client:
            email = f"logs-{marker}@example.com"
            credentials = {"email": email, "password": planted["password"]}
            user_id = client.post("/api/v1/auth/register", json=credentials).json()["id"]
            tokens = client.post("/api/v1/auth/login", json=credentials).json()
            wrong = client.post("/api/v1/auth/login", json={"email": email, "password": planted["wrong password"]})
            assert wrong.status_code == 401
            refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
            headers = _bearer(refreshed["access_token"])
            api_key = client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=headers).json()["key"]
            assert client.get("/api/v1/auth/me", headers={"X-API-Key": api_key}).status_code == 200

            webhook = {"url": receiver.url(path=f"/hooks/{planted['webhook token']}"), "events": ["job.succeeded"]}
            submitted = client.post(
                "/api/v1/checklists",
                json={**TRIP, "notes": planted["notes"], "webhook": webhook},
                headers={**headers, "X-Request-ID": request_id},
            )
            assert submitted.headers["x-request-id"] == request_id
            job_id = submitted.json()["id"]
            job = client.get(f"/api/v1/checklists/{job_id}", params={"wait": 20}, headers=headers).json()
            assert job["status"] == "succeeded"
            (delivered,) = receiver.wait_for(1)
            assert delivered.headers["X-Request-ID"] == request_id  # the receiver can tie it to the request
            # An unsafe request id is replaced, never echoed.
            replaced = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
            assert replaced.headers["x-request-id"] != "bad id\twith spaces"
            assert client.get("/metrics", headers=_bearer(planted["metrics token"])).status_code == 200
    finally:
        api.stop()
        worker.stop()
        receiver.stop()

    secrets = [*planted.values(), tokens["access_token"], tokens["refresh_token"], refreshed["access_token"],
               refreshed["refresh_token"], api_key]  # fmt: skip
    assert worker.console_path is not None
    for path in (api.log_path, api.console_path, worker.log_path, worker.console_path):
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{path.name} holds a secret"
    api_lines, worker_lines = _json_lines(api.log_path), _json_lines(worker.log_path)
    assert all("@" not in line.get("owner", "") for line in api_lines + worker_lines)  # a user id, not an email

    ours = [line for line in api_lines if line.get("request_id") == request_id]
    (access,) = [line for line in ours if line["logger"] == "api.access"]
    assert access["route"] == "/api/v1/checklists"
    assert (access["status"], access["job_id"], access["owner"], access["method"]) == (202, job_id, user_id, "POST")
    assert access["client"] == "127.0.0.1"
    assert isinstance(access["duration_ms"], float)

    in_worker = [line for line in worker_lines if line.get("request_id") == request_id]
    checklist = [line for line in in_worker if line.get("task_id") == job_id]
    assert {"celery.worker.strategy", "celery.app.trace"} <= {line["logger"] for line in checklist}
    assert all(line["job_id"] == job_id for line in checklist)
    assert any(line.get("owner") == user_id for line in checklist)
    # The webhook delivery's task carries the same id, and names the job once it holds the delivery.
    (delivery,) = [line for line in in_worker if line["logger"] == "worker.webhooks.delivery"]
    assert (delivery["job_id"], delivery["owner"]) == (job_id, user_id)
    assert delivery["task_id"] != job_id
    assert os.path.getsize(worker.console_path) > 0  # Celery's banner went to stdout, not into the log
