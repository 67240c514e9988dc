"""The error→HTTP table for Redis error replies: a Redis that cannot serve us now is a 503 with
Retry-After; an error reply that only a bug of ours can cause stays a 500."""

from __future__ import annotations

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import RequestFactory

from api.problems import exception_handlers
from shared.redis_mux import RedisReplyError

UNAVAILABLE = [
    "OOM command not allowed when used memory > 'maxmemory'.",
    "READONLY You can't write against a read only replica.",
    "LOADING Redis is loading the dataset in memory",
    "MOVED 3999 127.0.0.1:6381",
    "ASK 3999 127.0.0.1:6381",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
    "ERR Error running script (call to f_ab12): @user_script:1: @user_script: 1: -OOM command not allowed",
]
BUGS = [
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "ERR Error running script (call to f_ab12): @user_script:3: Script attempted to access nonexistent global",
    "ERR wrong number of arguments for 'hset' command",
]


def answer(reply: str) -> tuple[int, dict[str, str], dict[str, object]]:
    handler = exception_handlers()[RedisReplyError]
    # An app without a logging configuration of its own, so that caplog keeps the log records.
    request = RequestFactory(app=Litestar(logging_config=None)).post("/api/v1/checklists")
    response = handler(request, RedisReplyError(reply))
    assert isinstance(response.content, bytes)
    assert response.status_code is not None
    problem: dict[str, object] = msgspec.json.decode(response.content)
    return response.status_code, dict(response.headers), problem


@pytest.mark.parametrize("reply", UNAVAILABLE)
def test_a_redis_that_cannot_serve_now_is_a_503_with_retry_after(reply: str) -> None:
    status, headers, problem = answer(reply)

    assert status == 503
    assert problem["code"] == "dependency_unavailable"
    assert int(headers["Retry-After"]) > 0


@pytest.mark.parametrize("reply", BUGS)
def test_an_error_reply_only_a_bug_can_cause_stays_a_500(reply: str, caplog: pytest.LogCaptureFixture) -> None:
    status, _, problem = answer(reply)

    assert status == 500
    assert problem["code"] == "internal_error"
    assert reply in caplog.text  # logged for whoever fixes it, not shown to the client
    assert reply not in str(problem)
