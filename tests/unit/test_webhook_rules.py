"""The pure rules of webhook delivery: signatures, the retry schedule, what an answer means,
payloads and delivery ids."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from shared.settings import WebhookSettings
from shared.webhook_schemas import MAX_PAYLOAD_BYTES, delivery_id, event_payload, new_secret, webhook_id
from worker.webhooks.delivery import judge
from worker.webhooks.schedule import MAX_RETRY_AFTER, next_delay, retry_after_seconds
from worker.webhooks.signing import signed_headers
from worker.webhooks.transport import DeliveryFailed, Response

SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(secret) >= len("whsec_") + 32  # base64 of 32 random bytes
    Webhook(secret)  # the library accepts it


def test_every_secret_in_force_signs_and_each_verifies_alone() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"job.succeeded"}'
    now = int(datetime.now(UTC).timestamp())

    headers = signed_headers("msg_1", now, body, [new, old])

    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers) == {"type": "job.succeeded"}
    assert Webhook(old).verify(body, headers) == {"type": "job.succeeded"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_the_schedule_is_the_specifications_and_runs_out() -> None:
    delays = [next_delay(tries, SCHEDULE, jitter=0) for tries in range(1, 9)]
    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, None]


def test_jitter_spreads_each_delay_within_its_fraction() -> None:
    rng = random.Random(7)
    delays = {next_delay(2, SCHEDULE, jitter=0.1, rng=rng) for _ in range(200)}
    assert all(270 <= delay <= 330 for delay in delays if delay is not None)
    assert len(delays) > 100


def test_retry_after_is_honoured_never_sooner_and_at_most_a_day() -> None:
    assert next_delay(1, SCHEDULE, jitter=0, retry_after=60) == 60
    assert next_delay(2, SCHEDULE, jitter=0, retry_after=60) == 300  # the schedule is later already
    assert next_delay(1, SCHEDULE, jitter=0, retry_after=10**9) == MAX_RETRY_AFTER


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


SETTINGS = WebhookSettings(retry_schedule=(0.0, 1.0, 2.0), jitter=0)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert judge(Response(status, None, "127.0.0.1"), 1, SETTINGS, is_endpoint=True).outcome == "succeeded"


@pytest.mark.parametrize("status", [301, 302, 400, 401, 404, 429, 500, 503])
def test_anything_else_is_tried_again_on_the_schedule(status: int) -> None:
    outcome = judge(Response(status, None, "127.0.0.1"), 1, SETTINGS, is_endpoint=True)
    assert (outcome.outcome, outcome.delay) == ("retrying", 1.0)


def test_after_the_last_attempt_the_delivery_has_failed() -> None:
    assert judge(Response(500, None, "127.0.0.1"), 3, SETTINGS, is_endpoint=True).outcome == "failed"


def test_timeouts_and_connection_errors_are_tried_again_refusals_are_not() -> None:
    assert judge(DeliveryFailed("timed out"), 1, SETTINGS, is_endpoint=True).outcome == "retrying"
    assert judge(DeliveryFailed("refused address", retry=False), 1, SETTINGS, is_endpoint=True).outcome == "failed"


def test_410_gone_disables_an_endpoint_and_ends_a_jobs_own_webhook() -> None:
    endpoint = judge(Response(410, None, "127.0.0.1"), 1, SETTINGS, is_endpoint=True)
    job_hook = judge(Response(410, None, "127.0.0.1"), 1, SETTINGS, is_endpoint=False)
    assert (endpoint.outcome, endpoint.disable_reason) == ("failed", "the receiver answered 410 Gone")
    assert (job_hook.outcome, job_hook.disable_reason) == ("failed", "")


def test_a_retry_after_on_a_failure_moves_the_next_attempt() -> None:
    outcome = judge(Response(429, "30", "127.0.0.1"), 1, SETTINGS, is_endpoint=True)
    assert (outcome.outcome, outcome.delay) == ("retrying", 30.0)


def test_delivery_ids_are_deterministic_per_event_and_target() -> None:
    one = delivery_id("a" * 32, "1700000000000-0", "")
    assert one == delivery_id("a" * 32, "1700000000000-0", "")
    assert one != delivery_id("a" * 32, "1700000000000-0", "b" * 32)
    assert one != delivery_id("a" * 32, "1700000000000-1", "")
    assert webhook_id(one) == f"msg_{one}"


def test_the_payload_carries_the_job_as_stored_and_the_events_time() -> None:
    doc = b'{"id":"x","status":"succeeded","result":{"items":[]}}'
    payload = json.loads(event_payload("job.succeeded", "1700000000123-0", doc))
    assert payload == {
        "type": "job.succeeded",
        "timestamp": "2023-11-14T22:13:20.123000Z",
        "data": json.loads(doc),
    }


def test_a_payload_stays_under_64_kib_without_the_checklist() -> None:
    doc = json.dumps({"id": "x", "status": "succeeded", "result": {"items": ["x" * 1000] * 100}}).encode()
    body = event_payload("job.succeeded", "1700000000123-0", doc)
    payload = json.loads(body)
    assert len(body) < MAX_PAYLOAD_BYTES
    assert payload["result_omitted"] is True
    assert payload["data"] == {"id": "x", "status": "succeeded", "result": None}
