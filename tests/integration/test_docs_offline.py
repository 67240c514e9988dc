"""The docs page works without internet: a real browser with no network but loopback renders it.

Headless Chromium (Debian's, installed by tests/system-packages.sh) loads /schema/swagger with
every host name but 127.0.0.1 unresolvable and a proxy that refuses every connection, dumps the
DOM Swagger UI rendered, and its console is read for Content-Security-Policy violations.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from shared.embedded_redis import free_port
from shared.settings import load_settings
from tests.conftest import Stack
from tests.support import environment

CHROMIUM = Path("/usr/bin/chromium")
_HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _render(url: str, profile: Path) -> tuple[str, str]:
    """The DOM after the page's scripts ran, and Chromium's log (console messages included)."""
    assert CHROMIUM.exists(), "headless Chromium is missing: run tests/system-packages.sh"
    # Everything but loopback is unreachable: no name resolves, and the proxy port has no listener.
    no_network = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--proxy-server=127.0.0.1:{free_port()}"]
    command = [
        str(CHROMIUM), *_HEADLESS, *no_network, f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", url,
    ]  # fmt: skip
    # Its own session, so that a hung browser is stopped with every process it started.
    browser = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        dom, log = browser.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.communicate()
        raise
    return dom.decode(), log.decode(errors="replace")


def test_the_docs_page_lists_every_operation_in_a_browser_without_network(offline_stack: Stack, tmp_path: Path) -> None:
    base = offline_stack.api.base_url
    document = httpx.get(f"{base}/schema/openapi.json").json()

    dom, log = _render(f"{base}/schema/swagger", tmp_path / "profile")

    operations = {
        (operation["tags"][0], operation["operationId"])
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert len(operations) >= 20
    rendered = set(re.findall(r'id="operations-([\w-]+?)-(\w+)"', dom))
    assert operations <= rendered, f"not rendered: {sorted(operations - rendered)}"
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Content Security Policy" in line], console


def _sources(policy: str) -> dict[str, list[str]]:
    directives = (part.split() for part in policy.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


@pytest.mark.parametrize("path", ["/schema/swagger", "/schema/swagger-ui/swagger-ui-bundle.js"])
async def test_the_docs_content_security_policy_allows_only_this_origin(redis_base_url: str, path: str) -> None:
    # Production with the docs turned on: the same policy as in development.
    production = {
        "REDIS_URL": f"{redis_base_url}/10",
        "ENVIRONMENT": "production",
        "SECRET_KEY": "k" * 40,
        "LLM_PROVIDER": "offline",
        "DOCS_ENABLED": "true",
        "METRICS_TOKEN": "m" * 32,
    }
    async with AsyncTestClient(create_app(load_settings(environment(production)))) as client:
        response = await client.get(path)

    assert response.status_code == 200
    policy = _sources(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    every_source = [source for sources in policy.values() for source in sources]
    assert not [source for source in every_source if "unsafe" in source or "://" in source or "*" in source]
    assert set(every_source) <= {"'self'", "'none'", "data:"}
