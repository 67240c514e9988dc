"""The broker transport's departures from kombu, and the kombu layout `shared.broker` relies on.

If a kombu upgrade changes the unacked layout or the behaviour overridden here, these fail
instead of production.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from shared import broker, keys
from shared.queue import TaskEnvelopes, create_celery
from shared.settings import load_settings
from tests.support import environment


@pytest.fixture
def app(redis_base_url: str) -> Iterator[Celery]:
    client = redis.Redis.from_url(f"{redis_base_url}/10")
    client.flushdb()
    yield create_celery(load_settings(environment({"REDIS_URL": f"{redis_base_url}/10"})))
    client.flushdb()


def test_the_kombu_this_module_was_verified_against() -> None:
    # shared.broker overrides QoS.ack/reject/restore_visible and Channel.do_restore, and reads
    # the unacked hash and index: check them again before moving to another kombu.
    version = importlib.metadata.version("kombu")
    assert version.startswith("5.7."), version
    assert (kombu_redis.Channel.unacked_key, kombu_redis.Channel.unacked_index_key) == (
        keys.UNACKED,
        keys.UNACKED_INDEX,
    )


def test_celery_uses_this_transport_and_keeps_the_url(app: Celery, redis_base_url: str) -> None:
    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, broker.Transport)
        assert connection.as_uri(include_password=True) == f"{redis_base_url}/10"


def test_a_message_taken_on_a_lost_connection_is_neither_pushed_back_nor_a_crash(
    app: Celery, redis_base_url: str
) -> None:
    client = redis.Redis.from_url(f"{redis_base_url}/10")
    message = TaskEnvelopes(app).build("c" * 32)
    client.lpush(keys.QUEUE, message.body)
    connection = app.connection_for_read()
    channel = connection.default_channel
    assert isinstance(channel, broker.Channel)
    taken = channel.basic_get(keys.QUEUE, no_ack=False)
    assert taken is not None
    assert client.hexists(keys.UNACKED, message.tag)

    connection.close()  # what a lost connection does to the channel
    taken.ack()  # a task that outlived the connection: kombu itself raises AttributeError here

    assert client.llen(keys.QUEUE) == 0  # not pushed back while its task may still be running
    assert json.loads(client.hget(keys.UNACKED, message.tag) or b"[]")[0]["headers"]["id"] == "c" * 32
