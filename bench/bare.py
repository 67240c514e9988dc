"""Baselines for `make bench`: bare Litestar handlers doing only the unavoidable work.

POST decodes the same TripRequest body with msgspec and answers 202; GET answers a stored job's
bytes from memory. Run on the same ASGI server with the same process count as the real API, the
ratio real/bare is what our own work (validation, Redis, enqueueing) costs.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath

from shared.schemas import TripRequest

_ACCEPTED = msgspec.json.encode({"id": "0" * 32, "status": "queued"})
#: Set by the harness (env BARE_DOC_FILE) to a real job document, so both GETs send the same bytes.
_doc = b'{"id":"0"}'


@post("/bare", status_code=202)
async def bare_post(request: Request[Any, Any, Any]) -> Response[bytes]:
    msgspec.json.decode(await request.body(), type=TripRequest)
    return Response(_ACCEPTED, status_code=202, media_type="application/json")


@get("/bare/{job_id:str}")
async def bare_get(job_id: FromPath[str]) -> Response[bytes]:
    return Response(_doc, media_type="application/json")


def create_bare_app() -> Litestar:
    import os  # noqa: PLC0415

    global _doc  # noqa: PLW0603 - loaded once per process
    path = os.environ.get("BARE_DOC_FILE")
    if path:
        with open(path, "rb") as handle:
            _doc = handle.read()
    return Litestar([bare_post, bare_get])
