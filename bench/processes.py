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

import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from bench.harness import (
    TRIP,
    UNLIMITED,
    WrkRun,
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
    redis_us: float  # redis-server CPU per request, µs
    wrk_us: float  # wrk CPU per request, µs
    split: tuple[int, ...]  # connections each API process held in the middle of the run


def _connections(process: psutil.Process, port: int) -> int:
    try:
        return sum(1 for c in process.net_connections("tcp") if c.status == "ESTABLISHED" and c.laddr.port == port)
    except psutil.NoSuchProcess:
        return 0


def _serving(root: psutil.Process, workers: int) -> list[psutil.Process]:
    """The processes that serve requests: uvicorn itself, or its worker processes."""
    if workers == 1:
        return [root]
    return [child for child in root.children() if "resource_tracker" not in " ".join(child.cmdline())]


def _sample(url: str, body: bytes | None, auth: dict[str, str], api: list[psutil.Process],
            serving: list[psutil.Process], redis_server: psutil.Process, seconds: float,
            connections: int) -> Sample:  # fmt: skip
    port = urlsplit(url).port or 80
    api_before, redis_before, busy_before = tree_cpu(api), tree_cpu([redis_server]), busy_cores()
    began = time.monotonic()
    runs: list[WrkRun] = []
    load = threading.Thread(
        target=lambda: runs.append(wrk_run(url, seconds=seconds, connections=connections, body=body, headers=auth))
    )
    load.start()
    time.sleep(seconds / 2)
    split = tuple(sorted((_connections(process, port) for process in serving), reverse=True))
    load.join()
    run = runs[0]
    elapsed = time.monotonic() - began
    api_cpu, redis_cpu = tree_cpu(api) - api_before, tree_cpu([redis_server]) - redis_before
    others = busy_cores() - busy_before - api_cpu - redis_cpu - run.cpu
    return Sample(run.rate, api_cpu / elapsed, run.cpu / elapsed, redis_cpu / elapsed, others / elapsed,
                  api_cpu / run.served * 1e6, redis_cpu / run.served * 1e6, run.cpu / run.served * 1e6,
                  split)  # fmt: skip


@contextmanager
def _realtime(redis_server: psutil.Process, enabled: bool) -> Iterator[None]:
    """Run redis-server under SCHED_FIFO meanwhile (it runs as soon as a command reaches it; root
    only), and as any process again afterwards, for the sections that follow."""
    if not enabled:
        yield
        return
    try:
        os.sched_setscheduler(redis_server.pid, os.SCHED_FIFO, os.sched_param(10))
    except PermissionError as exc:
        raise SystemExit("--redis-realtime needs root (SCHED_FIFO)") from exc
    try:
        yield
    finally:
        os.sched_setscheduler(redis_server.pid, os.SCHED_OTHER, os.sched_param(0))


def processes(redis_url: str, redis_pid: int, *, seconds: float, rounds: int, connections: int,
              redis_realtime: bool = False) -> dict[str, float]:  # fmt: skip
    env = base_env(REDIS_URL=redis_url, **UNLIMITED)
    redis_server = psutil.Process(redis_pid)
    cores = psutil.cpu_count() or 1
    print(f"\nAPI processes: WORKERS=2 against WORKERS=1 ({cores} cores shared with wrk and Redis"
          f"{'; Redis under SCHED_FIFO' if redis_realtime else ''})")  # fmt: skip
    with ExitStack() as stack:
        stack.enter_context(_realtime(redis_server, redis_realtime))
        servers: dict[int, tuple[str, list[psutil.Process], list[psutil.Process]]] = {}
        for workers in (1, 2):
            port = free_port()
            base = stack.enter_context(api_server(port, env, workers=workers))
            root = server_process(port)
            while len(_serving(root, workers)) < workers:  # uvicorn's supervisor starts its workers
                time.sleep(0.1)
            servers[workers] = base, process_tree(root), _serving(root, workers)
        auth = sign_in(servers[1][0])
        job_id, _ = finished_job(servers[1][0], redis_url, env, auth)
        paths = {"submit": ("/api/v1/checklists", TRIP), "poll": (f"/api/v1/checklists/{job_id}", None)}
        samples: dict[tuple[str, int], list[Sample]] = {(name, w): [] for name in paths for w in servers}
        for name, workers in list(samples):  # warm up every process
            base = servers[workers][0]
            wrk_run(base + paths[name][0], seconds=1, connections=connections, body=paths[name][1], headers=auth)
        for round_number in range(1, rounds + 1):
            for (name, workers), runs in samples.items():
                base, tree, serving = servers[workers]
                url, body = base + paths[name][0], paths[name][1]
                runs.append(_sample(url, body, auth, tree, serving, redis_server, seconds, connections))
            print(f"  round {round_number}: " + ", ".join(
                f"{name} W={w} {s[-1].rate:,.0f}/s" + (f" {'/'.join(map(str, s[-1].split))}" if w > 1 else "")
                for (name, w), s in samples.items()))  # fmt: skip
    ratios = {}
    print(f"  (median of {rounds} rounds of {seconds:g}s, {connections} connections, wrk with one thread;"
          " CPU in cores used while wrk ran; a/b: connections per API process)")  # fmt: skip
    for (name, workers), runs in samples.items():
        median = {field: statistics.median(getattr(s, field) for s in runs if field != "split") for field in
                  Sample.__slots__ if field != "split"}  # fmt: skip
        print(f"  {name:<6} WORKERS={workers}  {median['rate']:>8,.0f} req/s   API {median['api']:.2f} cores"
              f" ({median['api_us']:4.0f} µs/request)   wrk {median['wrk']:.2f} ({median['wrk_us']:.0f} µs)"
              f"   redis-server {median['redis']:.2f} ({median['redis_us']:.0f} µs)"
              f"   rest of the machine {median['others']:.2f}")  # fmt: skip
        if workers == 2:
            one = statistics.median(s.rate for s in samples[name, 1])
            ratios[name] = median["rate"] / one
    for name, ratio in ratios.items():
        single = samples[name, 1]
        per_request = statistics.median(s.api_us + s.redis_us + s.wrk_us for s in single) / 1e6
        ceiling = cores / per_request / statistics.median(s.rate for s in single)
        verdict = "met" if ratio >= GOAL else "MISSED"
        print(f"  {name}: WORKERS=2 / WORKERS=1 = {ratio:.2f}x  (goal ≥ {GOAL}x: {verdict};"
              f" CPU ceiling on {cores} cores {ceiling:.2f}x)")  # fmt: skip
    return ratios
