"""`make bench BENCH_ARGS=--processes`: the API with WORKERS=2 against WORKERS=1 on this machine.

Submit and poll (a succeeded job), each under wrk, alternating between a one-process and a
two-process API (the production command, `python -m api.serve --workers N`) for a few rounds. On a
2-core machine the two API processes share the cores with wrk and Redis, so besides requests per
second each run reports where the CPU went: the API's processes, wrk, redis-server (seconds of CPU
per second of run, i.e. cores), what the rest of the machine used meanwhile (other work on a shared
machine), and the API's CPU per request, which says whether a second process costs anything per
request (it should not) apart from the cores it cannot get.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass

import psutil

from bench.harness import (
    TRIP,
    UNLIMITED,
    api_server,
    base_env,
    busy_cores,
    finished_job,
    process_tree,
    server_process,
    sign_in,
    tree_cpu,
    wrk_run,
)
from shared.embedded_redis import free_port

GOAL = 1.6


@dataclass(frozen=True, slots=True)
class Sample:
    rate: float  # requests per second
    api: float  # cores the API's processes used
    wrk: float  # cores wrk used
    redis: float  # cores redis-server used
    others: float  # cores the rest of the machine used (the benchmark's own Python, other work)
    api_us: float  # API CPU per request, µs


def _sample(url: str, body: bytes | None, auth: dict[str, str], api: list[psutil.Process], redis_server: psutil.Process,
            seconds: float, connections: int) -> Sample:  # fmt: skip
    api_before, redis_before, busy_before = tree_cpu(api), tree_cpu([redis_server]), busy_cores()
    began = time.monotonic()
    run = wrk_run(url, seconds=seconds, connections=connections, body=body, headers=auth)
    elapsed = time.monotonic() - began
    api_cpu, redis_cpu = tree_cpu(api) - api_before, tree_cpu([redis_server]) - redis_before
    others = busy_cores() - busy_before - api_cpu - redis_cpu - run.cpu
    return Sample(run.rate, api_cpu / elapsed, run.cpu / elapsed, redis_cpu / elapsed, others / elapsed,
                  api_cpu / run.served * 1e6)  # fmt: skip


def processes(redis_url: str, redis_pid: int, *, seconds: float, rounds: int, connections: int) -> dict[str, float]:
    env = base_env(REDIS_URL=redis_url, **UNLIMITED)
    redis_server = psutil.Process(redis_pid)
    print(f"\nAPI processes: WORKERS=2 against WORKERS=1 ({psutil.cpu_count()} cores shared with wrk and Redis)")
    with ExitStack() as stack:
        servers: dict[int, tuple[str, list[psutil.Process]]] = {}
        for workers in (1, 2):
            port = free_port()
            base = stack.enter_context(api_server(port, env, workers=workers))
            root = server_process(port)
            while len(process_tree(root)) < workers + 1 and workers > 1:  # uvicorn's supervisor + its workers
                time.sleep(0.1)
            servers[workers] = base, process_tree(root)
        auth = sign_in(servers[1][0])
        job_id, _ = finished_job(servers[1][0], redis_url, env, auth)
        paths = {"submit": ("/api/v1/checklists", TRIP), "poll": (f"/api/v1/checklists/{job_id}", None)}
        samples: dict[tuple[str, int], list[Sample]] = {(name, w): [] for name in paths for w in servers}
        for name, workers in list(samples):  # warm up every process
            base = servers[workers][0]
            wrk_run(base + paths[name][0], seconds=1, connections=connections, body=paths[name][1], headers=auth)
        for round_number in range(1, rounds + 1):
            for (name, workers), runs in samples.items():
                base, tree = servers[workers]
                url, body = base + paths[name][0], paths[name][1]
                runs.append(_sample(url, body, auth, tree, redis_server, seconds, connections))
            print(f"  round {round_number}: " + ", ".join(
                f"{name} W={w} {s[-1].rate:,.0f}/s" for (name, w), s in samples.items()))  # fmt: skip
    ratios = {}
    print(f"  (median of {rounds} rounds of {seconds:g}s, {connections} connections, wrk with one thread;"
          " CPU in cores used while wrk ran)")  # fmt: skip
    for (name, workers), runs in samples.items():
        median = {field: statistics.median(getattr(s, field) for s in runs) for field in Sample.__slots__}
        print(f"  {name:<6} WORKERS={workers}  {median['rate']:>8,.0f} req/s   API {median['api']:.2f} cores"
              f" ({median['api_us']:4.0f} µs/request)   wrk {median['wrk']:.2f}"
              f"   redis-server {median['redis']:.2f}   rest of the machine {median['others']:.2f}")  # fmt: skip
        if workers == 2:
            one = statistics.median(s.rate for s in samples[name, 1])
            ratios[name] = median["rate"] / one
    for name, ratio in ratios.items():
        print(
            f"  {name}: WORKERS=2 / WORKERS=1 = {ratio:.2f}x  (goal ≥ {GOAL}x: {'met' if ratio >= GOAL else 'MISSED'})"
        )
    return ratios
