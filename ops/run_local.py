"""`make run`: Redis (embedded unless REDIS_URL is set), the API and one Celery worker, locally;
with `make run FLOWER=1` (`--flower`) Flower too, signed in with credentials printed at start.

The API and worker run with the same commands their containers run. The launcher waits until the
API is ready and a worker has announced itself, prints where everything is with a copy-paste
example, then supervises: a child that exits is restarted with backoff (`ops/supervisor.py`), the
embedded Redis on the same port with the same data. On Ctrl-C (or SIGTERM) it stops the API and
the worker first, giving running jobs a grace period to finish and write their results, then Redis
(a clean shutdown that flushes its append-only file), and waits for each: nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from types import FrameType

import httpx
import redis

from ops import flower
from ops.supervisor import Child, Supervisor, describe_exit
from shared import keys
from shared.embedded_redis import EmbeddedRedis
from shared.settings import Settings, load_settings_or_report

ROOT = Path(__file__).resolve().parent.parent
#: Seconds the API and the worker get to stop after SIGTERM (Celery's warm shutdown lets running
#: jobs finish) before they are killed.
STOP_GRACE = 10.0
#: Seconds Redis gets for its clean shutdown (flush and fsync the append-only file).
REDIS_GRACE = 10.0
EXAMPLE_TRIP = '{"location":"Lisbon, Portugal","days":4,"transport":"plane","occasion":"city break","origin":"London"}'
EXAMPLE = """\
base={base}; login='{{"email":"me@example.com","password":"a long unusual passphrase"}}'
curl -s -X POST $base/api/v1/auth/register -H 'Content-Type: application/json' -d "$login"; echo
token=$(curl -s -X POST $base/api/v1/auth/login -H 'Content-Type: application/json' -d "$login" \\
  | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')
id=$(curl -s -X POST $base/api/v1/checklists -H "Authorization: Bearer $token" \\
  -H 'Content-Type: application/json' -d '{trip}' | sed -E 's/.*"id":"([0-9a-f]+)".*/\\1/')
curl -s "$base/api/v1/checklists/$id?wait=10" -H "Authorization: Bearer $token"; echo
"""


def api_command(settings: Settings, host: str) -> list[str]:
    """The API container's command (`api.serve`: uvicorn with the production options, metrics
    across its processes)."""
    return [
        sys.executable, "-m", "api.serve",
        "--host", host, "--port", str(settings.api.port), "--workers", str(settings.api.workers),
    ]  # fmt: skip


def worker_command(settings: Settings) -> list[str]:
    # No gossip or mingle: worker-to-worker chatter this service does not use (liveness is the
    # heartbeat in Redis), and each is one more connection to bring back after a Redis restart.
    # Both queues: checklists and webhook deliveries (operators may run dedicated workers per queue).
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "-Q", f"{keys.QUEUE},{keys.WEBHOOK_QUEUE}", "--loglevel", settings.app.log_level,
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def flower_command() -> list[str]:
    return [sys.executable, "-m", "ops.flower"]


def banner(base: str, settings: Settings, redis_note: str, flower_note: str | None = None) -> str:
    provider = f"Groq ({settings.groq.model})" if settings.use_groq else "offline (no GROQ_API_KEY set)"
    port = settings.observability.worker_metrics_port
    worker_metrics = f"http://{settings.observability.worker_metrics_host}:{port}/metrics" if port else "off"
    flower = f"\n  Flower       {flower_note}" if flower_note else ""
    return f"""
Trip Checklist is running.
  API          {base}
  Docs         {base}/schema/swagger
  Readiness    {base}/health/ready
  Metrics      {base}/metrics (API), {worker_metrics} (worker){flower}
  Redis        {redis_note}
  Provider     {provider}
  Webhooks     may reach this machine: `make receiver` prints verified deliveries (README, Webhooks)

Try it (register once, log in, submit, wait for the result):
{EXAMPLE.format(base=base, trip=EXAMPLE_TRIP)}
Press Ctrl-C to stop everything.
"""


def show(text: str) -> None:
    try:
        print(text, flush=True)
    except OSError:
        # The terminal or pipe is gone: keep supervising (and stop the children) regardless.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for good


def say(message: str) -> None:
    """One line of the launcher's own output: what happened to which child, and when."""
    show(f"{time.strftime('%H:%M:%S')} launcher: {message}")


class StartupError(Exception):
    """The stack could not come up; the launcher stops what it started and exits with status 1."""


class StopRequests:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed): the first asks for an orderly stop,
    a second for killing what is left. The children have sessions of their own, so without this they
    would outlive a launcher that a closed terminal ended."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1

    @property
    def requested(self) -> bool:
        return self.count > 0

    def hurry(self) -> bool:
        return self.count > 1


class Launcher:
    def __init__(self, settings: Settings, requests: StopRequests, *, with_flower: bool = False) -> None:
        self.settings = settings
        self.requests = requests
        self.with_flower = with_flower
        self.redis: EmbeddedRedis | None = None
        self.supervisor = Supervisor([], say)

    def start(self) -> str | None:
        """Start everything and wait until it serves; the banner to print, or None if asked to stop."""
        env = dict(os.environ)
        children: list[Child] = []
        if self.settings.redis.url is None:
            data_dir = Path(os.environ.get("LOCAL_DATA_DIR", ROOT / "var")) / "redis"
            self.redis = EmbeddedRedis(data_dir)
            try:
                self.redis.start()  # answering before the API and the worker first connect
            except (RuntimeError, redis.RedisError) as exc:
                raise StartupError(f"the embedded Redis did not start: {exc}") from exc
            # Restarts reuse the port and the data directory, hence the append-only file.
            children.append(Child("redis", self.redis.launch, REDIS_GRACE, layer=0, process=self.redis.process))
            env["REDIS_URL"] = self.redis.url
            redis_note = f"{self.redis.url} (embedded, data in {data_dir})"
        else:
            # Someone else's Redis: not the launcher's to start, restart or stop.
            redis_note = "REDIS_URL from the environment"
        env["PYTHONPATH"] = str(ROOT)
        if self.settings.app.environment != "production":
            # Local development: webhooks may reach a receiver on this machine (`make receiver`).
            env.setdefault("WEBHOOK_ALLOW_PRIVATE", "true")
        host = os.environ.get("HOST", "127.0.0.1")
        for name, command in (("api", api_command(self.settings, host)), ("worker", worker_command(self.settings))):
            children.append(Child(name, partial(spawn, command, env), STOP_GRACE, layer=1))
        flower_note = None
        if self.with_flower:
            flower_note = self._add_flower(env, children)
        self.supervisor.children = children
        self.supervisor.start()
        base = f"http://127.0.0.1:{self.settings.api.port}"
        if not self.wait_until_ready(base):
            return None
        return banner(base, self.settings, redis_note, flower_note)

    def _add_flower(self, env: dict[str, str], children: list[Child]) -> str:
        """Flower beside the rest, always signed in: FLOWER_BASIC_AUTH, or credentials made now."""
        flower_env = {**env, **{name: env.get(name) or value for name, value in flower.DEFAULTS.items()}}
        if flower.authentication(env) is None:
            flower_env["FLOWER_BASIC_AUTH"] = flower.new_credentials()
            user, password = flower_env["FLOWER_BASIC_AUTH"].split(":", 1)
            who = f"user {user}, password {password}"
        else:
            who = "credentials from FLOWER_BASIC_AUTH" if env.get("FLOWER_BASIC_AUTH") else "OAuth"
        children.append(Child("flower", partial(spawn, flower_command(), flower_env), STOP_GRACE, layer=1))
        address = "127.0.0.1" if flower_env["FLOWER_ADDRESS"] in ("", "0.0.0.0") else flower_env["FLOWER_ADDRESS"]  # noqa: S104
        return f"http://{address}:{flower_env['FLOWER_PORT']}/{flower_env['FLOWER_URL_PREFIX']}/ ({who})"

    def wait_until_ready(self, base: str, timeout: float = 90.0) -> bool:
        """True once the API is ready and a worker alive; False if a stop was asked for meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.requests.requested:
            # Until the stack has served once, a crash is a configuration problem (a port taken, a
            # broken install): retrying would hide it, so the launcher stops and says which child.
            exited = self.supervisor.exited()
            if exited is not None:
                assert exited.process is not None
                code = describe_exit(exited.process.wait())
                raise StartupError(f"the {exited.name} process exited with {code} before the stack was ready")
            if time.monotonic() > deadline:
                raise StartupError(f"the service did not become ready within {timeout:.0f}s")
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=2.0)
                if ready.status_code == 200 and ready.json().get("workers_alive", 0) >= 1:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return False

    def supervise(self) -> None:
        """Keep every child running until a stop is asked for."""
        while not self.requests.requested:
            self.supervisor.check()
            time.sleep(0.2)

    def stop(self) -> None:
        """The API and the worker first (running jobs may finish and write their results), Redis last."""
        self.supervisor.stop(hurry=self.requests.hurry)
        if self.redis is not None:
            self.redis.stop()  # in case it was started but never handed to the supervisor


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only the launcher, which stops children in order.
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.run_local", description="make run")
    parser.add_argument("--flower", action="store_true", help="start Flower too (make run FLOWER=1)")
    args = parser.parse_args(argv)
    settings = load_settings_or_report()
    if settings is None:
        return 2
    requests = StopRequests()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup make run` keeps running
            signal.signal(signum, requests)
    launcher = Launcher(settings, requests, with_flower=args.flower)
    try:
        text = launcher.start()
        if text is not None:
            show(text)
            launcher.supervise()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if requests.requested:
            say(
                f"stopping: the API and the worker first (up to {STOP_GRACE:g} s for running jobs), "
                "then Redis; Ctrl-C again kills them at once"
            )
        launcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
