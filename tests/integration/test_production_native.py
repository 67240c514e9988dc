"""The production topology, natively: ops/deploy.sh deploys releases made of the images' files, with
each container's own command and environment (docker-compose.prod.yml, the Dockerfiles) run as a
process (tests/native_driver.py), behind a small proxy that stands in for Caddy (TLS aside).

- The smoke test: the first deploy brings up Redis (password, AOF), two API processes with
  --no-proxy-headers and ENVIRONMENT=production, a worker with the production options, Flower
  behind authentication; ops/verify.sh passes against it (deploy.sh runs it, and so does the test).
- The backup drill: data written through the API, `deploy.sh backup`, Redis's data destroyed,
  `deploy.sh restore FILE`: every account and job is back and verify.sh passes.
- The rollback drill: a good release replaces the running one, then a release whose API fails
  its readiness check is rolled back automatically, while a client loop keeps being answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from shared.embedded_redis import free_port
from tests import native_driver
from tests.production import ENV_EXAMPLE, ROOT, read_dotenv
from tests.support import TEST_PASSWORD

pytestmark = pytest.mark.timeout(300)

ORIGIN = "https://app.example.test"
#: What an operator writes over each CHANGE_ME of .env.example for these drills.
REPLACEMENTS = {
    "SECRET_KEY": "a" * 20 + "native-drill-secret-key-0123456789",
    "GROQ_API_KEY": "gsk_not_used_the_provider_is_offline",
    "REDIS_PASSWORD": "drillRedisPassword0123456789",
    "METRICS_TOKEN": "drill-metrics-token-0123456789",
    "DOMAIN": "trips.example.test",
    "ACME_EMAIL": "ops@example.test",
    "FLOWER_BASIC_AUTH": "admin:drillFlowerAdmin01,prometheus:drillFlowerScrape01",
    "GRAFANA_ADMIN_PASSWORD": "drillGrafana0123",
    "ALERTMANAGER_WEBHOOK_URL": "https://hooks.example.test/alerts",
}
#: Settings of these drills on top: no Groq, quick heartbeats, a CORS origin for verify.sh to check.
EXTRA = {
    "LLM_PROVIDER": "offline",
    "WORKER_HEARTBEAT_INTERVAL": "0.5",
    "WORKER_CONCURRENCY": "4",
    "ALLOWED_ORIGINS": ORIGIN,
    "AUTH_RATE_LIMIT_REQUESTS": "500",
}
TRIP = {"location": "Lisbon, Portugal", "days": 3, "transport": "plane", "occasion": "city break"}


def filled_env_example() -> str:
    """.env.example with its placeholders replaced, as the runbook tells an operator to."""
    lines = []
    for original in ENV_EXAMPLE.read_text().splitlines():
        key = original.split("=", 1)[0]
        placeholder = "CHANGE_ME" in original and not original.startswith("#")
        lines.append(f"{key}={REPLACEMENTS[key]}" if placeholder else original)
    lines += [f"{key}={value}" for key, value in EXTRA.items()]
    return "\n".join(lines) + "\n"


class Proxy:
    """Caddy's part, natively: each connection goes to an API instance the `upstreams` file names
    (round robin), tried in turn until one accepts."""

    def __init__(self, upstreams: Path) -> None:
        self.upstreams = upstreams
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.turn = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        ports = [line for line in self.upstreams.read_text().split() if line] if self.upstreams.exists() else []
        self.turn += 1
        deadline = time.monotonic() + 10  # Caddy's lb_try_duration
        while time.monotonic() < deadline and ports:
            port = int(ports[self.turn % len(ports)])
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                self.turn += 1
                time.sleep(0.05)
                ports = [line for line in self.upstreams.read_text().split() if line]
        else:
            client.close()
            return
        with contextlib.suppress(OSError):
            self._relay(client, upstream)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            upstream.settimeout(None)
            back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
            back.start()
            self._pipe(client, upstream)
            back.join(timeout=60)
        finally:
            upstream.close()
            client.close()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        self.server.close()


@dataclass
class Stack:
    root: Path
    proxy: Proxy
    env: dict[str, str]
    dotenv: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def deploy_sh(self, *args: str, tag: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if tag is not None:
            env["RELEASE_TAG"] = tag
        return subprocess.run(
            [str(ROOT / "ops" / "deploy.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def verify_sh(self) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "VERIFY_ORIGIN": ORIGIN, "METRICS_TOKEN": self.dotenv.get("METRICS_TOKEN", "")}
        return subprocess.run(
            [str(ROOT / "ops" / "verify.sh"), self.base_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def instances(self, service: str) -> list[dict[str, object]]:
        return native_driver.instances(service)

    def driver(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "tests.native_driver", *args], env=self.env, check=True, timeout=120)

    def redis(self) -> redis.Redis:
        config = native_driver.config()
        return redis.Redis(port=config["redis_port"], password=self.dotenv["REDIS_PASSWORD"])


def make_release(releases: Path, tag: str, *, broken_readiness: bool = False) -> None:
    """A release: the files the images copy (their Dockerfiles' COPY lines), under releases/<tag>."""
    target = releases / tag
    for name in ("api", "shared", "worker", "ops"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    if broken_readiness:
        # A bug that leaves /health answering but /health/ready never ready.
        health = target / "api" / "routes" / "health.py"
        source = health.read_text()
        assert "asyncio.timeout(2.0)" in source
        health.write_text(source.replace("asyncio.timeout(2.0)", "asyncio.timeout(0.0)"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("production")
    state = root / "state"
    (state / "instances").mkdir(parents=True)
    env_file = root / ".env"
    env_file.write_text(filled_env_example())
    env_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    dotenv = read_dotenv(env_file)
    backups = root / "backups"
    backups.mkdir()
    releases = root / "releases"
    make_release(releases, "v1")
    make_release(releases, "v2")
    make_release(releases, "v3-broken", broken_readiness=True)
    config = {"redis_port": free_port(), "env_file": str(env_file), "releases": str(releases)}
    config["backup_dir"] = str(backups)
    (state / "config.json").write_text(json.dumps(config))
    native_driver.STATE = state
    proxy = Proxy(state / "upstreams")
    env = {name: value for name, value in os.environ.items() if name not in ("REDIS_URL", "ENVIRONMENT")}
    env.update(
        DEPLOY_DRIVER=f"{sys.executable} -m tests.native_driver",
        NATIVE_STATE=str(state),
        ENV_FILE=str(env_file),
        DEPLOY_STATE_DIR=str(root / "deploy"),
        BACKUP_DIR=str(backups),
        BASE_URL=f"http://127.0.0.1:{proxy.port}",
        READY_TIMEOUT="30",
        PYTHONPATH=str(ROOT),
    )
    stack = Stack(root, proxy, env, dotenv)
    deployed = stack.deploy_sh("deploy", tag="v1")
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield stack
    finally:
        proxy.close()
        for item in stack.instances("api") + stack.instances("worker") + stack.instances("flower"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(str(item["pid"])), signal.SIGKILL)
        stack.driver("redis-stop")


def test_the_first_deploy_runs_the_containers_commands_with_production_settings(stack: Stack) -> None:
    (api,) = stack.instances("api")
    process = psutil.Process(int(str(api["pid"])))
    command = process.cmdline()
    # api.serve: uvicorn without proxy headers (TRUSTED_PROXIES decides), WORKERS processes.
    assert command[-2:] == ["-m", "api.serve"]
    assert process.environ()["WORKERS"] == "2"
    assert len([child for child in process.children(recursive=True) if "python" in child.name()]) >= 2
    assert process.environ()["ENVIRONMENT"] == "production"
    (worker,) = stack.instances("worker")
    worker_command = psutil.Process(int(str(worker["pid"]))).cmdline()
    assert worker_command[worker_command.index("-Q") + 1] == "checklists,webhooks"
    assert "--without-gossip" in worker_command
    # Redis: a password and the append-only file.
    with redis.Redis(port=native_driver.config()["redis_port"]) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with stack.redis() as client:
        assert client.info("persistence")["aof_enabled"] == 1
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    # Flower asks for credentials.
    (flower,) = stack.instances("flower")
    flower_url = f"http://127.0.0.1:{flower['port']}/flower/"
    assert httpx.get(flower_url).status_code == 401
    scrape = tuple(REPLACEMENTS["FLOWER_BASIC_AUTH"].split(",")[1].split(":"))
    assert httpx.get(flower_url, auth=(scrape[0], scrape[1])).status_code == 200


def test_verify_passes_against_the_native_topology(stack: Stack) -> None:
    result = stack.verify_sh()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: all checks passed" in result.stdout
    assert "CORS allows" in result.stdout


def test_verify_fails_with_a_clear_message_when_no_worker_is_alive(stack: Stack) -> None:
    (worker,) = stack.instances("worker")
    stack.driver("stop", str(worker["id"]))
    try:
        deadline = time.monotonic() + 15
        result = stack.verify_sh()
        while "live worker" not in result.stderr and time.monotonic() < deadline:
            time.sleep(0.5)
            result = stack.verify_sh()
        assert result.returncode == 1
        assert "verify: FAILED: /health/ready counts 0 live workers" in result.stderr
    finally:
        stack.driver("start", "worker", "v1", "1")
        deadline = time.monotonic() + 30
        while stack.verify_sh().returncode != 0:
            assert time.monotonic() < deadline, "the worker did not come back"
            time.sleep(0.5)


def _current(stack: Stack) -> str:
    return (stack.root / "deploy" / "current").read_text().strip()


def test_backup_drill_restores_every_account_and_job_after_redis_data_is_lost(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        _drill(stack, http)


def _drill(stack: Stack, http: httpx.Client) -> None:
    accounts: dict[str, list[str]] = {}
    for number in range(3):
        email = f"drill-{number}-{time.monotonic_ns()}@example.com"
        assert http.post("/api/v1/auth/register", json={"email": email, "password": TEST_PASSWORD}).status_code == 201
        token = http.post("/api/v1/auth/login", json={"email": email, "password": TEST_PASSWORD}).json()["access_token"]
        jobs = []
        for _ in range(2):
            answer = http.post("/api/v1/checklists", json=TRIP, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json()["id"])
        for job in jobs:
            done = http.get(f"/api/v1/checklists/{job}?wait=20", headers={"Authorization": f"Bearer {token}"})
            assert done.json()["status"] == "succeeded"
        accounts[email] = jobs
    with stack.redis() as client:
        keys_before = client.dbsize()

    backup = stack.deploy_sh("backup")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    (file,) = [line.split()[2] for line in backup.stdout.splitlines() if line.startswith("redis-backup: backup ")]
    assert Path(file + ".sha256").exists()

    # Redis's data is lost: the server stops, its files are deleted, it starts empty.
    stack.driver("redis-stop")
    shutil.rmtree(stack.state / "redis-data")
    stack.driver("redis-start")
    with stack.redis() as client:
        assert client.dbsize() < 5  # what the running workers wrote since (heartbeats, queues)

    restored = stack.deploy_sh("restore", Path(file).name)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored redis-" in restored.stdout
    assert "verify: all checks passed" in restored.stdout

    with stack.redis() as client:
        assert client.dbsize() >= keys_before - 2, restored.stdout
    for email, jobs in accounts.items():
        login = http.post("/api/v1/auth/login", json={"email": email, "password": TEST_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for job in jobs:
            answer = http.get(f"/api/v1/checklists/{job}", headers=headers)
            assert answer.status_code == 200
            assert answer.json()["status"] == "succeeded"
    assert stack.verify_sh().returncode == 0


def test_a_restore_refuses_a_backup_whose_checksum_does_not_match(stack: Stack) -> None:
    backup = stack.deploy_sh("backup")
    assert backup.returncode == 0, backup.stderr
    (file,) = [line.split()[2] for line in backup.stdout.splitlines() if line.startswith("redis-backup: backup ")]
    with open(file, "ab") as damaged:
        damaged.write(b"x")

    result = stack.deploy_sh("restore", Path(file).name)

    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr
    assert "nothing was changed" in result.stderr
    assert len(stack.instances("api")) == 1  # the writers were never stopped


class ClientLoop:
    """A steady client: GET /health through the proxy every 50 ms on a new connection."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.results: list[tuple[float, bool]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                ok = httpx.get(f"{self.base_url}/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.results.append((time.monotonic(), ok))
            time.sleep(0.05)

    def stop(self) -> float:
        """The longest run of failed requests, in seconds."""
        self.stopped.set()
        self.thread.join(timeout=10)
        longest, first_failure = 0.0, None
        for moment, ok in self.results:
            if not ok and first_failure is None:
                first_failure = moment
            if ok and first_failure is not None:
                longest, first_failure = max(longest, moment - first_failure), None
        if first_failure is not None:
            longest = max(longest, self.results[-1][0] - first_failure)
        return longest


def test_rollback_drill_a_release_whose_api_is_never_ready_is_rolled_back_while_the_service_answers(
    stack: Stack,
) -> None:
    loop = ClientLoop(stack.base_url)
    try:
        upgraded = stack.deploy_sh("deploy", tag="v2")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert _current(stack) == "v2"
        assert {str(item["tag"]) for item in stack.instances("api") + stack.instances("worker")} == {"v2"}

        broken = stack.deploy_sh("deploy", tag="v3-broken")
    finally:
        longest_outage = loop.stop()

    assert broken.returncode == 1
    assert "deploying v3-broken failed; rolled back to v2, which is serving and verified" in broken.stderr
    assert "api: v3-broken did not become healthy; removing it, the running instances stay" in broken.stdout
    assert _current(stack) == "v2"
    assert {str(item["tag"]) for item in stack.instances("api") + stack.instances("worker")} == {"v2"}
    assert len(loop.results) > 100
    assert longest_outage < 3.0, f"the service did not answer for {longest_outage:.1f}s"
    assert stack.verify_sh().returncode == 0

    rolled_back = stack.deploy_sh("rollback")
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert _current(stack) == "v1"
    assert {str(item["tag"]) for item in stack.instances("api")} == {"v1"}
