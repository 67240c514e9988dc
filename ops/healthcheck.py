"""`python -m ops.healthcheck api|ready|worker|flower`: the containers' health checks.

Each exits 0 when healthy and 1 (with one line saying why) when not, as Docker's HEALTHCHECK and
ops/deploy.sh read it. They run inside the container, every few seconds, so they import little:

- `api`: `GET /health` on this container's API answers 200 (liveness: touches nothing external).
- `ready`: `GET /health/ready` answers 200, Redis reachable. ops/deploy.sh asks a new API container
  this before sending it traffic; `--workers N` also asks for N live workers.
- `worker`: this worker's heartbeat in Redis is fresher than its lease (three heartbeat intervals,
  by Redis's clock), the rule the API's readiness uses to count live workers. The node name is
  `worker@<host name>`, as Dockerfile.worker's command sets it; `--name` gives another.
- `flower`: Flower's own `/healthcheck` under its URL prefix answers 200.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.error
import urllib.request

__all__ = ["main"]

#: Seconds one probe may take; Docker's own timeout is a little longer.
TIMEOUT = 4.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - our own loopback URL
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _api_base() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"


def check_api() -> str | None:
    status, _ = _get(f"{_api_base()}/health")
    return None if status == 200 else f"/health answered {status}"


def check_ready(workers: int) -> str | None:
    status, body = _get(f"{_api_base()}/health/ready")
    if status != 200:
        return f"/health/ready answered {status}: {body.decode(errors='replace')[:200]}"
    alive = int(json.loads(body).get("workers_alive") or 0)
    if alive < workers:
        return f"/health/ready counts {alive} live worker(s), fewer than {workers}"
    return None


def check_worker(name: str | None) -> str | None:
    import redis  # noqa: PLC0415 - only this check needs it

    from shared import keys  # noqa: PLC0415
    from shared.settings import load_settings  # noqa: PLC0415

    settings = load_settings()
    node = name or f"worker@{socket.gethostname()}"
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        beat = client.zscore(keys.WORKERS, node)
        seconds, micros = client.time()
    finally:
        client.close()
    if beat is None:
        return f"no heartbeat from {node} in Redis"
    age = seconds + micros / 1_000_000 - beat
    if age > settings.worker.lease:
        return f"the last heartbeat of {node} is {age:.1f}s old (lease {settings.worker.lease:g}s)"
    return None


def check_flower() -> str | None:
    port = os.environ.get("FLOWER_PORT", "5555")
    prefix = os.environ.get("FLOWER_URL_PREFIX", "flower").strip("/")
    path = f"/{prefix}/healthcheck" if prefix else "/healthcheck"
    status, _ = _get(f"http://127.0.0.1:{port}{path}")
    return None if status == 200 else f"{path} answered {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.healthcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=("api", "ready", "worker", "flower"))
    parser.add_argument("--workers", type=int, default=0, help="ready: live workers required")
    parser.add_argument("--name", help="worker: the Celery node name (default worker@<host name>)")
    args = parser.parse_args(argv)
    try:
        if args.check == "api":
            problem = check_api()
        elif args.check == "ready":
            problem = check_ready(args.workers)
        elif args.check == "worker":
            problem = check_worker(args.name)
        else:
            problem = check_flower()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
