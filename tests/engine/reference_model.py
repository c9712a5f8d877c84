"""A deliberately simple reference model of listing trading, for the property tests.

It re-derives what the engine must do from MARKET_RULES §2-§3 with the plainest data
structures: a dict of orders, each side of a book is "every live resting order sorted
by (price, time)", recomputed on every look; cash and tonnes are plain per-account
totals that change only by trades and fees, and the *frozen* amounts are not stored
at all but derived from the live orders (a buy holds price x leaves + fee, a sell its
leaves). So if the engine's incremental bookkeeping drifts, the comparison shows it.

Only the rules the property test exercises are modelled: no vintages, no holding
limits, lot 1, the 1..99,999 t range, ±10% band.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from carbonx.engine import reasons as R

FEE_UNIT = 100_000_000  # fee rates are given in units of 1e-8
MAX_QTY = 99_999


@dataclass
class Spec:
    tick: int
    reference: int
    fee_buy_e8: int = 0
    fee_sell_e8: int = 0
    t1_resale: bool = False
    eligible: tuple[str, ...] = ("covered_entity", "institution", "individual")


@dataclass
class MOrder:
    oid: int
    account: str
    instrument: str
    side: str
    type: str
    price: int
    quantity: int
    leaves: int
    tif: str
    post_only: bool
    stp: str
    coid: str
    cum: int = 0
    status: str = "new"
    resting: bool = False
    prio: int = 0  # time priority: larger = later

    @property
    def live(self) -> bool:
        return self.leaves > 0 and self.status in ("new", "partially_filled")


@dataclass
class MAccount:
    member: str
    type: str
    cash: int  # available + frozen, fen
    tonnes: dict[str, int]  # every bucket, per instrument
    locked: dict[str, int] = field(default_factory=dict)  # bought today (T+1 resale)
    blocked: bool = False


def fee(notional: int, rate_e8: int) -> int:
    return notional * rate_e8 // FEE_UNIT


def hold(price: int, qty: int, rate_e8: int) -> int:
    return price * qty + fee(price * qty, rate_e8)


class Model:
    def __init__(self, specs: dict[str, Spec], accounts: dict[str, MAccount]) -> None:
        self.specs = specs
        self.accounts = accounts
        self.halted = dict.fromkeys(specs, False)
        self.blocked_members: set[str] = set()
        self.day_open = True
        self.orders: dict[int, MOrder] = {}
        self.next_oid = 1
        self.clock = 0
        self.fees = 0
        self.day_fills: dict[str, list[tuple[int, int]]] = {s: [] for s in specs}
        self.fills: list[tuple[int, int, int, int]] = []  # (price, qty, buy oid, sell oid) of the last command

    # ------------------------------------------------------------------ derived state

    def band(self, sym: str) -> tuple[int, int]:
        """±10% of the reference; the upper limit rounds down, the lower up, to the tick."""
        spec = self.specs[sym]
        upper_raw = Fraction(spec.reference * 11, 10)
        lower_raw = Fraction(spec.reference * 9, 10)
        upper = int(upper_raw // spec.tick) * spec.tick
        lower = -int((-lower_raw) // spec.tick) * spec.tick
        return lower, upper

    def book(self, sym: str, side: str) -> list[MOrder]:
        resting = [o for o in self.orders.values() if o.instrument == sym and o.side == side and o.live and o.resting]
        if side == "buy":
            return sorted(resting, key=lambda o: (-o.price, o.prio))
        return sorted(resting, key=lambda o: (o.price, o.prio))

    def frozen_cash(self, account: str) -> int:
        return sum(
            hold(o.price, o.leaves, self.specs[o.instrument].fee_buy_e8)
            for o in self.orders.values()
            if o.account == account and o.side == "buy" and o.live
        )

    def available(self, account: str) -> int:
        return self.accounts[account].cash - self.frozen_cash(account)

    def frozen_tonnes(self, account: str, sym: str) -> int:
        return sum(o.leaves for o in self.orders.values() if o.account == account and o.instrument == sym and o.side == "sell" and o.live)

    def tradable(self, account: str, sym: str) -> int:
        acct = self.accounts[account]
        return acct.tonnes.get(sym, 0) - self.frozen_tonnes(account, sym) - acct.locked.get(sym, 0)

    # ------------------------------------------------------------------ checks

    def _blocked(self, account: str) -> bool:
        acct = self.accounts[account]
        return acct.blocked or acct.member in self.blocked_members

    def _phase(self, sym: str) -> str | None:
        if self.halted[sym]:
            return R.INSTRUMENT_HALTED
        if not self.day_open:
            return R.MARKET_CLOSED
        return None

    def _price(self, sym: str, price: int) -> str | None:
        if price <= 0:
            return R.INVALID_PRICE
        if price % self.specs[sym].tick:
            return R.INVALID_TICK
        lower, upper = self.band(sym)
        if not lower <= price <= upper:
            return R.PRICE_OUT_OF_BAND
        return None

    def _crosses(self, sym: str, side: str, price: int) -> bool:
        opp = self.book(sym, "sell" if side == "buy" else "buy")
        if not opp:
            return False
        return price >= opp[0].price if side == "buy" else price <= opp[0].price

    def _holdings(self, account: str, sym: str, need: int) -> str | None:
        have = self.tradable(account, sym)
        if have >= need:
            return None
        if self.specs[sym].t1_resale and have + self.accounts[account].locked.get(sym, 0) >= need:
            return R.T1_RESALE
        return R.INSUFFICIENT_HOLDINGS

    def check_place(self, member: str, account: str, sym: str, side: str, type_: str, price: int, qty: int,
                    tif: str, post_only: bool, coid: str) -> tuple[str | None, int]:  # fmt: skip
        """(reject reason or None, the price the order would hold/match at)."""
        acct = self.accounts.get(account)
        if acct is None or acct.member != member:
            return R.NOT_AUTHORIZED, 0
        if self._blocked(account):
            return R.ACCOUNT_BLOCKED, 0
        if acct.type not in self.specs[sym].eligible:
            return R.NOT_ELIGIBLE, 0
        failure = self._phase(sym)
        if failure:
            return failure, 0
        if coid and any(o.live and o.account == account and o.coid == coid for o in self.orders.values()):
            return R.DUPLICATE_CLIENT_ORDER_ID, 0
        if not 1 <= qty <= MAX_QTY:
            return R.INVALID_QUANTITY, 0
        if type_ == "market":
            if price or post_only:
                return R.INVALID_ORDER, 0
            lower, upper = self.band(sym)
            price = upper if side == "buy" else lower
        else:
            failure = self._price(sym, price)
            if failure:
                return failure, 0
        if post_only:
            if tif in ("ioc", "fok"):
                return R.INVALID_ORDER, 0
            if self._crosses(sym, side, price):
                return R.POST_ONLY_WOULD_CROSS, 0
        if side == "buy":
            if self.available(account) < hold(price, qty, self.specs[sym].fee_buy_e8):
                return R.INSUFFICIENT_FUNDS, 0
            return None, price
        return self._holdings(account, sym, qty), price

    # ------------------------------------------------------------------ commands

    def place(self, member: str, account: str, sym: str, side: str, type_: str, price: int, qty: int,
              tif: str, post_only: bool, stp: str, coid: str) -> str | None:  # fmt: skip
        self.fills = []
        failure, price = self.check_place(member, account, sym, side, type_, price, qty, tif, post_only, coid)
        if failure:
            return failure
        o = MOrder(self.next_oid, account, sym, side, type_, price, qty, qty, tif, post_only, stp, coid)
        self.next_oid += 1
        self.orders[o.oid] = o
        if tif == "fok" and not self._fok_fillable(o):
            o.leaves, o.status = 0, "cancelled"
            return None
        self._execute(o)
        return None

    def amend(self, member: str, account: str, oid: int, price: int | None, qty: int | None) -> str | None:
        self.fills = []
        acct = self.accounts.get(account)
        if acct is None or acct.member != member:
            return R.NOT_AUTHORIZED
        o = self.orders.get(oid)
        if o is None or o.account != account or not o.live:
            return R.UNKNOWN_ORDER
        if price is None and qty is None:
            return R.INVALID_ORDER
        if self._blocked(account):
            return R.ACCOUNT_BLOCKED
        failure = self._phase(o.instrument)
        if failure:
            return failure
        new_price = o.price if price is None else price
        new_qty = o.quantity if qty is None else qty
        if price is not None:
            failure = self._price(o.instrument, new_price)
            if failure:
                return failure
        if qty is not None and (not 1 <= new_qty <= MAX_QTY or new_qty <= o.cum):
            return R.INVALID_QUANTITY
        new_leaves = new_qty - o.cum
        if o.post_only and new_price != o.price and self._crosses(o.instrument, o.side, new_price):
            return R.POST_ONLY_WOULD_CROSS
        if o.side == "buy":
            rate = self.specs[o.instrument].fee_buy_e8
            if hold(new_price, new_leaves, rate) - hold(o.price, o.leaves, rate) > self.available(account):
                return R.INSUFFICIENT_FUNDS
        elif new_leaves > o.leaves:
            failure = self._holdings(account, o.instrument, new_leaves - o.leaves)
            if failure:
                return failure
        if new_price == o.price and new_leaves <= o.leaves:
            o.quantity, o.leaves = new_qty, new_leaves  # keeps its place in the queue
            return None
        o.resting = False
        o.price, o.quantity, o.leaves = new_price, new_qty, new_leaves
        self._execute(o)
        return None

    def cancel(self, member: str, account: str, oid: int) -> str | None:
        self.fills = []
        acct = self.accounts.get(account)
        if acct is None or acct.member != member:
            return R.NOT_AUTHORIZED
        o = self.orders.get(oid)
        if o is None or o.account != account or not o.live:
            return R.UNKNOWN_ORDER
        self._end(o, "cancelled")
        return None

    def cancel_all(self, member: str, account: str | None, sym: str | None, side: str | None) -> tuple[str | None, set[int]]:
        self.fills = []
        if member and account is not None:
            acct = self.accounts.get(account)
            if acct is None or acct.member != member:
                return R.NOT_AUTHORIZED, set()
        done = set()
        for o in list(self.orders.values()):
            if (
                o.live
                and (not member or self.accounts[o.account].member == member)
                and (account is None or o.account == account)
                and (sym is None or o.instrument == sym)
                and (side is None or o.side == side)
            ):
                self._end(o, "cancelled")
                done.add(o.oid)
        return None, done

    def set_blocked(self, member: str | None, account: str | None, blocked: bool) -> set[int]:
        """Kill switch; blocking cancels the target's live orders (returned)."""
        self.fills = []
        if member is not None:
            (self.blocked_members.add if blocked else self.blocked_members.discard)(member)
        else:
            assert account is not None
            self.accounts[account].blocked = blocked
        done = set()
        if blocked:
            for o in self.orders.values():
                if o.live and (o.account == account or self.accounts[o.account].member == member):
                    self._end(o, "cancelled")
                    done.add(o.oid)
        return done

    def set_reference(self, sym: str, price: int) -> str | None:
        """Operator override of the reference (and so the band); resting orders stay."""
        self.fills = []
        if price <= 0 or price % self.specs[sym].tick:
            return R.INVALID_TICK
        self.specs[sym].reference = price
        return None

    def set_halt(self, sym: str, halted: bool) -> str | None:
        self.fills = []
        if self.halted[sym] == halted:
            return R.INVALID_STATE
        self.halted[sym] = halted
        return None

    def day_close(self) -> str | None:
        self.fills = []
        if not self.day_open:
            return R.DAY_NOT_OPEN
        for o in self.orders.values():
            if o.live and o.tif == "day":
                self._end(o, "expired")
        for sym, spec in self.specs.items():
            fills = self.day_fills[sym]
            volume = sum(q for _, q in fills)
            if volume:
                vwap_ticks = Fraction(sum(p * q for p, q in fills), volume * spec.tick)
                spec.reference = int(vwap_ticks + Fraction(1, 2)) * spec.tick  # half-up
            fills.clear()
        for acct in self.accounts.values():
            acct.locked.clear()
        self.day_open = False
        return None

    def day_open_(self) -> str | None:
        self.fills = []
        if self.day_open:
            return R.INVALID_STATE
        self.day_open = True
        return None

    # ------------------------------------------------------------------ matching

    def _end(self, o: MOrder, status: str) -> None:
        o.leaves, o.status, o.resting = 0, status, False

    def _fok_fillable(self, o: MOrder) -> bool:
        need = o.quantity
        for r in self.book(o.instrument, "sell" if o.side == "buy" else "buy"):
            if (r.price > o.price) if o.side == "buy" else (r.price < o.price):
                return False
            if r.account == o.account:
                if o.stp == "cancel_oldest":
                    continue
                return False
            need -= r.leaves
            if need <= 0:
                return True
        return False

    def _execute(self, o: MOrder) -> None:
        self._match(o)
        if o.live:
            if o.type == "market" or o.tif in ("ioc", "fok"):
                self._end(o, "cancelled")
            else:
                self.clock += 1
                o.prio, o.resting = self.clock, True

    def _match(self, agg: MOrder) -> None:
        while agg.live:
            opp = self.book(agg.instrument, "sell" if agg.side == "buy" else "buy")
            if not opp:
                return
            best = opp[0]
            if (best.price > agg.price) if agg.side == "buy" else (best.price < agg.price):
                return
            if best.account == agg.account:
                if not self._self_trade(agg, best):
                    return
                continue
            self._fill(agg, best, best.price, min(agg.leaves, best.leaves))

    def _self_trade(self, agg: MOrder, rest: MOrder) -> bool:
        if agg.stp == "cancel_oldest":
            self._end(rest, "cancelled")
            return True
        if agg.stp == "cancel_both":
            self._end(rest, "cancelled")
            self._end(agg, "cancelled")
            return False
        if agg.stp == "decrement":
            n = min(agg.leaves, rest.leaves)
            for o in (rest, agg):
                if o.leaves == n:
                    self._end(o, "cancelled")
                else:
                    o.leaves -= n
                    o.quantity -= n
            return agg.live
        self._end(agg, "cancelled")
        return False

    def _fill(self, agg: MOrder, rest: MOrder, price: int, qty: int) -> None:
        buy, sell = (agg, rest) if agg.side == "buy" else (rest, agg)
        spec = self.specs[agg.instrument]
        notional = price * qty
        fee_b, fee_s = fee(notional, spec.fee_buy_e8), fee(notional, spec.fee_sell_e8)
        for o in (buy, sell):
            o.leaves -= qty
            o.cum += qty
            o.status = "partially_filled" if o.leaves else "filled"
            if not o.leaves:
                o.resting = False
        buyer, seller = self.accounts[buy.account], self.accounts[sell.account]
        buyer.cash -= notional + fee_b
        seller.cash += notional - fee_s
        self.fees += fee_b + fee_s
        sym = agg.instrument
        seller.tonnes[sym] -= qty
        buyer.tonnes[sym] = buyer.tonnes.get(sym, 0) + qty
        if spec.t1_resale:
            buyer.locked[sym] = buyer.locked.get(sym, 0) + qty
        self.fills.append((price, qty, buy.oid, sell.oid))
        self.day_fills[sym].append((price, qty))
