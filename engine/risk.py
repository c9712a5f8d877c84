"""Pre-trade risk: every check of MARKET_RULES §3, in a fixed order, touching nothing.

``check_place``/``check_amend`` return ``(reason, message, field)`` for the first rule
an order breaks, or None. The order of checks is part of the contract (a test pins
it): who you are, whether you may trade, whether the market is open, the order's own
shape (quantity, tick, band), then whether you can pay or deliver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbonx.engine import reasons as R
from carbonx.engine.accounts import Account, buy_hold, tradable
from carbonx.engine.checks import (
    BLOCKED,
    Failure,
    blocked_failure,
    funds_failure,
    holding_limit_failure,
    price_failure,
    shortfall,
    valid_client_id,
)

if TYPE_CHECKING:
    from carbonx.engine.book import Book, Order
    from carbonx.engine.config import InstrumentSpec
    from carbonx.engine.schema import AmendOrder, PlaceOrder
    from carbonx.engine.state import ExchangeState, InstrumentState

__all__ = ["Failure", "check_amend", "check_place", "funds_failure", "holding_limit_failure", "valid_client_id"]


def _phase_failure(eng: ExchangeState, symbol: str) -> Failure | None:
    phase = eng.phase(symbol, eng.ts)
    if phase == "open":
        return None
    if phase == "halted":
        return R.INSTRUMENT_HALTED, f"{symbol} is halted: only cancels are accepted", "instrument"
    if phase == "auction":
        return R.MARKET_CLOSED, f"listing trading in {symbol} is suspended for an auction", "instrument"
    return R.MARKET_CLOSED, f"{symbol} is not in a trading session", "instrument"


def _price_failure(eng: ExchangeState, spec: InstrumentSpec, price: int | None) -> Failure | None:
    if price is None:
        return R.INVALID_PRICE, "a limit order needs a price", "price"
    st = eng.instruments[spec.symbol]
    return price_failure(price, spec.tick, st.lower, st.upper)


def _quantity_failure(spec: InstrumentSpec, qty: int) -> Failure | None:
    if qty < spec.min_qty or qty > spec.max_qty:
        hint = " (larger orders are block trades)" if qty >= spec.block_min_qty else ""
        return R.INVALID_QUANTITY, f"quantity must be {spec.min_qty} to {spec.max_qty} t{hint}", "quantity"
    if qty % spec.lot:
        return R.INVALID_QUANTITY, f"quantity must be a multiple of the lot {spec.lot} t", "quantity"
    return None


def _holdings_failure(spec: InstrumentSpec, acct: Account, need: int) -> Failure | None:
    return None if tradable(acct, spec.symbol) >= need else shortfall(acct, spec, need)


def check_place(
    eng: ExchangeState, spec: InstrumentSpec, st: InstrumentState, book: Book, acct: Account, cmd: PlaceOrder
) -> Failure | None:
    """First rule a new order breaks, or None. Written straight-line: it runs for
    every order, and each avoided call is ~0.1 µs."""
    if acct.blocked or eng.members[acct.member].blocked:  # inline blocked_failure (hot path)
        return BLOCKED
    if acct.type not in spec.eligible:
        return R.NOT_ELIGIBLE, f"{acct.type} accounts may not trade {spec.symbol}", "account"
    window = eng.windows.get(spec.symbol)  # inline fast path of eng.phase(): open, in session
    if (
        window is None or not window[0] <= eng.ts < window[1] or window[2] != "open" or st.halted or st.suspended_by or not eng.day_open
    ) and eng.phase(spec.symbol, eng.ts) != "open":
        return _phase_failure(eng, spec.symbol)
    coid = cmd.client_order_id
    if coid:
        if not valid_client_id(coid):
            return R.INVALID_ORDER, "client_order_id must be 1-36 printable ASCII characters", "client_order_id"
        if (cmd.account, coid) in eng.live_coid:
            return R.DUPLICATE_CLIENT_ORDER_ID, f"client_order_id {coid!r} is already used by a live order", "client_order_id"
    qty = cmd.quantity
    if qty < spec.min_qty or qty > spec.max_qty or qty % spec.lot:
        return _quantity_failure(spec, qty)
    is_buy = cmd.side == "buy"
    if cmd.type == "market":
        if cmd.price is not None:
            return R.INVALID_ORDER, "a market order takes no price", "price"
        if cmd.post_only:
            return R.INVALID_ORDER, "a market order cannot be post-only", "post_only"
        price = st.upper if is_buy else st.lower
    else:
        limit = cmd.price
        if limit is None or limit <= 0 or limit % spec.tick or limit < st.lower or limit > st.upper:  # inline fast path
            return _price_failure(eng, spec, limit)
        price = limit
    if cmd.post_only:
        if cmd.tif in ("ioc", "fok"):
            return R.INVALID_ORDER, "post-only orders must be able to rest (day or gtc)", "post_only"
        best = (book.asks if is_buy else book.bids).top
        if best is not None and (price >= best if is_buy else price <= best):
            return R.POST_ONLY_WOULD_CROSS, "post-only order would trade on arrival", "price"
    if is_buy:
        if spec.holding_limits:
            failure = holding_limit_failure(spec, acct, qty)
            if failure:
                return failure
        notional = price * qty
        rate = spec.fee_buy_e8
        if acct.available >= notional + (notional * rate // 100_000_000 if rate else 0):  # inline fast path (buy_hold)
            return None
        return funds_failure(acct, buy_hold(price, qty, rate))
    by_vintage = acct.holdings.get(spec.symbol)
    if by_vintage is not None and len(by_vintage) == 1:  # fast path: one vintage, enough tradable
        for pos in by_vintage.values():
            if pos.tradable >= qty:
                return None
    return _holdings_failure(spec, acct, qty)


def check_amend(eng: ExchangeState, spec: InstrumentSpec, acct: Account, o: Order, cmd: AmendOrder) -> Failure | None:
    """Rules for replacing a live order's price and/or total quantity."""
    if cmd.price is None and cmd.quantity is None:
        return R.INVALID_ORDER, "amend needs a new price or quantity", "price"
    failure = blocked_failure(eng, acct) or _phase_failure(eng, spec.symbol)
    if failure:
        return failure
    price = o.price if cmd.price is None else cmd.price
    qty = o.quantity if cmd.quantity is None else cmd.quantity
    if cmd.price is not None:
        if o.type == "market":
            return R.ORDER_NOT_AMENDABLE, "a market order has no price to amend", "price"
        failure = _price_failure(eng, spec, price)
        if failure:
            return failure
    if cmd.quantity is not None:
        failure = _quantity_failure(spec, qty)
        if failure:
            return failure
        if qty <= o.cum_qty:
            return R.INVALID_QUANTITY, f"new quantity must exceed the {o.cum_qty} t already filled (cancel instead)", "quantity"
    leaves = qty - o.cum_qty
    if o.post_only and price != o.price:
        best = eng.books[spec.symbol].opposite(o.side).best_price()
        if best is not None and (price >= best if o.side == "buy" else price <= best):
            return R.POST_ONLY_WOULD_CROSS, "post-only order would trade at the new price", "price"
    if o.side == "buy":
        if spec.holding_limits and leaves > o.leaves_qty:
            failure = holding_limit_failure(spec, acct, leaves - o.leaves_qty)
            if failure:
                return failure
        extra = buy_hold(price, leaves, spec.fee_buy_e8) - o.frozen_cash
        return funds_failure(acct, extra, "quantity" if cmd.quantity is not None else "price")
    if leaves > o.leaves_qty:
        return _holdings_failure(spec, acct, leaves - o.leaves_qty)
    return None
