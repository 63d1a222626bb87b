"""API keys: their secrets, their public ids, and what the store keeps of them.

A secret is shown once, when it is created; the store keeps only its SHA-256, so a copy of
the database gives nobody a working key. The secrets are 256 random bits, which is why one
unsalted hash is enough (there is nothing to guess). A key's public id is short, for
`keys list` and `keys revoke`.
"""

from __future__ import annotations

import hashlib
import secrets

SECRET_PREFIX = "rs_"  # tells a roomscribe key apart from the other tokens in a config file
KEY_ID_PREFIX = "k_"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"  # read aloud and typed without ambiguity of case

# How stale `last_used_at` may get: a key used on every request is written at most once a
# minute, not on every request.
LAST_USED_RESOLUTION = 60.0


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key_id() -> str:
    return KEY_ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
