"""`make receiver`: a local webhook receiver that verifies and prints each delivery.

For trying webhooks with `make run` (which lets webhooks reach loopback): point an endpoint or a
job's `webhook.url` at http://127.0.0.1:9000/ and watch deliveries arrive. Signatures are checked
with the `standardwebhooks` package against the secrets given:

    WEBHOOK_SECRET   one or more `whsec_…` secrets (space- or comma-separated): an endpoint's
    API_TOKEN        an access token or API key: the receiver also fetches the account's default
                     secret (it signs per-job webhooks) from API_URL (default http://127.0.0.1:8000)
    RECEIVER_PORT    default 9000;  RECEIVER_STATUS  the status to answer (default 204), to watch
                     retries (500), or a disabled endpoint (410)

A delivery that no secret verifies is printed as such and answered 401.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["main", "verify"]


def verify(body: bytes, headers: dict[str, str], secrets: list[str]) -> Any | None:
    """The payload if one of `secrets` verifies the delivery, else None."""
    for secret in secrets:
        try:
            return Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            continue
    return None


def _secrets() -> list[str]:
    secrets = [part for part in os.environ.get("WEBHOOK_SECRET", "").replace(",", " ").split() if part]
    token = os.environ.get("API_TOKEN")
    if token:
        api = os.environ.get("API_URL", "http://127.0.0.1:8000")
        answer = httpx.get(f"{api}/api/v1/webhooks/secret", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        answer.raise_for_status()
        secrets.append(answer.json()["secret"])
    return secrets


def _summary(payload: Any) -> str:
    data = payload.get("data") or {}
    if payload.get("type") == "ping":
        return f"ping for endpoint {data.get('endpoint_id')}"
    items = len(((data.get("result") or {}).get("items")) or [])
    error = (data.get("error") or {}).get("code")
    return (
        f"job {data.get('id')} {data.get('status')}"
        + (f", {items} items" if items else "")
        + (f", error {error}" if error else "")
    )


def main() -> int:
    secrets = _secrets()
    port = int(os.environ.get("RECEIVER_PORT", "9000"))
    status = int(os.environ.get("RECEIVER_STATUS", "204"))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            payload = verify(body, headers, secrets)
            stamp = time.strftime("%H:%M:%S")
            if payload is None:
                print(f"{stamp} NOT VERIFIED {headers.get('webhook-id')} ({len(body)} bytes): 401", flush=True)
                self.send_response(401)
            else:
                print(f"{stamp} verified {payload['type']:14} {headers['webhook-id']}  {_summary(payload)}", flush=True)
                if os.environ.get("RECEIVER_VERBOSE"):
                    print(json.dumps(payload, indent=2), flush=True)
                self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(
        f"Receiving webhooks on http://127.0.0.1:{port}/ with {len(secrets)} secret(s); answering {status}."
        + ("" if secrets else " Set WEBHOOK_SECRET or API_TOKEN to verify signatures."),
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
