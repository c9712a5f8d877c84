"""Listing trading: place, amend, cancel and mass-cancel orders; match and settle.

The pipeline of every order is risk hold -> match -> settle (MARKET_RULES §2-§3):
``risk.check_place`` finds the first rule the order breaks (nothing is touched if one
is), then the order's cash or tonnes are frozen, it matches against the opposite side
at the resting prices, each fill settles delivery-versus-payment at once, and the
rest either rests in the book or, for IOC/FOK/market orders, is cancelled and its
hold released.

Invariant kept for every live buy: ``frozen_cash == hold(price * leaves_qty)`` where
``hold`` adds the buy fee; so a fill, amend or cancel releases exactly the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from carbonx.engine import reasons as R
from carbonx.engine.accounts import (
    Account,
    Position,
    buy_hold,  # re-exported: blocks and auctions hold cash the same way
    cash_event,
    freeze_tonnes,
    hold_cash,
    holding_event,
    position,
    release_cash,
    release_lots,
    settle_dvp,
    take_from_alloc,
)
from carbonx.engine.book import Book, Order
from carbonx.engine.checks import order_ref_failure
from carbonx.engine.reasons import (
    NO_LIQUIDITY,
    NOT_AUTHORIZED,
    SELF_TRADE_PREVENTION,
    UNFILLED_REMAINDER,
    UNKNOWN_INSTRUMENT,
    UNKNOWN_ORDER,
)
from carbonx.engine.risk import check_amend, check_place
from carbonx.engine.schema import (
    AmendOrder,
    Balance,
    BookLevel,
    CancelAll,
    CancelOrder,
    ExecReport,
    Holding,
    PlaceOrder,
    SetCancelOnDisconnect,
    Trade,
)
from carbonx.engine.state import ExchangeState, Handler, is_live

if TYPE_CHECKING:
    from carbonx.engine.config import InstrumentSpec

__all__ = ["HANDLERS", "buy_hold", "cancel", "execute", "is_live", "record_trade", "report"]

SELF_TRADE = SELF_TRADE_PREVENTION
UNFILLED = UNFILLED_REMAINDER  # IOC / market remainder


def report(
    eng: ExchangeState, o: Order, exec_type: str, last_qty: int = 0, last_price: int = 0, trade_id: int = 0, reason: str = ""
) -> ExecReport:
    """The order's execution report now. Built positionally (hot path): the argument
    order is ExecReport's field order in ``engine.schema``."""
    return ExecReport(
        eng.seq, eng.ts, o.order_id, o.client_order_id, o.member, o.account, o.instrument, o.side, o.type,  # type: ignore[arg-type]
        o.price, o.quantity, exec_type, o.status, o.cum_qty, o.leaves_qty, o.cum_notional, o.tif,  # type: ignore[arg-type]
        last_qty, last_price, trade_id, reason, o.session,
    )  # fmt: skip


# ---------------------------------------------------------------------- place


def place(eng: ExchangeState, cmd: PlaceOrder) -> None:
    """Accept (hold, match, rest or cancel the remainder) or reject a new order.

    Hot path (docs/performance.md): the accepted order's ``new`` report, its balance or
    holding event, the single-vintage tonne freeze and the rest-in-book step are written
    out here rather than called (``report``, ``cash_event``, ``holding_event``,
    ``freeze_tonnes``, ``execute``); they build exactly what those functions build."""
    sym = cmd.instrument
    spec = eng.specs.get(sym)
    if spec is None:
        if eng.owned_account(cmd, cmd.member, cmd.account) is not None:
            eng.reject(
                cmd,
                UNKNOWN_INSTRUMENT,
                f"unknown instrument {cmd.instrument!r}",
                "instrument",
                account=cmd.account,
                client_order_id=cmd.client_order_id,
            )
        return
    account = cmd.account
    member = cmd.member
    acct = eng.accounts.get(account)
    if acct is None or acct.member != member:
        eng.reject(
            cmd,
            NOT_AUTHORIZED,
            f"no account {cmd.account!r} for this member",
            "account",
            account=cmd.account,
            client_order_id=cmd.client_order_id,
            instrument=cmd.instrument,
        )
        return
    st = eng.instruments[sym]
    book = eng.books[sym]
    failure = check_place(eng, spec, st, book, acct, cmd)
    if failure is not None:
        reason, message, field = failure
        eng.reject(cmd, reason, message, field, account=cmd.account, client_order_id=cmd.client_order_id, instrument=cmd.instrument)
        return
    side = cmd.side
    is_buy = side == "buy"
    price = cmd.price
    if price is None:  # market: the band edge
        price = st.upper if is_buy else st.lower
    qty = cmd.quantity
    coid = cmd.client_order_id
    otype = cmd.type
    tif = cmd.tif
    session = cmd.session
    seq = eng.seq
    ts = eng.ts
    order_id = eng.next_order_id
    eng.next_order_id = order_id + 1
    order = Order(order_id, coid, member, account, sym, side, otype, price, qty, tif, cmd.post_only, cmd.stp, session, ts, qty)
    eng.orders[order_id] = order
    eng.stat_orders[sym] += 1
    out = eng.out
    if tif == "fok" and not fok_fillable(book, order):
        out.append(report(eng, order, "new"))  # before cancelling: a "new" report shows the order live
        order.leaves_qty = 0
        order.status = "cancelled"
        eng.finish_order(order)
        out.append(report(eng, order, "cancelled", reason=NO_LIQUIDITY))
        return
    # risk hold, then the "new" report (= report(eng, order, "new")) and the balance or holdings it changed
    if is_buy:
        notional = price * qty
        rate = spec.fee_buy_e8
        hold = notional + (notional * rate // 100_000_000 if rate else 0)  # = buy_hold(price, qty, rate)
        acct.available -= hold  # = hold_cash
        acct.frozen += hold
        order.frozen_cash = hold
        if spec.holding_limits:
            acct.open_buy[sym] = acct.open_buy.get(sym, 0) + qty
        if coid:
            eng.live_coid[(account, coid)] = order_id
        out.append(ExecReport(seq, ts, order_id, coid, member, account, sym, side, otype, price, qty, "new", "new", 0, qty, 0, tif, 0, 0, 0, "", session))  # fmt: skip
        out.append(Balance(seq, ts, account, member, acct.available, acct.frozen))
        own = book.bids
        opp_best = book.asks.top
        crosses = opp_best is not None and price >= opp_best
    else:
        by_vintage = acct.holdings.get(sym)
        pos: Position | None = None
        vintage = 0
        if by_vintage is not None and len(by_vintage) == 1:  # = freeze_tonnes' one-vintage case
            ((vintage, pos),) = by_vintage.items()
        if pos is not None and pos.tradable >= qty:
            pos.tradable -= qty
            pos.frozen += qty
            order.alloc = ((vintage, qty),)
            if coid:
                eng.live_coid[(account, coid)] = order_id
            out.append(ExecReport(seq, ts, order_id, coid, member, account, sym, side, otype, price, qty, "new", "new", 0, qty, 0, tif, 0, 0, 0, "", session))  # fmt: skip
            out.append(Holding(seq, ts, account, member, sym, vintage, pos.tradable, pos.frozen, pos.compliance_only, pos.locked))
        else:
            alloc = freeze_tonnes(acct, sym, qty)
            order.alloc = None if alloc is None else tuple((v, n) for v, n in alloc)
            if coid:
                eng.live_coid[(account, coid)] = order_id
            out.append(report(eng, order, "new"))
            _holding_events(eng, acct, sym, alloc)
        own = book.asks
        opp_best = book.bids.top
        crosses = opp_best is not None and price <= opp_best
    # = execute(eng, spec, book, order)
    if crosses:
        match(eng, spec, book, order)
    if order.leaves_qty:  # cancelled and filled orders have none left
        if otype == "market" or tif == "ioc" or tif == "fok":
            cancel(eng, order, "cancelled", UNFILLED if order.cum_qty else NO_LIQUIDITY)
        else:
            out.append(BookLevel(seq, ts, sym, side, price, own.add(order)))


def _holding_events(eng: ExchangeState, acct: Account, instrument: str, alloc: Iterable[Sequence[int]] | None) -> None:
    if alloc:
        for v, _ in alloc:
            eng.out.append(holding_event(acct, instrument, v, eng.seq, eng.ts))


def execute(eng: ExchangeState, spec: InstrumentSpec, book: Book, order: Order) -> None:
    """Match a held order against the book, then rest it or cancel its remainder."""
    if order.side == "buy":
        own, opp_best = book.bids, book.asks.top
        crosses = opp_best is not None and order.price >= opp_best
    else:
        own, opp_best = book.asks, book.bids.top
        crosses = opp_best is not None and order.price <= opp_best
    if crosses:
        match(eng, spec, book, order)
    if order.leaves_qty:  # cancelled and filled orders have none left
        if order.type == "market" or order.tif == "ioc" or order.tif == "fok":
            cancel(eng, order, "cancelled", UNFILLED if order.cum_qty else NO_LIQUIDITY)
        else:
            qty = own.add(order)
            eng.out.append(BookLevel(eng.seq, eng.ts, order.instrument, order.side, order.price, qty))  # type: ignore[arg-type]


def fok_fillable(book: Book, order: Order) -> bool:
    """Would a FOK order fill completely? Own resting orders count as liquidity only
    when self-trade prevention would cancel them (``cancel_oldest``); any other STP
    mode meeting an own order means the FOK cannot fill whole."""
    need = order.quantity
    is_buy = order.side == "buy"
    for level in book.opposite(order.side).iter_levels():
        if (level.price > order.price) if is_buy else (level.price < order.price):
            return False
        for resting in level.orders():
            if resting.account == order.account:
                if order.stp == "cancel_oldest":
                    continue
                return False
            need -= resting.leaves_qty
            if need <= 0:
                return True
    return False


def match(eng: ExchangeState, spec: InstrumentSpec, book: Book, agg: Order) -> None:
    """Fill ``agg`` against the opposite side while prices cross (resting price wins)."""
    opp = book.opposite(agg.side)
    is_buy = agg.side == "buy"
    limit = agg.price
    while agg.leaves_qty:
        level = opp.best()
        if level is None or (level.price > limit if is_buy else level.price < limit):
            return
        resting = level.head()
        assert resting is not None  # a level in the index has a live order
        if resting.account == agg.account:
            if not self_trade(eng, agg, resting):
                return
            continue
        fill(eng, spec, agg, resting, level.price, min(agg.leaves_qty, resting.leaves_qty))


def self_trade(eng: ExchangeState, agg: Order, resting: Order) -> bool:
    """Apply the aggressor's STP mode; return whether matching may continue."""
    mode = agg.stp
    if mode == "cancel_oldest":
        cancel(eng, resting, "cancelled", SELF_TRADE)
        return True
    if mode == "cancel_both":
        cancel(eng, resting, "cancelled", SELF_TRADE)
        cancel(eng, agg, "cancelled", SELF_TRADE)
        return False
    if mode == "decrement":
        n = min(agg.leaves_qty, resting.leaves_qty)
        for o in (resting, agg):
            if o.leaves_qty == n:
                cancel(eng, o, "cancelled", SELF_TRADE)
            else:
                reduce_leaves(eng, o, o.leaves_qty - n)
                eng.out.append(report(eng, o, "replaced", reason=SELF_TRADE))
        return agg.leaves_qty > 0
    cancel(eng, agg, "cancelled", SELF_TRADE)  # cancel_newest (default)
    return False


def fill(eng: ExchangeState, spec: InstrumentSpec, agg: Order, rest: Order, price: int, qty: int) -> None:
    """One execution: update both orders, settle cash and tonnes, emit the events."""
    trade_id = eng.next_trade_id
    eng.next_trade_id += 1
    notional = price * qty
    sym = agg.instrument
    agg_buys = agg.side == "buy"
    buy, sell = (agg, rest) if agg_buys else (rest, agg)
    accounts = eng.accounts
    buyer = accounts[buy.account]
    seller = accounts[sell.account]
    rate_b = spec.fee_buy_e8
    rate_s = spec.fee_sell_e8
    fee_b = notional * rate_b // 100_000_000 if rate_b else 0  # = fee(notional, rate_b)
    fee_s = notional * rate_s // 100_000_000 if rate_s else 0
    for o in (buy, sell):
        o.leaves_qty -= qty
        o.cum_qty += qty
        o.cum_notional += notional
        o.status = "partially_filled" if o.leaves_qty else "filled"
    # buyer: the hold shrinks to cover what is left; pay notional + fee; keep the rest
    new_hold = buy_hold(buy.price, buy.leaves_qty, rate_b)
    released = buy.frozen_cash - new_hold
    buy.frozen_cash = new_hold
    if spec.holding_limits:
        buyer.open_buy[sym] -= qty
    assert sell.alloc is not None
    sell.alloc, delivered = take_from_alloc(sell.alloc, qty)
    settle_dvp(buyer, seller, sym, delivered, released, notional, (fee_b, fee_s), spec.t1_resale)
    eng.fees_collected += fee_b + fee_s
    # the resting order's level
    book = eng.books[sym]
    side = book.asks if agg_buys else book.bids
    gone = rest.leaves_qty == 0
    if gone:
        rest.resting = False
    level_qty = side.reduce(price, qty, gone)
    for o in (rest, agg):
        if not o.leaves_qty:
            if o.client_order_id:
                eng.live_coid.pop((o.account, o.client_order_id), None)
            eng.finish_order(o)
    seq, ts, out = eng.seq, eng.ts, eng.out
    trade = Trade(
        seq, ts, trade_id, sym, price, qty, agg.side, buy.order_id, sell.order_id,  # type: ignore[arg-type]
        buy.account, sell.account, buy.member, sell.member, fee_b, fee_s, False,
        delivered if delivered[0][0] else None,
    )  # fmt: skip
    # = report(eng, o, "trade", qty, price, trade_id) for the resting order, then the aggressor
    for o in (rest, agg):
        out.append(ExecReport(
            seq, ts, o.order_id, o.client_order_id, o.member, o.account, sym, o.side, o.type,  # type: ignore[arg-type]
            o.price, o.quantity, "trade", o.status, o.cum_qty, o.leaves_qty, o.cum_notional, o.tif,  # type: ignore[arg-type]
            qty, price, trade_id, "", o.session,
        ))  # fmt: skip
    out.append(trade)
    out.append(BookLevel(seq, ts, sym, rest.side, price, level_qty))  # type: ignore[arg-type]
    out.append(Balance(seq, ts, buyer.account, buyer.member, buyer.available, buyer.frozen))  # = cash_event
    out.append(Balance(seq, ts, seller.account, seller.member, seller.available, seller.frozen))
    for vintage, _ in delivered:
        out.append(holding_event(buyer, sym, vintage, seq, ts))
        out.append(holding_event(seller, sym, vintage, seq, ts))
    record_trade(eng, trade, listing=True)


def record_trade(eng: ExchangeState, trade: Trade, listing: bool) -> None:
    """Keep the trade for trade.list (in the bounded window ``Engine.keep_trade``);
    listing trades also make the day's statistics (open, high, low, VWAP close). Block
    trades pass ``listing=False``."""
    eng.keep_trade(trade)
    sym = trade.instrument
    eng.stat_trades[sym] += 1
    eng.stat_volume[sym] += trade.quantity
    if not listing:
        return
    st = eng.instruments[sym]
    price = trade.price
    if not st.open:
        st.open = st.high = st.low = price
    elif price > st.high:
        st.high = price
    elif price < st.low:
        st.low = price
    st.last = price
    st.volume += trade.quantity
    st.notional += price * trade.quantity
    st.trades += 1


# ---------------------------------------------------------------------- cancel / reduce


def reduce_leaves(eng: ExchangeState, o: Order, new_leaves: int) -> None:
    """Shrink a live order's open quantity (keeping its queue place) and release the
    hold for the difference. Emits balance/holding and book-level events."""
    spec = eng.specs[o.instrument]
    acct = eng.accounts[o.account]
    delta = o.leaves_qty - new_leaves
    o.leaves_qty = new_leaves
    o.quantity -= delta
    if o.side == "buy":
        new_hold = buy_hold(o.price, new_leaves, spec.fee_buy_e8)
        released = o.frozen_cash - new_hold
        o.frozen_cash = new_hold
        release_cash(acct, released)
        if spec.holding_limits:
            acct.open_buy[o.instrument] -= delta
        eng.out.append(cash_event(acct, eng.seq, eng.ts))
    else:
        assert o.alloc is not None
        release_tail(eng, acct, o, delta)
    if o.resting:
        qty = eng.books[o.instrument].side(o.side).reduce(o.price, delta, False)
        eng.out.append(BookLevel(seq=eng.seq, ts=eng.ts, instrument=o.instrument, side=o.side, price=o.price, quantity=qty))  # type: ignore[arg-type]


def release_tail(eng: ExchangeState, acct: Account, o: Order, n: int) -> None:
    """Release ``n`` frozen tonnes of a sell order, newest vintage of its allocation first."""
    assert o.alloc is not None
    alloc = list(o.alloc)
    touched = []
    while n:
        v, q = alloc[-1]
        k = min(q, n)
        pos = position(acct, o.instrument, v)
        pos.frozen -= k
        pos.tradable += k
        touched.append(v)
        n -= k
        if q > k:
            alloc[-1] = (v, q - k)
        else:
            alloc.pop()
    o.alloc = tuple(alloc)
    for v in touched:
        eng.out.append(holding_event(acct, o.instrument, v, eng.seq, eng.ts))


def cancel(eng: ExchangeState, o: Order, exec_type: str = "cancelled", reason: str = "") -> None:
    """End a live order: leave the book, release exactly what is still held."""
    account = o.account
    sym = o.instrument
    side = o.side
    acct = eng.accounts[account]
    leaves = o.leaves_qty
    out = eng.out
    seq = eng.seq
    ts = eng.ts
    if o.resting:
        o.resting = False
        book = eng.books[sym]
        qty = (book.bids if side == "buy" else book.asks).reduce(o.price, leaves, True)
        out.append(BookLevel(seq, ts, sym, side, o.price, qty))  # type: ignore[arg-type]
    o.leaves_qty = 0
    o.status = status = "expired" if exec_type == "expired" else "cancelled"
    coid = o.client_order_id
    if coid:
        eng.live_coid.pop((account, coid), None)
    eng.finish_order(o)
    out.append(ExecReport(  # = report(eng, o, exec_type, reason=reason)
        seq, ts, o.order_id, coid, o.member, account, sym, side, o.type,  # type: ignore[arg-type]
        o.price, o.quantity, exec_type, status, o.cum_qty, 0, o.cum_notional, o.tif,  # type: ignore[arg-type]
        0, 0, 0, reason, o.session,
    ))  # fmt: skip
    if side == "buy":
        frozen = o.frozen_cash
        acct.frozen -= frozen  # inline accounts.release_cash (hot path: every cancel)
        acct.available += frozen
        o.frozen_cash = 0
        if eng.specs[sym].holding_limits:
            acct.open_buy[sym] -= leaves
        out.append(Balance(seq, ts, account, acct.member, acct.available, acct.frozen))  # = cash_event
    elif o.alloc:
        alloc, o.alloc = o.alloc, ()
        for v in release_lots(acct, sym, alloc):
            out.append(holding_event(acct, sym, v, seq, ts))


def _find_live(eng: ExchangeState, cmd: AmendOrder | CancelOrder) -> Order | None:
    """The live order a cancel/amend names, or a reject (UNKNOWN_ORDER for anything
    the member may not see, so another member's order ids reveal nothing)."""
    if (not cmd.order_id) == (not cmd.client_order_id):  # inline test of checks.order_ref_failure (hot path)
        failure = order_ref_failure(cmd.order_id, cmd.client_order_id)
        if failure is not None:
            eng.reject(cmd, *failure, account=cmd.account)
            return None
    acct = eng.accounts.get(cmd.account)
    if acct is None or acct.member != cmd.member:
        eng.reject(cmd, NOT_AUTHORIZED, f"no account {cmd.account!r} for this member", "account", account=cmd.account)
        return None
    order_id = cmd.order_id or eng.live_coid.get((cmd.account, cmd.client_order_id), 0)
    o = eng.orders.get(order_id)
    if o is None or o.account != cmd.account or o.leaves_qty <= 0:
        what = "is not open" if o is not None and o.account == cmd.account else "does not exist"
        eng.reject(cmd, UNKNOWN_ORDER, f"order {what}", "order_id" if cmd.order_id else "client_order_id",
                   account=cmd.account, order_id=cmd.order_id, client_order_id=cmd.client_order_id)  # fmt: skip
        return None
    return o


def cancel_order(eng: ExchangeState, cmd: CancelOrder) -> None:
    """Cancel one order. Allowed in every phase (a halted book accepts cancels)."""
    order_id = cmd.order_id
    if order_id and not cmd.client_order_id:  # fast path of _find_live: a live order of the member's account, by id
        o = eng.orders.get(order_id)
        if o is not None and o.leaves_qty > 0 and o.account == cmd.account:
            acct = eng.accounts.get(cmd.account)
            if acct is not None and acct.member == cmd.member:
                cancel(eng, o)
                return
    o = _find_live(eng, cmd)  # everything else, and every refusal
    if o is not None:
        cancel(eng, o)


def cancel_all(eng: ExchangeState, cmd: CancelAll) -> None:
    """Mass cancel by account / instrument / side / session; ``member`` empty = operator."""
    if cmd.account is not None and cmd.member and eng.owned_account(cmd, cmd.member, cmd.account) is None:
        return
    if cmd.instrument is not None and not eng.known_instrument(cmd, cmd.instrument):
        return
    if cmd.session is not None:
        eng.cod_sessions.pop(cmd.session, None)
    for o in [o for o in eng.orders.values() if is_live(o)]:
        if (
            (not cmd.member or o.member == cmd.member)
            and (cmd.account is None or o.account == cmd.account)
            and (cmd.instrument is None or o.instrument == cmd.instrument)
            and (cmd.side is None or o.side == cmd.side)
            and (cmd.session is None or o.session == cmd.session)
        ):
            cancel(eng, o)


def set_cancel_on_disconnect(eng: ExchangeState, cmd: SetCancelOnDisconnect) -> None:
    """Remember (or forget) that ``session``'s orders go when its connection does.
    ``eng.cod_sessions`` is what a restarted gateway cancels: no session survives a
    restart, so every flagged session was disconnected by it."""
    if not cmd.session or len(cmd.session) > 64:
        eng.reject(cmd, R.INVALID_ORDER, "session id must be 1-64 characters", "session")
    elif cmd.enabled:
        eng.cod_sessions[cmd.session] = cmd.member
    else:
        eng.cod_sessions.pop(cmd.session, None)


# ---------------------------------------------------------------------- amend


def amend(eng: ExchangeState, cmd: AmendOrder) -> None:
    """Replace price and/or total quantity. A pure reduction keeps queue priority;
    a price change or an increase re-queues the order (and it may trade at once)."""
    o = _find_live(eng, cmd)
    if o is None:
        return
    spec = eng.specs[o.instrument]
    acct = eng.accounts[o.account]
    failure = check_amend(eng, spec, acct, o, cmd)
    if failure is not None:
        reason, message, field = failure
        eng.reject(
            cmd,
            reason,
            message,
            field,
            account=cmd.account,
            order_id=o.order_id,
            client_order_id=o.client_order_id,
            instrument=o.instrument,
        )
        return
    new_price = o.price if cmd.price is None else cmd.price
    new_qty = o.quantity if cmd.quantity is None else cmd.quantity
    new_leaves = new_qty - o.cum_qty
    if new_price == o.price and new_leaves <= o.leaves_qty:
        if new_leaves < o.leaves_qty:
            reduce_leaves(eng, o, new_leaves)
        eng.out.append(report(eng, o, "replaced"))
        return
    requeue(eng, spec, acct, o, new_price, new_qty)


def requeue(eng: ExchangeState, spec: InstrumentSpec, acct: Account, o: Order, price: int, qty: int) -> None:
    """Take the order out of its queue, re-hold for the new terms, and re-enter it as a
    fresh copy (same order id, new time priority) that may match at once."""
    book = eng.books[o.instrument]
    out = eng.out
    if o.resting:
        o.resting = False
        level_qty = book.side(o.side).reduce(o.price, o.leaves_qty, True)
        out.append(BookLevel(seq=eng.seq, ts=eng.ts, instrument=o.instrument, side=o.side, price=o.price, quantity=level_qty))  # type: ignore[arg-type]
    new = Order(
        order_id=o.order_id,
        client_order_id=o.client_order_id,
        member=o.member,
        account=o.account,
        instrument=o.instrument,
        side=o.side,
        type=o.type,
        price=price,
        quantity=qty,
        tif=o.tif,
        post_only=o.post_only,
        stp=o.stp,
        session=o.session,
        ts=eng.ts,
        leaves_qty=qty - o.cum_qty,
        cum_qty=o.cum_qty,
        cum_notional=o.cum_notional,
        status=o.status,
        alloc=o.alloc,
    )
    old_leaves = o.leaves_qty
    o.leaves_qty = 0  # the old copy is finished; the new one carries the order on
    eng.orders[o.order_id] = new
    if o.side == "buy":
        hold = buy_hold(price, new.leaves_qty, spec.fee_buy_e8)
        hold_cash(acct, hold - o.frozen_cash)
        new.frozen_cash = hold
        o.frozen_cash = 0
        if spec.holding_limits:
            acct.open_buy[o.instrument] += new.leaves_qty - old_leaves
        out.append(report(eng, new, "replaced"))
        out.append(cash_event(acct, eng.seq, eng.ts))
    else:
        assert new.alloc is not None
        held = sum(n for _, n in new.alloc)
        if new.leaves_qty > held:
            extra = freeze_tonnes(acct, o.instrument, new.leaves_qty - held)
            assert extra is not None  # checked by risk.check_amend
            new.alloc += tuple((v, n) for v, n in extra)
            out.append(report(eng, new, "replaced"))
            _holding_events(eng, acct, o.instrument, extra)
        elif new.leaves_qty < held:
            out.append(report(eng, new, "replaced"))
            release_tail(eng, acct, new, held - new.leaves_qty)
        else:
            out.append(report(eng, new, "replaced"))
    execute(eng, spec, book, new)


HANDLERS: dict[type, Handler] = {
    PlaceOrder: place,
    AmendOrder: amend,
    CancelOrder: cancel_order,
    CancelAll: cancel_all,
    SetCancelOnDisconnect: set_cancel_on_disconnect,
}
