"""The Engine: one deterministic state machine for the whole exchange.

``Engine.apply(command) -> list[event]`` is the only way state changes. It assigns the
command the next global sequence number, runs the command's handler (each rule lives
in the module named for it: ``matching``, ``admin``, ``auction``, ``blocks``,
``retirement``) and returns the events the handler emitted, in order. Handlers check
everything first and mutate only once the command is known to succeed, so a rejected
command changes nothing but the sequence number.

The state, the helpers handlers share and the reads (``order_of``, ``orders_of``,
``account_of``, ...) are ``state.ExchangeState``'s, which ``Engine`` extends: the gateway
calls the reads on the same thread between commands; they are not journaled. This module
is the top of the engine's import graph and the only one that imports the rule modules'
``HANDLERS`` (docs/engine.md, Import layers).

``snapshot()``/``restore()`` capture the full state as msgpack; ``digest()`` is a
SHA-256 over a canonical encoding so two engines fed the same commands can be compared.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import ClassVar

import msgspec

from carbonx.engine import access, admin, auction, blocks, gateways, matching, retirement
from carbonx.engine.accounts import Account, Member
from carbonx.engine.book import Order
from carbonx.engine.config import MarketConfig, RetentionSpec
from carbonx.engine.desks import AuctionDesk, BlockDesk, Registry
from carbonx.engine.keys import ApiKey, OperatorIdentity, initial_key
from carbonx.engine.ranges import CHECKERS as range_checks
from carbonx.engine.reasons import Failure
from carbonx.engine.schema import Command, Event, Trade
from carbonx.engine.state import ExchangeState, Handler, InstrumentState, band, is_live

__all__ = ["Engine", "EngineSnapshot", "Handler", "InstrumentState", "band"]


class EngineSnapshot(msgspec.Struct, kw_only=True):
    """Everything needed to rebuild an Engine exactly (plus its configuration)."""

    seq: int
    ts: int
    day_open: bool
    trading_date: str
    next_order_id: int
    next_trade_id: int
    fees_collected: int
    members: list[Member]
    accounts: list[Account]
    instruments: list[InstrumentState]
    orders: list[Order]  # live orders and the window of finished ones, by order id
    books: dict[str, list[int]]  # live order ids in priority order, per instrument
    trades: list[Trade]  # the window of recent trades, oldest first
    auctions: AuctionDesk
    blocks: BlockDesk
    registry: Registry
    cod_sessions: dict[str, str] = {}
    # Retention (absent from snapshots written before it existed: restore derives them)
    retention: RetentionSpec | None = None  # the caps in force when the snapshot was taken
    finished: list[int] | None = None  # finished order ids, in the order they finished
    finished_blocks: list[int] | None = None  # finished block ids, in the order they finished
    related: dict[str, list[str]] = {}  # related-party groups (format 3; older snapshots: none)
    # Access (format 3; absent before: restore derives each member's initial key from the member)
    keys: list[ApiKey] | None = None
    operators: list[OperatorIdentity] | None = None
    # The operator's day-schedule switch (SetSchedule); absent before format 3: on.
    schedule: bool = True
    # The state format (see STATE_FORMAT). Snapshots written before it existed decode as 1.
    format: int = 1


# The encoding of the state (EngineSnapshot's fields and meaning). A snapshot's saved digest is
# over its own format's encoding, so a snapshot of an older format restores fine but re-encodes
# to a different digest: recovery then relies on the file's own integrity check (SHA-256 of the
# stored bytes) instead. Bump on every change to what the snapshot holds.
#   1: up to the first release; 2: retention windows (finished order/block order, caps), desks.
#   3: related-party groups declared for surveillance (``related``; absent = none); access: API keys (members' and operators', scopes, allow-lists, expiry, rotation) and operator identities; ``schedule``, the operator's day-schedule switch (SetSchedule; older snapshots: on).
STATE_FORMAT = 3


# Insertion order is itself deterministic (same commands, same order) and survives a
# snapshot round trip, so the plain encoding is canonical for digests.
_canonical = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(EngineSnapshot)


class Engine(ExchangeState):
    """See the module docstring. The state and the helpers handlers use are
    ``state.ExchangeState``'s; this class adds dispatch and snapshots."""

    handlers: ClassVar[dict[type, Handler]] = {
        **matching.HANDLERS,
        **admin.HANDLERS,
        **auction.HANDLERS,
        **blocks.HANDLERS,
        **retirement.HANDLERS,
        **access.HANDLERS,
        **gateways.HANDLERS,
    }
    # The state format of the snapshot this engine was restored from (STATE_FORMAT when it was
    # built fresh or from a current snapshot): recovery and ``journal verify`` read it.
    restored_format: int = STATE_FORMAT

    # ------------------------------------------------------------------ entry point

    def apply(self, cmd: Command) -> list[Event]:
        """Apply one command; return the events it caused (its ``seq`` is ``self.seq``)."""
        self.seq += 1
        self.ts = cmd.ts
        out: list[Event] = []
        self.out = out
        kind = type(cmd)
        try:
            handler = self.handlers[kind]
        except KeyError:
            raise TypeError(f"not a command: {kind.__name__}") from None
        failure = range_checks[kind](cmd)  # every integer within its documented range (engine.ranges)
        if failure is not None:
            self._reject_out_of_range(cmd, failure)
            return out
        handler(self, cmd)
        retention = self.retention
        if len(self.finished) > retention.finished_orders:
            self.evict_orders()
        if len(self.finished_blocks) > retention.finished_blocks:
            self.evict_blocks()
        return out

    def _reject_out_of_range(self, cmd: Command, failure: Failure) -> None:
        reason, message, field = failure
        account = getattr(cmd, "account", "")
        self.reject(
            cmd,
            reason,
            message,
            field,
            account=account if isinstance(account, str) else "",
            client_order_id=getattr(cmd, "client_order_id", "") or "",
            instrument=instrument if (instrument := getattr(cmd, "instrument", None)) in self.specs else "",
        )

    @property
    def stat_commands(self) -> int:
        """Commands applied (= the sequence number; kept as a name for metrics)."""
        return self.seq

    # ------------------------------------------------------------------ snapshot, restore, digest

    def _snapshot_struct(self) -> EngineSnapshot:
        return EngineSnapshot(
            seq=self.seq,
            ts=self.ts,
            day_open=self.day_open,
            trading_date=self.trading_date,
            next_order_id=self.next_order_id,
            next_trade_id=self.next_trade_id,
            fees_collected=self.fees_collected,
            members=list(self.members.values()),
            accounts=list(self.accounts.values()),
            instruments=list(self.instruments.values()),
            orders=list(self.orders.values()),
            books={sym: [o.order_id for o in book.orders_in_priority()] for sym, book in self.books.items()},
            trades=list(self.trades),
            auctions=self.auctions,
            blocks=self.blocks,
            registry=self.registry,
            cod_sessions=self.cod_sessions,
            retention=self.retention,
            finished=list(self.finished),
            finished_blocks=list(self.finished_blocks),
            related=self.related,
            keys=list(self.keys.values()),
            operators=list(self.operators.values()),
            schedule=self.schedule_enabled,
            format=STATE_FORMAT,
        )

    def snapshot(self) -> bytes:
        """The whole state as msgpack (canonical: see ``_canonical``)."""
        return _canonical.encode(self._snapshot_struct())

    def digest(self) -> str:
        """SHA-256 of the canonical state: equal digests mean equal states."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    @classmethod
    def restore(cls, config: MarketConfig, data: bytes) -> Engine:
        """Rebuild an engine from ``snapshot()`` output taken with the same configuration."""
        snap = _snapshot_decoder.decode(data)
        if snap.format > STATE_FORMAT:
            raise ValueError(f"snapshot state format {snap.format} is newer than this version's {STATE_FORMAT}: upgrade carbonx")
        eng = cls(config)
        eng.restored_format = snap.format
        eng.seq, eng.ts = snap.seq, snap.ts
        eng.day_open, eng.trading_date = snap.day_open, snap.trading_date
        eng.schedule_enabled = snap.schedule
        eng.next_order_id, eng.next_trade_id = snap.next_order_id, snap.next_trade_id
        eng.fees_collected = snap.fees_collected
        eng.members = {m.member: m for m in snap.members}
        if snap.keys is None:  # before format 3: each member had the one key it was created with
            eng.keys = {m.key_id: initial_key(m.member, m.key_id, m.secret_hash) for m in snap.members}
        else:
            eng.keys = {k.key_id: k for k in snap.keys}
        eng.operators = {o.operator: o for o in snap.operators or []}
        eng.accounts = {a.account: a for a in snap.accounts}
        eng.instruments = {s.symbol: s for s in snap.instruments}
        eng.orders = {o.order_id: o for o in snap.orders}
        for sym, ids in snap.books.items():
            book = eng.books[sym]
            for oid in ids:
                order = eng.orders[oid]
                book.side(order.side).add(order)
                if order.client_order_id:
                    eng.live_coid[(order.account, order.client_order_id)] = oid
        eng.auctions, eng.blocks, eng.registry = snap.auctions, snap.blocks, snap.registry
        eng.cod_sessions = snap.cod_sessions
        eng.related = snap.related
        # A snapshot from before retention existed has no finish order: take finished
        # orders and proposals by id (creation order), the best order it implies.
        finished = snap.finished
        if finished is None:
            finished = sorted(o.order_id for o in snap.orders if not is_live(o))
        eng.finished = deque(finished)
        for oid in finished:
            o = eng.orders[oid]
            if o.client_order_id:
                eng.done_coid[(o.account, o.client_order_id)] = oid
        finished_blocks = snap.finished_blocks
        if finished_blocks is None:
            finished_blocks = sorted(b for b, p in eng.blocks.proposals.items() if p.state != "proposed")
        eng.finished_blocks = deque(finished_blocks)
        for t in snap.trades:
            eng.keep_trade(t)
        # The configuration's caps apply from now on (a lowered cap trims at once).
        eng.evict_orders()
        eng.evict_blocks()
        return eng
