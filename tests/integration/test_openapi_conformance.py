"""The OpenAPI document describes the API: schemathesis against a real API server and worker.

Every operation of the document is called with generated requests, valid and invalid, signed in
with the access token the document's security schemes ask for; each answer must match the
document in status code, content type, body schema and required headers, and none may be a 5xx.

schemathesis is driven the way its pytest integration documents: `@schema.parametrize()` makes one
test per operation. The schema is loaded from the app factory at import (building the app connects
nothing), and the first test checks that the running server serves exactly that document.
Hypothesis runs derandomized with no example database, so a run is repeatable and leaves no files.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis

from api.app import create_app
from shared.settings import load_settings
from tests.support import TEST_PASSWORD, ApiServer, Worker, environment

#: The legacy endpoint waits for its job; the worker finishes offline jobs well within this.
_ENV = {"LEGACY_WAIT": "3"}
#: Its own database (the session's stacks use 1-3), emptied first.
_DB = 11
#: Per operation: fuzzed examples on top of the coverage phase's boundary cases. About a minute in all.
_MAX_EXAMPLES = 30

_CONFIG = {
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
    },
    "generation": {
        "mode": "all",
        "max-examples": _MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        # Credentials come from a real login (below), not from generated header values.
        "with-security-parameters": False,
    },
}
#: Operations that end the credentials they are called with get a fresh account each time.
_SPENDS_ITS_CREDENTIALS = {"POST /api/v1/auth/logout", "DELETE /api/v1/auth/me"}


def _document() -> dict[str, object]:
    settings = load_settings(environment({"REDIS_URL": "redis://127.0.0.1:1/0", **_ENV}))
    document: dict[str, object] = create_app(settings).openapi_schema.to_schema()
    return document


DOCUMENT = _document()


#: Operations whose document asks for credentials.
_SECURED = {
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()  # type: ignore[attr-defined]
    for method, operation in item.items()
    if isinstance(operation, dict) and operation.get("security")
}


@dataclass(frozen=True)
class Target:
    base_url: str
    access_token: str

    def headers_for(self, case: schemathesis.Case[Any]) -> dict[str, str]:
        """Credentials for the operations that need them: a fresh login for those that end it."""
        label = case.operation.label
        if label not in _SECURED:
            return {}
        if label in _SPENDS_ITS_CREDENTIALS:
            with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
                return {"Authorization": f"Bearer {_sign_up(client)}"}
        return {"Authorization": f"Bearer {self.access_token}"}


def _sign_up(client: httpx.Client) -> str:
    email = f"conformance-{uuid.uuid4().hex[:12]}@example.com"
    credentials = {"email": email, "password": TEST_PASSWORD}
    assert client.post("/api/v1/auth/register", json=credentials).status_code == 201
    tokens = client.post("/api/v1/auth/login", json=credentials)
    assert tokens.status_code == 200, tokens.text
    access_token: str = tokens.json()["access_token"]
    return access_token


@pytest.fixture(scope="module")
def target(redis_base_url: str, log_dir: Path) -> Iterator[Target]:
    url = f"{redis_base_url}/{_DB}"
    redis.Redis.from_url(url).flushdb()
    env = {"REDIS_URL": url, **_ENV}
    worker = Worker(env, log_dir).start()
    api = ApiServer(env).start()
    try:
        with httpx.Client(base_url=api.base_url, timeout=30.0) as client:
            yield Target(api.base_url, _sign_up(client))
    finally:
        api.stop()
        worker.stop()


def test_the_server_serves_the_document_under_test(target: Target) -> None:
    served = httpx.get(f"{target.base_url}/schema/openapi.json")

    assert served.json() == DOCUMENT


schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(_CONFIG))


@schema.parametrize()
def test_the_api_answers_as_its_openapi_document_says(case: schemathesis.Case[Any], target: Target) -> None:
    case.call_and_validate(base_url=target.base_url, headers=target.headers_for(case))


def test_a_jobs_event_stream_answers_as_the_document_says(target: Target) -> None:
    """Generated job ids name no job (404): the stream's own answers are checked here, on a real job.

    Its job is finished first, so that its stream ends after sending the job's current state; then
    resuming after that (terminal) event is the 204."""
    auth = {"Authorization": f"Bearer {target.access_token}"}
    trip = {"location": "Rome", "days": 3, "transport": "train", "occasion": "visit"}
    with httpx.Client(base_url=target.base_url, headers=auth, timeout=30.0) as client:
        job_id = client.post("/api/v1/checklists", json=trip).json()["id"]
        assert client.get(f"/api/v1/checklists/{job_id}", params={"wait": 20}).json()["status"] == "succeeded"
    operation = schema["/api/v1/checklists/{job_id}/events"]["GET"]

    streamed = operation.Case(path_parameters={"job_id": job_id}).call_and_validate(
        base_url=target.base_url, headers=auth
    )
    last_id = re.findall(r"^id: (\S+)", streamed.text, re.MULTILINE)[-1]
    resumed = operation.Case(path_parameters={"job_id": job_id}, headers={"Last-Event-ID": last_id}).call_and_validate(
        base_url=target.base_url, headers=auth
    )

    assert "event: job.succeeded" in streamed.text
    assert (streamed.status_code, resumed.status_code) == (200, 204)
