"""Per-method params (msgspec Structs) and the wire values they hold.

Inside the engine prices are integer fen and ids are ints; on the wire prices are decimal
strings and ids are strings. Every method's params is a msgspec Struct with
``forbid_unknown_fields`` so a typo is an error (-32602), never silently ignored; every
string is length-bounded so no input can grow memory. Symbols are checked by dict lookup in
the engine, not by regex (cheaper, and the engine decides anyway).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from carbonx.engine import ranges
from carbonx.engine import reasons as R
from carbonx.engine.schema import OrderType, ParticipantType, Purpose, RuleSet, Side, Stp, TimeInForce
from carbonx.engine.units import UnitError, parse_fen
from carbonx.gateway.protocol.errors import INVALID_PARAMS, INVALID_PARAMS_REASON, RpcError

AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Price = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
Money = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
# Quantities: beyond ±10^12 is -32602 naming the field (as ever); the built command's range
# check (engine.ranges.QUANTITY, 10^9 t, in ``Call.command``) answers INVALID_QUANTITY /
# INVALID_LOT / INVALID_AMOUNT beyond it; the engine's rules check the sign and the instrument's limits.
QTY_WIRE_LIMIT = 10**12
Qty = Annotated[int, msgspec.Meta(ge=-QTY_WIRE_LIMIT, le=QTY_WIRE_LIMIT)]
WireId = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
ClientId = Annotated[str, msgspec.Meta(max_length=36)]
Text = Annotated[str, msgspec.Meta(max_length=128)]
Year = Annotated[int, msgspec.Meta(ge=0, le=ranges.VINTAGE.hi)]
Ts = Annotated[int, msgspec.Meta(ge=ranges.TS.lo, le=ranges.TS.hi)]


def parse_id(value: str) -> int:
    """Wire id -> engine id in ``ranges.ID``. A string that is not a positive int of at
    most 18 digits is an unknown id (-1): the engine answers UNKNOWN_ORDER/_AUCTION/..."""
    if value.isdigit() and len(value) <= ranges.ID_DIGITS and value.isascii():
        n = int(value)
        return n if n > 0 else -1
    return -1


def parse_price(value: str, field: str = "price") -> int:
    """Decimal string -> fen; more than two decimals is off the 0.01 tick; above
    ``ranges.PRICE.hi`` is INVALID_PRICE (0 passes: the engine's rule check refuses it)."""
    try:
        fen = parse_fen(value)
    except UnitError as exc:
        raise RpcError.business(exc.reason, f"{field} {exc}", field) from None
    if fen > ranges.PRICE.hi:
        raise RpcError.business(R.INVALID_PRICE, ranges.PRICE.too_large(field), field)
    return fen


def parse_money(value: str, field: str) -> int:
    """Decimal string -> fen in ``ranges.CASH``; anything else is INVALID_AMOUNT."""
    try:
        fen = parse_fen(value)
    except UnitError as exc:
        raise RpcError.business(R.INVALID_AMOUNT, f"{field} {exc}", field) from None
    if fen > ranges.CASH.hi:
        raise RpcError.business(R.INVALID_AMOUNT, ranges.CASH.too_large(field), field)
    return fen


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every method's params."""


class NoParams(Params):
    pass


class LoginParams(Params):
    key_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class CancelOnDisconnectParams(Params):
    enabled: bool


class ChannelsParams(Params):
    channels: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=48)]], msgspec.Meta(max_length=64)]


class PlaceParams(Params):
    account: AccountId
    instrument: Symbol
    side: Side
    quantity: Qty
    type: OrderType = "limit"
    price: Price | None = None
    time_in_force: TimeInForce = "day"
    post_only: bool = False
    stp: Stp = "cancel_newest"
    client_order_id: ClientId = ""


class OrderRefParams(Params):
    """An order by exchange id or by the client's id (exactly one)."""

    account: AccountId
    order_id: WireId | None = None
    client_order_id: ClientId | None = None


class AmendParams(OrderRefParams):
    price: Price | None = None
    quantity: Qty | None = None


class CancelAllParams(Params):
    account: AccountId | None = None
    instrument: Symbol | None = None
    side: Side | None = None


class OrderListParams(Params):
    account: AccountId
    instrument: Symbol | None = None
    open_only: bool = False


class TradeListParams(Params):
    account: AccountId
    instrument: Symbol | None = None
    since_ts: Ts = 0


class AccountParams(Params):
    account: AccountId


class RetireParams(Params):
    account: AccountId
    instrument: Symbol
    quantity: Qty
    purpose: Purpose
    beneficiary: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    vintage: Year | None = None
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class CertificateParams(Params):
    certificate_id: WireId


class EventParams(Params):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class BlockProposeParams(Params):
    account: AccountId
    instrument: Symbol
    side: Side
    price: Price
    quantity: Qty
    counterparty_account: AccountId
    vintage: Year | None = None


class BlockRefParams(Params):
    account: AccountId
    block_id: WireId


class AuctionRefParams(Params):
    auction_id: WireId


class BidParams(Params):
    auction_id: WireId
    account: AccountId
    price: Price
    quantity: Qty
    client_bid_id: ClientId = ""


class AmendBidParams(Params):
    auction_id: WireId
    bid_id: WireId
    price: Price | None = None
    quantity: Qty | None = None


class WithdrawBidParams(Params):
    auction_id: WireId
    bid_id: WireId


class MyBidsParams(Params):
    auction_id: WireId
    account: AccountId


# -- operators --


class MemberCreateParams(Params):
    member: AccountId
    key_id: AccountId
    secret: Annotated[str, msgspec.Meta(min_length=8, max_length=256)]


class AccountCreateParams(Params):
    account: AccountId
    member: AccountId
    type: ParticipantType


class MoneyMoveParams(Params):
    account: AccountId
    cash: Money | None = None
    instrument: Symbol | None = None
    quantity: Qty = 0
    vintage: Year | None = None


class DepositParams(MoneyMoveParams):
    compliance_only: bool = False


class InstrumentParams(Params):
    instrument: Symbol


class SetReferenceParams(Params):
    instrument: Symbol
    price: Price


class ScheduleParams(Params):
    """``admin.schedule.set``: switch the scheduled trading day on (true) or off (false)."""

    enabled: bool


class BlockedParams(Params):
    member: AccountId | None = None
    account: AccountId | None = None


class AdminCancelAllParams(CancelAllParams):
    member: AccountId | None = None


class ReserveParams(Params):
    lookback_days: Annotated[int, msgspec.Meta(ge=ranges.LOOKBACK_DAYS.lo, le=ranges.LOOKBACK_DAYS.hi)]
    # x the lookback VWAP: a decimal multiplier ("1.0", "1.2") or a whole percentage (120, "120");
    # ``reserve_factor_pct`` converts, the engine checks the range.
    factor: Annotated[str, msgspec.Meta(min_length=1, max_length=8)] | int = "1.0"
    cap: Price | None = None


class AuctionCreateParams(Params):
    instrument: Symbol
    quantity: Qty
    vintage: Year | None = None
    reserve_price: Price | None = None
    reserve: ReserveParams | None = None
    rule_set: RuleSet = "shanghai"
    eligible: Annotated[list[ParticipantType], msgspec.Meta(max_length=3)] | None = None
    caps: dict[ParticipantType, Qty] | None = None
    min_lot: Qty = 1
    irrevocable: bool | None = None
    suspend_trading: bool = False
    start_ts: Ts | None = None
    end_ts: Ts | None = None
    seed: Annotated[int, msgspec.Meta(ge=ranges.SEED.lo, le=ranges.SEED.hi)] | None = None


class EventCreateParams(Params):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    footprint: Qty


def reserve_factor_pct(value: str | int, field: str = "reserve.factor") -> int:
    """``ReserveParams.factor`` as a whole percentage: ``"1.2"`` -> 120 (a multiplier, at most two
    decimals), ``120`` or ``"120"`` -> 120 (a percentage). Out-of-range values pass through: the
    engine's range check (``ranges.FACTOR_PCT``) answers them; a malformed string is -32602."""
    if isinstance(value, int):
        return value
    if value.isdigit() and value.isascii():
        return int(value)
    try:
        return parse_fen(value)  # "1.2" -> 120 hundredths
    except UnitError as exc:
        raise RpcError(INVALID_PARAMS, f"invalid params: {field} {exc}", {"reason": INVALID_PARAMS_REASON, "field": field}) from None


# -- supervision and disclosure (docs/supervision.md, docs/disclosure.md)

MAX_GROUP_ACCOUNTS = 1_000


class RelatedSetParams(Params):
    group: AccountId
    accounts: Annotated[list[AccountId], msgspec.Meta(max_length=MAX_GROUP_ACCOUNTS)]


class AlertListParams(Params):
    detector: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    unacked: bool = False  # only alerts not acknowledged yet
    after_id: Annotated[int, msgspec.Meta(ge=0, le=ranges.INT64_MAX)] = 0  # page: alerts with a larger id
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class AlertAckParams(Params):
    alert_id: WireId
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class DisclosureParams(Params):
    date: Annotated[str, msgspec.Meta(min_length=10, max_length=10)] | None = None  # YYYY-MM-DD; none: the latest report
