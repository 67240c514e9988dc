"""`make receiver` (ops/receiver.py): verifies each delivery with the secrets it was given and
prints it; a delivery no secret verifies is printed as such and refused."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from shared.embedded_redis import free_port
from shared.webhook_schemas import new_secret
from tests.support import ROOT, environment
from worker.webhooks.signing import signed_headers


def test_the_receiver_prints_verified_deliveries_and_refuses_the_rest() -> None:
    secret, port = new_secret(), free_port()
    env = environment({"WEBHOOK_SECRET": f"{new_secret()}, {secret}", "RECEIVER_PORT": str(port)})
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.receiver"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert "with 2 secret(s)" in process.stdout.readline()
        body = b'{"type":"job.succeeded","timestamp":"2026-01-01T00:00:00Z","data":{"id":"abc","status":"succeeded"}}'
        headers = signed_headers("msg_1", int(time.time()), body, [secret])

        good = httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers)
        bad = httpx.post(f"http://127.0.0.1:{port}/", content=body + b" ", headers=headers)

        assert good.status_code == 204
        assert bad.status_code == 401
        assert "verified job.succeeded" in (first := process.stdout.readline())
        assert "msg_1" in first
        assert "job abc succeeded" in first
        assert "NOT VERIFIED msg_1" in process.stdout.readline()
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
