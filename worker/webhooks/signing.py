"""Standard Webhooks signatures, made with the `standardwebhooks` package itself so that receivers
verify with the same code: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64
HMAC-SHA256 of "<id>.<timestamp>.<body>">`), one signature per secret in force, space-separated."""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook

__all__ = ["signed_headers"]


def signed_headers(msg_id: str, timestamp: int, body: bytes, secrets: list[str]) -> dict[str, str]:
    """The three signature headers for `body`, signed with each of `secrets` (current first)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    signatures = " ".join(Webhook(secret).sign(msg_id, moment, text) for secret in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}
