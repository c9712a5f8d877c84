"""The Engine: one deterministic state machine for the whole exchange.

``Engine.apply(command) -> list[event]`` is the only way state changes. It assigns the
command the next global sequence number, runs the command's handler (each rule lives
in the module named for it: ``matching``, ``admin``, ``auction``, ``blocks``,
``retirement``) and returns the events the handler emitted, in order. Handlers check
everything first and mutate only once the command is known to succeed, so a rejected
command changes nothing but the sequence number.

Reads (``order``, ``orders_of``, ``account_of``, ...) are plain methods: the gateway
calls them on the same thread between commands; they are not journaled.

``snapshot()``/``restore()`` capture the full state as msgpack; ``digest()`` is a
SHA-256 over a canonical encoding so two engines fed the same commands can be compared.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from carbonx.engine import admin, auction, blocks, matching, retirement
from carbonx.engine.accounts import Account, Member
from carbonx.engine.book import Book, Order
from carbonx.engine.calendar import SessionClock, local_date
from carbonx.engine.config import MarketConfig, RetentionSpec
from carbonx.engine.ranges import CHECKERS as range_checks
from carbonx.engine.reasons import NOT_AUTHORIZED, UNKNOWN_INSTRUMENT
from carbonx.engine.schema import Command, Event, InstrumentStatus, ReferencePrice, Reject, Trade

Handler = Callable[["Engine", Any], None]


class InstrumentState(msgspec.Struct, kw_only=True):
    """Per-instrument market state that changes during the day."""

    symbol: str
    reference: int  # previous close: centre of the price band
    lower: int
    upper: int
    halted: bool = False
    suspended_by: int = 0  # auction id suspending listing trading, 0 = none
    phase: str = "closed"  # last published phase
    open: int = 0  # first listing trade of the day, 0 = none yet
    high: int = 0
    low: int = 0
    last: int = 0
    volume: int = 0  # listing trades only (blocks excluded)
    notional: int = 0
    trades: int = 0
    history: list[tuple[str, int, int]] = []  # (date, notional, volume) of closed days


def band(reference: int, band_bp: int, tick: int) -> tuple[int, int]:
    """(lower, upper) price limits: upper rounds down to the tick, lower rounds up."""
    upper = reference * (10_000 + band_bp) // 10_000
    upper -= upper % tick
    lower = -(-reference * (10_000 - band_bp) // 10_000)
    lower = -(-lower // tick) * tick
    return lower, upper


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
    auctions: auction.AuctionDesk
    blocks: blocks.BlockDesk
    registry: retirement.Registry
    cod_sessions: dict[str, str] = {}
    # Retention (absent from snapshots written before it existed: restore derives them)
    retention: RetentionSpec | None = None  # the caps in force when the snapshot was taken
    finished: list[int] | None = None  # finished order ids, in the order they finished
    finished_blocks: list[int] | None = None  # finished block ids, in the order they finished


# Insertion order is itself deterministic (same commands, same order) and survives a
# snapshot round trip, so the plain encoding is canonical for digests.
_canonical = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(EngineSnapshot)


class Engine:
    """See the module docstring. Not thread-safe by design: one thread owns it."""

    handlers: ClassVar[dict[type, Handler]] = {
        **matching.HANDLERS,
        **admin.HANDLERS,
        **auction.HANDLERS,
        **blocks.HANDLERS,
        **retirement.HANDLERS,
    }

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self.specs = config.instruments
        self.clock = SessionClock(config.calendar)
        self.windows: dict[str, tuple[int, int, str]] = {}  # calendar phase cache per instrument
        self.seq = 0
        self.ts = 0
        self.out: list[Event] = []
        self.day_open = False
        self.trading_date = ""
        self.next_order_id = 1
        self.next_trade_id = 1
        self.fees_collected = 0
        self.members: dict[str, Member] = {}
        self.key_index: dict[str, str] = {}  # key_id -> member
        self.accounts: dict[str, Account] = {}
        self.instruments: dict[str, InstrumentState] = {}
        self.books: dict[str, Book] = {}
        for sym, spec in self.specs.items():
            lower, upper = band(spec.reference_price, spec.band_bp, spec.tick)
            self.instruments[sym] = InstrumentState(symbol=sym, reference=spec.reference_price, lower=lower, upper=upper)
            self.books[sym] = Book(sym)
        self.orders: dict[int, Order] = {}
        self.live_coid: dict[tuple[str, str], int] = {}  # (account, client_order_id) of live orders
        self.cod_sessions: dict[str, str] = {}  # session -> member: cancel its orders on disconnect
        # Bounded history (config.retention): see ``finish_order``, ``matching.record_trade``.
        self.retention = config.retention
        self.finished: deque[int] = deque()  # finished order ids still in self.orders, oldest first
        self.done_coid: dict[tuple[str, str], int] = {}  # (account, client_order_id) -> newest finished order
        self.finished_blocks: deque[int] = deque()  # finished block ids still on the desk, oldest first
        self.trades: deque[Trade] = deque()
        self.account_trades: dict[str, deque[Trade]] = {}
        self.auctions = auction.AuctionDesk()
        self.blocks = blocks.BlockDesk()
        self.registry = retirement.Registry()
        # Metrics: plain integers read by the gateway's collector at scrape time.
        self.stat_orders: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.stat_trades: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.stat_volume: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.stat_rejects: dict[tuple[str, str], int] = {}  # (instrument, reason); commands = seq

    # ------------------------------------------------------------------ entry point

    def apply(self, cmd: Command) -> list[Event]:
        """Apply one command; return the events it caused (its ``seq`` is ``self.seq``)."""
        self.seq += 1
        self.ts = cmd.ts
        out: list[Event] = []
        self.out = out
        try:
            handler = self.handlers[type(cmd)]
        except KeyError:
            raise TypeError(f"not a command: {type(cmd).__name__}") from None
        failure = range_checks[type(cmd)](cmd)  # every integer within its documented range (engine.ranges)
        if failure is not None:
            self._reject_out_of_range(cmd, failure)
            return out
        handler(self, cmd)
        if len(self.finished) > self.retention.finished_orders:
            self.evict_orders()
        if len(self.finished_blocks) > self.retention.finished_blocks:
            self.evict_blocks()
        return out

    def _reject_out_of_range(self, cmd: Command, failure: tuple[str, str, str]) -> None:
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

    # ------------------------------------------------------------------ bounded history

    def finish_order(self, o: Order) -> None:
        """Record that ``o`` just finished (filled, cancelled, expired): it stays queryable
        (by id, and by client order id through ``done_coid``) until
        ``retention.finished_orders`` newer orders have finished. Every path that ends an
        order calls this once (``matching.cancel``, ``matching.fill``, FOK kill)."""
        self.finished.append(o.order_id)
        if o.client_order_id:
            self.done_coid[(o.account, o.client_order_id)] = o.order_id

    def evict_orders(self) -> None:
        """Drop the oldest finished orders beyond the cap (run after each command, so the
        handler that finished them never finds them gone mid-command)."""
        finished, orders, done_coid = self.finished, self.orders, self.done_coid
        while len(finished) > self.retention.finished_orders:
            o = orders.pop(finished.popleft())
            if o.client_order_id:
                key = (o.account, o.client_order_id)
                if done_coid.get(key) == o.order_id:  # a newer order may reuse the id
                    del done_coid[key]

    def evict_blocks(self) -> None:
        proposals = self.blocks.proposals
        while len(self.finished_blocks) > self.retention.finished_blocks:
            proposals.pop(self.finished_blocks.popleft(), None)

    def keep_trade(self, trade: Trade) -> None:
        """Add a trade to the window (global and per account); past ``retention.trades``
        the oldest leaves both at once (FIFO: it is the oldest of its accounts too)."""
        trades, by_account = self.trades, self.account_trades
        trades.append(trade)
        by_account.setdefault(trade.buy_account, deque()).append(trade)
        if trade.sell_account != trade.buy_account:
            by_account.setdefault(trade.sell_account, deque()).append(trade)
        while len(trades) > self.retention.trades:
            old = trades.popleft()
            for account in {old.buy_account, old.sell_account}:
                mine = by_account[account]
                mine.popleft()
                if not mine:
                    del by_account[account]

    # ------------------------------------------------------------------ helpers for handlers

    def reject(
        self,
        cmd: Command,
        reason: str,
        message: str,
        field: str | None = None,
        *,
        account: str = "",
        client_order_id: str = "",
        order_id: int = 0,
        instrument: str = "",
    ) -> None:
        """Emit a Reject for ``cmd``. Handlers call this and return without mutating."""
        key = (instrument, reason)
        self.stat_rejects[key] = self.stat_rejects.get(key, 0) + 1
        self.out.append(
            Reject(
                seq=self.seq,
                ts=self.ts,
                command=type(cmd).__struct_config__.tag,  # type: ignore[arg-type]
                reason=reason,
                message=message,
                field=field,
                member=getattr(cmd, "member", "") or "",
                account=account,
                client_order_id=client_order_id,
                order_id=order_id,
            )
        )

    def owned_account(self, cmd: Command, member: str, account_id: str, field: str = "account") -> Account | None:
        """The account if ``member`` owns it; otherwise rejects NOT_AUTHORIZED — the same
        answer for an unknown account and another member's, so nothing leaks."""
        acct = self.accounts.get(account_id)
        if acct is None or acct.member != member:
            self.reject(cmd, NOT_AUTHORIZED, f"no account {account_id!r} for this member", field, account=account_id)
            return None
        return acct

    def known_instrument(self, cmd: Command, symbol: str, field: str = "instrument") -> bool:
        if symbol not in self.specs:
            self.reject(cmd, UNKNOWN_INSTRUMENT, f"unknown instrument {symbol!r}", field)
            return False
        return True

    def is_blocked(self, acct: Account) -> bool:
        return acct.blocked or self.members[acct.member].blocked

    def phase(self, symbol: str, ts: int) -> str:
        """closed | open | halted | auction, for listing trading in ``symbol`` at ``ts``."""
        st = self.instruments[symbol]
        if st.halted:
            return "halted"
        if st.suspended_by:
            return "auction"
        if not self.day_open:
            return "closed"
        window = self.windows.get(symbol)
        if window is None or not window[0] <= ts < window[1]:
            window = self.windows[symbol] = self.clock.window(self.specs[symbol], ts)
        return window[2]

    def publish_phases(self) -> None:
        """Emit InstrumentStatus for every instrument whose phase changed."""
        for sym, st in self.instruments.items():
            phase = self.phase(sym, self.ts)
            if phase != st.phase:
                st.phase = phase
                self.out.append(InstrumentStatus(seq=self.seq, ts=self.ts, instrument=sym, phase=phase, halted=st.halted))  # type: ignore[arg-type]

    def needs_tick(self, ts: int) -> bool:
        """True when some instrument's phase at ``ts`` differs from the published one
        (the gateway then applies a Tick so the change is journaled and published)."""
        return any(self.phase(sym, ts) != st.phase for sym, st in self.instruments.items())

    def set_reference(self, symbol: str, price: int) -> None:
        st = self.instruments[symbol]
        spec = self.specs[symbol]
        st.reference = price
        st.lower, st.upper = band(price, spec.band_bp, spec.tick)
        self.out.append(ReferencePrice(seq=self.seq, ts=self.ts, instrument=symbol, price=price, lower=st.lower, upper=st.upper))

    def local_date(self, ts: int) -> str:
        return local_date(self.config.calendar, ts)

    # ------------------------------------------------------------------ reads (not journaled)

    def member_of_key(self, key_id: str) -> Member | None:
        member = self.key_index.get(key_id)
        return self.members[member] if member is not None else None

    def accounts_of(self, member: str) -> list[str]:
        return sorted(a.account for a in self.accounts.values() if a.member == member)

    def account_of(self, member: str | None, account_id: str) -> Account | None:
        """The account, if it exists and ``member`` owns it (``None`` member = operator)."""
        acct = self.accounts.get(account_id)
        if acct is None or (member is not None and acct.member != member):
            return None
        return acct

    def order_of(self, member: str | None, account_id: str, order_id: int = 0, client_order_id: str = "") -> Order | None:
        """An order of the account by exchange id or (live) client order id."""
        if self.account_of(member, account_id) is None:
            return None
        if not order_id and client_order_id:
            key = (account_id, client_order_id)
            order_id = self.live_coid.get(key) or self.done_coid.get(key, 0)  # live first, then newest finished
            if not order_id:
                return None
        order = self.orders.get(order_id)
        return order if order is not None and order.account == account_id else None

    def orders_of(self, member: str | None, account_id: str, instrument: str | None = None, open_only: bool = False) -> list[Order]:
        if self.account_of(member, account_id) is None:
            return []
        return [
            o
            for o in self.orders.values()
            if o.account == account_id and (instrument is None or o.instrument == instrument) and (not open_only or matching.is_live(o))
        ]

    def trades_of(self, member: str | None, account_id: str, instrument: str | None = None, since_ts: int = 0) -> list[Trade]:
        if self.account_of(member, account_id) is None:
            return []
        return [
            t for t in self.account_trades.get(account_id, []) if (instrument is None or t.instrument == instrument) and t.ts >= since_ts
        ]

    def depth(self, symbol: str, n: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        book = self.books[symbol]
        return book.bids.depth(n), book.asks.depth(n)

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
        eng = cls(config)
        eng.seq, eng.ts = snap.seq, snap.ts
        eng.day_open, eng.trading_date = snap.day_open, snap.trading_date
        eng.next_order_id, eng.next_trade_id = snap.next_order_id, snap.next_trade_id
        eng.fees_collected = snap.fees_collected
        eng.members = {m.member: m for m in snap.members}
        eng.key_index = {m.key_id: m.member for m in snap.members}
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
        # A snapshot from before retention existed has no finish order: take finished
        # orders and proposals by id (creation order), the best order it implies.
        finished = snap.finished
        if finished is None:
            finished = sorted(o.order_id for o in snap.orders if not matching.is_live(o))
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
