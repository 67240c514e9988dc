"""Every metric the alert rules and the dashboard use is really exported.

`tests.monitoring.metric_names()` collects the names ops/prometheus/rules.yml and the Grafana
dashboard query. The `tripcheck_` ones must be on a running API's or worker's /metrics after real
traffic, and moved by it: jobs through the fake Groq (a retry, a budget wait, an offline fallback),
a webhook delivered to a real receiver, a refused login, a body too large, a quota, and a Redis
that refuses writes for a moment. The rest come from elsewhere: `redis_*` from redis_exporter,
`up` from Prometheus itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.groq_server import FakeGroq, Reply
from tests.fakes.receiver import Receiver
from tests.monitoring import metric_names
from tests.redis_servers import TestRedis
from tests.support import TEST_PASSWORD, ServedApi, Worker, groq_env

# No origin: the fake's answer breaks no rule, so each attempt is one call (no repair request).
TRIP = {"location": "Lisbon, Portugal", "days": 3, "transport": "plane", "occasion": "city break"}
METRICS_TOKEN = "scrape-token-for-the-test-0123456789"

#: Names this run exports but cannot move, and why (they are exported at zero).
STILL_HERE = {
    "tripcheck_queue_depth": "the worker has drained the queue by the scrape (test_observability fills one)",
    "tripcheck_queue_oldest_message_age_seconds": "likewise",
    "tripcheck_sse_streams_open": "no event stream is open at the scrape",
}
#: Names from elsewhere than the service.
NOT_OURS = ("redis_", "up")


def samples(text: str) -> dict[str, float]:
    """Each sample name's largest value; histograms also under their base name (their `_count`)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names = [sample.name]
            if family.type == "histogram" and sample.name.endswith("_count"):
                names.append(family.name)
            for name in names:
                found[name] = max(found.get(name, 0.0), float(sample.value))
    return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def running(tmp_path: Path, log_dir: Path, groq: FakeGroq) -> Iterator[tuple[ServedApi, Worker, TestRedis]]:
    with TestRedis(tmp_path / "redis", "--maxmemory-policy", "noeviction") as server:
        env = groq_env(
            groq.base_url,
            server.url,
            LLM_MAX_ATTEMPTS="2",
            LLM_FALLBACK="offline",
            GROQ_RPM="1",
            GROQ_TPM="0",
            GROQ_BUDGET_WINDOW="1",
            RATE_LIMIT_REQUESTS="4",
            METRICS_TOKEN=METRICS_TOKEN,
            WEBHOOK_ALLOW_PRIVATE="true",
        )
        worker = Worker(env, log_dir).start()
        api = ServedApi({**env, "WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}, log_dir)
        try:
            yield api.start(), worker, server
        finally:
            api.stop()
            worker.stop()


def _wait_for(client: httpx.Client, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = client.get(f"/api/v1/checklists/{job_id}", params={"wait": 10}, headers=headers).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, job


def test_every_metric_the_rules_and_the_dashboard_use_is_exported_and_moved_by_real_traffic(
    running: tuple[ServedApi, Worker, TestRedis], groq: FakeGroq, receiver: Receiver
) -> None:
    api, worker, server = running
    # Two jobs at once, with one Groq call a second (GROQ_RPM=1): one goes through Groq, slowly;
    # the other waits for the budget, then Groq fails it twice and the offline generator answers.
    groq.script(Reply.slow(1.0), Reply.server_error(), Reply.server_error())
    with httpx.Client(base_url=api.base_url, timeout=30.0) as client:
        login = {"email": "metrics-traffic@example.com", "password": TEST_PASSWORD}
        assert client.post("/api/v1/auth/register", json=login).status_code == 201
        headers = {"Authorization": f"Bearer {client.post('/api/v1/auth/login', json=login).json()['access_token']}"}

        # Redis refuses writes for a moment: a submission is 503 (its quota check and the job's
        # writes are one script); a read is let through by the limiter, which cannot spend, and
        # counted; the worker's heartbeat fails (and beats again afterwards).
        server.client().config_set("maxmemory", "1")
        try:
            refused = client.post("/api/v1/checklists", json=TRIP, headers=headers)
            let_through = client.get("/api/v1/auth/me", headers=headers)
            time.sleep(1.0)  # two heartbeats
        finally:
            server.client().config_set("maxmemory", "0")
        assert refused.status_code == 503
        assert let_through.status_code == 200

        trip = {**TRIP, "webhook": {"url": receiver.url()}}
        jobs = [client.post("/api/v1/checklists", json=trip, headers=headers).json()["id"] for _ in range(2)]
        finished = [_wait_for(client, job_id, headers) for job_id in jobs]
        assert [job["status"] for job in finished] == ["succeeded", "succeeded"]
        assert sorted(job["result"]["generated_by"]["provider"] for job in finished) == ["groq", "offline"]
        receiver.wait_for(2)  # job.succeeded, twice

        assert client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        too_large = client.post("/api/v1/checklists", content=b"x" * 70_000, headers={**headers, **_JSON})
        assert too_large.status_code == 413
        answers = {client.get("/api/v1/auth/me", headers=headers).status_code for _ in range(6)}
        assert 429 in answers

        used = {name for name in metric_names() if not name.startswith(NOT_OURS)}
        # The other API process writes its request counts within half a second (metrics.TALLIES):
        # scrape until what this traffic moved shows, or for 5 s.
        deadline = time.monotonic() + 5
        while True:
            scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert scraped.status_code == 200
            exported = samples(scraped.text)
            for name, value in samples(httpx.get(worker.metrics_url).text).items():
                exported[name] = max(exported.get(name, 0.0), value)
            if not {n for n in used if not exported.get(n)} - STILL_HERE.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.1)

    assert used, "the rules and the dashboard name no metric of ours"
    assert sorted(used - exported.keys()) == [], "used by the rules or the dashboard, exported by nothing"
    unmoved = {name for name in used if exported[name] == 0}
    assert sorted(unmoved - STILL_HERE.keys()) == [], "exported, but this run's traffic never moved it"


_JSON = {"Content-Type": "application/json"}
