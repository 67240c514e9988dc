"""`REDIS_URL`, read once the way redis-py reads it, for every Redis client of the service.

Three clients share the URL: the API's multiplexed link (`shared.redis_mux`), redis-py (worker,
heartbeats, the API's pub/sub) and kombu (Celery's broker transport). They must agree on where
Redis is and how to trust it, so the URL is parsed by redis-py's own `parse_url` and each client
is configured from the result:
- redis-py takes the URL as it is (`Redis.from_url`);
- the link takes host, port, db, credentials, timeouts, and the TLS context redis-py itself builds
  from the `ssl_*` options (`ssl_context()`);
- kombu gets the URL without its query (kombu's URL parser rejects `socket_timeout` and friends,
  and with `rediss://` but no `ssl_*` options it falls back to *not verifying* the certificate),
  plus the `ssl_*` options as `broker_use_ssl` and the timeouts as transport options
  (`shared.queue.create_celery`), which kombu hands to redis-py's connection unchanged.

Only options all three honour the same way are accepted; anything else stops start-up with a
message (`shared.settings`), rather than meaning one thing to one client and nothing to another.
Supported shapes: one Redis primary over TCP or TLS, with an ACL user or a password. Not Cluster,
not Sentinel (see README "Redis").
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis.asyncio
from redis.asyncio.connection import parse_url

__all__ = ["TLS_OPTIONS", "InvalidRedisUrl", "RedisEndpoint"]

#: The TLS options a URL may carry (redis-py's names, which kombu passes through unchanged).
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")
_SUPPORTED = frozenset({"db", *_TIMEOUTS, *TLS_OPTIONS})
_CERT_REQS = ("none", "optional", "required")
#: redis-py's default for both timeouts when the URL gives none (redis/_defaults.py).
DEFAULT_TIMEOUT = 5.0


class InvalidRedisUrl(ValueError):
    """The URL cannot mean the same thing to every client; `problems` says why (no secrets)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    tls_options: dict[str, Any] = field(default_factory=dict)
    """The URL's `ssl_*` options, typed as redis-py parses them."""
    socket_timeout: float | None = None
    socket_connect_timeout: float | None = None

    @classmethod
    def parse(cls, url: str) -> RedisEndpoint:
        """Parse with redis-py's `parse_url`; raises `InvalidRedisUrl` listing every problem."""
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("redis", "rediss"):
            # unix:// means a socket path to redis-py but nothing to kombu (which wants socket://).
            raise InvalidRedisUrl([f"REDIS_URL must start with redis:// or rediss:// (got {scheme or 'no'} scheme)"])
        try:
            options: dict[str, Any] = dict(parse_url(url))
        except ValueError as exc:
            raise InvalidRedisUrl([f"REDIS_URL: {exc}"]) from None
        problems = [
            f"REDIS_URL option {name!r} is not supported (supported: {', '.join(sorted(_SUPPORTED))})"
            for name in sorted(set(options) - _SUPPORTED - {"host", "port", "username", "password", "connection_class"})
        ]
        tls = scheme == "rediss"
        tls_options = {name: options[name] for name in TLS_OPTIONS if name in options}
        if tls_options and not tls:
            problems.append("REDIS_URL has ssl_* options but a redis:// scheme (rediss:// for TLS)")
        cert_reqs = tls_options.get("ssl_cert_reqs")
        if cert_reqs is not None and cert_reqs not in _CERT_REQS:
            problems.append(f"REDIS_URL ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
        timeouts = {name: options.get(name) for name in _TIMEOUTS}
        for name, value in timeouts.items():
            if value is not None and value <= 0:
                problems.append(f"REDIS_URL {name} must be a positive number of seconds")
        path = unquote(urlsplit(url).path).strip("/")
        if path and not path.isdigit() and "db" not in options:
            # redis-py would quietly use database 0; kombu would refuse the URL.
            problems.append("REDIS_URL path must be a database number (redis://host:6379/0)")
        if problems:
            raise InvalidRedisUrl(problems)
        return cls(
            host=options.get("host", "localhost"),
            port=int(options.get("port", 6379)),
            db=int(options.get("db", 0)),
            username=options.get("username"),
            password=options.get("password"),
            tls=tls,
            tls_options=tls_options,
            socket_timeout=timeouts["socket_timeout"],
            socket_connect_timeout=timeouts["socket_connect_timeout"],
        )

    @property
    def command_timeout(self) -> float:
        """How long a command may wait for its reply: `socket_timeout`, else redis-py's default."""
        return self.socket_timeout if self.socket_timeout is not None else DEFAULT_TIMEOUT

    @property
    def connect_timeout(self) -> float:
        """`socket_connect_timeout`, else `socket_timeout` (as redis-py), else redis-py's default."""
        if self.socket_connect_timeout is not None:
            return self.socket_connect_timeout
        return self.command_timeout

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context redis-py builds for these options (by default: verify the certificate
        against the system's CAs, or `ssl_ca_certs`, and check the host name)."""
        if not self.tls:
            return None
        context: ssl.SSLContext = redis.asyncio.SSLConnection(**self.tls_options).ssl_context.get()
        return context

    def without_options(self) -> str:
        """The URL with credentials, host, port and db only: what kombu's URL parser accepts."""
        scheme = "rediss" if self.tls else "redis"
        credentials = ""
        if self.username is not None or self.password is not None:
            user = quote(self.username or "", safe="")
            credentials = f"{user}:{quote(self.password, safe='')}@" if self.password is not None else f"{user}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{credentials}{host}:{self.port}/{self.db}"
