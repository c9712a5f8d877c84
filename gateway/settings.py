"""The gateway's tables of the TOML configuration: listeners, limits, credentials, demo funding.

The same file also holds the market tables (``[calendar]``, ``[auction]``,
``[[instrument]]``, ``[retention]``) that ``engine.config`` reads; this module reads
``[server]``, ``[limits]``, ``[operator]``, ``[[member]]`` and ``[[account]]`` into msgspec
Structs, which refuse unknown keys and tables, wrong types and numbers outside their
``Meta`` range, so a typo in a limit never silently falls back to a default. The few
rules that tie keys together are checked after conversion (``_validate``). Secrets
appear here only as salted hashes (``carbonx hash-secret``).
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import msgspec.inspect as mi
from msgspec.structs import replace

from carbonx.engine import ranges
from carbonx.engine.config import MarketConfig, Money, bounded, convert, load_market_text, money
from carbonx.engine.schema import ParticipantType
from carbonx.engine.supervision.thresholds import DisclosureSpec, SurveillanceSpec, surveillance_problem
from carbonx.gateway.passwords import hash_secret

FsyncPolicy = Literal["fsync", "os", "none"]
FSYNC_POLICIES: tuple[str, ...] = typing.get_args(FsyncPolicy)


class SettingsError(ValueError):
    """The gateway configuration is invalid; the message names the key."""


_MIB = 1024 * 1024


def _within(lo: float, hi: float) -> msgspec.Meta:
    """The inclusive range of a number in [server] / [limits]: a value outside is refused
    with the key and the range. Every numeric field has one (tests/gateway/test_bounds.py)."""
    return msgspec.Meta(ge=lo, le=hi)


Port = Annotated[int, _within(0, 65535)]  # 0 = a free port
Seconds = Annotated[float, _within(0, 3600)]
PerSecond = Annotated[float, _within(0.001, 1_000_000)]
Count = Annotated[int, _within(1, 1_000_000)]


class ServerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Listeners and behaviour. Ports 0 pick a free port."""

    host: str = "127.0.0.1"
    port: Port = 8700
    admin_host: str = "127.0.0.1"
    admin_port: Port = 8701
    metrics_host: str = "127.0.0.1"
    metrics_port: Port = 9100
    # The trading listener's URL as browsers reach it (e.g. "wss://market.example.cn/v1" behind a
    # proxy), given to the live page by /config.json; "" = the trading port on the page's own host.
    public_url: Annotated[str, msgspec.Meta(pattern=r"^(wss?://[!#-;=?-~]+)?$", max_length=512)] = ""
    data_dir: str = "./data"
    fsync_policy: FsyncPolicy = "fsync"
    auto_open_day: bool = False
    # Open and close the trading day on the calendar (engine admin.day_due), journaled; a
    # 24-hour calendar rolls its day (close, open) at local midnight.
    day_schedule: bool = False
    heartbeat_s: Seconds = 10.0
    keepalive_s: Seconds = 20.0  # WebSocket ping interval and timeout
    coalesce_ms: Annotated[float, _within(0, 10_000)] = 5.0  # book/ticker updates are batched per tick of this length
    tick_s: Annotated[float, _within(0.01, 60)] = 1.0  # how often the session clock is checked (Tick command)
    market_data_requires_login: bool = False
    compression: bool = False
    tls_cert: str = ""  # PEM certificate chain for both listeners (reloaded on SIGHUP)
    tls_key: str = ""
    # A listener bound off loopback refuses to start without TLS unless this says plain text is
    # intended (e.g. a proxy in front terminates TLS): gateway/tls.py.
    allow_plaintext: bool = False
    snapshot_every: Annotated[int, _within(0, 10**12)] = 0  # commands between automatic snapshots; 0 = only on request/shutdown
    # Snapshots encode in a forked child (the engine pauses ~15 ms for the fork instead of
    # ~300 ms encoding a 55 MB state on its own thread). POSIX only.
    snapshot_fork: bool = hasattr(os, "fork")
    # After each snapshot, move the journal segments it covers into DIR/archive/ (start-up
    # then reads only the snapshot and the live tail; verify/dump still read the archive).
    archive_segments: bool = True
    # Group commit: while batches are forming (the last held more than one command), hand a new
    # batch to the journal writer this long after its first command (fewer fsyncs per order;
    # a lone command is never delayed). 0 = at the end of the event-loop iteration.
    journal_linger_ms: Annotated[float, _within(0, 100)] = 0.0
    # A journal segment rolls once it passes this size.
    segment_bytes: Annotated[int, _within(64 * 1024, 64 * 1024 * _MIB)] = 64 * _MIB
    # Storage (gateway/storage.py): refuse to start, and stop taking new orders, with less
    # free space than this in the data directory; checked every storage_check_s seconds.
    min_free_bytes: Annotated[int, _within(0, 1 << 50)] = 64 * _MIB
    storage_check_s: Seconds = 5.0  # 0 = check only at start


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every input is bounded; these are the bounds."""

    max_frame_bytes: Annotated[int, _within(1024, 16 * _MIB)] = 64 * 1024
    requests_per_s: PerSecond = 200.0
    request_burst: Count = 400
    orders_per_s: PerSecond = 100.0
    order_burst: Count = 200
    max_violations: Count = 50  # refused requests (rate limit, malformed, unknown method) in a row before close (1008)
    # Requests in one JSON-RPC batch (an array frame); each is charged to the rate budgets like a frame of its own.
    max_batch: Annotated[int, _within(1, 1000)] = 100
    max_login_failures: Count = 5
    max_subscriptions: Annotated[int, _within(1, 10_000)] = 64
    max_connections_per_member: Count = 16
    max_connections: Count = 4096  # trading listener, anonymous and logged-in together
    # The admin listener has a budget of its own, so a full trading listener never keeps an
    # operator from reaching halt and the kill switch.
    max_admin_connections: Annotated[int, _within(1, 10_000)] = 64
    # Not-yet-logged-in connections on the trading listener: in total (the rest of
    # max_connections is reserved for logged-in sessions) and per source address (IPv4
    # address or IPv6 /64). When the total is full, a newcomer from a lighter address evicts
    # the oldest anonymous connection of the heaviest one (see docs/operations.md).
    max_anonymous_connections: Count = 1024
    max_anonymous_per_address: Count = 32
    # Seconds a connection may stay anonymous: always on the admin listener; on the trading
    # listener only while it holds no subscription, unless market data requires login.
    login_timeout_s: Annotated[float, _within(0.1, 3600)] = 10.0
    # Password hashing (scrypt, 16 MiB and ~50 ms each): at most this many at once (so at
    # most this many x 16 MiB), at most login_hash_queue more waiting; beyond that
    # RATE_LIMITED at once.
    login_hash_concurrency: Annotated[int, _within(1, 64)] = 2
    login_hash_queue: Annotated[int, _within(0, 100_000)] = 32
    # After the n-th failed login in a row for a key id or a source address, the next attempt
    # for it is refused unhashed (LOGIN_THROTTLED) for base * 2^(n-1) seconds, at most max;
    # failures are forgotten max seconds after the last one. The table is bounded.
    login_backoff_base_s: Annotated[float, _within(0.001, 3600)] = 1.0
    login_backoff_max_s: Annotated[float, _within(0.001, 86_400)] = 60.0
    login_throttle_entries: Annotated[int, _within(1, 10_000_000)] = 16384
    write_buffer_bytes: Annotated[int, _within(1024, 1024 * _MIB)] = 4 * _MIB  # slow-consumer limit per connection
    # Kernel send buffer per connection. Without a cap Linux autotunes it to several MB,
    # and the slow-consumer limit above only starts counting once that is full.
    socket_send_buffer: Annotated[int, _within(0, 1024 * _MIB)] = 256 * 1024  # 0 = the kernel's default (autotuned)


SyncInterval = Annotated[str, msgspec.Meta(pattern=r"^(always|default|[1-9][0-9]{0,5}(ms|s|m))$")]
NatsUrl = Annotated[str, msgspec.Meta(pattern=r"^(nats|tls)://[^\s/]+$", max_length=256)]
StreamName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# A cluster role's id (``carbonx engine/gateway --id``): short, so a gateway's session ids
# ``<id>.<boot nonce>.<16 hex>`` stay within the engine's 64 characters.
RoleId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Subject = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=128)]


class ClusterSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[cluster]``: cluster mode on NATS JetStream (docs/cluster.md). Unused by ``carbonx serve``."""

    nats_urls: tuple[NatsUrl, ...] = ("nats://127.0.0.1:4222",)
    command_stream: StreamName = "CARBONX_COMMANDS"  # the replicated command log
    command_subject: Subject = "carbonx.commands"
    replicas: Annotated[int, _within(1, 5)] = 3  # R3 survives the loss of one NATS node of three
    lease_ttl_s: Annotated[float, _within(0.5, 300)] = 5.0  # the active engine's leadership lease
    batch_max_commands: Annotated[int, _within(1, 100_000)] = 1000  # commands per stream message at most
    batch_max_bytes: Annotated[int, _within(1024, 8 * _MIB)] = 512 * 1024  # below the server's max_payload (1 MiB default)
    # Wait this long for a batch to fill (0: group commit only). 2 ms: fewer, fuller stream
    # messages (NATS's cost is per message): measured p99 48-52 -> 16 ms at 2,000 orders/s
    # through 2 gateways on one 2-core machine (docs/cluster.md), for <= 2 ms more when idle.
    linger_ms: Annotated[float, _within(0, 1000)] = 2.0
    publish_timeout_s: Annotated[float, _within(0.05, 60)] = 2.0  # one publish attempt waits this long for its ack
    publish_retry_s: Annotated[float, _within(0, 600)] = 30.0  # then retries this long before the journal fails
    duplicate_window_s: Annotated[float, _within(1, 86_400)] = 120.0  # the stream's Nats-Msg-Id de-duplication window
    # The NATS servers' jetstream sync_interval this deployment expects (advice, checked by no one:
    # the NATS servers' own configuration decides). "default" = every 2 minutes; "always" = fsync
    # every write (survives a power loss of every node at once; measured ~20x slower).
    sync_interval: SyncInterval = "default"
    # Engine snapshots in the JetStream object store (gateway/cluster/snapshots.py): the bucket,
    # and how many of the newest snapshots it keeps (older ones are deleted after each save).
    snapshot_bucket: StreamName = "CARBONX_SNAPSHOTS"
    snapshot_keep: Annotated[int, _within(1, 1000)] = 3
    # The roles (gateway/cluster/, docs/cluster.md "Roles"): the events stream the active engine
    # publishes (one message per command batch; not the book of record, so it expires), the KV
    # bucket holding the leadership lease (key "leader") and the gateways' liveness keys
    # ("gw-<id>"), both with TTL lease_ttl_s; the active engine's snapshot interval in commands
    # (0: none); ids when the command line gives no --id.
    events_stream: StreamName = "CARBONX_EVENTS"
    events_subject: Subject = "carbonx.events"
    events_max_age_s: Annotated[float, _within(60, 30 * 86_400)] = 86_400.0
    kv_bucket: StreamName = "CARBONX_CLUSTER"
    snapshot_every: Annotated[int, _within(0, 100_000_000)] = 100_000
    engine_id: RoleId = "engine"
    gateway_id: RoleId = "gw"


def _ranges(cls: type[msgspec.Struct]) -> dict[str, tuple[float, float]]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    out = {}
    for f in info.fields:
        if isinstance(f.type, (mi.IntType, mi.FloatType)) and f.type.ge is not None and f.type.le is not None:
            out[f.name] = (f.type.ge, f.type.le)
    return out


# The range (inclusive) of every number in [server] and [limits], as the Structs declare them
# (for docs and tests: msgspec enforces them).
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "server": _ranges(ServerSettings),
    "limits": _ranges(Limits),
    "cluster": _ranges(ClusterSettings),
}

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="a non-empty string of at most 64 characters")]
SecretHash = Annotated[
    str,
    msgspec.Meta(pattern=r"^scrypt\$[^$]*\$[^$]*$", description="'scrypt$<salt-hex>$<hash-hex>' (see `carbonx hash-secret`)"),
]


class Credential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key_id: Text
    secret_hash: SecretHash


class MemberSetting(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    member: Text
    key_id: Text
    secret_hash: SecretHash


class HoldingSetting(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    instrument: Text
    quantity: Annotated[int, bounded(ranges.QUANTITY)]
    vintage: Annotated[int, bounded(ranges.VINTAGE)] | None = None


class AccountSetting(msgspec.Struct, frozen=True):
    account: str
    member: str
    type: str
    cash: int = 0  # fen
    holdings: tuple[HoldingSetting, ...] = ()


class _AccountTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An ``[[account]]`` table as written (cash still a decimal string)."""

    account: Text
    member: Text
    type: ParticipantType
    cash: Money = "0"
    holdings: tuple[HoldingSetting, ...] = ()


class _GatewayFile(msgspec.Struct, forbid_unknown_fields=True):
    """The whole file: the gateway's tables, and the market's, which ``engine.config``
    checks (a misspelt table name is refused like a misspelt key)."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    limits: Limits = msgspec.field(default_factory=Limits)
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)
    surveillance: SurveillanceSpec = msgspec.field(default_factory=SurveillanceSpec)
    disclosure: DisclosureSpec = msgspec.field(default_factory=DisclosureSpec)
    operator: Credential | None = None
    member: tuple[MemberSetting, ...] = ()
    account: tuple[_AccountTable, ...] = ()
    calendar: object = None
    auction: object = None
    instrument: object = None
    retention: object = None


class Settings(msgspec.Struct, frozen=True):
    market: MarketConfig
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    limits: Limits = msgspec.field(default_factory=Limits)
    operator: Credential | None = None
    members: tuple[MemberSetting, ...] = ()
    accounts: tuple[AccountSetting, ...] = ()
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)
    surveillance: SurveillanceSpec = msgspec.field(default_factory=SurveillanceSpec)  # docs/supervision.md
    disclosure: DisclosureSpec = msgspec.field(default_factory=DisclosureSpec)  # docs/disclosure.md


def _validate(s: Settings) -> None:
    """The rules that tie several keys together (msgspec checked each key on its own)."""
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
    _validate_admission(s.limits)
    if (problem := surveillance_problem(s.surveillance)) is not None:
        raise SettingsError(problem)
    if not s.cluster.nats_urls:
        raise SettingsError("cluster.nats_urls: at least one NATS URL is needed")
    if not s.cluster.duplicate_window_s > s.cluster.publish_retry_s + s.cluster.publish_timeout_s:
        # A publish retried after the window could be stored twice.
        raise SettingsError("cluster: need duplicate_window_s > publish_retry_s + publish_timeout_s")


def _validate_admission(lim: Limits) -> None:
    """Connection budgets and login throttling must leave room for the sessions they protect."""
    if not lim.max_anonymous_per_address <= lim.max_anonymous_connections < lim.max_connections:
        raise SettingsError(
            "limits: need max_anonymous_per_address <= max_anonymous_connections < max_connections "
            "(the difference is reserved for logged-in sessions)"
        )
    if not lim.login_backoff_base_s <= lim.login_backoff_max_s:
        raise SettingsError("limits: need login_backoff_base_s <= login_backoff_max_s")


def parse_settings(text: str) -> Settings:
    """Parse the whole configuration (market + gateway tables)."""
    market = load_market_text(text)
    doc = convert(tomllib.loads(text), _GatewayFile, SettingsError)
    accounts = tuple(
        AccountSetting(a.account, a.member, a.type, money(a.cash, f"account[{i}].cash", ranges.CASH, SettingsError), a.holdings)
        for i, a in enumerate(doc.account)
    )
    settings = Settings(market, doc.server, doc.limits, doc.operator, doc.member, accounts, doc.cluster, doc.surveillance, doc.disclosure)
    _validate(settings)
    return settings


def load_settings(path: Path) -> Settings:
    """Read and parse ``path``. Market errors surface as ``engine.config.ConfigError``."""
    return parse_settings(path.read_text())


def with_env_operator(settings: Settings, environ: Mapping[str, str] | None = None, hasher: Callable[[str], str] = hash_secret) -> Settings:
    """``CARBONX_OPERATOR_KEY_ID`` / ``CARBONX_OPERATOR_SECRET`` override the configured
    operator credentials (bootstrapping and automation); the secret is hashed at once
    so it lives in memory only as a hash."""
    env = os.environ if environ is None else environ
    key_id = env.get("CARBONX_OPERATOR_KEY_ID")
    secret = env.get("CARBONX_OPERATOR_SECRET")
    if not key_id and not secret:
        return settings
    current = settings.operator
    new_key = key_id or (current.key_id if current else "")
    if not new_key:
        raise SettingsError("CARBONX_OPERATOR_SECRET is set but no operator key id is configured")
    if not secret and current is None:
        raise SettingsError("CARBONX_OPERATOR_KEY_ID is set but no operator secret is configured")
    new_hash = hasher(secret) if secret else current.secret_hash  # type: ignore[union-attr]
    return replace(settings, operator=Credential(new_key, new_hash))
