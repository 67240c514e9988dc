"""REDIS_URL means the same to the link, redis-py and kombu (no connection is made here)."""

from __future__ import annotations

import ssl

import pytest
import redis
from kombu import Connection

from shared.errors import SettingsError
from shared.queue import create_celery
from shared.redis_mux import MultiplexedRedis, RedisReplyError
from shared.redis_url import RedisEndpoint
from shared.settings import load_settings

URLS = [
    "redis://127.0.0.1:6379/0",
    "redis://redis.internal",
    "redis://:p%40ss@redis.internal:6380/5",
    "redis://checklist:s%3Acret@10.0.0.7:6379/2?socket_timeout=2.5&socket_connect_timeout=1",
    "redis://10.0.0.7/1?db=7",
    "rediss://checklist:secret@redis.example.com:6380/3?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/c.key",
    "rediss://redis.example.com?ssl_cert_reqs=none",
    "redis://[::1]:6379/4",
]


@pytest.mark.parametrize("url", URLS)
def test_the_endpoint_is_what_redis_py_connects_to(url: str) -> None:
    endpoint = RedisEndpoint.parse(url)
    pool = redis.Redis.from_url(url).connection_pool
    expected = pool.connection_kwargs

    assert endpoint.host == expected.get("host", "localhost")
    assert endpoint.port == expected.get("port", 6379)
    assert endpoint.db == expected.get("db", 0)
    assert endpoint.username == expected.get("username")
    assert endpoint.password == expected.get("password")
    assert endpoint.tls == issubclass(pool.connection_class, redis.SSLConnection)
    assert endpoint.socket_timeout == expected.get("socket_timeout")
    assert endpoint.socket_connect_timeout == expected.get("socket_connect_timeout")


@pytest.mark.parametrize("url", URLS)
def test_kombu_gets_the_same_endpoint(url: str) -> None:
    app = create_celery(load_settings({"REDIS_URL": url}))
    endpoint = RedisEndpoint.parse(url)

    connection: Connection = app.connection_for_write()
    options = connection.transport_options or {}

    assert (connection.hostname, connection.port) == (endpoint.host, endpoint.port)
    assert int(connection.virtual_host) == endpoint.db
    assert (connection.userid, connection.password) == (endpoint.username, endpoint.password)
    assert options.get("socket_timeout") == endpoint.socket_timeout
    assert options.get("socket_connect_timeout") == endpoint.socket_connect_timeout
    if endpoint.tls:
        assert connection.ssl == {"ssl_cert_reqs": "required", **endpoint.tls_options}
    else:
        assert not connection.ssl


def test_kombu_alone_would_choke_on_timeouts_and_skip_certificate_checks() -> None:
    """Why kombu gets the URL without its query: the day these change, the workaround can go."""
    with pytest.raises(TypeError, match="socket_timeout"):
        Connection("redis://127.0.0.1:6379/0?socket_timeout=5")
    assert Connection("rediss://127.0.0.1:6379/0").ssl == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_rediss_verifies_the_certificate_and_host_name_by_default_everywhere() -> None:
    url = "rediss://redis.example.com:6380/0"
    context = RedisEndpoint.parse(url).ssl_context()
    app = create_celery(load_settings({"REDIS_URL": url}))

    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert app.connection_for_write().ssl == {"ssl_cert_reqs": "required"}


def test_tls_options_shape_the_links_context_as_redis_pys() -> None:
    relaxed = RedisEndpoint.parse("rediss://h/0?ssl_cert_reqs=optional&ssl_check_hostname=false").ssl_context()
    off = RedisEndpoint.parse("rediss://h/0?ssl_cert_reqs=none").ssl_context()

    assert relaxed is not None
    assert off is not None
    assert (relaxed.verify_mode, relaxed.check_hostname) == (ssl.CERT_OPTIONAL, False)
    assert (off.verify_mode, off.check_hostname) == (ssl.CERT_NONE, False)
    assert RedisEndpoint.parse("redis://h/0").ssl_context() is None


def test_the_links_timeouts_come_from_the_url_else_redis_pys_defaults() -> None:
    given = MultiplexedRedis("redis://h/0?socket_timeout=2.5&socket_connect_timeout=1")
    only_socket = MultiplexedRedis("redis://h/0?socket_timeout=3")
    default = MultiplexedRedis("redis://h/0")

    assert (given.command_timeout, given.connect_timeout) == (2.5, 1.0)
    assert (only_socket.command_timeout, only_socket.connect_timeout) == (3.0, 3.0)
    assert (default.command_timeout, default.connect_timeout) == (5.0, 5.0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("unix:///run/redis.sock", "redis:// or rediss://"),
        ("redis+sentinel://h:26379/0", "redis:// or rediss://"),
        ("redis://h/0?protocol=3", "'protocol' is not supported"),
        ("redis://h/0?health_check_interval=10", "'health_check_interval' is not supported"),
        ("redis://h/0?ssl_ca_certs=/ca.pem", "rediss://"),
        ("rediss://h/0?ssl_cert_reqs=CERT_NONE", "ssl_cert_reqs must be one of none, optional, required"),
        ("redis://h/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://h/0?socket_timeout=0", "socket_timeout must be a positive number"),
        ("redis://h/jobs", "database number"),
    ],
)
def test_a_url_some_client_would_read_differently_stops_start_up(url: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings({"REDIS_URL": url})


def test_url_problems_are_listed_with_the_others_and_without_the_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"REDIS_URL": "redis://u:hunter2@h/0?protocol=3&ssl_keyfile=/k", "WORKERS": "many"})

    problems = caught.value.problems
    assert len(problems) == 3
    assert not any("hunter2" in problem for problem in problems)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
        ("READONLY You can't write against a read only replica. script: f79e, on @user_script:1.", "READONLY"),
        # Redis 6 wraps the error of a call inside a script:
        (
            "ERR Error running script (call to f_f79e): @user_script:1: @user_script: 1: -OOM command not allowed",
            "OOM",
        ),
        ("ERR Error running script (call to f_f79e): @user_script:1: user_script:1: bad argument", "ERR"),
        ("MOVED 3999 127.0.0.1:6381", "MOVED"),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE"),
    ],
)
def test_a_reply_errors_code_is_found_in_redis_6_and_7_formats(reply: str, code: str) -> None:
    assert RedisReplyError(reply).code == code
