"""A real webhook receiver for tests: an HTTP(S) server on loopback, in a thread, that records
every request and answers as the test scripts it (status, headers, a hang), per request."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering (until `release()`: a hang)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    peer: str  # the address the request came from (the receiver's own side: host header aside)
    local: str  # the address the request was sent to


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Receiver:
    """Answers are taken in order from `script` (per path if keyed so); then `default`."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.default = Answer()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()
        #: Requests being held by a hang right now.
        self.hanging = 0
        #: Server names (SNI) TLS clients asked for.
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: without this the body waits for the client's delayed
            # ACK (40 ms), as in tests/fakes/groq_server.py.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                local = self.connection.getsockname()[0]
                answer = receiver._record(
                    Received(
                        self.path, dict(self.headers.items()), body, time.monotonic(), self.client_address[0], local
                    )
                )
                if answer.hang:
                    receiver._hang(answer.hang)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server((host, 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"receiver-{self.port}", daemon=True)

    def _hang(self, seconds: float) -> None:
        with self._lock:
            self.hanging += 1
        try:
            self._release.wait(seconds)
        finally:
            with self._lock:
                self.hanging -= 1

    def release(self) -> None:
        """End every hang (now and later)."""
        self._release.set()

    def _record(self, received: Received) -> Answer:
        with self._arrived:
            self.received.append(received)
            self._arrived.notify_all()
            return self.script.pop(0) if self.script else self.default

    def url(self, host: str = "127.0.0.1", path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(
        self, count: int, timeout: float = 15.0, where: Callable[[Received], bool] = lambda _: True
    ) -> list[Received]:
        """The first `count` requests matching `where`, waiting up to `timeout` seconds for them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(matching := [r for r in self.received if where(r)]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(matching)} of {count} requests arrived within {timeout}s: {matching}")
                self._arrived.wait(remaining)
            return matching[:count]
