"""One HTTP POST to a webhook receiver, to the address that was checked and nowhere else.

The host is resolved once; every address it resolves to must pass `shared.webhook_urls`' check
(one refused address refuses the URL: a name that points inside as well as outside is not one to
trust). The connection then goes to the first checked address: `http.client` with the socket
made here, so no second lookup, which a DNS rebinding attack could answer differently, ever
happens; TLS verifies the certificate for the URL's own host name, which is also the SNI and the
`Host` header. Redirects are not followed (a 3xx is a failed attempt), no proxy is used, the
whole exchange has one deadline (connecting included), and at most 64 KiB of the response body
is read, then dropped.

`Resolver` is the seam for tests: they resolve names to loopback addresses of their choosing. With
`loopback_only` (ENVIRONMENT=test) an address outside 127.0.0.0/8 and ::1 is refused whatever the
other settings say, and the system resolver is never asked (no DNS query either), so that no test
can ever reach a real network.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.webhook_urls import Address, RefusedUrl, Target, address_problem, check_url

__all__ = [
    "MAX_RESPONSE_BYTES",
    "DeliveryFailed",
    "Resolver",
    "Response",
    "SystemResolver",
    "Transport",
]

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "TripChecklist-Webhooks/1.0"


class DeliveryFailed(Exception):
    """The request got no HTTP answer: refused by the guard, no connection, a timeout. `retry`
    says whether trying again could help (a refused URL cannot)."""

    def __init__(self, reason: str, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    retry_after: str | None
    address: str  # the address connected to


class Resolver(Protocol):
    def resolve(self, host: str, port: int) -> list[Address]: ...


class SystemResolver:
    """The system's resolver (`getaddrinfo`), TCP addresses only."""

    def resolve(self, host: str, port: int) -> list[Address]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise DeliveryFailed(f"cannot resolve {host}: {exc.strerror}") from None
        found: list[Address] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        return found


_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `address`, whatever `host` (kept for the Host header) resolves to."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def _open(self) -> socket.socket:
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS to `address`, verified for `host` (which is also the SNI)."""

    def __init__(self, host: str, port: int, address: Address, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, address, timeout)
        self.context = context

    def connect(self) -> None:
        self.sock = self.context.wrap_socket(self._open(), server_hostname=self.host)


class _Deadline:
    """Closes the connection's socket when the attempt's time is up, wherever it is blocked
    (connecting, a receiver sending its headers one byte at a time, a body that never ends)."""

    def __init__(self, seconds: float, connection: http.client.HTTPConnection) -> None:
        self.expired = False
        self._connection = connection
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        sock = self._connection.sock
        if sock is not None:
            # The plain socket's shutdown, below TLS: it wakes a blocked read at once.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()


@dataclass
class Transport:
    resolver: Resolver
    timeout: float
    allow_http: bool
    allow_private: bool
    loopback_only: bool = False
    #: TLS settings (tests trust their own CA here); the system's CAs by default.
    context_factory: Callable[[], ssl.SSLContext] = ssl.create_default_context
    clock: Callable[[], float] = time.monotonic

    def target(self, url: str) -> Target:
        """The URL's target, checked before any DNS; `DeliveryFailed` (not to retry) if refused."""
        try:
            return check_url(url, allow_http=self.allow_http, allow_private=self.allow_private)
        except RefusedUrl as exc:
            raise DeliveryFailed(f"refused URL: {exc}", retry=False) from None

    def address(self, target: Target) -> Address:
        """The one address to connect to, after checking every address the host resolves to."""
        if self.loopback_only and target.address is None and isinstance(self.resolver, SystemResolver):
            # Not even a DNS query leaves a test: names are resolved by the tests' own resolvers.
            raise DeliveryFailed(f"refused: {target.host} (ENVIRONMENT=test resolves no names through DNS)")
        addresses = [target.address] if target.address is not None else self.resolver.resolve(target.host, target.port)
        if not addresses:
            raise DeliveryFailed(f"{target.host} resolves to no address")
        for address in addresses:
            problem = address_problem(address, allow_private=self.allow_private)
            if problem is not None:
                raise DeliveryFailed(f"refused address: {target.host} resolves to {problem}")
        for address in addresses:
            if self.loopback_only and not any(address in net for net in _LOOPBACK):
                raise DeliveryFailed(f"refused address: {address} (ENVIRONMENT=test delivers to loopback only)")
        return addresses[0]

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST `body` to `url`; the answer's status, whatever it is. Raises `DeliveryFailed`."""
        target = self.target(url)
        started = self.clock()
        address = self.address(target)
        remaining = self.timeout - (self.clock() - started)
        if remaining <= 0:
            raise DeliveryFailed(f"timed out after {self.timeout:g}s (resolving {target.host})")
        host = str(target.address) if target.literal and target.address is not None else target.host
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(host, target.port, address, remaining, self.context_factory())
        else:
            connection = _PinnedHTTPConnection(host, target.port, address, remaining)
        all_headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Connection": "close",
            **headers,
        }
        deadline = _Deadline(remaining, connection)
        try:
            with deadline:
                connection.request("POST", target.path, body=body, headers=all_headers)
                answer = connection.getresponse()
                answer.read(MAX_RESPONSE_BYTES)  # read, so the receiver is not cut off mid-reply; then dropped
                return Response(status=answer.status, retry_after=answer.getheader("Retry-After"), address=str(address))
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryFailed(f"TLS certificate not valid for {target.host}: {exc.verify_message}") from None
        except (OSError, http.client.HTTPException) as exc:
            if deadline.expired or isinstance(exc, TimeoutError):
                raise DeliveryFailed(f"timed out after {self.timeout:g}s") from None
            raise DeliveryFailed(f"connection to {address} port {target.port} failed: {_describe(exc)}") from None
        finally:
            connection.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."
