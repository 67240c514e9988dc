"""`make bench BENCH_ARGS="--only waiters"`: thousands of clients waiting on one API process.

For each kind of waiter (long-polls, `GET /api/v1/checklists/{id}?wait=30`, then event streams)
and each count (500 and 5,000 in the full run), on a fresh API process (the production command,
one process) with no worker, so that the jobs wait, queued:
1. the jobs are submitted (bench/stream_load.py), and Redis's command rate is read over a window
   with nobody waiting;
2. a separate process opens one waiter per job (raw asyncio sockets on uvloop, so that the
   clients are never what is measured); the API's RSS and Redis's command rate (INFO
   `total_commands_processed`, and which commands) are read again while they wait: waiting should
   cost Redis nothing, whatever the number of waiters;
3. `GET /health` (and a poll) timed from a third process meanwhile;
4. wake-up latency, from the moment this process starts a job's final write (the worker's own
   script, with a real checklist) until that job's client has its final answer (the long-poll's
   response, the stream's terminal event): jobs finishing one at a time, then at a steady rate
   (that of a busy worker fleet), then all the others back to back.

Every process started here has its open-file limit raised to the hard limit, and clients connect
100 at a time (the API's listen backlog is uvicorn's 2048).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import msgspec
import redis

from bench.harness import UNLIMITED, RedisCommands, api_server, base_env, raise_nofile, rss_mib, server_process
from bench.streams import TRIP, _finish, _load, _quantiles
from shared.embedded_redis import free_port
from shared.jobs import SyncJobStore
from shared.schemas import TripRequest
from worker.providers.offline.offline import OfflineProvider

#: Jobs finished one at a time, 0.1 s apart; then `STEADY_RATE` a second for `STEADY` jobs.
ONE_AT_A_TIME = 20
STEADY_RATE = 200.0
WAKE_GOAL_MS = 50.0
HEALTH_GOAL_MS = 20.0


def _submit(port: int, token: str, count: int, scratch: Path) -> list[str]:
    out = scratch / "ids"
    load = _load("submit", port, token, "--count", str(count), "--connections", "16", "--out", str(out))
    load.communicate(timeout=300)
    return out.read_text().split()


def _probe(port: int, token: str, job_id: str, seconds: float) -> dict[str, list[float]]:
    probe = _load("probe", port, token, "--job", job_id, "--seconds", str(seconds))
    output, _ = probe.communicate(timeout=seconds + 30)
    latencies: dict[str, list[float]] = json.loads(output)
    return latencies


def _top(commands: dict[str, int], seconds: float) -> str:
    return ", ".join(f"{name} {calls / seconds:.1f}/s" for name, calls in list(commands.items())[:4]) or "none"


def _round(kind: str, count: int, redis_url: str, scratch: Path, *, window: float, probe: float) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = base_env(REDIS_URL=redis_url, **UNLIMITED)
    port = free_port()
    label = {"polls": "long-polls", "streams": "event streams"}[kind]
    with api_server(port, env) as api, httpx.Client(base_url=api, timeout=30) as http:
        credentials = {"email": f"bench-{time.time_ns()}@example.com", "password": "bench pass phrase 2026"}
        http.post("/api/v1/auth/register", json=credentials).raise_for_status()
        token = http.post("/api/v1/auth/login", json=credentials).json()["access_token"]
        ids = _submit(port, token, count + 1, scratch)
        polled, ids = ids[0], ids[1:]
        api_process = server_process(port)
        idle_rss = rss_mib(api_process)
        counter = RedisCommands(client)
        time.sleep(window)
        idle_rate, idle_commands = counter.since()

        ids_file = scratch / f"{kind}-ids"
        ids_file.write_text("\n".join(ids))
        extra = ("--wait", "30") if kind == "polls" else ()
        load = _load(kind, port, token, "--ids", str(ids_file), *extra)
        ready = load.stdout.readline().split() if load.stdout else []
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"the {label} did not get going")
        time.sleep(2.0)  # every request read the job and went to sleep
        waiting_rss = rss_mib(api_process)
        counter.since()
        time.sleep(window)
        waiting_rate, waiting_commands = counter.since()
        during = _probe(port, token, polled, probe)

        store = SyncJobStore(client, job_ttl=3600)
        jobs = [job for job in map(store.get, ids) if job is not None]
        checklist = OfflineProvider().generate(msgspec.convert(TRIP, TripRequest)).checklist
        steady = min(len(jobs) - ONE_AT_A_TIME, int(STEADY_RATE * 5))
        began = _finish(store, jobs[:ONE_AT_A_TIME], checklist, pause=0.1)
        began |= _finish(store, jobs[ONE_AT_A_TIME : ONE_AT_A_TIME + steady], checklist, pause=1 / STEADY_RATE)
        burst_start = time.monotonic()
        began |= _finish(store, jobs[ONE_AT_A_TIME + steady :], checklist, pause=0)
        burst = time.monotonic() - burst_start
        output, _ = load.communicate(timeout=120)
    result = json.loads(output)
    finished: dict[str, float] = result["finished"]
    wake = [(finished[job_id] - began[job_id]) * 1000 for job_id in ids if job_id in finished]
    single, paced, rest = (
        wake[:ONE_AT_A_TIME],
        wake[ONE_AT_A_TIME : ONE_AT_A_TIME + steady],
        wake[ONE_AT_A_TIME + steady :],
    )
    print(f"  {count:,} {label} (all waiting {float(ready[1]):.2f} s after the first was opened):")
    print(f"    API RSS {idle_rss:.0f} MiB idle, {waiting_rss:.0f} MiB with them waiting"
          f" ({(waiting_rss - idle_rss) * 1024 / count:.1f} KiB each)")  # fmt: skip
    print(f"    Redis commands/s: {idle_rate:.1f} nobody waiting ({_top(idle_commands, window)});"
          f" {waiting_rate:.1f} with {count:,} waiting ({_top(waiting_commands, window)})")  # fmt: skip
    health = during["health"]
    print(f"    GET /health meanwhile: {_quantiles(health)}   ({len(health)} requests, another process)")
    print(f"    poll meanwhile:        {_quantiles(during['poll'])}")
    print(f"    wake-up, final write → client's final answer, {len(single)} one at a time: {_quantiles(single)}")
    if paced:
        print(f"    wake-up, {len(paced)} at {STEADY_RATE:g} jobs/s:                      {_quantiles(paced)}")
    if rest:
        print(f"    wake-up, {len(rest)} back to back (their writes took {burst:.2f} s):  {_quantiles(rest)}")
    print(f"    {len(finished)} of {count} clients had their final answer;"
          f" the clients' process used {result['cpu']:.2f} s of CPU")  # fmt: skip
    return {"idle_rate": idle_rate, "waiting_rate": waiting_rate, "rss": waiting_rss - idle_rss}


def waiters(counts: list[int], redis_url: str, scratch: Path, *, window: float, probe: float) -> None:
    limit = raise_nofile()
    print(f"\nWaiting clients on one API process (no worker: jobs wait; open files allowed: {limit}):")
    for kind in ("polls", "streams"):
        for count in counts:
            _round(kind, count, redis_url, scratch, window=window, probe=probe)
    print(f"  (goals: wake-up p99 ≤ {WAKE_GOAL_MS:g} ms, /health p99 ≤ {HEALTH_GOAL_MS:g} ms,"
          " Redis commands/s independent of the number waiting)")  # fmt: skip
