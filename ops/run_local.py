"""`make run`: Redis (embedded unless REDIS_URL is set), the API and one Celery worker, locally.

The API and worker run with the same commands their containers run. The launcher waits until the
API is ready and a worker has announced itself, prints where everything is with a copy-paste
example, and on Ctrl-C (or SIGTERM) stops every child and waits for it, leaving nothing running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from shared.embedded_redis import EmbeddedRedis
from shared.errors import SettingsError
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
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
    return [
        sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
        "--host", host, "--port", str(settings.api.port), "--workers", str(settings.api.workers),
        "--no-access-log", "--log-level", settings.app.log_level.lower(),
        # uvicorn would otherwise rewrite the client address from X-Forwarded-For for loopback
        # peers; the app applies TRUSTED_PROXIES itself.
        "--no-proxy-headers",
    ]  # fmt: skip


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "-Q", "checklists", "--loglevel", settings.app.log_level,
    ]  # fmt: skip


def banner(base: str, settings: Settings, redis_note: str) -> str:
    provider = f"Groq ({settings.groq.model})" if settings.use_groq else "offline (no GROQ_API_KEY set)"
    return f"""
Trip Checklist is running.
  API          {base}
  Docs         {base}/schema/swagger
  Readiness    {base}/health/ready
  Redis        {redis_note}
  Provider     {provider}

Try it (register once, log in, submit, wait for the result):
{EXAMPLE.format(base=base, trip=EXAMPLE_TRIP)}
Press Ctrl-C to stop everything.
"""


class Launcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.redis: EmbeddedRedis | None = None
        self.stopping = False

    def start(self) -> str:
        env = dict(os.environ)
        if self.settings.redis.url is None:
            data_dir = Path(os.environ.get("LOCAL_DATA_DIR", ROOT / "var")) / "redis"
            self.redis = EmbeddedRedis(data_dir).start()
            env["REDIS_URL"] = self.redis.url
            redis_note = f"{self.redis.url} (embedded, data in {data_dir})"
        else:
            redis_note = "REDIS_URL from the environment"
        env["PYTHONPATH"] = str(ROOT)
        host = os.environ.get("HOST", "127.0.0.1")
        for name, command in (("api", api_command(self.settings, host)), ("worker", worker_command(self.settings))):
            # A session of its own: Ctrl-C reaches only the launcher, which stops children in order.
            child = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603
            self.children.append((name, child))
        base = f"http://127.0.0.1:{self.settings.api.port}"
        self.wait_until_ready(base)
        return banner(base, self.settings, redis_note)

    def wait_until_ready(self, base: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=2.0)
                if ready.status_code == 200 and ready.json().get("workers_alive", 0) >= 1:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the service did not become ready within {timeout:.0f}s")

    def check_children(self) -> None:
        for name, child in self.children:
            if child.poll() is not None and not self.stopping:
                raise RuntimeError(f"the {name} process exited with code {child.returncode}")

    def stop(self) -> None:
        self.stopping = True
        for _, child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", file=sys.stderr)
                child.kill()
                child.wait()
        if self.redis is not None:
            self.redis.stop()


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    launcher = Launcher(settings)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    try:
        print(launcher.start(), flush=True)
        while True:
            launcher.check_children()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        launcher.stop()


if __name__ == "__main__":
    sys.exit(main())
