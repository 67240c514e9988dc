"""Who a request acts for: resolving credentials to a `Principal`, without Redis on the hot path.

- A JWT is verified locally (`tokens.TokenSigner`); ended logins (the `fam` claim) and deleted
  users are kept in a local set, loaded at start-up and kept current by revocation events (pub/sub).
- An API key (`tck_…`, as `Authorization: Bearer` or `X-API-Key`) is looked up in Redis once and
  cached for `API_KEY_CACHE_TTL` seconds; a revocation event evicts it from every process at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from api.auth.store import AccountStore, Revocation, secret_hash
from api.auth.tokens import TokenSigner
from shared.errors import AuthenticationFailed

__all__ = ["API_KEY_PREFIX", "Authenticator", "Principal", "RevocationCache"]

API_KEY_PREFIX = "tck_"
_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    kind: Literal["user", "api_key"]
    #: The login (refresh-token family) an access token belongs to; None for an API key.
    family: str | None = None
    api_key_id: str | None = None


class RevocationCache:
    """Ended logins (refresh-token families) and deleted users, as this process knows them."""

    def __init__(self, clock: Callable[[], float], token_lifetime: int) -> None:
        self.clock = clock
        self.token_lifetime = token_lifetime
        self._until: dict[tuple[str, str], float] = {}
        self.api_key_listeners: list[Callable[[str], None]] = []
        self._decoder = msgspec.json.Decoder(Revocation)

    def add(self, revocation: Revocation) -> None:
        if revocation.kind == "api_key":
            for listener in self.api_key_listeners:
                listener(revocation.id)
            return
        # No token outlives its lifetime, so neither need its revocation.
        self._until[(revocation.kind, revocation.id)] = self.clock() + self.token_lifetime
        if len(self._until) > _CACHE_SIZE:
            self._forget_expired()

    def on_message(self, payload: bytes) -> None:
        try:
            self.add(self._decoder.decode(payload))
        except msgspec.DecodeError:
            return

    def _forget_expired(self) -> None:
        now = self.clock()
        for key in [key for key, until in self._until.items() if until <= now]:
            del self._until[key]

    def is_revoked(self, kind: Literal["family", "user"], ident: str) -> bool:
        until = self._until.get((kind, ident))
        return until is not None and until > self.clock()


class _ApiKeyCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[float, str, str]] = OrderedDict()

    def get(self, digest: str) -> tuple[str, str] | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1], entry[2]

    def put(self, digest: str, user_id: str, key_id: str) -> None:
        self._entries[digest] = (time.monotonic() + self.ttl, user_id, key_id)
        self._entries.move_to_end(digest)
        while len(self._entries) > _CACHE_SIZE:
            self._entries.popitem(last=False)

    def evict(self, digest: str) -> None:
        self._entries.pop(digest, None)


class Authenticator:
    def __init__(
        self, signer: TokenSigner, store: AccountStore, revocations: RevocationCache, api_key_cache_ttl: float
    ) -> None:
        self.signer = signer
        self.store = store
        self.revocations = revocations
        self._api_keys = _ApiKeyCache(api_key_cache_ttl)
        revocations.api_key_listeners.append(self._api_keys.evict)

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The principal behind the request's credentials; `AuthenticationFailed` otherwise."""
        if api_key is None and authorization is not None:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise AuthenticationFailed("use 'Authorization: Bearer <token>'", "invalid_authorization_header")
            credential = credential.strip()
            if not credential.startswith(API_KEY_PREFIX):
                return self._from_token(credential)
            api_key = credential
        if api_key is None:
            raise AuthenticationFailed("this endpoint needs a bearer token or an API key", "missing_credentials")
        return await self._from_api_key(api_key)

    def _from_token(self, token: str) -> Principal:
        claims = self.signer.verify(token)
        if self.revocations.is_revoked("family", claims.family):
            raise AuthenticationFailed("the token's login has ended (logout or refresh-token reuse)", "token_revoked")
        if self.revocations.is_revoked("user", claims.subject):
            raise AuthenticationFailed("the account no longer exists", "token_revoked")
        return Principal(user_id=claims.subject, kind="user", family=claims.family)

    async def _from_api_key(self, key: str) -> Principal:
        digest = secret_hash(key)
        cached = self._api_keys.get(digest)
        if cached is None:
            found = await self.store.api_key_owner(digest) if key.startswith(API_KEY_PREFIX) else None
            if found is None:
                raise AuthenticationFailed("the API key is not valid", "invalid_api_key")
            self._api_keys.put(digest, *found)
            # Lookups happen at most once per cache period per key, so this write is rare too.
            await self.store.touch_api_key(digest, _now_iso())
            cached = found
        user_id, key_id = cached
        return Principal(user_id=user_id, kind="api_key", api_key_id=key_id)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
