"""A multiplexed asyncio Redis connection for the API's request path.

Why not redis-py's pooled client here: every command checks a connection out of a pool, writes,
and reads through an asyncio StreamReader, which costs about as much CPU as Litestar's whole
request handling (measured in `make bench`'s history; see README "Performance"). This client keeps
one connection per process and writes the commands of all concurrent requests in one `write()`
per event-loop turn; replies are parsed by hiredis inside the protocol callback and matched to
callers in order, which Redis guarantees on a single connection.

Scope, on purpose: request/response commands and scripts. Pub/sub and blocking commands
(BRPOP, ...) would stall the shared connection, so they stay on redis-py (`api.events`).

Connection settings come from `REDIS_URL`, read as redis-py reads it (`shared.redis_url`): TLS
options, credentials, database, `socket_timeout` (the command timeout here) and
`socket_connect_timeout`.

Failure behaviour:
- a dropped connection fails every pending command with `RedisUnavailable`; the next command
  reconnects;
- a command Redis does not answer within the command timeout fails with `RedisTimeout`, and the
  connection is reset: replies carry no id, only their order, so once one is lost the replies
  behind it can no longer be matched to their commands; the younger commands fail as unavailable;
- flow control: while the transport's write buffer is above its high-water mark (a Redis that
  reads slowly, or not at all), new commands wait instead of growing the buffer;
- a batch of scripts (`run_scripts`) reads every reply even when one fails, then raises the first
  error.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import hiredis

from shared.redis_url import RedisEndpoint

__all__ = ["MultiplexedRedis", "RedisReplyError", "RedisTimeout", "RedisUnavailable", "Script", "ScriptRunner"]


def _pack(args: tuple[str | bytes | int | float, ...]) -> bytes:
    # hiredis' stub types the argument as a 1-tuple; it takes any number of parts.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


class RedisUnavailable(ConnectionError):
    """Redis could not be reached, dropped the connection, or did not answer in time."""


class RedisTimeout(RedisUnavailable):
    """Redis did not answer this command within the command timeout."""


class RedisReplyError(Exception):
    """Redis answered a command with an error."""

    @property
    def code(self) -> str:
        """The error's code: `OOM`, `READONLY`, `LOADING`, `MOVED`, `WRONGTYPE`, `ERR`, ...

        Redis 7 keeps the code of a command that failed inside a script; Redis 6 wraps it, as in
        `ERR Error running script (call to f_...): @user_script:1: ... -OOM command not allowed`.
        """
        message = str(self)
        if message.startswith("ERR Error running script"):
            _, found, inner = message.rpartition(": -")
            if found:
                return inner.split(" ", 1)[0]
        return message.split(" ", 1)[0]


class Script:
    """A Lua script run by SHA, loaded on first use (and again after a Redis restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class ScriptRunner(Protocol):
    """Runs a script: `MultiplexedRedis` itself, or a wrapper that adds a check to the same call
    (`api.limits.QuotaGuard`: the caller's quota, spent in the script that does the work)."""

    async def run_script(self, script: Script, keys: list[str], args: list[str | bytes | int | float]) -> Any: ...


class _Protocol(asyncio.Protocol):
    def __init__(self, on_lost: Callable[[_Protocol], None]) -> None:
        self.reader = hiredis.Reader()
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.flush_scheduled = False
        self.on_lost = on_lost
        # True while the transport's write buffer is above its high-water mark (flow control).
        self.paused = False
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future, _ = self.pending.popleft()
                if future.done():  # the caller was cancelled; its reply is simply dropped
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(RedisReplyError(str(reply)))
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.fail(RedisUnavailable(f"Redis protocol error: {exc}"))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def writable(self) -> None:
        """Wait until the transport takes data again (what `StreamWriter.drain` does)."""
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
        # Shielded: one waiter giving up (cancelled) must not cancel the wait of the others.
        await asyncio.shield(self._writable)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisUnavailable(f"connection to Redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception, *, timed_out: RedisTimeout | None = None, sent_before: float = 0.0) -> None:
        """Abort the connection and fail every command waiting on it with `error` (those sent
        before `sent_before` with `timed_out`, if given), writers waiting for room included."""
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        while self.pending:
            future, sent_at = self.pending.popleft()
            if not future.done():
                future.set_exception(timed_out if timed_out is not None and sent_at <= sent_before else error)
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_exception(error)
            writable.exception()  # marked as retrieved: the waiters may all have gone already
        self.on_lost(self)

    def send(self, command: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        self.outgoing.append(command)
        self.pending.append((future, time.monotonic()))
        if not self.flush_scheduled:
            # Everything sent during this loop turn goes out in one write: one syscall, and one
            # round trip, for all the requests being served concurrently.
            self.flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.outgoing:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()


async def _settled(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Every future's reply, or its error, in order, once all have come (a cancelled caller leaves
    the replies still to come to be read and dropped by the protocol)."""
    outcomes: list[Any] = []
    try:
        for future in futures:
            try:
                outcomes.append(await future)
            except (RedisReplyError, RedisUnavailable) as exc:
                outcomes.append(exc)
    except BaseException:
        # Cancelled: a failure that has already arrived is marked as seen.
        for future in futures:
            if not future.cancel() and not future.cancelled():
                future.exception()
        raise
    return outcomes


class MultiplexedRedis:
    """The API's Redis connection: `execute()` and scripts, shared by every request of a process."""

    def __init__(self, url: str, *, connect_timeout: float | None = None, command_timeout: float | None = None) -> None:
        self.endpoint = RedisEndpoint.parse(url)
        # By default the URL's socket_connect_timeout and socket_timeout, as for redis-py.
        self.connect_timeout = self.endpoint.connect_timeout if connect_timeout is None else connect_timeout
        self.command_timeout = self.endpoint.command_timeout if command_timeout is None else command_timeout
        self._ssl: ssl.SSLContext | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None:
                return self._protocol
            loop = asyncio.get_running_loop()
            endpoint = self.endpoint
            try:
                if endpoint.tls and self._ssl is None:
                    self._ssl = endpoint.ssl_context()  # reads the CA and key files once
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Protocol(self._forget), endpoint.host, endpoint.port, ssl=self._ssl
                    ),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                raise RedisUnavailable(f"cannot connect to Redis at {endpoint.host}:{endpoint.port}: {exc}") from exc
            handshake = []
            if endpoint.password is not None:
                auth = (endpoint.username, endpoint.password) if endpoint.username else (endpoint.password,)
                handshake.append(protocol.send(_pack(("AUTH", *auth)), loop))
            if endpoint.db:
                handshake.append(protocol.send(_pack(("SELECT", endpoint.db)), loop))
            try:
                await asyncio.wait_for(asyncio.gather(*handshake), self.command_timeout)
            except (RedisReplyError, RedisUnavailable, TimeoutError) as exc:
                protocol.fail(RedisUnavailable(f"Redis refused the connection set-up: {exc}"))
                raise RedisUnavailable(f"Redis refused the connection set-up: {exc}") from exc
            self._protocol = protocol
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch(), name="redis-mux-watchdog")
            return protocol

    def _forget(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    async def _watch(self) -> None:
        """Fail the commands Redis has not answered within the command timeout, as they expire."""
        timeout = self.command_timeout
        while True:
            protocol = self._protocol
            wait = timeout
            if protocol is not None and protocol.pending:
                now = time.monotonic()
                wait = protocol.pending[0][1] + timeout - now
                if wait <= 0:
                    # Replies carry no id, only their order: once one is lost, the replies behind
                    # it cannot be matched to their commands any more. So the connection is reset;
                    # the younger commands fail as unavailable, the expired ones as timed out.
                    protocol.fail(
                        RedisUnavailable(
                            "connection to Redis reset after an earlier command timed out (on a pipelined"
                            " connection the replies after a lost one can no longer be matched)"
                        ),
                        timed_out=RedisTimeout(f"Redis did not answer within {timeout:g}s"),
                        sent_before=now - timeout,
                    )
                    continue
            await asyncio.sleep(wait)

    async def _writable(self) -> _Protocol:
        """The connection (made if need be), once it takes commands: while Redis is not keeping up,
        callers wait rather than grow the write buffer."""
        protocol = self._protocol or await self._connect()
        if protocol.paused:
            await protocol.writable()
        return protocol

    async def execute(self, *args: str | bytes | int | float) -> Any:
        """Run one command; returns hiredis' reply (bytes, int, list, None)."""
        protocol = self._protocol
        if protocol is None or protocol.paused:  # not connected yet, or Redis is not keeping up
            protocol = await self._writable()
        return await protocol.send(_pack(args), asyncio.get_running_loop())

    async def execute_many(self, *commands: tuple[str | bytes | int | float, ...]) -> list[Any]:
        """Run several commands in one write and one round trip, without a task per command; their
        replies in order. When one fails, every reply is still read before the first error is raised."""
        protocol = self._protocol
        if protocol is None or protocol.paused:  # not connected yet, or Redis is not keeping up
            protocol = await self._writable()
        loop = asyncio.get_running_loop()
        outcomes = await _settled([protocol.send(_pack(command), loop) for command in commands])
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return outcomes

    async def run_script(self, script: Script, keys: list[str], args: list[str | bytes | int | float]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self.execute("SCRIPT", "LOAD", script.source)
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def run_scripts(self, calls: list[tuple[Script, list[str], list[str | bytes | int | float]]]) -> list[Any]:
        """Run several scripts in one write and one round trip, without a task per call.

        Replies come back in order; a script Redis does not know yet is loaded and run again. When
        one fails, every other reply of the batch is still read before the first error is raised.
        """
        protocol = self._protocol
        if protocol is None or protocol.paused:  # not connected yet, or Redis is not keeping up
            protocol = await self._writable()
        loop = asyncio.get_running_loop()
        futures = [
            protocol.send(_pack(("EVALSHA", script.sha, len(keys), *keys, *args)), loop) for script, keys, args in calls
        ]
        results: list[Any] = []
        error: Exception | None = None
        for (script, keys, args), outcome in zip(calls, await _settled(futures), strict=True):
            if not isinstance(outcome, Exception):
                results.append(outcome)
            elif error is None and isinstance(outcome, RedisReplyError) and str(outcome).startswith("NOSCRIPT"):
                try:
                    results.append(await self.run_script(script, keys, args))
                except (RedisReplyError, RedisUnavailable) as again:
                    error = again
            else:
                error = error or outcome
        if error is not None:
            raise error
        return results

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        self._protocol = None
