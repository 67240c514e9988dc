"""Accounts, refresh tokens, API keys and revocations on Redis (the multiplexed link).

Secrets are never stored: refresh tokens and API keys are kept as SHA-256 hashes (they are long
random strings, so a fast hash is the right tool), passwords as Argon2id hashes. Every change that
touches several keys is one Lua script, so it is atomic and one round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from shared import keys
from shared.redis_mux import MultiplexedRedis, Script

__all__ = ["AccountStore", "ApiKeyRecord", "Revocation", "RotateOutcome", "secret_hash"]

_REGISTER = Script("""
-- KEYS: email key, user key.  ARGV: user id, email, password hash, created_at
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('HSET', KEYS[2], 'email', ARGV[2], 'password', ARGV[3], 'created_at', ARGV[4])
return 1
""")

_CREDENTIALS = Script("""
-- KEYS: email key.  ARGV: user key prefix.  Returns {user id, password hash} or false.
local id = redis.call('GET', KEYS[1])
if not id then return false end
return {id, redis.call('HGET', ARGV[1] .. id, 'password')}
""")

_ISSUE_REFRESH = Script("""
-- KEYS: token key, family key, user families key.  ARGV: user, family, token hash, ttl
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'family', ARGV[2], 'used', '0')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
""")

# Ending a login (a refresh-token family), shared by reuse detection and logout: its refresh tokens
# go, and its access tokens are refused on every API process (the event) and on any that starts
# later (the marker key, kept as long as such a token can live). ARGV[1..5] of both scripts below:
# refresh-token key prefix, family key prefix, revoked-family key prefix, revocations channel,
# access-token lifetime.
_END_LOGIN = """
local function end_login(family)
  local family_key = ARGV[2] .. family
  for _, member in ipairs(redis.call('SMEMBERS', family_key)) do
    redis.call('DEL', ARGV[1] .. member)
  end
  redis.call('DEL', family_key)
  redis.call('SET', ARGV[3] .. family, '1', 'EX', ARGV[5])
  redis.call('PUBLISH', ARGV[4], cjson.encode({kind = 'family', id = family}))
end
"""

_ROTATE_REFRESH = Script(
    _END_LOGIN
    + """
-- KEYS: presented token key, new token key.  ARGV: the five above, new token hash, refresh ttl
-- A token used twice means it was copied: the whole login goes, access tokens included.
local token = redis.call('HMGET', KEYS[1], 'user', 'family', 'used')
if not token[1] then return {'invalid'} end
if token[3] == '1' then
  end_login(token[2])
  return {'reused', token[1], token[2]}
end
local family_key = ARGV[2] .. token[2]
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('HSET', KEYS[2], 'user', token[1], 'family', token[2], 'used', '0')
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('SADD', family_key, ARGV[6])
redis.call('EXPIRE', family_key, ARGV[7])
return {'rotated', token[1], token[2]}
"""
)

_END_LOGINS = Script(
    _END_LOGIN
    + """
-- KEYS: the presented refresh token's key, if one was presented.
-- ARGV: the five above, the calling access token's family ('' for none).  Returns the families ended.
local ended = {}
if KEYS[1] then
  local family = redis.call('HGET', KEYS[1], 'family')
  if family then
    end_login(family)
    table.insert(ended, family)
  end
end
if ARGV[6] ~= '' and ARGV[6] ~= ended[1] then
  end_login(ARGV[6])
  table.insert(ended, ARGV[6])
end
return ended
"""
)

_REVOKE_API_KEY = Script("""
-- KEYS: user's api keys hash.  ARGV: key id, key prefix, revocations channel
local hash = redis.call('HGET', KEYS[1], ARGV[1])
if not hash then return 0 end
redis.call('DEL', ARGV[2] .. 'apikey:' .. hash)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], cjson.encode({kind = 'api_key', id = hash}))
return 1
""")

_LIST_API_KEYS = Script("""
-- KEYS: user's api keys hash.  ARGV: key prefix.  Returns {id, name, prefix, created_at, last_used, ...}
local out = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local key = ARGV[1] .. 'apikey:' .. entries[i + 1]
  local fields = redis.call('HMGET', key, 'name', 'prefix', 'created_at', 'last_used')
  if fields[1] then
    table.insert(out, entries[i])
    for _, value in ipairs(fields) do table.insert(out, value or '') end
  end
end
return out
""")

_DELETE_ACCOUNT = Script("""
-- KEYS: user key.  ARGV: user id, key prefix, revocations channel, revoked-user ttl
-- Removes the user, their email, refresh tokens and API keys (their jobs: JobStore.delete_owner).
local p = ARGV[2]
local id = ARGV[1]
local email = redis.call('HGET', KEYS[1], 'email')
if not email then return 0 end
redis.call('DEL', p .. 'email:' .. email, KEYS[1])
local families_key = p .. 'user:' .. id .. ':families'
for _, family in ipairs(redis.call('SMEMBERS', families_key)) do
  for _, member in ipairs(redis.call('SMEMBERS', p .. 'family:' .. family)) do
    redis.call('DEL', p .. 'refresh:' .. member)
  end
  redis.call('DEL', p .. 'family:' .. family)
end
redis.call('DEL', families_key)
local keys_key = p .. 'user:' .. id .. ':apikeys'
local entries = redis.call('HGETALL', keys_key)
for i = 2, #entries, 2 do
  redis.call('DEL', p .. 'apikey:' .. entries[i])
  redis.call('PUBLISH', ARGV[3], cjson.encode({kind = 'api_key', id = entries[i]}))
end
redis.call('DEL', keys_key)
redis.call('SET', p .. 'revoked:user:' .. id, '1', 'EX', ARGV[4])
redis.call('PUBLISH', ARGV[3], cjson.encode({kind = 'user', id = id}))
return 1
""")


def _end_login_args(access_token_ttl: int) -> list[str | bytes | int | float]:
    return [
        keys.refresh_token(""),
        keys.refresh_family(""),
        keys.revoked_family(""),
        keys.REVOCATIONS_CHANNEL,
        access_token_ttl,
    ]


def secret_hash(secret: str) -> str:
    """How refresh tokens and API keys are stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Revocation(msgspec.Struct, frozen=True):
    """Published on `keys.REVOCATIONS_CHANNEL`: an ended login (family), a user or an API key hash."""

    kind: Literal["family", "user", "api_key"]
    id: str


@dataclass(frozen=True, slots=True)
class RotateOutcome:
    kind: Literal["invalid", "reused", "rotated"]
    user_id: str | None = None
    family: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    prefix: str
    created_at: str
    last_used: str | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AccountStore:
    def __init__(self, link: MultiplexedRedis) -> None:
        self.link = link

    async def register(self, user_id: str, email: str, password_hash: str, created_at: str) -> bool:
        created = await self.link.run_script(
            _REGISTER, [keys.email(email), keys.user(user_id)], [user_id, email, password_hash, created_at]
        )
        return bool(created)

    async def credentials(self, email: str) -> tuple[str, str] | None:
        found = await self.link.run_script(_CREDENTIALS, [keys.email(email)], [keys.user("")])
        if not found:
            return None
        return _text(found[0]), _text(found[1])

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.link.execute("HSET", keys.user(user_id), "password", password_hash)

    async def profile(self, user_id: str) -> tuple[str, str] | None:
        """(email, created_at) of a user, or None."""
        email, created_at = await self.link.execute("HMGET", keys.user(user_id), "email", "created_at")
        return (_text(email), _text(created_at)) if email is not None else None

    async def issue_refresh(self, user_id: str, family: str, token: str, ttl: int) -> None:
        digest = secret_hash(token)
        await self.link.run_script(
            _ISSUE_REFRESH,
            [keys.refresh_token(digest), keys.refresh_family(family), keys.user_families(user_id)],
            [user_id, family, digest, ttl],
        )

    async def rotate_refresh(self, presented: str, replacement: str, ttl: int, access_token_ttl: int) -> RotateOutcome:
        """Use up `presented` for `replacement`; a used one presented again ends its login."""
        new_digest = secret_hash(replacement)
        reply = await self.link.run_script(
            _ROTATE_REFRESH,
            [keys.refresh_token(secret_hash(presented)), keys.refresh_token(new_digest)],
            [*_end_login_args(access_token_ttl), new_digest, ttl],
        )
        kind = _text(reply[0])
        if kind == "rotated":
            return RotateOutcome("rotated", _text(reply[1]), _text(reply[2]))
        if kind == "reused":
            return RotateOutcome("reused", _text(reply[1]), _text(reply[2]))
        return RotateOutcome("invalid")

    async def end_logins(self, refresh_token: str | None, family: str | None, access_token_ttl: int) -> list[str]:
        """End the login `refresh_token` belongs to and the login `family`; the families ended."""
        token_keys = [keys.refresh_token(secret_hash(refresh_token))] if refresh_token else []
        ended = await self.link.run_script(_END_LOGINS, token_keys, [*_end_login_args(access_token_ttl), family or ""])
        return [_text(name) for name in ended]

    async def revoked(self) -> list[Revocation]:
        """Every revocation still in force (read once at start-up, then kept by events)."""
        found: list[Revocation] = []
        cursor: Any = b"0"
        while True:
            cursor, names = await self.link.execute("SCAN", cursor, "MATCH", f"{keys.PREFIX}:revoked:*", "COUNT", 500)
            for name in names:
                _, _, kind, ident = _text(name).split(":", 3)
                if kind == "family":
                    found.append(Revocation(kind="family", id=ident))
                elif kind == "user":
                    found.append(Revocation(kind="user", id=ident))
            if _text(cursor) == "0":
                return found

    async def create_api_key(self, user_id: str, key_id: str, key: str, name: str, created_at: str) -> None:
        digest = secret_hash(key)
        await asyncio.gather(
            self.link.execute(
                "HSET",
                keys.api_key(digest),
                "user",
                user_id,
                "id",
                key_id,
                "name",
                name,
                "prefix",
                key[:12],
                "created_at",
                created_at,
            ),
            self.link.execute("HSET", keys.user_api_keys(user_id), key_id, digest),
        )

    async def api_key_owner(self, digest: str) -> tuple[str, str] | None:
        """(user id, key id) for a presented API key's `secret_hash`, or None."""
        user, key_id = await self.link.execute("HMGET", keys.api_key(digest), "user", "id")
        if user is None:
            return None
        return _text(user), _text(key_id)

    async def touch_api_key(self, digest: str, when: str) -> None:
        await self.link.execute("HSET", keys.api_key(digest), "last_used", when)

    async def list_api_keys(self, user_id: str) -> list[ApiKeyRecord]:
        flat = await self.link.run_script(_LIST_API_KEYS, [keys.user_api_keys(user_id)], [f"{keys.PREFIX}:"])
        records = []
        for i in range(0, len(flat), 5):
            key_id, name, prefix, created, used = (_text(value) for value in flat[i : i + 5])
            records.append(
                ApiKeyRecord(id=key_id, name=name, prefix=prefix, created_at=created, last_used=used or None)
            )
        return sorted(records, key=lambda record: record.created_at)

    async def revoke_api_key(self, user_id: str, key_id: str) -> bool:
        revoked = await self.link.run_script(
            _REVOKE_API_KEY, [keys.user_api_keys(user_id)], [key_id, f"{keys.PREFIX}:", keys.REVOCATIONS_CHANNEL]
        )
        return bool(revoked)

    async def delete_account(self, user_id: str, access_token_ttl: int) -> bool:
        deleted = await self.link.run_script(
            _DELETE_ACCOUNT,
            [keys.user(user_id)],
            [user_id, f"{keys.PREFIX}:", keys.REVOCATIONS_CHANNEL, access_token_ttl],
        )
        return bool(deleted)
