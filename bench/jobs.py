"""`make bench BENCH_ARGS="--only jobs"`: worker throughput, and memory after many jobs.

1. Offline provider (CPU-bound), one worker process as `celery -A worker.celery_app worker` starts
   it (threads pool, WORKER_CONCURRENCY 16): N jobs are submitted through the API (a lean client
   process, which then reads each job once), then the worker drains the queue. Jobs per second
   from the first job's start to the last one's finish (the jobs' own timestamps), and the worker's
   CPU per job. Then a second N, on the same API and worker: the RSS of the API process and of the
   worker process after each N (goals ≤ 120 MiB and ≤ 150 MiB, flat).
2. Groq answering in 0.5 s (tests/fakes, here in its own process), one worker process with 100
   slots (WORKER_CONCURRENCY=100): the ideal is 100 / 0.5 s = 200 jobs per second; the fraction of
   it reached over M jobs submitted at once (goal ≥ 90 %), the worker's CPU per job, and how long
   the calls took as the worker timed them (its metrics), so that a fake slower than 0.5 s shows
   as such. The model's answer has 40 items.
3. Redis memory per finished job of run 2: `MEMORY USAGE` of each of its keys (the job hash, its
   event record) for a sample of jobs, median and p99, with the owner index's share; and the
   arithmetic for a day of 1 M jobs kept for JOB_TTL (7 days by default).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import redis

from bench.harness import (
    ROOT,
    UNLIMITED,
    api_server,
    base_env,
    celery_worker,
    process_tree,
    rss_mib,
    server_process,
    sign_in,
    tree_cpu,
    wait_worker,
)
from bench.streams import _load
from shared import keys
from shared.embedded_redis import free_port

API_RSS_GOAL, WORKER_RSS_GOAL = 120.0, 150.0
SLOTS, CALL = 100, 0.5
SLOTS_GOAL = 0.9
DEFAULT_JOB_TTL_DAYS = 7
#: Items in the fake model's answer (the memory figures are for a checklist of this size).
ITEMS = 40
#: Lets the fake Groq's process say where it listens, then keeps it serving until stdin closes.
#: The answer obeys the hard rules for the bench's trip (London to Lisbon: a passport item, an
#: adapter item), so a job is one call, as the ideal assumes: the fake's generic answer has
#: neither, and every job then also made a repair call (two calls, 1 s, for a 0.5 s ideal).
_FAKE_GROQ = f"""
import sys
from tests.fakes.groq_server import FakeGroq, Reply, good_checklist
answer = good_checklist({ITEMS})
answer["items"][0]["text"] = "Check that your passport is valid for the whole trip"
answer["items"][1]["text"] = "Pack a travel adapter for type C and F sockets"
fake = FakeGroq().start()
fake.default = Reply.ok(answer, delay={CALL})
print(fake.base_url, flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True, slots=True)
class Drained:
    seconds: float  # first start to last finish
    cpu: float  # the worker's CPU seconds meanwhile
    succeeded: int
    busy: float  # median seconds from a job's start to its finish
    calls: float  # model calls per job (its usage), 0 without a model


def _submit(port: int, token: str, count: int, scratch: Path) -> list[str]:
    out = scratch / "ids"
    load = _load("submit", port, token, "--count", str(count), "--connections", "16", "--out", str(out))
    load.communicate(timeout=600)
    return out.read_text().split()


def _drain(client: redis.Redis, ids: list[str], worker: list[psutil.Process], before: float, timeout: float) -> Drained:
    """Wait until every job is finished; how long they took, from their own timestamps, and the
    worker's CPU since it read `before`."""
    deadline = time.monotonic() + timeout
    while client.zcard(keys.PENDING) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client.zcard(keys.PENDING)} jobs still unfinished")
        time.sleep(0.2)
    cpu = tree_cpu(worker) - before
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "doc")
    docs = [json.loads(doc) for doc in pipe.execute()]
    started = min(datetime.fromisoformat(doc["started_at"]) for doc in docs)
    finished = max(datetime.fromisoformat(doc["finished_at"]) for doc in docs)
    succeeded = sum(doc["status"] == "succeeded" for doc in docs)
    busy = statistics.median(
        (datetime.fromisoformat(doc["finished_at"]) - datetime.fromisoformat(doc["started_at"])).total_seconds()
        for doc in docs
    )
    calls = sum((doc.get("usage") or {}).get("calls", 0) for doc in docs) / len(docs)
    return Drained((finished - started).total_seconds(), cpu, succeeded, busy, calls)


def offline(count: int, redis_url: str, scratch: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = base_env(REDIS_URL=redis_url, WORKER_METRICS_PORT=str(free_port()), **UNLIMITED)
    port = free_port()
    print(f"\nWorker throughput, offline provider (CPU-bound; one worker process, threads pool, {count:,} jobs a run):")
    with api_server(port, env) as api:
        token = sign_in(api)["Authorization"].removeprefix("Bearer ")
        api_process = server_process(port)
        rss: list[tuple[float, float]] = []
        with celery_worker(env) as worker_process:
            wait_worker(redis_url)
            worker = process_tree(psutil.Process(worker_process.pid))
            for run in (1, 2):
                before = tree_cpu(worker)
                ids = _submit(port, token, count, scratch)
                drained = _drain(client, ids, worker, before, timeout=count)
                rss.append((rss_mib(api_process), sum(rss_mib(p) for p in worker)))
                print(f"  run {run}: {drained.succeeded:,} succeeded, {count / drained.seconds:6.1f} jobs/s,"
                      f" worker CPU {drained.cpu / count * 1000:.2f} ms/job")  # fmt: skip
    for (api_rss, worker_rss), after in zip(rss, (count, 2 * count), strict=True):
        print(f"  after {after:,} jobs: API RSS {api_rss:.0f} MiB (goal ≤ {API_RSS_GOAL:g}),"
              f" worker RSS {worker_rss:.0f} MiB (goal ≤ {WORKER_RSS_GOAL:g})")  # fmt: skip


def _memory(client: redis.Redis, ids: list[str], owner_index: str) -> None:
    sample = ids[:: max(1, len(ids) // 1000)]
    per_job = []
    parts: dict[str, list[int]] = {"job hash": [], "event record": []}
    for job_id in sample:
        job = client.memory_usage(keys.job(job_id), samples=0) or 0
        events = client.memory_usage(keys.job_events(job_id), samples=0) or 0
        parts["job hash"].append(job)
        parts["event record"].append(events)
        per_job.append(job + events)
    index = (client.memory_usage(owner_index, samples=0) or 0) / max(1, client.zcard(owner_index))
    doc = statistics.median(len(client.hget(keys.job(job_id), "doc") or b"") for job_id in sample)
    cuts = statistics.quantiles(per_job, n=100, method="inclusive")
    median, p99 = statistics.median(per_job) + index, cuts[98] + index
    print(f"  Redis memory per finished job ({len(sample)} jobs, {ITEMS}-item checklists, MEMORY USAGE):"
          f" median {median / 1024:.2f} KiB, p99 {p99 / 1024:.2f} KiB")  # fmt: skip
    print("    " + ", ".join(f"{name} {statistics.median(values):,.0f} B" for name, values in parts.items())
          + f", owner index entry {index:,.0f} B; the doc itself {doc:,.0f} B")  # fmt: skip
    kept = 1_000_000 * DEFAULT_JOB_TTL_DAYS
    print(f"    1 M jobs a day kept {DEFAULT_JOB_TTL_DAYS} days (JOB_TTL): {kept:,} jobs x {median / 1024:.2f} KiB"
          f" = {kept * median / 2**30:.1f} GiB (p99 {kept * p99 / 2**30:.1f} GiB)")  # fmt: skip


def _mean_call(metrics_port: int) -> float:
    """The mean duration of the worker's Groq calls, from its metrics: what the fake's answers
    really took, seen from the worker (a slow fake shows here, not as a slow worker)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("tripcheck_groq_request_duration_seconds_sum", "tripcheck_groq_request_duration_seconds_count"):
            found[name.rsplit("_", 1)[1]] = float(value)
    return found["sum"] / found["count"] if found.get("count") else float("nan")


def groq_slots(count: int, redis_url: str, scratch: Path) -> float:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    fake = subprocess.Popen([sys.executable, "-c", _FAKE_GROQ], cwd=ROOT, env=base_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    ideal = SLOTS / CALL
    print(f"\nWorker throughput, Groq answering in {CALL:g} s (fake, own process), {SLOTS} slots in one worker"
          f" process: ideal {ideal:.0f} jobs/s; {count:,} jobs submitted at once")  # fmt: skip
    try:
        base_url = fake.stdout.readline().strip() if fake.stdout else ""
        metrics_port = free_port()
        env = base_env(REDIS_URL=redis_url, GROQ_API_KEY="bench-not-secret", GROQ_BASE_URL=base_url,
                       GROQ_RPM="0", GROQ_TPM="0", WORKER_CONCURRENCY=str(SLOTS),
                       WORKER_METRICS_PORT=str(metrics_port), **UNLIMITED)  # fmt: skip
        port = free_port()
        with api_server(port, env) as api:
            auth = sign_in(api)
            token = auth["Authorization"].removeprefix("Bearer ")
            with celery_worker(env) as worker_process:
                worker = process_tree(psutil.Process(worker_process.pid))
                wait_worker(redis_url)
                before = tree_cpu(worker)
                ids = _submit(port, token, count, scratch)
                drained = _drain(client, ids, worker, before, timeout=count)
                call = _mean_call(metrics_port)
            rate = count / drained.seconds
            print(f"  {drained.succeeded:,} succeeded in {drained.seconds:.2f} s: {rate:.1f} jobs/s ="
                  f" {rate / ideal:.0%} of the ideal (goal ≥ {SLOTS_GOAL:.0%}:"
                  f" {'met' if rate / ideal >= SLOTS_GOAL else 'MISSED'});"
                  f" worker CPU {drained.cpu / count * 1000:.2f} ms/job; a job's start to its finish:"
                  f" median {drained.busy:.2f} s; {drained.calls:.2f} calls per job, {call:.3f} s each"
                  " on average as the worker timed them")  # fmt: skip
            owner = client.hget(keys.job(ids[0]), "owner")
            _memory(client, ids, keys.owner_index(owner.decode() if isinstance(owner, bytes) else ""))
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(timeout=10)
    return rate / ideal
