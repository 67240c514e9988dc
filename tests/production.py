"""The production files as data, for the static checks and the native drills: the compose file's
services (their environment interpolated from a .env, as Compose does), each Dockerfile's final
stage, and the command a service's container runs, turned into the same command on this machine."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.prod.yml"
ENV_EXAMPLE = ROOT / ".env.example"

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose_file()["services"]
    return found


def variables_used(text: str) -> set[str]:
    """Every variable a compose file interpolates (`$$` is a literal dollar, not one)."""
    return {match.group(1) or match.group(4) for match in _VARIABLE.finditer(text) if match.group(0) != "$$"}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        present = env.get(name)
        if operator in (":-", ":?") and not present:
            present = None
        if present is not None:
            return present
        if operator in (":?", "?"):
            raise KeyError(f"{name}: {argument}")
        return argument if operator in (":-", "-") else ""

    return _VARIABLE.sub(replace, value)


@dataclass(frozen=True)
class Dockerfile:
    """The final stage of a Dockerfile: its ENV, CMD and HEALTHCHECK (exec forms)."""

    path: Path
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, name: str) -> Dockerfile:
        path = ROOT / name
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        parsed = cls(path)
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("FROM "):
                parsed.bases.append(line.split()[1])
                parsed.env.clear()
                parsed.copies.clear()
            elif line.startswith("ENV "):
                for pair in shlex.split(line[4:]):
                    key, _, value = pair.partition("=")
                    parsed.env[key] = value
            elif line.startswith("CMD "):
                parsed.cmd[:] = json.loads(line[4:])
            elif line.startswith("HEALTHCHECK "):
                parsed.healthcheck[:] = json.loads(line[line.index("CMD ") + 4 :])
            elif line.startswith("COPY ") and "--from" not in line:
                parsed.copies.extend(line.split()[1:-1])
        return parsed


def dockerfile_of(service: dict[str, Any]) -> Dockerfile:
    """The Dockerfile a service's image is built from (the worker's for Flower, which reuses it)."""
    build = service.get("build")
    if build is not None:
        return Dockerfile.read(build["dockerfile"])
    image = service["image"].split(":")[0]
    for other in services().values():
        if other.get("build") and other["image"].split(":")[0] == image:
            return Dockerfile.read(other["build"]["dockerfile"])
    raise LookupError(f"no Dockerfile builds {service['image']}")


def container_env(name: str, dotenv: Mapping[str, str]) -> dict[str, str]:
    """What a container of `name` has in its environment: the image's ENV, then .env (env_file),
    then the compose file's `environment:` (interpolated from .env), as Docker layers them."""
    service = services()[name]
    env = dict(dockerfile_of(service).env) if service.get("build") or name == "flower" else {}
    env.pop("PATH", None)
    if service.get("env_file"):
        env.update(dotenv)
    for key, value in (service.get("environment") or {}).items():
        env[key] = interpolate(str(value), dotenv)
    return env


def container_command(name: str, dotenv: Mapping[str, str] | None = None) -> list[str]:
    """The command a container of `name` runs: its `command:` (interpolated, as Compose does),
    else its image's CMD."""
    service = services()[name]
    command = service.get("command")
    if command is not None:
        return [interpolate(str(arg), dotenv or {}) for arg in command]
    return list(dockerfile_of(service).cmd)


def native(argv: list[str]) -> list[str]:
    """A container's command on this machine: its programs from this virtualenv."""
    program, *rest = argv
    if program == "python":
        return [sys.executable, *rest]
    if program in ("uvicorn", "celery"):
        return [sys.executable, "-m", program, *rest]
    return argv


def read_dotenv(path: Path) -> dict[str, str]:
    return {key: value for key, value in dotenv_values(path).items() if value is not None}
