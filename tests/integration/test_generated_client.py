"""A typed client generated from the served OpenAPI document works against the real API.

openapi-python-client writes the client into a temporary directory; the test imports it and uses
only its typed models and operations: submit a trip, poll until it succeeds, read a problem.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import Stack

_PACKAGE = "trip_checklist_client"


@pytest.fixture
def generated(offline_stack: Stack, tmp_path: Path) -> Iterator[ModuleType]:
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{offline_stack.api.base_url}/schema/openapi.json").content)
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run over the generated code
    output = tmp_path / _PACKAGE
    subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(document),
         "--meta", "none", "--output-path", str(output), "--config", str(config)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(_PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == _PACKAGE or name.startswith(f"{_PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{_PACKAGE}.{name}")


async def test_a_client_generated_from_the_document_submits_and_polls_a_trip(
    generated: ModuleType, offline_stack: Stack, offline_api: httpx.AsyncClient
) -> None:
    assert offline_stack.account is not None
    submit = _module("api.checklists.submit_checklist")
    get_checklist = _module("api.checklists.get_checklist")
    trip = _module("models.submit_checklist_trip_submission")
    transport = _module("models.submit_checklist_trip_submission_transport")
    models = _module("models")
    client = generated.AuthenticatedClient(
        base_url=offline_stack.api.base_url, token=offline_stack.account.access_token
    )

    async with client:
        body = trip.SubmitChecklistTripSubmission(
            location="Rome", days=3, transport=transport.SubmitChecklistTripSubmissionTransport.TRAIN, occasion="visit"
        )
        accepted = await submit.asyncio_detailed(client=client, body=body)
        assert accepted.status_code == 202
        assert isinstance(accepted.parsed, models.SubmitAccepted)
        job_id = accepted.parsed.id
        assert accepted.headers["location"] == accepted.parsed.links.self_

        deadline = time.monotonic() + 30
        job = await get_checklist.asyncio(client=client, job_id=job_id, wait=10)
        while job.status != models.JobStatus.SUCCEEDED:
            assert time.monotonic() < deadline, f"job {job_id} is still {job.status}"
            await asyncio.sleep(0.05)
            job = await get_checklist.asyncio(client=client, job_id=job_id, wait=10)
        missing = await get_checklist.asyncio(client=client, job_id="0" * 32)

    assert isinstance(job, models.Job)
    assert job.request.location == "Rome"
    assert isinstance(job.result, models.Checklist)
    assert job.result.items
    assert all(isinstance(item.category, models.ChecklistItemCategory) for item in job.result.items)
    assert isinstance(missing, models.Problem)
    assert missing.code == "not_found"
