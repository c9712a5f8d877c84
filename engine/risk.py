"""Pre-trade risk: every check of MARKET_RULES §3, in a fixed order, touching nothing.

``check_place``/``check_amend`` return ``(reason, message, field)`` for the first rule
an order breaks, or None. The order of checks is part of the contract (a test pins
it): who you are, whether you may trade, whether the market is open, the order's own
shape (quantity, tick, band), then whether you can pay or deliver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbonx.engine import reasons as R
from carbonx.engine.accounts import Account, buy_hold, total_held, tradable

if TYPE_CHECKING:
    from carbonx.engine.book import Book, Order
    from carbonx.engine.config import InstrumentSpec
    from carbonx.engine.engine import Engine, InstrumentState
    from carbonx.engine.schema import AmendOrder, PlaceOrder

Failure = tuple[str, str, str | None]

MAX_CLIENT_ID = 36


def valid_client_id(value: str) -> bool:
    """1-36 printable ASCII characters (PROTOCOL.md, Values)."""
    return 0 < len(value) <= MAX_CLIENT_ID and value.isascii() and value.isprintable()


def _phase_failure(eng: Engine, symbol: str) -> Failure | None:
    phase = eng.phase(symbol, eng.ts)
    if phase == "open":
        return None
    if phase == "halted":
        return R.INSTRUMENT_HALTED, f"{symbol} is halted: only cancels are accepted", "instrument"
    if phase == "auction":
        return R.MARKET_CLOSED, f"listing trading in {symbol} is suspended for an auction", "instrument"
    return R.MARKET_CLOSED, f"{symbol} is not in a trading session", "instrument"


def _price_failure(eng: Engine, spec: InstrumentSpec, price: int) -> Failure | None:
    if price <= 0:
        return R.INVALID_PRICE, "a limit order needs a positive price", "price"
    if price % spec.tick:
        return R.INVALID_TICK, f"price must be a multiple of the tick {spec.tick / 100:.2f}", "price"
    st = eng.instruments[spec.symbol]
    if price < st.lower or price > st.upper:
        return R.PRICE_OUT_OF_BAND, f"price outside the band [{st.lower / 100:.2f}, {st.upper / 100:.2f}]", "price"
    return None


def _quantity_failure(spec: InstrumentSpec, qty: int) -> Failure | None:
    if qty < spec.min_qty or qty > spec.max_qty:
        hint = " (larger orders are block trades)" if qty >= spec.block_min_qty else ""
        return R.INVALID_QUANTITY, f"quantity must be {spec.min_qty} to {spec.max_qty} t{hint}", "quantity"
    if qty % spec.lot:
        return R.INVALID_QUANTITY, f"quantity must be a multiple of the lot {spec.lot} t", "quantity"
    return None


def holding_limit_failure(spec: InstrumentSpec, acct: Account, extra: int, whose: str = "") -> Failure | None:
    """MARKET_RULES §3 holding limit: what the account holds, plus its live listing buys,
    plus ``extra`` tonnes it may now receive, must stay within its type's limit. Shared
    by listing orders, block trades (``whose`` names the party) and auction bids."""
    limit = spec.holding_limits.get(acct.type)
    if limit is None:
        return None
    projected = total_held(acct, spec.symbol) + acct.open_buy.get(spec.symbol, 0) + extra
    if projected > limit:
        prefix = f"{whose} " if whose else ""
        return R.HOLDING_LIMIT, f"{prefix}would hold up to {projected} t, limit for {acct.type} is {limit} t", "quantity"
    return None


def funds_failure(acct: Account, need: int) -> Failure | None:
    """Full pre-funding: ``need`` fen must be available (shared by orders, blocks, bids)."""
    if acct.available < need:
        return R.INSUFFICIENT_FUNDS, f"needs {need / 100:.2f} CNY available, account has {acct.available / 100:.2f}", "quantity"
    return None


def _holdings_failure(spec: InstrumentSpec, acct: Account, need: int) -> Failure | None:
    have = tradable(acct, spec.symbol)
    if have >= need:
        return None
    if spec.t1_resale:
        locked = sum(p.locked for p in acct.holdings.get(spec.symbol, {}).values())
        if have + locked >= need:
            return R.T1_RESALE, f"only {have} t sellable today; tonnes bought today settle for resale next trading day", "quantity"
    return R.INSUFFICIENT_HOLDINGS, f"needs {need} t tradable, account has {have} t", "quantity"


def check_place(eng: Engine, spec: InstrumentSpec, st: InstrumentState, book: Book, acct: Account, cmd: PlaceOrder) -> Failure | None:
    """First rule a new order breaks, or None. Written straight-line: it runs for
    every order, and each avoided call is ~0.1 µs."""
    if acct.blocked or eng.members[acct.member].blocked:
        return R.ACCOUNT_BLOCKED, "account or member is blocked (kill switch)", "account"
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
        if cmd.price:
            return R.INVALID_ORDER, "a market order takes no price", "price"
        if cmd.post_only:
            return R.INVALID_ORDER, "a market order cannot be post-only", "post_only"
        price = st.upper if is_buy else st.lower
    else:
        price = cmd.price
        if price <= 0 or price % spec.tick or price < st.lower or price > st.upper:
            return _price_failure(eng, spec, price)
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
        return funds_failure(acct, buy_hold(price, qty, spec.fee_buy_e8))
    by_vintage = acct.holdings.get(spec.symbol)
    if by_vintage is not None and len(by_vintage) == 1:  # fast path: one vintage, enough tradable
        for pos in by_vintage.values():
            if pos.tradable >= qty:
                return None
    return _holdings_failure(spec, acct, qty)


def check_amend(eng: Engine, spec: InstrumentSpec, acct: Account, o: Order, cmd: AmendOrder) -> Failure | None:
    """Rules for replacing a live order's price and/or total quantity."""
    if cmd.price is None and cmd.quantity is None:
        return R.INVALID_ORDER, "amend needs a new price or quantity", "price"
    if eng.is_blocked(acct):
        return R.ACCOUNT_BLOCKED, "account or member is blocked (kill switch)", "account"
    failure = _phase_failure(eng, spec.symbol)
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
        if extra > acct.available:
            return R.INSUFFICIENT_FUNDS, f"needs {extra / 100:.2f} CNY more available", "quantity" if cmd.quantity is not None else "price"
        return None
    if leaves > o.leaves_qty:
        return _holdings_failure(spec, acct, leaves - o.leaves_qty)
    return None
