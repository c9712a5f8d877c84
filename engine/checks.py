"""Rule checks shared by several rule modules, each written once.

Every check returns a ``Failure`` — ``(reason, message, field)`` for the first rule
broken — or None, and touches nothing; the handler turns a failure into a Reject with
``ExchangeState.reject``. The rule modules (``risk``, ``matching``, ``admin``,
``auction``, ``blocks``, ``retirement``) call these; the gateway calls the id checks
(``valid_client_id``, ``order_ref_failure``) so its answers are the engine's.

- prices: ``price_failure`` (positive, on the tick, inside a band) and its parts
  ``tick_failure`` and ``band_failure``;
- vintages: ``vintage_failure``;
- holdings: ``shortfall`` says why an account's tradable tonnes do not cover a sale,
  block or retirement;
- funds and limits: ``funds_failure``, ``holding_limit_failure``;
- parties: ``BLOCKED`` (the kill-switch answer), ``blocked_failure``;
- ids: ``valid_id``, ``valid_client_id``, ``order_ref_failure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbonx.engine import reasons as R
from carbonx.engine.accounts import Account, total_held
from carbonx.engine.reasons import Failure as Failure  # (reason, message, field), with the reason table

if TYPE_CHECKING:
    from carbonx.engine.config import InstrumentSpec
    from carbonx.engine.state import ExchangeState


# ---------------------------------------------------------------------- prices


def tick_failure(price: int, tick: int, what: str = "price", field: str = "price") -> Failure | None:
    """``price`` must be positive (INVALID_PRICE) and a multiple of ``tick`` (INVALID_TICK)."""
    if price <= 0:
        return R.INVALID_PRICE, f"{what} must be positive", field
    if price % tick:
        return R.INVALID_TICK, f"{what} must be a multiple of the tick {tick / 100:.2f}", field
    return None


def band_failure(price: int, lower: int, upper: int, what: str = "price", field: str = "price") -> Failure | None:
    """``lower <= price <= upper`` (PRICE_OUT_OF_BAND otherwise)."""
    if price < lower or price > upper:
        return R.PRICE_OUT_OF_BAND, f"{what} outside the band [{lower / 100:.2f}, {upper / 100:.2f}]", field
    return None


def price_failure(price: int, tick: int, lower: int, upper: int, what: str = "price", field: str = "price") -> Failure | None:
    """Positive, on the tick, inside [lower, upper]: the price rule of orders, amends and blocks."""
    return tick_failure(price, tick, what, field) or band_failure(price, lower, upper, what, field)


# ---------------------------------------------------------------------- vintages


def vintage_failure(spec: InstrumentSpec, vintage: int | None, *, required: bool, reason: str = R.INVALID_ORDER) -> Failure | None:
    """A vintage given for ``spec`` must be listed; an instrument without vintages takes
    none. ``None`` or 0 means "none given": an error only when ``required`` (deposits,
    withdrawals and auctions name the vintage; blocks and retirements may take any,
    oldest first)."""
    if not spec.vintages:
        return (reason, f"{spec.symbol} has no vintages", "vintage") if vintage else None
    if not vintage:
        return (reason, f"{spec.symbol} needs a vintage, one of {list(spec.vintages)}", "vintage") if required else None
    if vintage not in spec.vintages:
        return reason, f"vintage {vintage} is not listed for {spec.symbol} ({list(spec.vintages)})", "vintage"
    return None


# ---------------------------------------------------------------------- holdings, funds, limits


def shortfall(acct: Account, spec: InstrumentSpec, qty: int, vintage: int | None = None, *, resale: bool = True) -> Failure:
    """Why ``acct``'s tradable tonnes (of ``vintage``; None = any) do not cover ``qty``:
    T1_RESALE when today's purchases would cover it (``resale``: a sale or block, under
    T+1), otherwise INSUFFICIENT_HOLDINGS naming the buckets that do not count. Call it
    once the holding is known to be short (e.g. ``freeze_tonnes`` returned None)."""
    held = [p for v, p in acct.holdings.get(spec.symbol, {}).items() if vintage is None or v == vintage]
    have = sum(p.tradable for p in held)
    what = f" of vintage {vintage}" if vintage else ""
    if resale and spec.t1_resale and have + sum(p.locked for p in held) >= qty:
        return R.T1_RESALE, f"only {have} t{what} sellable today; tonnes bought today are sellable next trading day", "quantity"
    others = [
        f"{n} t {name}"
        for name, n in (
            ("compliance-only", sum(p.compliance_only for p in held)),
            ("locked until next trading day", sum(p.locked for p in held)),
            ("frozen by open orders or blocks", sum(p.frozen for p in held)),
        )
        if n
    ]
    hint = f" (not usable: {', '.join(others)})" if others else ""
    return R.INSUFFICIENT_HOLDINGS, f"needs {qty} t{what} tradable, account has {have} t{hint}", "quantity"


def funds_failure(acct: Account, need: int, field: str = "quantity") -> Failure | None:
    """Full pre-funding: ``need`` fen must be available (orders, amends, blocks, bids)."""
    if acct.available < need:
        return R.INSUFFICIENT_FUNDS, f"needs {need / 100:.2f} CNY available, account has {acct.available / 100:.2f}", field
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


# ---------------------------------------------------------------------- parties

BLOCKED: Failure = (R.ACCOUNT_BLOCKED, "account or member is blocked (kill switch)", "account")


def blocked_failure(eng: ExchangeState, acct: Account) -> Failure | None:
    """The kill switch: ``BLOCKED`` if the account or its member is blocked."""
    return BLOCKED if acct.blocked or eng.members[acct.member].blocked else None


# ---------------------------------------------------------------------- ids

MAX_ID = 64  # member, account, key and event ids
MAX_CLIENT_ID = 36  # client order and bid ids


def valid_id(value: str) -> bool:
    """1-64 printable ASCII characters, no spaces (members, accounts, key ids, events)."""
    return 0 < len(value) <= MAX_ID and value.isascii() and value.isprintable() and " " not in value


def valid_client_id(value: str) -> bool:
    """1-36 printable ASCII characters (PROTOCOL.md, Values): client order and bid ids."""
    return 0 < len(value) <= MAX_CLIENT_ID and value.isascii() and value.isprintable()


def order_ref_failure(order_id: int, client_order_id: str) -> Failure | None:
    """An order reference (amend, cancel, order.get) names exactly one of an exchange
    ``order_id`` (0 = none) or a non-empty ``client_order_id`` ("" = none): INVALID_ORDER
    otherwise. The engine applies it to AmendOrder/CancelOrder; readers call it first."""
    if bool(order_id) == bool(client_order_id):
        return R.INVALID_ORDER, "give exactly one of order_id or a non-empty client_order_id", "order_id"
    return None
