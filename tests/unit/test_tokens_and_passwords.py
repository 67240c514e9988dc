"""Access tokens (every forged variant gets its own code) and the password policy."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from api.auth.passwords import SCORED_LENGTH, PasswordHashing, check_policy
from api.auth.principals import RevocationCache
from api.auth.tokens import TokenSigner, key_id
from shared.errors import AuthenticationFailed, WeakPassword
from tests.support import TEST_PASSWORD

SECRET = "s" * 40
OTHER = "o" * 40


class Clock:
    """The controllable clock tests hand to the signer (the outer boundary)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signer(clock: Clock, secret: str = SECRET, previous: str | None = None) -> TokenSigner:
    return TokenSigner(secret, issuer="iss", audience="aud", ttl=900, previous_secret=previous, clock=clock)


def reason(signer_: TokenSigner, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        signer_.verify(token)
    return caught.value.reason


def forge(payload: dict[str, object], secret: str = SECRET, **header: object) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": key_id(secret), **header})


def claims(clock: Clock, **changes: object) -> dict[str, object]:
    now = int(clock())
    base: dict[str, object] = {
        "sub": "u1",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j1",
        "fam": "f1",
        "iss": "iss",
        "aud": "aud",
    }
    return {key: value for key, value in (base | changes).items() if value is not None}


def test_an_issued_token_verifies_with_its_claims() -> None:
    clock = Clock()
    token, issued = signer(clock).issue("user-1", family="login-1")

    verified = signer(clock).verify(token)

    assert verified == issued
    assert verified.family == "login-1"
    assert verified.expires_at == int(clock()) + 900
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert header["kid"] == key_id(SECRET)


def test_expiry_follows_the_clock() -> None:
    clock = Clock()
    token, _ = signer(clock).issue("user-1", family="login-1")
    clock.now += 899
    signer(clock).verify(token)
    clock.now += 1

    assert reason(signer(clock), token) == "token_expired"


def test_not_yet_valid_tokens_are_refused() -> None:
    clock = Clock()
    token = forge(claims(clock, nbf=int(clock()) + 30))

    assert reason(signer(clock), token) == "token_not_yet_valid"


def test_alg_none_is_refused() -> None:
    clock = Clock()
    unsigned = jwt.encode(claims(clock), "", algorithm="none")  # "" is pyjwt's typed spelling of "no key"

    assert reason(signer(clock), unsigned) == "token_algorithm_not_allowed"


def test_another_algorithm_is_refused() -> None:
    clock = Clock()
    token = jwt.encode(claims(clock), SECRET * 2, algorithm="HS512", headers={"kid": key_id(SECRET)})

    assert reason(signer(clock), token) == "token_algorithm_not_allowed"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"aud": "someone-else"}, "token_invalid_audience"),
        ({"iss": "someone-else"}, "token_invalid_issuer"),
        ({"jti": None}, "token_missing_claim"),
        ({"fam": None}, "token_missing_claim"),  # a token that no logout or reuse could revoke
        ({"nbf": None}, "token_missing_claim"),
        ({"sub": None}, "token_missing_claim"),
    ],
)
def test_wrong_or_missing_claims_have_their_own_codes(changes: dict[str, object], code: str) -> None:
    clock = Clock()

    assert reason(signer(clock), forge(claims(clock, **changes))) == code


def test_a_tampered_signature_is_refused() -> None:
    clock = Clock()
    token, _ = signer(clock).issue("user-1", family="login-1")
    head, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["sub"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    assert reason(signer(clock), f"{head}.{forged_body}.{signature}") == "token_invalid_signature"


def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    clock = Clock()

    assert reason(signer(clock), forge(claims(clock), secret=OTHER)) == "token_unknown_key"


def test_garbage_is_malformed() -> None:
    assert reason(signer(Clock()), "not-a-jwt") == "token_malformed"


def test_the_previous_key_still_verifies_during_a_rotation() -> None:
    clock = Clock()
    old_token, _ = signer(clock, secret=OTHER).issue("user-1", family="login-1")
    rotated = signer(clock, secret=SECRET, previous=OTHER)

    assert rotated.verify(old_token).subject == "user-1"
    new_token, _ = rotated.issue("user-1", family="login-1")
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(SECRET)
    assert reason(signer(clock, secret=SECRET), old_token) == "token_unknown_key"


def test_an_ended_login_is_refused_until_its_last_access_token_would_have_expired() -> None:
    clock = Clock()
    revocations = RevocationCache(clock, token_lifetime=900)

    revocations.on_message(b'{"kind": "family", "id": "login-1"}')
    revocations.on_message(b"not an event")  # ignored, like any event it cannot read

    assert revocations.is_revoked("family", "login-1")
    assert not revocations.is_revoked("family", "login-2")
    assert not revocations.is_revoked("user", "login-1")
    clock.now += 899
    assert revocations.is_revoked("family", "login-1")
    clock.now += 1
    assert not revocations.is_revoked("family", "login-1")


# --- passwords -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short pass", "at least 12"),
        ("x" * 257, "at most 256"),
        ("password1234", "too common"),
        ("1qaz2wsx3edc", "too common"),
        ("LeaveMeAlone", "too common"),
        ("!!password123456", "too common"),
        ("aaaaaaaaaaaaaaaa", "too common"),
        ("ababababababab", "too common"),
        ("my name is traveller and more", "email"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, why: str) -> None:
    with pytest.raises(WeakPassword, match=why):
        check_policy(password, "traveller@example.com")


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("123456789012", "commonly used password"),  # a digit run the common list does not hold
        ("qwertyuiopasdf", "commonly used password"),  # a keyboard walk
        ("zxcvbnm,./asdfghjkl", "Straight rows of keys"),
        ("abcdefghijklmnop", "Sequences"),
        ("19841231abcd", "Dates"),
        ("abcabcabcabcabc", "Repeats"),
        ("wanderstraveller", "parts of your email address"),  # scores 3 for anyone else
    ],
)
def test_easily_guessed_passwords_are_refused_with_the_estimators_feedback(password: str, why: str) -> None:
    with pytest.raises(WeakPassword, match=why) as caught:
        check_policy(password, "traveller.wanders@example.com")

    assert caught.value.message.startswith("this password is easy to guess")


def test_only_the_leading_characters_are_scored_and_the_user_is_told() -> None:
    weak_start = "abcdefghijklmnopqrstuvwxyz123456"  # a sequence, exactly the scored length
    assert len(weak_start) == SCORED_LENGTH

    with pytest.raises(WeakPassword, match=f"first {SCORED_LENGTH} characters"):
        check_policy(weak_start + " snowy lighthouse keeper gathers moss", "x@example.com")
    check_policy("snowy lighthouse keeper gathers moss " + "1" * 219, "x@example.com")  # 256 characters


@pytest.mark.parametrize(
    "password",
    [
        TEST_PASSWORD,  # used across the suite
        "a long unusual passphrase",  # the README's example
        "correct horse battery staple",
        "ÿ" * 3 + "snowy lighthouse keeper",
        "Tr0ub4dor&3 plus more",
    ],
)
def test_long_unusual_passwords_need_no_composition_rules(password: str) -> None:
    check_policy(password, "traveller@example.com")


def test_hashes_are_argon2id_and_verify() -> None:
    hashing = PasswordHashing()
    stored = hashing.hash("correct horse battery staple")

    assert stored.startswith("$argon2id$")
    assert hashing.verify(stored, "correct horse battery staple")
    assert not hashing.verify(stored, "wrong horse battery staple")
    assert not hashing.verify(None, "correct horse battery staple")
    assert not hashing.verify("not a hash", "anything")
    assert not hashing.needs_rehash(stored)
