"""`python -m tests.native_driver VERB ...`: ops/deploy.sh's driver for the native drills.

ops/deploy.sh does every step of a deploy, a rollback, a backup or a restore through a driver; in
production that is Docker Compose. Here each "container" is a process running its container's
command (read from docker-compose.prod.yml and the Dockerfiles) with its container's environment,
from a release directory (`releases/<tag>`: the image's files), on ports of its own; Redis is
Debian's redis-server with the compose file's command and configuration. The proxy in front of
the API instances is the test's (tests/integration/test_production_native.py): it reads the
`upstreams` file that the `route` verb writes. State lives in NATIVE_STATE (config.json,
instances/, upstreams, logs/).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from shared.embedded_redis import free_port
from tests.production import ROOT, container_command, container_env, native, read_dotenv, services

STATE = Path(os.environ.get("NATIVE_STATE", "/nonexistent"))
#: The variables of this machine that no "container" inherits.
_PROJECT_VARIABLES = ("REDIS_URL", "GROQ_API_KEY", "GROQ_BASE_URL", "LLM_PROVIDER", "ENVIRONMENT", "ENV_FILE")


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((STATE / "config.json").read_text())
    return loaded


def instances(service: str | None = None) -> list[dict[str, Any]]:
    found = [json.loads(path.read_text()) for path in sorted((STATE / "instances").glob("*.json"))]
    return [item for item in found if service is None or item["service"] == service]


def instance(ident: str) -> dict[str, Any] | None:
    path = STATE / "instances" / f"{ident}.json"
    return json.loads(path.read_text()) if path.exists() else None


def alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by an earlier driver call): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat")
        return status.exists() and status.read_text().split()[2] != "Z"
    return finished == 0


def base_env(service: str, port: int | None) -> dict[str, str]:
    cfg = config()
    dotenv = read_dotenv(Path(cfg["env_file"]))
    env = {key: value for key, value in os.environ.items() if key not in _PROJECT_VARIABLES}
    env.update(container_env(service, dotenv))
    env["ENV_FILE"] = "/nonexistent"
    if "REDIS_URL" in env:
        env["REDIS_URL"] = env["REDIS_URL"].replace("@redis:6379", f"@127.0.0.1:{cfg['redis_port']}")
    if service == "api" and port is not None:
        env.update(HOST="127.0.0.1", PORT=str(port))
    if service == "flower" and port is not None:
        env.update(FLOWER_ADDRESS="127.0.0.1", FLOWER_PORT=str(port))
    if service == "worker":
        env["WORKER_METRICS_HOST"] = "127.0.0.1"
        env["WORKER_METRICS_PORT"] = str(port or 0)
    return env


def command_of(service: str, port: int | None, name: str) -> list[str]:
    """The container's command, on this machine's ports (the containers each have the port alone)."""
    replacements = {"0.0.0.0": "127.0.0.1", "8000": str(port), "5555": str(port)}
    dotenv = read_dotenv(Path(config()["env_file"]))
    argv = [replacements.get(arg, arg) for arg in container_command(service, dotenv)]
    argv = [arg.replace("--port=5555", f"--port={port}").replace("=0.0.0.0", "=127.0.0.1") for arg in argv]
    if service == "worker":
        argv += ["--hostname", name]  # every native worker shares this host name
    return native(argv)


def release(tag: str) -> Path:
    path = Path(config()["releases"]) / tag
    if not path.is_dir():
        raise SystemExit(f"native driver: no release {tag} in {path.parent} (the image is not built)")
    return path


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid


def start(service: str, tag: str, count: str) -> None:
    directory = release(tag)
    for _ in range(int(count)):
        ident = f"{service}-{uuid.uuid4().hex[:8]}"
        port = free_port()
        name = f"{ident}@native"
        env = base_env(service, port)
        env["PYTHONPATH"] = str(directory)
        pid = spawn(command_of(service, port, name), env, directory, STATE / "logs" / f"{ident}.log")
        record = {
            "id": ident,
            "service": service,
            "tag": tag,
            "pid": pid,
            "port": port,
            "name": name,
            "started": time.time(),
        }
        (STATE / "instances").mkdir(exist_ok=True)
        (STATE / "instances" / f"{ident}.json").write_text(json.dumps(record))
        print(ident)


def probe(item: dict[str, Any], check: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a container's health check command (its CMD form) against one native instance."""
    env = base_env(item["service"], item["port"])
    env["PYTHONPATH"] = str(release(item["tag"]))
    return subprocess.run(
        native(check), cwd=release(item["tag"]), env=env, capture_output=True, text=True, timeout=15, check=False
    )


def health(ident: str) -> None:
    item = instance(ident)
    if item is None or not alive(item["pid"]):
        print("gone" if item is None else "exited")
        return
    spec = services()[item["service"]]["healthcheck"]
    check = list(spec["test"][1:])
    if item["service"] == "worker":
        check += ["--name", item["name"]]
    if probe(item, check).returncode == 0:
        print("healthy")
        return
    start_period = float(str(spec.get("start_period", "0s")).rstrip("s"))
    print("starting" if time.time() - item["started"] < start_period else "unhealthy")


def ready(ident: str) -> int:
    item = instance(ident)
    if item is None:
        return 1
    result = probe(item, ["python", "-m", "ops.healthcheck", "ready"])
    sys.stderr.write(result.stdout + result.stderr)
    return result.returncode


def route(_service: str, *idents: str) -> None:
    chosen = instances("api") if not idents or idents == ("service",) else [instance(i) for i in idents]
    ports = [str(item["port"]) for item in chosen if item is not None]
    upstreams = STATE / "upstreams"
    upstreams.with_suffix(".new").write_text("\n".join(ports) + "\n")
    upstreams.with_suffix(".new").replace(upstreams)


def stop(*idents: str) -> None:
    for ident in idents:
        item = instance(ident)
        if item is None:
            continue
        grace = float(str(services()[item["service"]].get("stop_grace_period", "10s")).rstrip("s"))
        _terminate(item["pid"], grace)
        (STATE / "instances" / f"{ident}.json").unlink()


def _terminate(pid: int, grace: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _redis_client() -> redis.Redis:
    cfg = config()
    dotenv = read_dotenv(Path(cfg["env_file"]))
    return redis.Redis(host="127.0.0.1", port=cfg["redis_port"], password=dotenv["REDIS_PASSWORD"], socket_timeout=2)


def start_redis() -> None:
    """The compose file's Redis command, with this machine's paths, port and address."""
    cfg = config()
    dotenv = read_dotenv(Path(cfg["env_file"]))
    data = STATE / "redis-data"
    data.mkdir(exist_ok=True)
    argv = container_command("redis", dotenv)
    script = argv[-1].replace("/etc/redis/redis.conf", str(ROOT / "ops" / "redis" / "redis.conf"))
    script = script.replace("--dir /data", f"--dir {data} --port {cfg['redis_port']} --bind 127.0.0.1")
    env = {**os.environ, **container_env("redis", dotenv)}
    pid = spawn([*argv[:-1], script], env, STATE, STATE / "logs" / "redis.log")
    (STATE / "redis.pid").write_text(str(pid))
    client = _redis_client()
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.ping():
                return
        except redis.RedisError as exc:
            if time.monotonic() > deadline or not alive(pid):
                print(f"native driver: {exc}", file=sys.stderr)
                raise SystemExit(
                    f"native driver: Redis did not start: {(STATE / 'logs' / 'redis.log').read_text()[-800:]}"
                ) from exc
            time.sleep(0.05)


def redis_pid() -> int | None:
    path = STATE / "redis.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    return pid if alive(pid) else None


def stop_redis() -> None:
    pid = redis_pid()
    if pid is not None:
        grace = float(str(services()["redis"]["stop_grace_period"]).rstrip("s"))
        _terminate(pid, grace)


def tool(verb: str, argument: str = "") -> int:
    cfg = config()
    dotenv = read_dotenv(Path(cfg["env_file"]))
    backups = Path(cfg["backup_dir"])
    args = [verb, str(backups), argument] if verb == "backup" else [verb, str(backups / argument)]
    env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(cfg["redis_port"])}
    env["REDISCLI_AUTH"] = dotenv["REDIS_PASSWORD"]
    return subprocess.run([str(ROOT / "ops" / "redis-backup.sh"), *args], env=env, check=False).returncode


def validate(tag: str) -> int:
    directory = release(tag)
    env = base_env("api", None)
    env["PYTHONPATH"] = str(directory)
    argv = native(["python", "-m", "ops.check_settings", "--production"])
    return subprocess.run(argv, cwd=directory, env=env, check=False).returncode


def main(argv: list[str]) -> int:
    verb, *args = argv
    if verb == "prereqs":
        print("deploy: native driver (processes, no Docker)")
    elif verb == "build":
        release(args[0])
    elif verb == "validate":
        return validate(args[0])
    elif verb == "infra":
        if redis_pid() is None:
            start_redis()
        (STATE / "upstreams").touch()
    elif verb in ("edge", "logs", "status"):
        print("\n".join(f"{item['service']} {item['id']} {item['tag']} pid {item['pid']}" for item in instances()))
    elif verb == "instances":
        for item in instances(args[0]):
            print(item["id"])
    elif verb == "tag":
        found = instance(args[0])
        print(found["tag"] if found else "")
    elif verb == "start":
        start(*args)
    elif verb == "health":
        health(args[0])
    elif verb == "ready":
        return ready(args[0])
    elif verb == "route":
        route(*args)
    elif verb == "stop":
        stop(*args)
    elif verb == "tool":
        return tool(*args)
    elif verb == "redis-stop":  # the drills' own: Redis down, as after a crash or a lost disk
        stop_redis()
    elif verb == "redis-start":
        start_redis()
    elif verb == "restart" and args == ["redis"]:
        stop_redis()
        start_redis()
    elif verb == "scale":
        count, tag = int(args[0]), args[1]
        running = [item["id"] for item in instances("worker")]
        if count > len(running):
            start("worker", tag, str(count - len(running)))
        else:
            stop(*running[count:])
    else:
        print(f"native driver: unknown verb {verb} {args}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
