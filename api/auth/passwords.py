"""Passwords: the policy and Argon2id hashing. Both are CPU-bound: callers run them off the event loop.

Policy in the spirit of NIST SP 800-63B: length 12-256, no composition rules. The fast checks first:
refused when it is a common password (the 30,000 most common, as shipped by the maintained `zxcvbn`
package), a common password with digits or symbols stuck around it, made of one or two distinct
characters, or containing the email's local part. Then zxcvbn's estimator, with the email's parts
as user inputs: a score under 3 (fewer than about 10^8 guesses: sequences, repeats, keyboard walks,
dates, l33t-speak words) is refused with zxcvbn's own feedback. Hashing uses argon2-cffi's Argon2id
defaults.
"""

from __future__ import annotations

import re
import threading
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from shared.errors import WeakPassword

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "MIN_SCORE", "SCORED_LENGTH", "PasswordHashing", "check_policy"]

MIN_LENGTH = 12
MAX_LENGTH = 256
#: zxcvbn's lowest acceptable score (0-4); 3 means about 10^8 guesses or more.
MIN_SCORE = 3
#: zxcvbn scores this many leading characters. Its work grows with the square of the length and
#: with the look-alike symbols present: a crafted 256-character password took about 20 s of CPU,
#: its first 32 characters 0.35 s (README "Authentication"). A strong start makes the whole strong.
SCORED_LENGTH = 32
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_EMAIL_SEPARATORS = re.compile(r"[@._+-]")
# zxcvbn 4.5 keeps a call's user inputs in a module-level dictionary (dwolfhub/zxcvbn-python#84), so
# two threads scoring at once could score against each other's email. Its work holds the GIL
# anyway: one at a time costs nothing.
_ZXCVBN = threading.Lock()


@cache
def _common() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


def check_policy(password: str, email: str) -> None:
    """Raise `WeakPassword` saying why a password is refused. CPU-bound: run it off the event loop."""
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
    _check_estimate(password, email)


def _check_estimate(password: str, email: str) -> None:
    user_inputs = [email, email.partition("@")[2], *(part for part in _EMAIL_SEPARATORS.split(email) if part)]
    with _ZXCVBN:
        result = zxcvbn(password[:SCORED_LENGTH], user_inputs=user_inputs)
    if result["score"] >= MIN_SCORE:
        return
    feedback = result["feedback"]
    # zxcvbn finds the email's parts but has no words for them; say so.
    own = any(match.get("dictionary_name") == "user_inputs" for match in result["sequence"])
    reasons = ["It contains parts of your email address." if own else "", feedback["warning"], *feedback["suggestions"]]
    advice = " ".join(text for text in reasons if text)
    if len(password) > SCORED_LENGTH:
        advice += f" Only the first {SCORED_LENGTH} characters are scored: make them strong on their own."
    raise WeakPassword(f"this password is easy to guess. {advice}".strip(), field="$.password")


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
