"""Property tests: random command sequences against the engine and a reference model.

A hypothesis ``RuleBasedStateMachine`` drives a small market (two instruments, four
accounts in two members) with places of every type/TIF/STP mode, amends, cancels,
mass cancels, the kill switch, halts, reference changes and day close/open, using prices around the reference including
band edges, out-of-band and off-tick prices, and quantities including invalid ones.

After every step it checks that the engine agrees with ``reference_model.Model``
(reject reason, fills, resting orders in priority order, every account's cash and
tonnes) and the invariants that need no model: books never crossed, queues in strict
price-time order, cash + fees and tonnes conserved, every order ending exactly once,
FIX-consistent execution reports carrying their command's seq. At teardown the
recorded commands are replayed into a fresh engine (same events, same digest) and the
state is snapshotted, restored and continued on both copies identically.
"""

from __future__ import annotations

import itertools
from collections import Counter

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from carbonx.engine.config import MarketConfig, RetentionSpec
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AmendOrder,
    Balance,
    BookLevel,
    CancelAll,
    CancelOrder,
    Command,
    CreateAccount,
    CreateMember,
    DayClose,
    DayOpen,
    Deposit,
    Event,
    ExecReport,
    Holding,
    PlaceOrder,
    Reject,
    SetBlocked,
    SetHalt,
    SetReference,
    Trade,
)
from carbonx.engine.testkit import T0, check_report, instrument, make_config
from tests.engine.reference_model import MAccount, Model, Spec

ACCOUNTS = {  # account -> (member, type, cash in fen)
    "A1": ("M1", "institution", 2_000_000),
    "A2": ("M1", "covered_entity", 50_000),
    "B1": ("M2", "covered_entity", 2_000_000),
    "B2": ("M2", "individual", 50_000),
}
TONNES = 15
INSTRUMENTS = ("X", "Y")
TERMINAL = ("filled", "cancelled", "expired")


def market() -> MarketConfig:
    """X: tick 0.01, fees on both sides. Y: tick 0.05, T+1 resale, no individuals. Tiny
    history windows so eviction happens in most runs (replay and restore must agree)."""
    config = make_config(
        instrument("X", reference_price="60.00", fee_buy="0.0005", fee_sell="0.0003"),
        instrument("Y", reference_price="20.15", tick="0.05", t1_resale=True, eligible=["covered_entity", "institution"]),
    )
    return msgspec.structs.replace(config, retention=RetentionSpec(finished_orders=RETAIN, trades=RETAIN, finished_blocks=RETAIN))


RETAIN = 5


def model_specs() -> dict[str, Spec]:
    return {
        "X": Spec(tick=1, reference=6000, fee_buy_e8=50_000, fee_sell_e8=30_000),
        "Y": Spec(tick=5, reference=2015, t1_resale=True, eligible=("covered_entity", "institution")),
    }


def setup_commands() -> list[Command]:
    cmds: list[Command] = [CreateMember(ts=T0, member=m, key_id=f"k-{m}", secret_hash="x") for m in ("M1", "M2")]
    for account, (member, kind, cash) in ACCOUNTS.items():
        cmds.append(CreateAccount(ts=T0, account=account, member=member, type=kind))  # type: ignore[arg-type]
        cmds.append(Deposit(ts=T0, account=account, cash=cash))
        cmds.extend(Deposit(ts=T0, account=account, instrument=sym, quantity=TONNES) for sym in INSTRUMENTS)
    cmds.append(DayOpen(ts=T0))
    return cmds


# A price is drawn as a "shape" relative to the current band, so that band edges,
# out-of-band and off-tick prices keep being exercised as the reference rolls.
PRICE_SHAPES = ["ref-2", "ref-1", "ref", "ref", "ref+1", "ref+2", "lower", "upper", "below", "above", "offtick", "zero"]
QUANTITIES = [1, 1, 2, 3, 5, 5, 8, 10, 13, 0, -1, 99_999, 100_000]

accounts = st.sampled_from(sorted(ACCOUNTS))
instruments = st.sampled_from(INSTRUMENTS)
sides = st.sampled_from(["buy", "sell"])
price_shapes = st.sampled_from(PRICE_SHAPES)
quantities = st.sampled_from(QUANTITIES)


class ExchangeMachine(RuleBasedStateMachine):
    """The engine and the reference model side by side; every rule applies one command
    to both and compares, every invariant runs after every step (see module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = market()
        self.engine = Engine(self.config)
        self.commands: list[Command] = []
        self.events: list[list[Event]] = []
        self.terminal: Counter[int] = Counter()
        # What a subscriber rebuilds from the events alone (balances, holdings, levels).
        self.seen_cash: dict[str, tuple[int, int]] = {}
        self.seen_holdings: dict[tuple[str, str, int], tuple[int, int, int, int]] = {}
        self.seen_levels: dict[tuple[str, str], dict[int, int]] = {}
        self.ts = T0
        for cmd in setup_commands():
            self.apply(cmd)
        self.model = Model(
            model_specs(),
            {a: MAccount(member=m, type=t, cash=c, tonnes=dict.fromkeys(INSTRUMENTS, TONNES)) for a, (m, t, c) in ACCOUNTS.items()},
        )
        self.total_cash = sum(c for _, _, c in ACCOUNTS.values())
        self.opened_at = self.engine.seq  # days last at least 12 commands (see day_close)

    # ------------------------------------------------------------------ plumbing

    def apply(self, cmd: Command) -> list[Event]:
        events = self.engine.apply(cmd)
        self.commands.append(cmd)
        self.events.append(events)
        for e in events:
            assert e.seq == self.engine.seq and e.ts == cmd.ts, e
            if isinstance(e, ExecReport):
                check_report(e)
                if e.status in TERMINAL:
                    self.terminal[e.order_id] += 1
            elif isinstance(e, Balance):
                self.seen_cash[e.account] = (e.available, e.frozen)
            elif isinstance(e, Holding):
                self.seen_holdings[(e.account, e.instrument, e.vintage)] = (e.tradable, e.frozen, e.compliance_only, e.locked)
            elif isinstance(e, BookLevel):
                levels = self.seen_levels.setdefault((e.instrument, e.side), {})
                if e.quantity:
                    levels[e.price] = e.quantity
                else:
                    levels.pop(e.price, None)
        return events

    def next_ts(self) -> int:
        self.ts += 1_000_000
        return self.ts

    def price(self, sym: str, shape: str) -> int:
        tick = self.model.specs[sym].tick
        ref = self.model.specs[sym].reference
        lower, upper = self.model.band(sym)
        return {
            "ref-2": ref - 2 * tick,
            "ref-1": ref - tick,
            "ref": ref,
            "ref+1": ref + tick,
            "ref+2": ref + 2 * tick,
            "lower": lower,
            "upper": upper,
            "below": lower - tick,
            "above": upper + tick,
            "offtick": ref + 1 if tick > 1 else ref + 3,  # with a 1-fen tick every price is on it
            "zero": 0,
        }[shape]

    def expect(self, events: list[Event], predicted: str | None) -> None:
        rejects = [e for e in events if isinstance(e, Reject)]
        got = rejects[0].reason if rejects else None
        assert got == predicted, (predicted, events)
        if rejects:
            assert len(events) == 1, events
        fills = [(t.price, t.quantity, t.buy_order_id, t.sell_order_id) for t in events if isinstance(t, Trade)]
        assert fills == self.model.fills, (fills, self.model.fills)

    def known_order(self, pick: int) -> int:
        """Mostly a live order; sometimes any order issued so far (finished ones
        included) or an id never issued."""
        live = [oid for oid, o in self.model.orders.items() if o.live]
        if live and pick % 4:
            return live[pick % len(live)]
        issued = self.model.next_oid - 1
        return pick % issued + 1 if issued and pick % 5 else 10_000 + pick

    # ------------------------------------------------------------------ rules

    @rule(
        account=accounts,
        sym=instruments,
        side=sides,
        type_=st.sampled_from(["limit", "limit", "limit", "market"]),
        shape=price_shapes,
        qty=quantities,
        tif=st.sampled_from(["day", "day", "gtc", "ioc", "fok"]),
        post_only=st.sampled_from([False, False, False, True]),
        stp=st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]),
        coid=st.sampled_from(["", "", "", "c1", "c2"]),
        wrong_member=st.sampled_from([False] * 19 + [True]),
        market_price=st.sampled_from([False] * 5 + [True]),
    )
    def place(self, account: str, sym: str, side: str, type_: str, shape: str, qty: int, tif: str, post_only: bool,
              stp: str, coid: str, wrong_member: bool, market_price: bool) -> None:  # fmt: skip
        member = ACCOUNTS[account][0]
        if wrong_member:
            member = "M2" if member == "M1" else "M1"
        price = self.price(sym, shape) if type_ == "limit" or market_price else 0
        cmd = PlaceOrder(ts=self.next_ts(), member=member, account=account, instrument=sym, side=side, type=type_, price=price or None,  # type: ignore[arg-type]
                         quantity=qty, tif=tif, post_only=post_only, stp=stp, client_order_id=coid)  # type: ignore[arg-type]  # fmt: skip
        predicted = self.model.place(member, account, sym, side, type_, price, qty, tif, post_only, stp, coid)
        self.expect(self.apply(cmd), predicted)

    @rule(
        account=accounts,
        sym=instruments,
        side=sides,
        shape=st.sampled_from(["ref-2", "ref-1", "ref", "ref+1", "ref+2"]),
        qty=st.integers(1, 12),
        tif=st.sampled_from(["day", "gtc"]),
    )
    def place_plain(self, account: str, sym: str, side: str, shape: str, qty: int, tif: str) -> None:
        """A valid limit order near the reference: what makes most of the trades."""
        self.place_valid(account, sym, side, shape, qty, tif)

    @rule(
        account=accounts,
        sym=instruments,
        side=sides,
        shape=st.sampled_from(["ref-1", "ref", "ref+1"]),
        qty=st.integers(1, 12),
        tif=st.sampled_from(["day", "gtc"]),
    )
    def place_plain_again(self, account: str, sym: str, side: str, shape: str, qty: int, tif: str) -> None:
        """The same as ``place_plain``: a second rule doubles how often it is chosen."""
        self.place_valid(account, sym, side, shape, qty, tif)

    def place_valid(self, account: str, sym: str, side: str, shape: str, qty: int, tif: str) -> None:
        member = ACCOUNTS[account][0]
        price = self.price(sym, shape)
        cmd = PlaceOrder(ts=self.next_ts(), member=member, account=account, instrument=sym, side=side, price=price,  # type: ignore[arg-type]
                         quantity=qty, tif=tif)  # type: ignore[arg-type]  # fmt: skip
        predicted = self.model.place(member, account, sym, side, "limit", price, qty, tif, False, "cancel_newest", "")
        self.expect(self.apply(cmd), predicted)

    @precondition(lambda self: any(o.resting for o in self.model.orders.values()))
    @rule(
        pick=st.integers(0, 10_000),
        account=accounts,
        type_=st.sampled_from(["limit", "limit", "market"]),
        tif=st.sampled_from(["ioc", "fok", "fok", "day", "gtc"]),
        extra=st.integers(-3, 3),
        stp=st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]),
    )
    def take(self, pick: int, account: str, type_: str, tif: str, extra: int, stp: str) -> None:
        """An aggressive order against a resting one, sized around the liquidity there:
        what exercises IOC/FOK/market remainders and self-trade prevention."""
        resting = [o for o in self.model.orders.values() if o.resting]
        target = resting[pick % len(resting)]
        side = "sell" if target.side == "buy" else "buy"
        available = sum(o.leaves for o in resting if o.instrument == target.instrument and o.side == target.side and
                        (o.price <= target.price if side == "buy" else o.price >= target.price))  # fmt: skip
        qty = max(1, available + extra)
        price = target.price if type_ == "limit" else 0
        member = ACCOUNTS[account][0]
        cmd = PlaceOrder(ts=self.next_ts(), member=member, account=account, instrument=target.instrument, side=side, type=type_,  # type: ignore[arg-type]
                         price=price or None, quantity=qty, tif=tif, stp=stp)  # type: ignore[arg-type]  # fmt: skip
        predicted = self.model.place(member, account, target.instrument, side, type_, price, qty, tif, False, stp, "")
        self.expect(self.apply(cmd), predicted)

    @precondition(lambda self: any(o.resting for o in self.model.orders.values()))
    @rule(pick=st.integers(0, 10_000), account=accounts, qty=st.integers(1, 12), tif=st.sampled_from(["day", "gtc"]))
    def join(self, pick: int, account: str, qty: int, tif: str) -> None:
        """Queue behind a resting order at its price: builds the multi-order levels on
        which time priority (and keeping it on a reducing amend) can be seen."""
        resting = [o for o in self.model.orders.values() if o.resting]
        target = resting[pick % len(resting)]
        member = ACCOUNTS[account][0]
        cmd = PlaceOrder(ts=self.next_ts(), member=member, account=account, instrument=target.instrument, side=target.side,  # type: ignore[arg-type]
                         price=target.price, quantity=qty, tif=tif)  # type: ignore[arg-type]  # fmt: skip
        predicted = self.model.place(
            member, account, target.instrument, target.side, "limit", target.price, qty, tif, False, "cancel_newest", ""
        )
        self.expect(self.apply(cmd), predicted)

    @precondition(lambda self: self.model.next_oid > 1)
    @rule(
        pick=st.integers(0, 10_000),
        own=st.sampled_from([True] * 9 + [False]),
        account=accounts,
        shape=st.none() | price_shapes,
        qty_shape=st.sampled_from([None, "less", "less", "less", "more", "more", "cum", "zero", "huge"]),
    )
    def amend(self, pick: int, own: bool, account: str, shape: str | None, qty_shape: str | None) -> None:
        oid = self.known_order(pick)
        order = self.model.orders.get(oid)
        if own and order is not None:
            account = order.account
        sym = order.instrument if order is not None else "X"
        price = None if shape is None else self.price(sym, shape)
        qty = None
        if qty_shape is not None:
            quantity, cum = (order.quantity, order.cum) if order is not None else (10, 0)
            qty = {"less": quantity - 1, "more": quantity + 2, "cum": cum, "zero": 0, "huge": 100_000}[qty_shape]
        member = ACCOUNTS[account][0]
        cmd = AmendOrder(ts=self.next_ts(), member=member, account=account, order_id=oid, price=price, quantity=qty)
        predicted = self.model.amend(member, account, oid, price, qty)
        self.expect(self.apply(cmd), predicted)

    @precondition(lambda self: self.model.next_oid > 1)
    @rule(pick=st.integers(0, 10_000), own=st.sampled_from([True] * 9 + [False]), account=accounts)
    def cancel(self, pick: int, own: bool, account: str) -> None:
        oid = self.known_order(pick)
        order = self.model.orders.get(oid)
        if own and order is not None:
            account = order.account
        member = ACCOUNTS[account][0]
        predicted = self.model.cancel(member, account, oid)
        self.expect(self.apply(CancelOrder(ts=self.next_ts(), member=member, account=account, order_id=oid)), predicted)

    @rule(member=st.sampled_from(["", "M1", "M2"]), account=st.none() | accounts, sym=st.none() | instruments, side=st.none() | sides)
    def cancel_all(self, member: str, account: str | None, sym: str | None, side: str | None) -> None:
        cmd = CancelAll(ts=self.next_ts(), member=member, account=account, instrument=sym, side=side)  # type: ignore[arg-type]
        predicted, done = self.model.cancel_all(member, account, sym, side)
        events = self.apply(cmd)
        self.expect(events, predicted)
        assert {e.order_id for e in events if isinstance(e, ExecReport) and e.exec_type == "cancelled"} == done

    @rule(who=st.sampled_from(["M1", "M2", *sorted(ACCOUNTS)]), unblock=st.sampled_from([True, True, False]))
    def kill_switch(self, who: str, unblock: bool) -> None:
        """Block a member or an account (its live orders are cancelled), usually lifting
        a block that is already on so that blocked spells stay short."""
        is_member = who.startswith("M")
        blocked_now = who in self.model.blocked_members if is_member else self.model.accounts[who].blocked
        blocked = not blocked_now if unblock else True
        member, account = (who, None) if is_member else (None, who)
        done = self.model.set_blocked(member, account, blocked)
        events = self.apply(SetBlocked(ts=self.next_ts(), member=member, account=account, blocked=blocked))
        self.expect(events, None)
        assert {e.order_id for e in events if isinstance(e, ExecReport)} == done
        assert all(e.reason == "ACCOUNT_BLOCKED" for e in events if isinstance(e, ExecReport))

    @rule(sym=instruments, ticks=st.sampled_from([-3, -2, -1, 1, 2, 3, -650, 650]), off_tick=st.sampled_from([False] * 5 + [True]))
    def set_reference(self, sym: str, ticks: int, off_tick: bool) -> None:
        """Move the reference: orders resting outside the new band stay, new ones and
        market orders are held to it."""
        spec = self.model.specs[sym]
        price = max(spec.reference + ticks * spec.tick, spec.tick) + (1 if off_tick and spec.tick > 1 else 0)
        predicted = self.model.set_reference(sym, price)
        self.expect(self.apply(SetReference(ts=self.next_ts(), instrument=sym, price=price)), predicted)
        assert (self.engine.instruments[sym].lower, self.engine.instruments[sym].upper) == self.model.band(sym)

    @rule(sym=instruments, repeat=st.sampled_from([False] * 9 + [True]))
    def halt_or_resume(self, sym: str, repeat: bool) -> None:
        """Resume a halted instrument, else halt one (now and then repeat the current
        state instead: INVALID_STATE). Resuming first keeps halts short."""
        sym = next((s for s in INSTRUMENTS if self.model.halted[s]), sym)
        halted = self.model.halted[sym] if repeat else not self.model.halted[sym]
        predicted = self.model.set_halt(sym, halted)
        self.expect(self.apply(SetHalt(ts=self.next_ts(), instrument=sym, halted=halted)), predicted)

    @precondition(lambda self: self.model.day_open and self.engine.seq - self.opened_at >= 12)
    @rule(reopen=st.sampled_from([True, True, False]))
    def day_close(self, reopen: bool) -> None:
        """Close the day (closing prices, expiry, reference roll, T+1 release) and
        usually open the next one at once, so closed spells stay short."""
        predicted = self.model.day_close()
        events = self.apply(DayClose(ts=self.next_ts()))
        self.expect(events, predicted)
        for sym in INSTRUMENTS:
            assert self.engine.instruments[sym].reference == self.model.specs[sym].reference, sym
            assert (self.engine.instruments[sym].lower, self.engine.instruments[sym].upper) == self.model.band(sym)
        if reopen:
            self.day_open()

    @precondition(lambda self: not self.model.day_open)
    @rule()
    def day_open(self) -> None:
        predicted = self.model.day_open_()
        self.expect(self.apply(DayOpen(ts=self.next_ts())), predicted)
        self.opened_at = self.engine.seq

    # ------------------------------------------------------------------ invariants

    @invariant()
    def books_match_the_model_and_are_in_price_time_order(self) -> None:
        eng = self.engine
        for sym in INSTRUMENTS:
            book = eng.books[sym]
            assert not book.crossed(), sym
            for side_name, side in (("buy", book.bids), ("sell", book.asks)):
                ids = []
                last_price = None
                for level in side.iter_levels():
                    if last_price is not None:
                        assert (level.price < last_price) if side_name == "buy" else (level.price > last_price)
                    last_price = level.price
                    orders = list(level.orders())
                    assert orders and level.qty == sum(o.leaves_qty for o in orders)
                    assert all(a.ts < b.ts for a, b in itertools.pairwise(orders)), "time priority"
                    ids.extend(o.order_id for o in orders)
                assert ids == [o.oid for o in self.model.book(sym, side_name)], (sym, side_name)

    @invariant()
    def history_stays_within_its_windows(self) -> None:
        eng = self.engine
        assert len(eng.finished) <= RETAIN and len(eng.trades) <= RETAIN
        assert set(eng.orders) == {oid for oid, o in eng.orders.items() if o.leaves_qty > 0} | set(eng.finished)
        per_account = sorted((a, t.trade_id) for a, ts in eng.account_trades.items() for t in ts)
        assert per_account == sorted({(a, t.trade_id) for t in eng.trades for a in (t.buy_account, t.sell_account)})

    @invariant()
    def orders_match_the_model(self) -> None:
        live = {oid for oid, o in self.engine.orders.items() if o.leaves_qty > 0 and o.status in ("new", "partially_filled")}
        assert live == {oid for oid, o in self.model.orders.items() if o.live}
        for oid in live:
            o, m = self.engine.orders[oid], self.model.orders[oid]
            assert (o.price, o.quantity, o.cum_qty, o.leaves_qty, o.status) == (m.price, m.quantity, m.cum, m.leaves, m.status)
            assert o.quantity == o.cum_qty + o.leaves_qty

    @invariant()
    def balances_match_the_model(self) -> None:
        for account in ACCOUNTS:
            acct = self.engine.accounts[account]
            assert (acct.available, acct.frozen) == (self.model.available(account), self.model.frozen_cash(account)), account
            for sym in INSTRUMENTS:
                pos = acct.holdings[sym][0]
                expected = (
                    self.model.tradable(account, sym),
                    self.model.frozen_tonnes(account, sym),
                    0,
                    self.model.accounts[account].locked.get(sym, 0),
                )
                assert (pos.tradable, pos.frozen, pos.compliance_only, pos.locked) == expected, (account, sym)
        assert self.engine.fees_collected == self.model.fees

    @invariant()
    def events_alone_rebuild_the_state(self) -> None:
        """Balance, Holding and BookLevel events (built positionally on the hot path)
        carry the right values and none is missing: replaying them gives the state."""
        eng = self.engine
        assert self.seen_cash == {a: (acct.available, acct.frozen) for a, acct in eng.accounts.items()}
        assert self.seen_holdings == {
            (a, sym, v): (p.tradable, p.frozen, p.compliance_only, p.locked)
            for a, acct in eng.accounts.items()
            for sym, by_vintage in acct.holdings.items()
            for v, p in by_vintage.items()
        }
        for sym in INSTRUMENTS:
            bids, asks = eng.depth(sym)
            assert sorted(self.seen_levels.get((sym, "buy"), {}).items(), reverse=True) == bids
            assert sorted(self.seen_levels.get((sym, "sell"), {}).items()) == asks

    @invariant()
    def cash_and_tonnes_are_conserved(self) -> None:
        """Nothing but trades and fees moves value: the totals never change."""
        accts = self.engine.accounts.values()
        assert sum(a.available + a.frozen for a in accts) + self.engine.fees_collected == self.total_cash
        assert all(a.available >= 0 and a.frozen >= 0 for a in accts)
        for sym in INSTRUMENTS:
            assert sum(p.total() for a in accts for p in a.holdings[sym].values()) == TONNES * len(ACCOUNTS)

    @invariant()
    def every_order_ends_exactly_once(self) -> None:
        for oid in range(1, self.model.next_oid):
            expected = 0 if self.model.orders[oid].live else 1
            assert self.terminal[oid] == expected, (oid, self.terminal[oid])

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        replay = Engine(self.config)
        for cmd, events in zip(self.commands, self.events, strict=True):
            assert replay.apply(cmd) == events
        assert replay.digest() == self.engine.digest()
        restored = Engine.restore(self.config, self.engine.snapshot())
        assert restored.digest() == self.engine.digest()
        for cmd in self.continuation():
            assert restored.apply(cmd) == self.engine.apply(cmd)
        assert restored.digest() == self.engine.digest()

    def continuation(self) -> list[Command]:
        """A few commands that touch what a snapshot must carry: the day state, resting
        orders (matched by crossing orders), holds and T+1 tonnes."""
        cmds: list[Command] = []
        if self.model.day_open:
            cmds.append(DayClose(ts=self.next_ts()))
        cmds.append(DayOpen(ts=self.next_ts()))
        cmds.extend(SetHalt(ts=self.next_ts(), instrument=sym, halted=False) for sym in INSTRUMENTS if self.model.halted[sym])
        cmds.extend(SetBlocked(ts=self.next_ts(), member=m, blocked=False) for m in ("M1", "M2"))
        cmds.extend(SetBlocked(ts=self.next_ts(), account=a, blocked=False) for a in ("A1", "B1"))
        for sym in INSTRUMENTS:
            lower, upper = self.engine.instruments[sym].lower, self.engine.instruments[sym].upper
            cmds.append(PlaceOrder(ts=self.next_ts(), member="M1", account="A1", instrument=sym, side="buy", price=upper, quantity=7))
            cmds.append(PlaceOrder(ts=self.next_ts(), member="M2", account="B1", instrument=sym, side="sell", price=lower, quantity=9))
        cmds.append(CancelAll(ts=self.next_ts()))
        return cmds


ExchangeMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestExchange = ExchangeMachine.TestCase
