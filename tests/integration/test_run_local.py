"""`make run`'s launcher: it starts everything and its printed example works; it restarts a crashed
API, worker or embedded Redis (Redis on the same port with its data); Ctrl-C stops the API and the
worker first, letting a running job finish, then Redis, and leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
import pytest
import redis

from shared import keys
from shared.embedded_redis import EmbeddedRedis, free_port
from tests.fakes.groq_server import FakeGroq, Reply
from tests.support import ROOT, TEST_PASSWORD, environment

TRIP = {"location": "Lisbon, Portugal", "days": 3, "transport": "plane", "occasion": "city break"}


class LocalRun:
    """`python -m ops.run_local` in a session of its own, as a terminal runs it; its output collected."""

    def __init__(self, data_dir: Path, *args: str, **overrides: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        env = environment({"PORT": str(self.port), "LOCAL_DATA_DIR": str(data_dir), **overrides})
        env.pop("REDIS_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops.run_local", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="launcher-output", daemon=True)
        self._reader.start()
        self.wait_for("Press Ctrl-C", timeout=120)
        self.http = httpx.Client(base_url=self.base_url, timeout=30.0)
        self._token: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the output; `wait_for(..., since=mark)` looks only at what came after."""
        with self._changed:
            return len(self.lines)

    def wait_for(self, text: str, *, since: int = 0, timeout: float = 30.0) -> str:
        """The first output line from `since` on that contains `text`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = since
            while True:
                for line in self.lines[seen:]:
                    if text in line:
                        return line
                    if line == "":
                        raise AssertionError(f"launcher ended without printing {text!r}:\n{''.join(self.lines)}")
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"launcher did not print {text!r}:\n{''.join(self.lines)}")
                self._changed.wait(remaining)

    def child(self, name: str) -> psutil.Process:
        """The launcher's running `api`, `worker` or `redis` child."""
        for process in psutil.Process(self.process.pid).children():
            try:
                command = " ".join(process.cmdline())
            except psutil.NoSuchProcess:
                continue
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if {"api": "api.serve", "worker": "celery", "redis": "redis-server"}[name] in command:
                return process
        raise AssertionError(f"no {name} child:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt(self) -> None:
        """Ctrl-C in a terminal: SIGINT to the launcher's whole process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def close(self, signum: signal.Signals | None = None) -> int:
        """Stop the launcher (by default as Ctrl-C does; `signum` goes to the launcher alone)."""
        if self.process.poll() is None:
            if signum is None:
                self.interrupt()
            else:
                self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self.http.close()
        self._reader.join(timeout=10)  # the end of output, once no child holds the pipe any more
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    # The API, as a user of the stack sees it.

    def headers(self) -> dict[str, str]:
        if self._token is None:
            login = {"email": f"local-{uuid.uuid4().hex[:10]}@example.com", "password": TEST_PASSWORD}
            assert self.http.post("/api/v1/auth/register", json=login).status_code == 201
            self._token = self.http.post("/api/v1/auth/login", json=login).json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def submit(self) -> str:
        response = self.http.post("/api/v1/checklists", json=TRIP, headers=self.headers())
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/checklists/{job_id}", params={"wait": wait}, headers=self.headers())
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def eventually(self, check: Any, timeout: float = 60.0) -> Any:
        """`check()`'s first answer that is not an error or an assertion failure (the stack recovering)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return check()
            except (AssertionError, httpx.HTTPError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def finished_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def finished() -> dict[str, Any]:
            job = self.job(job_id, wait=5)
            assert job["status"] in {"succeeded", "failed", "cancelled"}, job
            return job

        result: dict[str, Any] = self.eventually(finished, timeout)
        return result


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One `make run` the restart tests share; each kills one child and watches it come back."""
    run = LocalRun(tmp_path_factory.mktemp("local"), WORKER_CONCURRENCY="2")
    try:
        yield run
    finally:
        run.close()


def test_make_run_serves_the_printed_example_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # `make run FLOWER=1`: Flower too, signed in with the credentials the banner prints.
    run = LocalRun(tmp_path, "--flower", WORKER_CONCURRENCY="2", FLOWER_PORT=str(free_port()))
    try:
        lines = run.output.splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.startswith("Try it")) + 1
        end = next(i for i in range(start, len(lines)) if not lines[i].strip())
        example = "".join(lines[start:end])
        children = run.descendants()
        flower = re.search(r"Flower +(\S+) \(user (\S+), password (\S+)\)", run.output)
        assert flower is not None, run.output
        url, user, password = flower.groups()

        def flower_sees_the_worker() -> None:
            metrics = httpx.get(f"{url}metrics", auth=(user, password))
            assert metrics.status_code == 200
            assert re.search(r"flower_worker_online\{.*\} 1\.0", metrics.text)

        run.eventually(flower_sees_the_worker)  # before the example, so that it sees its task

        began = time.monotonic()
        output = subprocess.run(["bash", "-c", example], capture_output=True, text=True, timeout=30, check=True)
        elapsed = time.monotonic() - began
        job = msgspec.json.decode(output.stdout.strip().splitlines()[-1])

        assert f"http://127.0.0.1:{run.port}" in run.output
        assert "(embedded" in run.output
        assert job["status"] == "succeeded", output.stdout
        assert job["result"]["generated_by"]["provider"] == "offline"
        assert elapsed < 10
        assert {child.name() for child in children} >= {"redis-server"}
        assert httpx.get(f"{url}workers").status_code == 401

        def flower_shows_the_task() -> None:
            tasks = httpx.get(f"{url}api/tasks", auth=(user, password)).json()
            assert tasks[job["id"]]["state"] == "SUCCESS"

        run.eventually(flower_shows_the_task, timeout=20)
    finally:
        code = run.close(signal.SIGTERM)  # as `make` passes on its own SIGTERM

    assert code == 0
    assert "redis stopped" in run.output
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert len(gone) == len(children)
    assert (tmp_path / "redis").is_dir()
    assert not os.path.exists(f"/proc/{run.process.pid}")


def test_make_run_restarts_a_killed_worker(local_run: LocalRun) -> None:
    killed = local_run.child("worker")
    mark = local_run.mark()

    killed.kill()

    exited = local_run.wait_for(f"worker (pid {killed.pid}) exited", since=mark)
    assert "signal SIGKILL" in exited
    assert "restarting in" in exited
    local_run.wait_for("worker restarted", since=mark)
    assert local_run.child("worker").pid != killed.pid
    job = local_run.finished_job(local_run.submit())
    assert job["status"] == "succeeded", job


def test_make_run_restarts_a_killed_redis_on_its_port_with_its_data(local_run: LocalRun) -> None:
    stored = local_run.finished_job(local_run.submit())
    killed = local_run.child("redis")
    port, data_dir = listening_port(killed), killed.cwd()
    mark = local_run.mark()

    killed.kill()

    exited = local_run.wait_for(f"redis (pid {killed.pid}) exited", since=mark)
    assert "signal SIGKILL" in exited
    local_run.wait_for("redis restarted", since=mark)
    restarted = local_run.child("redis")
    assert restarted.pid != killed.pid
    assert local_run.eventually(lambda: listening_port(restarted), timeout=10) == port
    assert restarted.cwd() == data_dir  # redis-server works in its --dir
    # The job stored before the kill is read back from the append-only file, and the stack serves.
    assert local_run.eventually(lambda: local_run.job(stored["id"])) == stored
    job = local_run.eventually(lambda: local_run.finished_job(local_run.submit()), timeout=90)
    assert job["status"] == "succeeded", job


def test_make_run_restarts_a_killed_api(local_run: LocalRun) -> None:
    killed = local_run.child("api")
    mark = local_run.mark()

    killed.kill()

    exited = local_run.wait_for(f"api (pid {killed.pid}) exited", since=mark)
    assert "signal SIGKILL" in exited
    local_run.wait_for("api restarted", since=mark)
    assert local_run.child("api").pid != killed.pid
    ready = local_run.eventually(lambda: local_run.http.get("/health/ready").raise_for_status())
    assert ready.json()["status"] == "ready"


def listening_port(process: psutil.Process) -> int:
    ports = {c.laddr.port for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert len(ports) == 1, f"{process} listens on {ports}"
    return int(ports.pop())


def _exit_times(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """When each process stopped running (exited, even if its parent has not reaped it yet)."""
    times: dict[str, float] = {}
    while len(times) < len(processes):
        for name, process in processes.items():
            if name in times:
                continue
            try:
                running = process.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                running = False
            if not running:
                times[name] = time.monotonic()
        time.sleep(0.005)
    return times


def test_ctrl_c_lets_the_running_job_finish_and_stops_redis_last(tmp_path: Path, groq: FakeGroq) -> None:
    groq.script(Reply.slow(3))
    run = LocalRun(tmp_path, GROQ_API_KEY="test-key-not-secret", GROQ_BASE_URL=groq.base_url)
    try:
        job_id = run.submit()
        run.eventually(lambda: assert_status(run.job(job_id), "running"), timeout=10)
        processes = {name: run.child(name) for name in ("api", "worker", "redis")}
        redis_port = listening_port(processes["redis"])
        everything = run.descendants()
        watcher: dict[str, dict[str, float]] = {}
        watching = threading.Thread(target=lambda: watcher.update(times=_exit_times(processes)), daemon=True)
        watching.start()
    finally:
        code = run.close()

    watching.join(timeout=30)
    exited = watcher["times"]
    assert code == 0
    assert exited["redis"] > exited["worker"]
    assert exited["redis"] > exited["api"]
    _, alive = psutil.wait_procs(everything, timeout=5)
    assert alive == []
    # The job that was running when Ctrl-C came finished and its result reached Redis's disk.
    with EmbeddedRedis(tmp_path / "redis", port=redis_port) as server:
        client = redis.Redis.from_url(server.url)
        doc = client.hget(keys.job(job_id), "doc")
        client.close()
    assert doc is not None
    assert msgspec.json.decode(doc)["status"] == "succeeded"


def assert_status(job: dict[str, Any], status: str) -> None:
    assert job["status"] == status, job
