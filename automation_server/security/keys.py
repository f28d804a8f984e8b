"""API keys: ``ak_<8-char prefix>_<secret>``, shown once, stored as a hash.

The secret carries about 190 bits of randomness, so a plain SHA-256 is enough
to make a leaked table useless (slow password hashes exist for low-entropy
human passwords). The prefix is stored in clear to find the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from typing import Literal

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
PREFIX_LEN = 8
SECRET_LEN = 32


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> NewKey:
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LEN))
    return NewKey(plaintext=f"ak_{prefix}_{secret}", prefix=prefix, secret_hash=hash_secret(secret))


def parse_key(plaintext: str) -> tuple[str, str] | None:
    """Split a presented key into (prefix, secret); None if it is not shaped like one."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != "ak" or len(parts[1]) != PREFIX_LEN or not parts[2]:
        return None
    if len(parts[2]) > 256:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def scope_allows(granted: str, needed: Scope) -> bool:
    """Scopes are ordered: admin includes write, write includes read."""
    return SCOPES.index(granted) >= SCOPES.index(needed)
