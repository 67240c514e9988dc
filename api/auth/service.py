"""Accounts and credentials: register, log in, refresh, log out, API keys, delete the account.

Works outside a request (tests and scripts build it directly). The password policy and hashing run
in a worker thread, never on the event loop. Every failed authentication is logged as one structured line
(reason, client address, account when known; never a secret) and counted in
`tripcheck_auth_failures_total`; a refusal for too many failed logins also in
`tripcheck_rate_limited_total{quota="login-failures"}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from api.auth.passwords import PasswordHashing, check_policy
from api.auth.principals import API_KEY_PREFIX, Principal, RevocationCache
from api.auth.store import AccountStore, ApiKeyRecord, Revocation
from api.auth.tokens import TokenSigner
from api.limits import Quota, RateLimiter, quota
from shared import metrics
from shared.errors import AuthenticationFailed, DependencyUnavailable, EmailTaken, InvalidRequest, NotFound, RateLimited
from shared.jobs import JobStore
from shared.redis_mux import RedisReplyError, RedisUnavailable
from shared.settings import Settings

__all__ = ["AuthService", "TokenPair", "User", "log_auth_failure", "normalise_email"]

log = logging.getLogger("trip_checklist.auth")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REFRESH_PREFIX = "tcr_"


def normalise_email(email: str) -> str:
    normalised = email.strip().casefold()
    if len(normalised) > 254 or not _EMAIL.match(normalised):
        raise InvalidRequest("email must be a valid address", field="$.email")
    return normalised


def log_auth_failure(reason: str, client: str, account: str | None = None) -> None:
    """One structured line per failure; the credential itself is never passed in."""
    metrics.AUTH_FAILURES.labels(reason).inc()
    fields = {"event": "auth_failure", "reason": reason, "client": client, "account": account or "-"}
    # key=value in the line itself (readable anywhere), the same fields on the record (for JSON logging).
    log.warning("event=auth_failure reason=%s client=%s account=%s", reason, client, account or "-", extra=fields)


class User(msgspec.Struct, kw_only=True):
    id: str
    email: str
    created_at: str


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class NewApiKey(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    created_at: str
    key: str


@dataclass
class AuthService:
    store: AccountStore
    signer: TokenSigner
    hashing: PasswordHashing
    limiter: RateLimiter
    settings: Settings
    clock: Callable[[], float]
    #: This process's revocations: an ended login is refused here at once, before its event comes back.
    revocations: RevocationCache
    jobs: JobStore
    #: Deletes the owner's webhook endpoints, secrets and deliveries (`api.webhooks`).
    delete_webhooks: Callable[[str], Awaitable[None]]

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).isoformat().replace("+00:00", "Z")

    async def register(self, email: str, password: str) -> User:
        email = normalise_email(email)
        password_hash = await asyncio.to_thread(self._checked_hash, password, email)
        user = User(id=uuid.uuid4().hex, email=email, created_at=self._now())
        if not await self.store.register(user.id, email, password_hash, user.created_at):
            raise EmailTaken("an account with this email exists already")
        return user

    def _checked_hash(self, password: str, email: str) -> str:
        # Both steps are CPU-bound (zxcvbn, Argon2): one hop to a worker thread for the two.
        check_policy(password, email)
        return self.hashing.hash(password)

    def _lock_quota(self, email: str, client: str) -> Quota:
        # Keyed by account *and* client address: ten wrong passwords lock that address out of that
        # account for a while, but someone elsewhere cannot lock the real user out (README).
        # The email is hashed: counters should not put personal data into Redis key names.
        limits = self.settings.limits
        account = hashlib.sha256(email.encode()).hexdigest()[:24]
        return Quota("login-failures", quota(limits.login_failures, limits.login_lock_window), f"{account}|{client}")

    async def login(self, email: str, password: str, client: str) -> TokenPair:
        try:
            email = normalise_email(email)
        except InvalidRequest:
            email = email.strip().casefold()[:254]
        lock = self._lock_quota(email, client)
        try:
            locked_for = await self.limiter.test(lock)
        except (RedisUnavailable, RedisReplyError) as exc:
            raise DependencyUnavailable("log-in is unavailable; try again shortly") from exc
        if locked_for is not None:
            log_auth_failure("login_locked", client, email)
            metrics.RATE_LIMITED.labels(lock.name).inc()
            raise RateLimited("too many failed log-ins; try again later", retry_after=locked_for, reason="login_locked")
        found = await self.store.credentials(email)
        stored_hash = found[1] if found else None
        # Unknown email or wrong password: the same Argon2 work, the same answer.
        if not await asyncio.to_thread(self.hashing.verify, stored_hash, password) or found is None:
            await self.limiter.record(lock)
            log_auth_failure("invalid_credentials", client, email)
            raise AuthenticationFailed("email or password is wrong", "invalid_credentials")
        user_id, stored = found
        if self.hashing.needs_rehash(stored):
            await self.store.set_password_hash(user_id, await asyncio.to_thread(self.hashing.hash, password))
        return await self._issue(user_id, family=uuid.uuid4().hex)

    async def _issue(self, user_id: str, family: str) -> TokenPair:
        access, _ = self.signer.issue(user_id, family)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        await self.store.issue_refresh(user_id, family, refresh, self.settings.auth.refresh_token_ttl)
        return self._pair(access, refresh)

    def _pair(self, access: str, refresh: str) -> TokenPair:
        return TokenPair(
            access_token=access,
            token_type="bearer",  # noqa: S106 - the OAuth token type, not a secret
            expires_in=self.settings.auth.access_token_ttl,
            refresh_token=refresh,
        )

    async def refresh(self, presented: str, client: str) -> TokenPair:
        replacement = REFRESH_PREFIX + secrets.token_urlsafe(32)
        auth = self.settings.auth
        outcome = await self.store.rotate_refresh(presented, replacement, auth.refresh_token_ttl, auth.access_token_ttl)
        if outcome.kind == "reused" and outcome.family is not None:
            self._ended([outcome.family])
            log_auth_failure("refresh_token_reused", client, outcome.user_id)
            raise AuthenticationFailed(
                "this refresh token was used already; every token of its login is now revoked", "refresh_token_reused"
            )
        if outcome.kind != "rotated" or outcome.user_id is None or outcome.family is None:
            log_auth_failure("invalid_refresh_token", client)
            raise AuthenticationFailed("the refresh token is not valid", "invalid_refresh_token")
        access, _ = self.signer.issue(outcome.user_id, outcome.family)
        return self._pair(access, replacement)

    async def logout(self, principal: Principal, refresh_token: str | None) -> None:
        """End the login of the presented refresh token and the login of the calling access token."""
        ended = await self.store.end_logins(refresh_token, principal.family, self.settings.auth.access_token_ttl)
        self._ended(ended)

    def _ended(self, families: list[str]) -> None:
        for family in families:
            self.revocations.add(Revocation(kind="family", id=family))

    async def me(self, principal: Principal) -> User:
        profile = await self.store.profile(principal.user_id)
        if profile is None:
            raise AuthenticationFailed("the account no longer exists", "token_revoked")
        return User(id=principal.user_id, email=profile[0], created_at=profile[1])

    async def create_api_key(self, principal: Principal, name: str) -> NewApiKey:
        name = name.strip()
        if not 1 <= len(name) <= 100 or not name.isprintable():
            raise InvalidRequest("name must be 1-100 printable characters", field="$.name")
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        created = NewApiKey(id=uuid.uuid4().hex[:16], name=name, prefix=key[:12], created_at=self._now(), key=key)
        await self.store.create_api_key(principal.user_id, created.id, key, name, created.created_at)
        return created

    async def list_api_keys(self, principal: Principal) -> list[ApiKeyRecord]:
        return await self.store.list_api_keys(principal.user_id)

    async def revoke_api_key(self, principal: Principal, key_id: str) -> None:
        if not await self.store.revoke_api_key(principal.user_id, key_id):
            raise NotFound(f"no API key {key_id!r}")

    async def delete_account(self, principal: Principal) -> None:
        """The account first (its tokens stop working at once), then every job it owns, then its
        webhook endpoints, secrets and delivery records."""
        if not await self.store.delete_account(principal.user_id, self.settings.auth.access_token_ttl):
            raise NotFound("the account does not exist")
        await self.jobs.delete_owner(principal.user_id)
        await self.delete_webhooks(principal.user_id)
