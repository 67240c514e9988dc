"""`python -m bench.inprocess`: the API's own CPU per request, without a server or a socket.

Drives the app's ASGI callable directly (16 concurrent callers, like connections) against an
embedded Redis, and reports process CPU per poll and per submission, for the app with and without
`api.fastpath` (`--access-log`: with the JSON access line written to a file, as in production).
What it leaves out (uvicorn's HTTP parsing and writing) is the same for every variant, so the
differences are the app's. Quotas are set high enough never to refuse.

Run: PYTHONPATH=. .venv/bin/python -m bench.inprocess [--requests 8000] [--access-log]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# prometheus-client picks its mode at import, as under api.serve: multiprocess, metrics on.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="tripcheck-bench-metrics-"))

from bench.harness import TRIP, UNLIMITED
from shared.embedded_redis import EmbeddedRedis

CALLERS = 16


async def _call(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _measure(fast_path: bool, requests: int) -> dict[str, float]:
    from api.app import create_app  # noqa: PLC0415 - after the metrics directory is set
    from shared.settings import load_settings  # noqa: PLC0415

    app = create_app(load_settings(dict(os.environ)), fast_path=fast_path)
    async with app.lifespan():
        credentials = json.dumps(
            {"email": f"bench-{uuid.uuid4().hex[:8]}@example.com", "password": "bench pass phrase 2026"}
        )
        await _call(app, "POST", "/api/v1/auth/register", credentials.encode(), [])
        _, tokens = await _call(app, "POST", "/api/v1/auth/login", credentials.encode(), [])
        auth = [(b"authorization", f"Bearer {json.loads(tokens)['access_token']}".encode())]
        status, accepted = await _call(app, "POST", "/api/v1/checklists", TRIP, auth)
        assert status == 202, accepted
        job = json.loads(accepted)["id"]
        cases = {
            "poll": ("GET", f"/api/v1/checklists/{job}", b"", 200),
            "submit": ("POST", "/api/v1/checklists", TRIP, 202),
        }
        results = {}
        for name, (method, path, body, expected) in cases.items():

            async def caller(
                count: int, method: str = method, path: str = path, body: bytes = body, expected: int = expected
            ) -> None:
                for _ in range(count):
                    answered, _ = await _call(app, method, path, body, auth)
                    assert answered == expected, answered

            await asyncio.gather(*(caller(300 // CALLERS) for _ in range(CALLERS)))  # warm up
            best = float("inf")
            for _ in range(3):
                began = time.process_time()
                await asyncio.gather(*(caller(requests // CALLERS) for _ in range(CALLERS)))
                best = min(best, (time.process_time() - began) / (requests // CALLERS * CALLERS) * 1e6)
            results[name] = best
        return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="requests per measurement (best of three)")
    parser.add_argument("--access-log", action="store_true", help="write the JSON access line (to a file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedRedis(Path(scratch), persist=False) as server:
        os.environ.update({**UNLIMITED, "REDIS_URL": server.url, "ENV_FILE": "/nonexistent", "LOG_FORMAT": "json"})
        os.environ["LOG_LEVEL"] = "INFO" if args.access_log else "WARNING"
        log = Path(scratch) / "api.log"
        with log.open("w") as sink:
            os.dup2(sink.fileno(), 2)  # the log lines go to the file, as a container's do to its log driver
            for fast_path in (False, True):
                cpu = asyncio.run(_measure(fast_path, args.requests))
                print(
                    f"fast path {'on ' if fast_path else 'off'}: poll {cpu['poll']:6.1f} µs, "
                    f"submit {cpu['submit']:6.1f} µs of CPU per request (best of 3 x {args.requests})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
