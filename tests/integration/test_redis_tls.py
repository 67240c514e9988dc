"""One `rediss://` URL means the same to every client: the link, redis-py and a Celery worker.

The Redis here is Debian's `redis-server` listening on TLS only, requiring a client certificate,
with an ACL user; its certificates come from a throw-away CA (trustme).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis

from shared.redis_mux import MultiplexedRedis, RedisUnavailable
from tests.redis_servers import Certificates, TestRedis
from tests.support import ApiServer, Worker, new_account, wait_for_status

USER, PASSWORD = "checklist", "tls-test-password-not-secret"
TRIP = {"location": "Bergen, Norway", "days": 3, "transport": "train", "occasion": "hiking"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[TestRedis]:
    with TestRedis(tmp_path_factory.mktemp("tls-redis"), certificates=certificates) as server:
        admin = server.client()
        admin.acl_setuser(
            USER, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], channels=["*"], commands=["+@all"]
        )
        admin.close()
        yield server


def tls_url(server: TestRedis, *, db: int = 3, host: str = "127.0.0.1", ca: bool = True, **options: str) -> str:
    certificates = server.certificates
    assert certificates is not None
    query = {
        "ssl_certfile": str(certificates.client_cert),
        "ssl_keyfile": str(certificates.client_key),
        **({"ssl_ca_certs": str(certificates.ca)} if ca else {}),
        **options,
    }
    return f"rediss://{USER}:{PASSWORD}@{host}:{server.port}/{db}?{urlencode(query)}"


async def test_the_link_and_redis_py_share_a_tls_url_with_ca_client_certificate_and_user(tls_redis: TestRedis) -> None:
    url = tls_url(tls_redis, ssl_cert_reqs="required", ssl_check_hostname="true", socket_timeout="5")
    link = MultiplexedRedis(url)
    other = redis.Redis.from_url(url)
    key = f"tls:{uuid.uuid4().hex}"
    try:
        await link.execute("SET", key, "over tls")

        assert await link.execute("ACL", "WHOAMI") == USER.encode()
        assert other.get(key) == b"over tls"  # same database (3), same user
        assert redis.Redis.from_url(tls_url(tls_redis, db=0)).get(key) is None
    finally:
        await link.close()
        other.close()


async def test_a_certificate_from_an_unknown_ca_is_refused_by_both(tls_redis: TestRedis) -> None:
    url = tls_url(tls_redis, ca=False)  # only the system's CAs
    link = MultiplexedRedis(url)

    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        await link.execute("PING")
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(url).ping()


async def test_the_host_name_is_checked_unless_the_url_says_not_to(tls_redis: TestRedis) -> None:
    # The server's certificate names 127.0.0.1 only.
    checked = tls_url(tls_redis, host="localhost")
    unchecked = tls_url(tls_redis, host="localhost", ssl_check_hostname="false")

    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        await MultiplexedRedis(checked).execute("PING")
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(checked).ping()
    link = MultiplexedRedis(unchecked)
    try:
        assert await link.execute("PING") == b"PONG"
        assert redis.Redis.from_url(unchecked).ping()
    finally:
        await link.close()


async def test_ssl_cert_reqs_none_turns_verification_off_for_both(tls_redis: TestRedis) -> None:
    url = tls_url(tls_redis, ca=False, ssl_cert_reqs="none")
    link = MultiplexedRedis(url)
    try:
        assert await link.execute("PING") == b"PONG"
        assert redis.Redis.from_url(url).ping()
    finally:
        await link.close()


async def test_a_job_submitted_over_tls_is_run_by_a_celery_worker(tls_redis: TestRedis, log_dir: Path) -> None:
    url = tls_url(tls_redis, db=4, socket_timeout="10", socket_connect_timeout="5")
    redis.Redis.from_url(url).flushdb()
    env = {"REDIS_URL": url}
    worker = Worker(env, log_dir).start()  # kombu's BRPOP, heartbeats (redis-py), over TLS
    api = ApiServer(env).start()  # the link, and the pub/sub long-polls wait on (redis-py)
    try:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=40.0) as anonymous:
            account = await new_account(anonymous)
        async with httpx.AsyncClient(base_url=api.base_url, timeout=40.0, headers=account.headers) as client:
            submitted = await client.post("/api/v1/checklists", json=TRIP)
            assert submitted.status_code == 202, submitted.text

            job = await wait_for_status(client, submitted.json()["id"], {"succeeded", "failed"})

        assert job["status"] == "succeeded", job
        assert job["result"]["generated_by"]["provider"] == "offline"
    finally:
        api.stop()
        worker.stop()
