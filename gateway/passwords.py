"""Password hashing: secrets are stored only as salted scrypt hashes.

A stored hash reads ``scrypt$<salt-hex>$<hash-hex>`` (n=2^14, r=8, p=1: ~50 ms and
16 MiB per hash by design, which is what makes a stolen configuration expensive to
brute-force). Verification is constant-time; callers run it off the event loop
(``gateway.logins``). ``carbonx hash-secret`` prints a hash for the configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt-hex>$<hash-hex>`` for ``secret`` (a fresh random salt by default)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of ``secret`` against a stored hash; malformed hashes never match."""
    try:
        scheme, salt_hex, hash_hex = stored.split("$")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
    except ValueError:
        return False
    if scheme != "scrypt" or not salt or not expected:
        return False
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=len(expected))
    return hmac.compare_digest(digest, expected)
