"""Access tokens: JWTs signed with HS256 by SECRET_KEY, verified without any I/O.

Claims: `sub`, `iat`, `nbf`, `exp`, `jti`, `fam`, `iss`, `aud`; the header carries `kid`. `fam` is the
login the token belongs to (its refresh-token family): ending the login (logout, refresh-token reuse)
revokes every access token that names it. Verification
pins the algorithm list, requires every claim, and maps each way a token can be wrong to its own
error code. During a key rotation the previous key (SECRET_KEY_PREVIOUS) still verifies tokens it
signed, recognised by their `kid`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from shared.errors import AuthenticationFailed

__all__ = ["ALGORITHM", "AccessClaims", "TokenSigner", "key_id"]

ALGORITHM = "HS256"
_REQUIRED = ["sub", "iat", "nbf", "exp", "jti", "fam", "iss", "aud"]
#: Verified tokens remembered per process (a dict keeps insertion order: oldest evicted first).
_VERIFIED_CACHE = 10_000


def key_id(secret: str) -> str:
    """A public, stable name for a signing key (never the key itself)."""
    return hashlib.sha256(b"kid:" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    token_id: str
    expires_at: int
    family: str


class TokenSigner:
    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        previous_secret: str | None = None,
        clock: Callable[[], float],
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.clock = clock
        self._verified: dict[str, AccessClaims] = {}
        self.current_kid = key_id(secret)
        self.keys = {self.current_kid: secret}
        if previous_secret:
            self.keys[key_id(previous_secret)] = previous_secret

    def issue(self, subject: str, family: str) -> tuple[str, AccessClaims]:
        now = int(self.clock())
        claims = AccessClaims(subject=subject, token_id=uuid.uuid4().hex, expires_at=now + self.ttl, family=family)
        payload = {
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
            "jti": claims.token_id,
            "fam": family,
            "iss": self.issuer,
            "aud": self.audience,
        }
        token = jwt.encode(payload, self.keys[self.current_kid], algorithm=ALGORITHM, headers={"kid": self.current_kid})
        return token, claims

    def verify(self, token: str) -> AccessClaims:
        """Verify signature, algorithm and claims; the time claims against our clock, every call.

        A token's signature and claims cannot change, so a verified token is remembered (by its
        exact string) and only its expiry is checked again; pyjwt's decoding was over a quarter
        of a request's CPU (README "Performance").
        """
        known = self._verified.get(token)
        if known is not None:
            if self.clock() >= known.expires_at:
                del self._verified[token]
                raise AuthenticationFailed("the token has expired", "token_expired")
            return known
        claims = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE:
            self._verified.pop(next(iter(self._verified)))  # oldest first
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthenticationFailed("the token is not a JWT", "token_malformed") from None
        if header.get("alg") != ALGORITHM:
            raise AuthenticationFailed(f"tokens must be signed with {ALGORITHM}", "token_algorithm_not_allowed")
        secret = self.keys.get(str(header.get("kid")))
        if secret is None:
            raise AuthenticationFailed("the token was signed with an unknown key", "token_unknown_key")
        try:
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                # The time claims are checked below against our clock (pyjwt would read its own).
                options={"require": _REQUIRED, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("the token is for another audience", "token_invalid_audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("the token has another issuer", "token_invalid_issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"the token lacks the {exc.claim!r} claim", "token_missing_claim") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("the token's signature does not match", "token_invalid_signature") from None
        except jwt.InvalidTokenError:
            raise AuthenticationFailed("the token is invalid", "token_malformed") from None
        now = self.clock()
        try:
            expires_at, not_before = int(payload["exp"]), int(payload["nbf"])
        except (TypeError, ValueError):
            raise AuthenticationFailed("the token's time claims are not numbers", "token_malformed") from None
        if now >= expires_at:
            raise AuthenticationFailed("the token has expired", "token_expired")
        if now < not_before:
            raise AuthenticationFailed("the token is not valid yet", "token_not_yet_valid")
        return AccessClaims(
            subject=str(payload["sub"]), token_id=str(payload["jti"]), expires_at=expires_at, family=str(payload["fam"])
        )
