"""The gateway's tables of the TOML configuration: listeners, limits, credentials, demo funding.

The same file also holds the market tables (``[calendar]``, ``[auction]``,
``[[instrument]]``) that ``engine.config`` reads; this module reads only
``[server]``, ``[limits]``, ``[operator]``, ``[[member]]`` and ``[[account]]`` and
rejects unknown keys in them, so a typo in a limit never silently falls back to a
default. Secrets appear here only as salted hashes (``carbonx hash-secret``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from carbonx.engine import ranges
from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.schema import PARTICIPANT_TYPES
from carbonx.engine.units import UnitError, parse_fen

FSYNC_POLICIES = ("fsync", "os", "none")


class SettingsError(ValueError):
    """The gateway configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    """Listeners and behaviour. Ports 0 pick a free port."""

    host: str = "127.0.0.1"
    port: int = 8700
    admin_host: str = "127.0.0.1"
    admin_port: int = 8701
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9100
    data_dir: str = "./data"
    fsync_policy: str = "fsync"
    auto_open_day: bool = False
    heartbeat_s: float = 10.0
    keepalive_s: float = 20.0  # WebSocket ping interval and timeout
    coalesce_ms: float = 5.0  # book/ticker updates are batched per tick of this length
    tick_s: float = 1.0  # how often the session clock is checked (Tick command)
    market_data_requires_login: bool = False
    compression: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    snapshot_every: int = 0  # commands between automatic snapshots; 0 = only on request/shutdown
    # Snapshots encode in a forked child (the engine pauses ~15 ms for the fork instead of
    # ~300 ms encoding a 55 MB state on its own thread). POSIX only.
    snapshot_fork: bool = hasattr(os, "fork")
    # After each snapshot, move the journal segments it covers into DIR/archive/ (start-up
    # then reads only the snapshot and the live tail; verify/dump still read the archive).
    archive_segments: bool = True
    segment_bytes: int = 64 * 1024 * 1024  # a journal segment rolls once it passes this size
    # Storage (gateway/storage.py): refuse to start, and stop taking new orders, with less
    # free space than this in the data directory; checked every storage_check_s seconds.
    min_free_bytes: int = 64 * 1024 * 1024
    storage_check_s: float = 5.0


@dataclass(frozen=True)
class Limits:
    """Every input is bounded; these are the bounds."""

    max_frame_bytes: int = 64 * 1024
    requests_per_s: float = 200.0
    request_burst: int = 400
    orders_per_s: float = 100.0
    order_burst: int = 200
    max_violations: int = 50  # refused requests (rate limit, malformed, unknown method) in a row before close (1008)
    max_login_failures: int = 5
    max_subscriptions: int = 64
    max_connections_per_member: int = 16
    max_connections: int = 4096  # trading listener, anonymous and logged-in together
    # The admin listener has a budget of its own, so a full trading listener never keeps an
    # operator from reaching halt and the kill switch.
    max_admin_connections: int = 64
    # Not-yet-logged-in connections on the trading listener: in total (the rest of
    # max_connections is reserved for logged-in sessions) and per source address (IPv4
    # address or IPv6 /64). When the total is full, a newcomer from a lighter address evicts
    # the oldest anonymous connection of the heaviest one (see docs/operations.md).
    max_anonymous_connections: int = 1024
    max_anonymous_per_address: int = 32
    # Seconds a connection may stay anonymous: always on the admin listener; on the trading
    # listener only while it holds no subscription, unless market data requires login.
    login_timeout_s: float = 10.0
    # Password hashing (scrypt, 16 MiB and ~50 ms each): at most this many at once (so at
    # most this many x 16 MiB), at most login_hash_queue more waiting; beyond that
    # RATE_LIMITED at once.
    login_hash_concurrency: int = 2
    login_hash_queue: int = 32
    # After the n-th failed login in a row for a key id or a source address, the next attempt
    # for it is refused unhashed (LOGIN_THROTTLED) for base * 2^(n-1) seconds, at most max;
    # failures are forgotten max seconds after the last one. The table is bounded.
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 60.0
    login_throttle_entries: int = 16384
    write_buffer_bytes: int = 4 * 1024 * 1024  # slow-consumer limit per connection
    # Kernel send buffer per connection. Without a cap Linux autotunes it to several MB,
    # and the slow-consumer limit above only starts counting once that is full.
    socket_send_buffer: int = 256 * 1024


@dataclass(frozen=True)
class Credential:
    key_id: str
    secret_hash: str


@dataclass(frozen=True)
class MemberSetting:
    member: str
    key_id: str
    secret_hash: str


@dataclass(frozen=True)
class HoldingSetting:
    instrument: str
    quantity: int
    vintage: int | None = None


@dataclass(frozen=True)
class AccountSetting:
    account: str
    member: str
    type: str
    cash: int = 0  # fen
    holdings: tuple[HoldingSetting, ...] = ()


@dataclass(frozen=True)
class Settings:
    market: MarketConfig
    server: ServerSettings = field(default_factory=ServerSettings)
    limits: Limits = field(default_factory=Limits)
    operator: Credential | None = None
    members: tuple[MemberSetting, ...] = ()
    accounts: tuple[AccountSetting, ...] = ()


_MIB = 1024 * 1024
# The range (inclusive) of every number in [server] and [limits]: a value outside is refused
# with the key and the range. Every numeric field must have one (tests/gateway/test_bounds.py).
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "server": {
        "port": (0, 65535),
        "admin_port": (0, 65535),
        "metrics_port": (0, 65535),
        "heartbeat_s": (0, 3600),
        "keepalive_s": (0, 3600),
        "coalesce_ms": (0, 10_000),
        "tick_s": (0.01, 60),
        "snapshot_every": (0, 10**12),
        "segment_bytes": (64 * 1024, 64 * 1024 * _MIB),
        "min_free_bytes": (0, 1 << 50),
        "storage_check_s": (0, 3600),  # 0 = check only at start
    },
    "limits": {
        "max_frame_bytes": (1024, 16 * _MIB),
        "requests_per_s": (0.001, 1_000_000),
        "request_burst": (1, 1_000_000),
        "orders_per_s": (0.001, 1_000_000),
        "order_burst": (1, 1_000_000),
        "max_violations": (1, 1_000_000),
        "max_login_failures": (1, 1_000_000),
        "max_subscriptions": (1, 10_000),
        "max_connections_per_member": (1, 1_000_000),
        "max_connections": (1, 1_000_000),
        "max_admin_connections": (1, 10_000),
        "max_anonymous_connections": (1, 1_000_000),
        "max_anonymous_per_address": (1, 1_000_000),
        "login_timeout_s": (0.1, 3600),
        "login_hash_concurrency": (1, 64),
        "login_hash_queue": (0, 100_000),
        "login_backoff_base_s": (0.001, 3600),
        "login_backoff_max_s": (0.001, 86_400),
        "login_throttle_entries": (1, 10_000_000),
        "write_buffer_bytes": (1024, 1024 * _MIB),
        "socket_send_buffer": (0, 1024 * _MIB),  # 0 = the kernel's default (autotuned)
    },
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _typed(cls: type, raw: Any, where: str) -> Any:
    """Build a flat dataclass from a TOML table, checking key names and value types."""
    if not isinstance(raw, dict):
        raise SettingsError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError(f"[{where}]: unknown keys {unknown}")
    values: dict[str, Any] = {}
    defaults = cls()
    for name, value in raw.items():
        expected = type(getattr(defaults, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise SettingsError(f"{where}.{name}: expected {expected.__name__}, got {value!r}")
        if expected in (int, float) and value < 0:
            raise SettingsError(f"{where}.{name}: must not be negative")
        bounds = RANGES.get(where, {}).get(name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise SettingsError(f"{where}.{name}: {value!r} is outside the range {_num(bounds[0])} to {_num(bounds[1])}")
        values[name] = value
    return cls(**values)


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or len(value) > 64:
        raise SettingsError(f"{where}.{key}: expected a non-empty string of at most 64 characters")
    return value


def _check_keys(raw: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SettingsError(f"{where} must be a table")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SettingsError(f"{where}: unknown keys {unknown}")
    return raw


def _members(raw: Any) -> tuple[MemberSetting, ...]:
    out = []
    for i, item in enumerate(raw or []):
        where = f"member[{i}]"
        item = _check_keys(item, {"member", "key_id", "secret_hash"}, where)
        out.append(MemberSetting(_text(item, "member", where), _text(item, "key_id", where), _hash(item, where)))
    return tuple(out)


def _hash(raw: dict[str, Any], where: str) -> str:
    value = raw.get("secret_hash")
    if not isinstance(value, str) or not value.startswith("scrypt$") or value.count("$") != 2:
        raise SettingsError(f"{where}.secret_hash: expected 'scrypt$<salt-hex>$<hash-hex>' (see `carbonx hash-secret`)")
    return value


def _holding(raw: Any, where: str) -> HoldingSetting:
    raw = _check_keys(raw, {"instrument", "quantity", "vintage"}, where)
    quantity, vintage = raw.get("quantity"), raw.get("vintage")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise SettingsError(f"{where}.quantity: expected a positive integer")
    if (message := ranges.check_int(quantity, ranges.QUANTITY, f"{where}.quantity")) is not None:
        raise SettingsError(message)
    if vintage is not None and (not isinstance(vintage, int) or isinstance(vintage, bool)):
        raise SettingsError(f"{where}.vintage: expected an integer year")
    if vintage is not None and (message := ranges.check_int(vintage, ranges.VINTAGE, f"{where}.vintage")) is not None:
        raise SettingsError(message)
    return HoldingSetting(_text(raw, "instrument", where), quantity, vintage)


def _accounts(raw: Any) -> tuple[AccountSetting, ...]:
    out = []
    for i, item in enumerate(raw or []):
        where = f"account[{i}]"
        item = _check_keys(item, {"account", "member", "type", "cash", "holdings"}, where)
        kind = _text(item, "type", where)
        if kind not in PARTICIPANT_TYPES:
            raise SettingsError(f"{where}.type: expected one of {list(PARTICIPANT_TYPES)}")
        try:
            cash = parse_fen(str(item.get("cash", "0")))
        except UnitError as exc:
            raise SettingsError(f"{where}.cash: {exc}") from None
        if (message := ranges.check_int(cash, ranges.CASH, f"{where}.cash")) is not None:
            raise SettingsError(message)
        holdings = tuple(_holding(h, f"{where}.holdings[{j}]") for j, h in enumerate(item.get("holdings", [])))
        out.append(AccountSetting(_text(item, "account", where), _text(item, "member", where), kind, cash, holdings))
    return tuple(out)


def _operator(raw: Any) -> Credential | None:
    if raw is None:
        return None
    raw = _check_keys(raw, {"key_id", "secret_hash"}, "[operator]")
    return Credential(_text(raw, "key_id", "operator"), _hash(raw, "operator"))


def _validate(s: Settings) -> None:
    if s.server.fsync_policy not in FSYNC_POLICIES:
        raise SettingsError(f"server.fsync_policy: expected one of {list(FSYNC_POLICIES)}")
    if bool(s.server.tls_cert) != bool(s.server.tls_key):
        raise SettingsError("server.tls_cert and server.tls_key go together")
    members = {m.member for m in s.members}
    keys = [m.key_id for m in s.members] + ([s.operator.key_id] if s.operator else [])
    if len(members) != len(s.members) or len(set(keys)) != len(keys):
        raise SettingsError("member names and key ids must be unique (the operator's key id too)")
    for a in s.accounts:
        if a.member not in members:
            raise SettingsError(f"account {a.account}: unknown member {a.member!r}")
        for h in a.holdings:
            if h.instrument not in s.market.instruments:
                raise SettingsError(f"account {a.account}: unknown instrument {h.instrument!r}")
    if s.limits.max_frame_bytes < 1024 or s.limits.requests_per_s <= 0 or s.limits.orders_per_s <= 0:
        raise SettingsError("limits: max_frame_bytes >= 1024 and positive request/order rates are required")
    _validate_admission(s.limits)


def _validate_admission(lim: Limits) -> None:
    """Connection budgets and login throttling must leave room for the sessions they protect."""
    if lim.max_admin_connections < 1 or lim.max_anonymous_per_address < 1:
        raise SettingsError("limits: max_admin_connections and max_anonymous_per_address must be at least 1")
    if not lim.max_anonymous_per_address <= lim.max_anonymous_connections < lim.max_connections:
        raise SettingsError(
            "limits: need max_anonymous_per_address <= max_anonymous_connections < max_connections "
            "(the difference is reserved for logged-in sessions)"
        )
    if lim.login_timeout_s <= 0:
        raise SettingsError("limits.login_timeout_s: must be positive")
    if lim.login_hash_concurrency < 1 or lim.login_throttle_entries < 1:
        raise SettingsError("limits: login_hash_concurrency and login_throttle_entries must be at least 1")
    if not 0 < lim.login_backoff_base_s <= lim.login_backoff_max_s:
        raise SettingsError("limits: need 0 < login_backoff_base_s <= login_backoff_max_s")


def parse_settings(text: str) -> Settings:
    """Parse the whole configuration (market + gateway tables)."""
    market = load_market_text(text)
    data = tomllib.loads(text)
    settings = Settings(
        market=market,
        server=_typed(ServerSettings, data.get("server", {}), "server"),
        limits=_typed(Limits, data.get("limits", {}), "limits"),
        operator=_operator(data.get("operator")),
        members=_members(data.get("member")),
        accounts=_accounts(data.get("account")),
    )
    _validate(settings)
    return settings


def load_settings(path: Path) -> Settings:
    """Read and parse ``path``. Market errors surface as ``engine.config.ConfigError``."""
    return parse_settings(path.read_text())


def with_env_operator(settings: Settings, environ: dict[str, str] | None = None, hasher: Any = None) -> Settings:
    """``CARBONX_OPERATOR_KEY_ID`` / ``CARBONX_OPERATOR_SECRET`` override the configured
    operator credentials (bootstrapping and automation); the secret is hashed at once
    so it lives in memory only as a hash."""
    env = os.environ if environ is None else environ
    key_id = env.get("CARBONX_OPERATOR_KEY_ID")
    secret = env.get("CARBONX_OPERATOR_SECRET")
    if not key_id and not secret:
        return settings
    if secret and hasher is None:
        from carbonx.gateway.sessions import hash_secret

        hasher = hash_secret
    current = settings.operator
    new_key = key_id or (current.key_id if current else "")
    if not new_key:
        raise SettingsError("CARBONX_OPERATOR_SECRET is set but no operator key id is configured")
    if not secret and current is None:
        raise SettingsError("CARBONX_OPERATOR_KEY_ID is set but no operator secret is configured")
    new_hash = hasher(secret) if secret else current.secret_hash  # type: ignore[union-attr]
    return replace(settings, operator=Credential(new_key, new_hash))
