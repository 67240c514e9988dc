"""`make bench BENCH_ARGS="--only-streams --streams 1000"`: one API process holding N event streams.

One uvicorn process (the production command) and no worker, so that the jobs wait, queued:
1. N jobs are submitted; a separate process (bench/stream_load.py) opens one stream per job and
   waits until each has sent the job's current state.
2. The API process's RSS before and with the streams open.
3. Other requests meanwhile: GET /health and a poll of a job (authentication, quota, Redis), timed
   from a third process for 16 s (every stream sends a heartbeat in that time), first with no
   stream open, then with the N streams open.
4. Wake-up latency: from the moment this process starts a job's final write (the same script the
   worker finishes a job with, carrying a real checklist) until that job's client has the terminal
   event; first for jobs finishing one at a time, then for all the others finishing back to back.
   Both processes read time.monotonic(), one clock for the whole machine on Linux.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import msgspec
import psutil
import redis

from bench.harness import ROOT, UNLIMITED, api_server, base_env, server_process
from shared import lifecycle
from shared.clock import utcnow
from shared.embedded_redis import free_port
from shared.jobs import StoredJob, SyncJobStore
from shared.schemas import Checklist, TripRequest
from worker.providers.offline.offline import OfflineProvider

TRIP = {"location": "Lisbon, Portugal", "days": 4, "transport": "plane", "occasion": "city break"}
#: Jobs finished one at a time, 0.1 s apart, before the rest finish back to back.
ONE_AT_A_TIME = 20
#: Longer than a heartbeat interval (15 s), so that every stream's heartbeat falls within it.
PROBE_SECONDS = 16.0


def _load(mode: str, port: int, token: str, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.stream_load", mode, "--port", str(port), "--token", token, *extra]
    return subprocess.Popen(command, cwd=ROOT, env=base_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _probe(port: int, token: str, job_id: str) -> dict[str, list[float]]:
    probe = _load("probe", port, token, "--job", job_id, "--seconds", str(PROBE_SECONDS))
    output, _ = probe.communicate(timeout=PROBE_SECONDS + 30)
    latencies: dict[str, list[float]] = json.loads(output)
    return latencies


def _quantiles(values: Sequence[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {statistics.median(values):6.2f} ms   p99 {cuts[98]:6.2f} ms   max {max(values):6.2f} ms"


def _mib(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def _finish(store: SyncJobStore, jobs: Sequence[StoredJob], checklist: Checklist, pause: float) -> dict[str, float]:
    """Finish each job as a worker would; when each final write began."""
    began = {}
    for stored in jobs:
        finished = lifecycle.succeed(stored.job, checklist, utcnow())
        began[stored.job.id] = time.monotonic()
        if store.transition(stored, finished) is None:
            raise RuntimeError(f"job {stored.job.id} moved on")
        time.sleep(pause)
    return began


def streams(count: int, redis_url: str, scratch: Path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    env = base_env(REDIS_URL=redis_url, **UNLIMITED)
    port = free_port()
    print(f"\nEvent streams: {count} open on one API process (heartbeat every 15 s, no worker: jobs wait)")
    with api_server(port, env) as api, httpx.Client(base_url=api, timeout=30) as http:
        credentials = {"email": f"bench-{time.time_ns()}@example.com", "password": "bench pass phrase 2026"}
        http.post("/api/v1/auth/register", json=credentials).raise_for_status()
        token = http.post("/api/v1/auth/login", json=credentials).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        ids = [http.post("/api/v1/checklists", json=TRIP).json()["id"] for _ in range(count + 1)]
        polled, ids = ids[0], ids[1:]
        api_process = server_process(port)
        idle_rss = _mib(api_process)
        before = _probe(port, token, polled)

        ids_file = Path(scratch) / "ids"
        ids_file.write_text("\n".join(ids))
        load = _load("streams", port, token, "--ids", str(ids_file))
        ready = load.stdout.readline().split() if load.stdout else []
        if not ready or ready[0] != "ready":
            raise RuntimeError("the stream clients did not get going")
        time.sleep(1.0)
        streams_rss = _mib(api_process)
        during = _probe(port, token, polled)

        store = SyncJobStore(redis.Redis.from_url(redis_url), job_ttl=3600)
        jobs = [job for job in map(store.get, ids) if job is not None]
        checklist = OfflineProvider().generate(msgspec.convert(TRIP, TripRequest)).checklist
        began = _finish(store, jobs[:ONE_AT_A_TIME], checklist, pause=0.1)
        burst_start = time.monotonic()
        began |= _finish(store, jobs[ONE_AT_A_TIME:], checklist, pause=0)
        burst = time.monotonic() - burst_start
        output, _ = load.communicate(timeout=120)
    result = json.loads(output)
    finished: dict[str, float] = result["finished"]
    wake = {job_id: (finished[job_id] - began[job_id]) * 1000 for job_id in finished}
    single = [wake[job_id] for job_id in ids[:ONE_AT_A_TIME] if job_id in wake]
    rest = [wake[job_id] for job_id in ids[ONE_AT_A_TIME:] if job_id in wake]
    ended = sum(1 for job_id in ids if result["events"].get(job_id) == 2 and job_id in finished)
    print(f"  {count} streams opened in {float(ready[1]):.2f} s, each with its job's current state")
    print(f"  API RSS: {idle_rss:.0f} MiB idle, {streams_rss:.0f} MiB with {count} streams open"
          f" ({(streams_rss - idle_rss) * 1024 / count:.1f} KiB per stream)")  # fmt: skip
    for name, label in (("health", "GET /health"), ("poll", "GET /api/v1/checklists/{id}")):
        print(f"  {label:<30} no streams:   {_quantiles(before[name])}   ({len(before[name])} requests)")
        print(f"  {'':<30} {count} streams: {_quantiles(during[name])}   ({len(during[name])} requests)")
    print(f"  wake-up, final write → client's last event, {len(single)} jobs one at a time: {_quantiles(single)}")
    print(f"  wake-up, {len(rest)} jobs finishing back to back (writes took {burst:.2f} s): {_quantiles(rest)}")
    print(f"  streams that sent queued then succeeded and ended: {ended} of {count}")
    print(f"  (the stream clients' process used {result['cpu']:.2f} s of CPU in all)")
