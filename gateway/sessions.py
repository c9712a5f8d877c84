"""Sessions: who is logged in on a connection, what they may do, and how fast.

Secrets are stored only as salted scrypt hashes (``scrypt$<salt-hex>$<hash-hex>``);
verification is constant-time and runs off the event loop (scrypt costs ~50 ms by
design, which is what makes a stolen configuration expensive to brute-force).

Every session has two token buckets: one for all requests and one for orders (order
entry is what can hurt the market, so it gets its own, lower budget). A request over
budget gets a ``RATE_LIMITED`` error; ``max_violations`` in a row close the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.settings import Limits

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


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic() if now is None else now
        elapsed = now - self.stamp
        tokens = self.tokens + elapsed * self.rate if elapsed > 0 else self.tokens  # a clock step back refills nothing
        self.stamp = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


@dataclass(eq=False)
class Session:
    """One connection's login state, subscriptions and budgets (identity-hashed: kept in sets)."""

    limits: Limits
    admin: bool = False  # connected to the admin listener
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    member: str | None = None  # logged-in broker member
    operator: bool = False  # logged in with operator credentials
    cancel_on_disconnect: bool = False
    binary: bool = False  # MessagePack subprotocol
    subscriptions: set[str] = field(default_factory=set)
    violations: int = 0
    login_failures: int = 0
    connection: Any = None  # the websockets connection (typed loosely: tests pass fakes)
    requests: TokenBucket = field(init=False)
    orders: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.requests = TokenBucket(self.limits.requests_per_s, self.limits.request_burst)
        self.orders = TokenBucket(self.limits.orders_per_s, self.limits.order_burst)

    @property
    def authenticated(self) -> bool:
        return self.member is not None or self.operator

    def allow(self, is_order: bool, now: float | None = None) -> bool:
        """Charge the request (and order) budget; tracks consecutive violations."""
        ok = self.requests.take(now) and (not is_order or self.orders.take(now))
        self.violations = 0 if ok else self.violations + 1
        return ok

    @property
    def abusive(self) -> bool:
        return self.violations >= self.limits.max_violations


class ConnectionRegistry:
    """Counts live connections, in total and per logged-in member, against the limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.sessions: set[Session] = set()
        self.per_member: dict[str, int] = {}

    def admit(self, session: Session) -> bool:
        if len(self.sessions) >= self.limits.max_connections:
            return False
        self.sessions.add(session)
        return True

    def bind_member(self, session: Session, member: str) -> bool:
        """Attach ``member`` to the session unless the member is at its connection limit."""
        if self.per_member.get(member, 0) >= self.limits.max_connections_per_member:
            return False
        self.per_member[member] = self.per_member.get(member, 0) + 1
        session.member = member
        return True

    def unbind_member(self, session: Session) -> None:
        if session.member is not None:
            left = self.per_member.get(session.member, 1) - 1
            if left:
                self.per_member[session.member] = left
            else:
                self.per_member.pop(session.member, None)
            session.member = None

    def drop(self, session: Session) -> None:
        self.unbind_member(session)
        self.sessions.discard(session)
