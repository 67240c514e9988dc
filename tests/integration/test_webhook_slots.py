"""A worker process's delivery slots: deliveries never wait in a task slot, and a receiver that
hangs holds at most half of them (real Redis, real receivers on loopback, the real Deliverer)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis

from shared import keys, webhook_scripts
from shared.queue import TaskEnvelopes, create_celery
from shared.settings import WebhookSettings, load_settings
from shared.webhook_schemas import new_secret, ping_payload
from tests.fakes.receiver import Answer, Receiver
from tests.integration.test_webhook_transport import FakeResolver
from tests.support import environment
from worker.webhooks.delivery import Deliverer
from worker.webhooks.store import SyncWebhookStore
from worker.webhooks.transport import Transport

OWNER = "slots-owner"


@dataclass
class Harness:
    client: redis.Redis
    deliverer: Deliverer

    def endpoint(self, url: str) -> str:
        ident = os.urandom(16).hex()
        create = self.client.register_script(webhook_scripts.CREATE_ENDPOINT.source)
        create(
            keys=[keys.user_webhooks(OWNER), keys.webhook(ident)], args=[20, ident, OWNER, url, "", "", new_secret()]
        )
        return ident

    def delivery(self, endpoint: str) -> str:
        ident = os.urandom(16).hex()
        ping = self.client.register_script(webhook_scripts.PING.source)
        ping(
            keys=[
                keys.delivery(ident),
                keys.WEBHOOK_DELIVERIES_DUE,
                keys.WEBHOOK_QUEUE,
                keys.user_deliveries(OWNER),
                keys.webhook(endpoint),
            ],
            args=[ident, OWNER, endpoint, ping_payload(endpoint, datetime.now(UTC)), f"msg_{ident}", "{}", 3600, 5, ""],
        )
        return ident

    def attempts(self, delivery: str) -> int:
        return int(self.client.hget(keys.delivery(delivery), "attempts") or 0)


@pytest.fixture
def harness(redis_base_url: str) -> Iterator[Harness]:
    url = f"{redis_base_url}/6"
    client = redis.Redis.from_url(url)
    client.flushdb()
    envelopes = TaskEnvelopes(
        create_celery(load_settings(environment({"REDIS_URL": url}))), keys.WEBHOOK_TASK_NAME, keys.WEBHOOK_QUEUE
    )
    settings = WebhookSettings(concurrency=2, timeout=20, allow_private=True, retry_schedule=(0.0, 0.1))
    transport = Transport(FakeResolver({}), timeout=20, allow_http=True, allow_private=True, loopback_only=True)
    yield Harness(client, Deliverer(SyncWebhookStore(client, envelopes, ttl=3600, check_after=5), transport, settings))
    client.flushdb()
    client.close()


def test_a_hanging_receiver_holds_half_the_slots_and_nothing_waits_for_a_slot(harness: Harness) -> None:
    hanging, healthy = Receiver(host="127.0.0.1").start(), Receiver(host="127.0.0.2").start()
    hanging.default = Answer(hang=60)
    stuck, fine = harness.endpoint(hanging.url()), harness.endpoint(healthy.url(host="127.0.0.2"))
    first, second, third = (harness.delivery(stuck) for _ in range(3))
    threads = [threading.Thread(target=harness.deliverer.run, args=(first,), daemon=True)]
    try:
        threads[0].start()
        hanging.wait_for(1)

        # The hanging host has its half (one of two slots): its next delivery goes back to Redis.
        assert harness.deliverer.run(second) == "busy"
        assert harness.attempts(second) == 0  # not counted: it never started
        due = harness.client.zscore(keys.WEBHOOK_DELIVERIES_DUE, second)
        assert due is not None

        # Another receiver is served meanwhile, from the other slot.
        assert harness.deliverer.run(harness.delivery(fine)) == "succeeded"
        healthy.default = Answer(hang=60)
        threads.append(threading.Thread(target=harness.deliverer.run, args=(harness.delivery(fine),), daemon=True))
        threads[1].start()
        healthy.wait_for(2)

        # Both slots taken: a delivery is handed back at once, to be sent again a moment later.
        assert harness.deliverer.run(third) == "busy"
        assert hanging.hanging == 1
        assert healthy.hanging == 1
        hanging.release()
        for thread in threads[:1]:
            thread.join(10)
        assert harness.deliverer.run(second) == "succeeded"  # its turn, once a slot is free
    finally:
        hanging.release()
        healthy.release()
        for thread in threads:
            thread.join(10)
        hanging.stop()
        healthy.stop()
