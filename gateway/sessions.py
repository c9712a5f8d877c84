"""Sessions: who is logged in on a connection, what they may do, and how fast.

Every session has two token buckets: one for all requests and one for orders (order
entry is what can hurt the market, so it gets its own, lower budget). Every frame is
charged, known method or not. A request over budget gets a ``RATE_LIMITED`` error; a
refused request (over budget, unparsable, unknown method, invalid params) counts as a
violation, a well-formed one resets the count, and ``max_violations`` in a row close the
connection.

``ConnectionRegistry`` admits connections against per-listener budgets: the admin
listener has its own, and anonymous (not logged in) connections on the trading listener
are bounded in total and per source address, leaving the rest for logged-in sessions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection

from carbonx.gateway.settings import Limits


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
    connection: ServerConnection | None = None  # the websockets connection (None: not connected)
    address: str = ""  # source address key (see ``address_key``): what per-address limits count
    requests: TokenBucket = field(init=False)
    orders: TokenBucket = field(init=False)
    admitted: int = 0  # admission order (older first), set by the registry
    evicted: bool = False  # closed to make room for another address's connection
    login_timer: asyncio.TimerHandle | None = None  # the pending login-timeout check
    # Access (engine/keys.py): the key logged in with, the secret hash it matched, its scopes
    # (member keys) or the identity and role (operators). ``session.login`` always sets them
    # from the key (the defaults, full rights, only matter to sessions built directly, as unit
    # tests do); they are emptied when the key stops being usable (revoked, expired, grace
    # over) so nothing more is allowed while the close is sent.
    ip: str = ""  # the peer's IP address (allow-lists match it; ``address`` may be an IPv6 /64)
    key_id: str = ""
    key_hash: str = ""
    scopes: frozenset[str] = frozenset(("read", "trade"))
    identity: str = ""  # operator identity (or the bootstrap operator's key id)
    role: str = "admin"  # viewer | operator | admin

    def __post_init__(self) -> None:
        self.requests = TokenBucket(self.limits.requests_per_s, self.limits.request_burst)
        self.orders = TokenBucket(self.limits.orders_per_s, self.limits.order_burst)

    @property
    def authenticated(self) -> bool:
        return self.member is not None or self.operator

    def allow(self, is_order: bool, now: float | None = None) -> bool:
        """Charge the request (and, for ``is_order``, the order) budget; a refusal is a violation."""
        ok = self.requests.take(now) and (not is_order or self.orders.take(now))
        if not ok:
            self.violations += 1
        return ok

    def allow_order(self, now: float | None = None) -> bool:
        """Charge the order budget only (the request budget was charged for the frame already)."""
        if self.orders.take(now):
            return True
        self.violations += 1
        return False

    def refused(self) -> None:
        """A malformed request (unparsable, unknown method, invalid params): one violation."""
        self.violations += 1

    def well_formed(self) -> None:
        """A request that passed the budget and every protocol check: the count starts over."""
        self.violations = 0

    @property
    def abusive(self) -> bool:
        return self.violations >= self.limits.max_violations


def address_key(remote: Any) -> str:
    """What per-address limits count for a peer: its IPv4 address, or its IPv6 /64 (one
    subscriber usually holds a whole /64); an IPv4-mapped IPv6 address counts as IPv4.
    ``remote`` is a socket peer name (``(host, port, ...)``) or None (e.g. a Unix socket)."""
    host = remote[0] if isinstance(remote, tuple) and remote else remote
    if not isinstance(host, str):
        return "local"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def peer_ip(remote: Any) -> str:
    """The peer's IP address as text (what key allow-lists match), "" if it has none."""
    host = remote[0] if isinstance(remote, tuple) and remote else remote
    return host.split("%", 1)[0] if isinstance(host, str) else ""


class Refused(Exception):
    """A connection the budgets have no room for; ``kind`` labels the metric, the message
    is the close reason."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ConnectionRegistry:
    """Counts live connections against the limits: per listener (the admin listener has a
    budget of its own), anonymous ones on the trading listener in total and per source
    address, and logged-in ones per member.

    Anonymous trading connections that do not fit evict, if they can, the oldest anonymous
    connection of the address holding the most, provided it holds more than the newcomer's
    address: an address with fewer anonymous connections than the heaviest one always gets
    in, so idle connections from a few addresses never lock out brokers from others.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.sessions: set[Session] = set()
        self.per_member: dict[str, int] = {}
        self.connections = {"trading": 0, "admin": 0}
        self.anonymous_admin = 0
        self.anonymous: dict[str, dict[Session, None]] = {}  # trading listener: address -> sessions, oldest first
        self.anonymous_total = 0
        self.refused: dict[str, int] = {}  # kind -> connections refused
        self.evictions = 0
        self._order = itertools.count(1)

    def admit(self, session: Session) -> Session | None:
        """Count ``session`` in, or raise ``Refused``. Returns an anonymous session that must be
        closed to make room (already no longer counted as anonymous), or None."""
        victim = None
        if session.admin:
            if self.connections["admin"] >= self.limits.max_admin_connections:
                self._refuse("admin", "too many connections on the admin listener")
        else:
            if self.connections["trading"] >= self.limits.max_connections:
                self._refuse("total", "too many connections")
            mine = len(self.anonymous.get(session.address, ()))
            if mine >= self.limits.max_anonymous_per_address:
                self._refuse("address", "too many anonymous connections from this address: log in on the ones you have")
            if self.anonymous_total >= self.limits.max_anonymous_connections:
                victim = self._heaviest_oldest()
                if victim is None or len(self.anonymous[victim.address]) <= mine:
                    self._refuse("anonymous", "too many anonymous connections: try again later")
                assert victim is not None
                self._forget_anonymous(victim)
                victim.evicted = True
                self.evictions += 1
        session.admitted = next(self._order)
        self.sessions.add(session)
        self.connections["admin" if session.admin else "trading"] += 1
        self._count_anonymous(session)
        return victim

    def _refuse(self, kind: str, message: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        raise Refused(kind, message)

    def _heaviest_oldest(self) -> Session | None:
        """The oldest anonymous connection among the addresses holding the most."""
        best: Session | None = None
        most = 0
        for held in self.anonymous.values():
            oldest = next(iter(held))
            if len(held) > most or (len(held) == most and best is not None and oldest.admitted < best.admitted):
                best, most = oldest, len(held)
        return best

    def _count_anonymous(self, session: Session) -> None:
        if session.admin:
            self.anonymous_admin += 1
        else:
            self.anonymous.setdefault(session.address, {})[session] = None
            self.anonymous_total += 1

    def _forget_anonymous(self, session: Session) -> None:
        if session.admin:
            self.anonymous_admin -= 1
            return
        held = self.anonymous.get(session.address)
        if held is None or session not in held:
            return
        del held[session]
        if not held:
            del self.anonymous[session.address]
        self.anonymous_total -= 1

    def logged_in(self, session: Session) -> bool:
        """The session has just proven its credentials: it stops counting as anonymous.
        False (nothing changes) if the connection is already gone or being evicted."""
        if session not in self.sessions or session.evicted:
            return False
        self._forget_anonymous(session)
        return True

    def logged_out(self, session: Session) -> None:
        """Back to anonymous (counted as such even if that budget is full: the connection was
        admitted already; the login timeout applies again)."""
        if session in self.sessions and not session.evicted:
            self._count_anonymous(session)

    def bind_member(self, session: Session, member: str) -> bool:
        """Attach ``member`` to the session unless the member is at its connection limit."""
        if self.per_member.get(member, 0) >= self.limits.max_connections_per_member:
            return False
        if not self.logged_in(session):
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
        if session not in self.sessions:
            return
        if not session.authenticated and not session.evicted:
            self._forget_anonymous(session)
        self.unbind_member(session)
        self.sessions.discard(session)
        self.connections["admin" if session.admin else "trading"] -= 1
