"""Passwords: the policy (pure) and Argon2id hashing.

Policy in the spirit of NIST SP 800-63B: length 12-256, no composition rules, refused when it is a
common password (the 30,000 most common, as shipped by the maintained `zxcvbn` package), a
common password with digits or symbols stuck around it, one character repeated, or when it
contains the email's local part. Hashing uses argon2-cffi's Argon2id defaults; callers run it off
the event loop.
"""

from __future__ import annotations

import re
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from shared.errors import WeakPassword

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "PasswordHashing", "check_policy"]

MIN_LENGTH = 12
MAX_LENGTH = 256
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@cache
def _common() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


def check_policy(password: str, email: str) -> None:
    """Raise `WeakPassword` saying why a password is refused."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters", field="$.password")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_LENGTH} characters", field="$.password")
    folded = password.casefold()
    core = _EDGES.sub("", folded)
    if folded in _common() or (core and core in _common()) or len(set(folded)) <= 2:
        raise WeakPassword("this password is too common; choose another", field="$.password")
    local = email.split("@", 1)[0].casefold()
    if len(local) >= 3 and local in folded:
        raise WeakPassword("the password must not contain your email address", field="$.password")


class PasswordHashing:
    """Argon2id with argon2-cffi's current recommended parameters."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        # Verifying against this costs what verifying a real hash costs, so an unknown email takes
        # as long as a wrong password.
        self._decoy = self.hasher.hash("decoy password for unknown accounts")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)
