"""The exchange state, and the helpers every rule module uses on it (bottom of the engine).

``ExchangeState`` holds everything the engine knows — members, accounts, instruments,
books, orders, trades, the auction/block/retirement desks, bounded history, metrics —
and the small operations rule modules share: ``reject`` (emit a Reject, change nothing),
``owned_account``, ``known_instrument``, ``phase``/``publish_phases``,
``set_reference``, ``finish_order``/``keep_trade`` (bounded history), and the reads the
gateway calls between commands (``order_of``, ``orders_of``, ``account_of``, ...).

Import layers (acyclic; ``tests/engine/test_layers.py`` checks them):
``schema, reasons, units, ranges, config, calendar, accounts, book, desks`` ->
``state`` -> ``checks`` -> rule modules (``risk``, ``matching``, ``admin``, ``auction``,
``blocks``, ``retirement``), typed against ``ExchangeState`` -> ``engine`` (``Engine``:
the dispatcher, the only module that imports the rule modules' ``HANDLERS``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from carbonx.engine.accounts import Account, Member
from carbonx.engine.book import Book, Order
from carbonx.engine.calendar import SessionClock, local_date
from carbonx.engine.config import MarketConfig
from carbonx.engine.desks import AuctionDesk, BlockDesk, Registry
from carbonx.engine.keys import ApiKey, OperatorIdentity
from carbonx.engine.reasons import NOT_AUTHORIZED, UNKNOWN_INSTRUMENT
from carbonx.engine.schema import Command, Event, InstrumentStatus, ReferencePrice, Reject, Trade

Handler = Callable[["ExchangeState", Any], None]  # a rule module's command handler


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


def is_live(o: Order) -> bool:
    """New or partially filled: every path that ends an order (fill, cancel, expiry,
    re-queue of an amended copy) sets its leaves_qty to 0."""
    return o.leaves_qty > 0


class ExchangeState:
    """The whole state of the exchange (see the module docstring). ``Engine`` adds the
    command dispatcher and snapshots on top. Not thread-safe: one thread owns it."""

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
        self.schedule_enabled = True  # the operator's switch for the scheduled day (admin.day_due, SetSchedule)
        self.next_order_id = 1
        self.next_trade_id = 1
        self.fees_collected = 0
        self.members: dict[str, Member] = {}
        # Every API key (members' and operator identities'), by key id (engine/keys.py).
        self.keys: dict[str, ApiKey] = {}
        self.operators: dict[str, OperatorIdentity] = {}
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
        self.auctions = AuctionDesk()
        self.blocks = BlockDesk()
        self.registry = Registry()
        self.related: dict[str, list[str]] = {}  # related-party group -> accounts (surveillance only)
        # Metrics: plain integers read by the gateway's collector at scrape time.
        self.stat_orders: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.stat_trades: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.stat_volume: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.stat_rejects: dict[tuple[str, str], int] = {}  # (instrument, reason); commands = seq

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
        for account in (trade.buy_account, trade.sell_account) if trade.sell_account != trade.buy_account else (trade.buy_account,):
            mine = by_account.get(account)
            if mine is None:  # (not setdefault: that would build a deque for every trade)
                mine = by_account[account] = deque()
            mine.append(trade)
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
        key = self.keys.get(key_id)
        return self.members[key.member] if key is not None and key.member else None

    def keys_of(self, member: str = "", operator: str = "") -> list[ApiKey]:
        """The keys of a member or an operator identity (both empty: every key), by key id."""
        return sorted(
            (k for k in self.keys.values() if (not member or k.member == member) and (not operator or k.operator == operator)),
            key=lambda k: k.key_id,
        )

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
            if o.account == account_id and (instrument is None or o.instrument == instrument) and (not open_only or is_live(o))
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
