"""The one schema module: every command into and every event out of the engine.

Engine, journal, gateway, benchmarks and client all share these msgspec Structs.
Commands are a tagged union on field ``c``; events a tagged union on ``e``. Inside
the engine every price and amount of money is an integer number of fen (0.01 CNY,
which is also the price tick unit), every quantity an integer number of tonnes and
every timestamp integer nanoseconds since the Unix epoch. Decimal strings exist only
on the wire (see ``engine.units``).

Commands carry their own ``ts``: the engine never reads a clock. Commands issued on
behalf of a broker carry ``member`` (the authenticated member id); the engine checks
that the member owns the account, so authorisation is deterministic and replayable.
Operator commands carry no member: only the admin listener can issue them.

``engine.apply`` assigns every command a global sequence number ``seq``; every
event it causes carries that ``seq`` (the journal sequence of its command) and ``ts``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["day", "gtc", "ioc", "fok"]
Stp = Literal["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]
ParticipantType = Literal["covered_entity", "institution", "individual"]
ExecType = Literal["new", "trade", "cancelled", "replaced", "expired", "rejected"]
OrdStatus = Literal["new", "partially_filled", "filled", "cancelled", "expired", "rejected"]
Phase = Literal["closed", "open", "halted", "auction"]
RuleSet = Literal["shanghai", "eu", "quebec", "rggi"]
AuctionState = Literal["scheduled", "open", "closed", "cleared", "cancelled"]
BidStatus = Literal["active", "amended", "withdrawn", "won", "partially_won", "lost", "cancelled"]
BlockState = Literal["proposed", "accepted", "declined", "cancelled", "expired"]
Purpose = Literal["public_welfare", "event_neutrality", "compliance_offset"]
Scope = Literal["read", "trade"]  # an API key's rights: queries and private channels / order entry
Role = Literal["viewer", "operator", "admin"]  # an operator identity's rights (docs/operations.md, Access)

PARTICIPANT_TYPES: tuple[str, ...] = ("covered_entity", "institution", "individual")


# --------------------------------------------------------------------------- commands


class Command(msgspec.Struct, tag_field="c", kw_only=True, omit_defaults=True, gc=False):
    """Base of every command. ``ts`` is the time the gateway received it."""

    ts: int


# -- orders (broker) --


class PlaceOrder(Command, tag="place", kw_only=True):
    member: str
    account: str
    instrument: str
    side: Side
    type: OrderType = "limit"
    # fen: required for a limit order, absent for a market order (the engine rejects a
    # market order with a price, INVALID_ORDER). Journals written before this was
    # optional omit it for market orders and carry -1 for a market order with a price.
    price: int | None = None
    quantity: int
    tif: TimeInForce = "day"
    post_only: bool = False
    stp: Stp = "cancel_newest"
    client_order_id: str = ""
    session: str = ""  # gateway session that placed it (cancel-on-disconnect)


class AmendOrder(Command, tag="amend", kw_only=True):
    member: str
    account: str
    order_id: int = 0  # 0 = look up by client_order_id
    client_order_id: str = ""
    price: int | None = None
    quantity: int | None = None  # new total order quantity (cum_qty + leaves_qty)


class CancelOrder(Command, tag="cancel", kw_only=True):
    member: str
    account: str
    order_id: int = 0
    client_order_id: str = ""


class CancelAll(Command, tag="cancel_all", kw_only=True):
    """Mass cancel. ``member`` empty = operator (any member). Filters are ANDed."""

    member: str = ""
    account: str | None = None
    instrument: str | None = None
    side: Side | None = None
    session: str | None = None  # cancel-on-disconnect


class SetCancelOnDisconnect(Command, tag="cod", kw_only=True):
    """A session asked that its open orders be cancelled when its connection drops.
    Journaled, so orders of sessions that a crash disconnected are cancelled at
    start-up too (a ``CancelAll`` with ``session`` clears the flag)."""

    member: str
    session: str
    enabled: bool


# -- operator: members, accounts, money --


class CreateMember(Command, tag="member_create", kw_only=True):
    member: str
    key_id: str
    secret_hash: str  # salted hash, never the secret itself


class CreateAccount(Command, tag="account_create", kw_only=True):
    account: str
    member: str
    type: ParticipantType


class Deposit(Command, tag="deposit", kw_only=True):
    """Cash (fen) and/or tonnes of an instrument (and vintage) into an account."""

    account: str
    cash: int = 0
    instrument: str | None = None
    quantity: int = 0
    vintage: int | None = None
    compliance_only: bool = False


class Withdraw(Command, tag="withdraw", kw_only=True):
    account: str
    cash: int = 0
    instrument: str | None = None
    quantity: int = 0
    vintage: int | None = None


class SetBlocked(Command, tag="set_blocked", kw_only=True):
    """Kill switch: block (or unblock) a member or one account."""

    member: str | None = None
    account: str | None = None
    blocked: bool = True


# -- operator: instruments and the trading day --


class SetHalt(Command, tag="set_halt", kw_only=True):
    instrument: str
    halted: bool


class SetReference(Command, tag="set_reference", kw_only=True):
    instrument: str
    price: int


class DayOpen(Command, tag="day_open", kw_only=True):
    pass


class DayClose(Command, tag="day_close", kw_only=True):
    pass


class Tick(Command, tag="tick", kw_only=True):
    """Lets the engine notice session boundaries (phase changes) at ``ts``."""


class GatewayLost(Command, tag="gateway_lost", kw_only=True):
    """Cluster mode: a gateway's life ended without it saying so (its liveness key expired, or it
    came back with a new boot nonce). ``gateway`` is that life's session id prefix,
    ``<gateway id>.<boot nonce>``: every cancel-on-disconnect session whose id starts with
    ``gateway + "."`` has its open orders cancelled (``GATEWAY_LOST``) and its flag cleared.
    Published by the active engine only (docs/cluster.md, "Gateway loss")."""

    gateway: str


class SnapshotMark(Command, tag="snapshot", kw_only=True):
    """Operator asked for a snapshot; journaled so audits see it."""


class SetSchedule(Command, tag="set_schedule", kw_only=True):
    """The operator's switch for the scheduled trading day (``admin.day_due``): while it is
    off the gateway's clock neither opens nor closes the day; the operator does."""

    enabled: bool


# -- auctions (paid competitive allocation) --


class AuctionCreate(Command, tag="auction_create", kw_only=True):
    instrument: str
    vintage: int | None = None
    quantity: int
    reserve_price: int | None = None  # fen; or computed from the fields below
    reserve_lookback_days: int | None = None
    reserve_factor_pct: int = 100  # 100 or 120
    reserve_cap: int | None = None
    rule_set: RuleSet = "shanghai"
    eligible: list[str] | None = None
    caps: dict[str, int] | None = None  # participant type -> max declared tonnes
    min_lot: int = 1
    irrevocable: bool | None = None  # None = the rule set's default
    suspend_trading: bool = False
    start_ts: int | None = None  # bidding window, informative + enforced if set
    end_ts: int | None = None
    seed: int = 0  # random draw seed, fixed at creation (chosen by the gateway)


class AuctionOpen(Command, tag="auction_open", kw_only=True):
    auction_id: int


class AuctionClose(Command, tag="auction_close", kw_only=True):
    """Close the window, clear, settle and publish."""

    auction_id: int


class AuctionCancel(Command, tag="auction_cancel", kw_only=True):
    auction_id: int


class AuctionBid(Command, tag="auction_bid", kw_only=True):
    member: str
    auction_id: int
    account: str
    price: int
    quantity: int
    client_bid_id: str = ""


class AuctionAmendBid(Command, tag="auction_amend", kw_only=True):
    member: str
    auction_id: int
    bid_id: int
    price: int | None = None
    quantity: int | None = None


class AuctionWithdrawBid(Command, tag="auction_withdraw", kw_only=True):
    member: str
    auction_id: int
    bid_id: int


# -- block trades --


class BlockPropose(Command, tag="block_propose", kw_only=True):
    member: str
    account: str
    instrument: str
    side: Side
    price: int
    quantity: int
    counterparty_account: str
    vintage: int | None = None


class BlockAccept(Command, tag="block_accept", kw_only=True):
    member: str
    account: str
    block_id: int


class BlockDecline(Command, tag="block_decline", kw_only=True):
    member: str
    account: str
    block_id: int


class BlockCancel(Command, tag="block_cancel", kw_only=True):
    member: str
    account: str
    block_id: int


# -- retirement --


class Retire(Command, tag="retire", kw_only=True):
    member: str
    account: str
    instrument: str
    quantity: int
    purpose: Purpose
    beneficiary: str
    vintage: int | None = None
    event_id: str | None = None


class EventCreate(Command, tag="event_create", kw_only=True):
    event_id: str
    name: str
    footprint: int  # tonnes


# -- supervision (operator; docs/supervision.md) --


class SetRelated(Command, tag="related_set", kw_only=True):
    """Declare (or replace) a related-party group: accounts surveillance treats as one
    beneficial owner (trades between them are wash-trade candidates). An empty ``accounts``
    dissolves the group. Changes nothing in trading."""

    group: str
    accounts: list[str]


class AckAlert(Command, tag="alert_ack", kw_only=True):
    """An operator acknowledged surveillance alert ``alert_id``. Journaled so the ack
    survives restarts; the engine only echoes it (``AlertAcked``): alerts are derived from
    the event stream by ``carbonx.engine.supervision``, which checks the id exists."""

    alert_id: int
    operator: str = ""
    note: str = ""


# -- access: API keys and operator identities (engine/access.py) --


class KeyCreate(Command, tag="key_create", kw_only=True):
    """A new API key for a member (``member``) or an operator identity (``operator``):
    exactly one of the two. ``secret_hash`` is the salted hash (the secret is shown once,
    by the gateway, and never stored). ``scopes`` apply to member keys (operator keys take
    their identity's role); ``allow`` is a CIDR allow-list of source addresses (empty =
    anywhere); ``expires_ts`` 0 = never."""

    key_id: str
    secret_hash: str
    member: str = ""
    operator: str = ""
    label: str = ""
    scopes: list[str] = []
    allow: list[str] = []
    expires_ts: int = 0


class KeyRotate(Command, tag="key_rotate", kw_only=True):
    """A new secret for a key; the old one keeps working for ``grace_ns`` more (0 = none)."""

    key_id: str
    secret_hash: str
    grace_ns: int = 0


class KeyRevoke(Command, tag="key_revoke", kw_only=True):
    """The key stops working at once (the gateway closes its sessions)."""

    key_id: str


class OperatorCreate(Command, tag="operator_create", kw_only=True):
    """A named operator identity with a role and its first key."""

    operator: str
    role: Role
    key_id: str
    secret_hash: str
    label: str = ""
    allow: list[str] = []
    expires_ts: int = 0


class OperatorSetRole(Command, tag="operator_set_role", kw_only=True):
    """Give an operator identity another role (its keys and their sessions keep working, with
    the new rights)."""

    operator: str
    role: Role


AnyCommand = (
    PlaceOrder
    | AmendOrder
    | CancelOrder
    | CancelAll
    | SetCancelOnDisconnect
    | CreateMember
    | CreateAccount
    | Deposit
    | Withdraw
    | SetBlocked
    | SetHalt
    | SetReference
    | DayOpen
    | DayClose
    | Tick
    | SnapshotMark
    | SetSchedule
    | GatewayLost
    | AuctionCreate
    | AuctionOpen
    | AuctionClose
    | AuctionCancel
    | AuctionBid
    | AuctionAmendBid
    | AuctionWithdrawBid
    | BlockPropose
    | BlockAccept
    | BlockDecline
    | BlockCancel
    | Retire
    | EventCreate
    | SetRelated
    | AckAlert
    | KeyCreate
    | KeyRotate
    | KeyRevoke
    | OperatorCreate
    | OperatorSetRole
)


# --------------------------------------------------------------------------- events


class Event(msgspec.Struct, tag_field="e", gc=False):
    """Base of every event: the ``seq`` of the command that caused it, and its ``ts``.

    The events built on the order path (ExecReport, Trade, BookLevel, Balance, Holding)
    are not keyword-only: the engine builds them positionally, which is ~5x cheaper
    for a 20-field struct. Everything else is keyword-only for safety.

    ``gc=False`` (inherited, as on Command): messages never form reference cycles, and
    keeping millions of them out of the cyclic collector's books saved ~25% of the
    engine's time (docs/performance.md)."""

    seq: int
    ts: int


class Reject(Event, tag="reject", kw_only=True):
    """A command was refused; nothing changed. ``reason`` is a stable code."""

    command: str  # the command's tag
    reason: str
    message: str
    field: str | None = None
    member: str = ""
    account: str = ""
    client_order_id: str = ""
    order_id: int = 0


class ExecReport(Event, tag="exec"):
    """FIX-style execution report. ``cum_notional`` (fen x tonnes) gives avg_price."""

    order_id: int
    client_order_id: str
    member: str
    account: str
    instrument: str
    side: Side
    type: OrderType
    price: int
    quantity: int
    exec_type: ExecType
    status: OrdStatus
    cum_qty: int
    leaves_qty: int
    cum_notional: int
    tif: TimeInForce = "day"
    last_qty: int = 0
    last_price: int = 0
    trade_id: int = 0
    reason: str = ""
    session: str = ""


class Trade(Event, tag="trade"):
    trade_id: int
    instrument: str
    price: int
    quantity: int
    aggressor: Side
    buy_order_id: int
    sell_order_id: int
    buy_account: str
    sell_account: str
    buy_member: str
    sell_member: str
    buy_fee: int = 0
    sell_fee: int = 0
    block: bool = False
    vintages: list[tuple[int, int]] | None = None  # (vintage, tonnes) delivered


class BookLevel(Event, tag="level"):
    """A price level's new total quantity (0 = level removed)."""

    instrument: str
    side: Side
    price: int
    quantity: int


class Balance(Event, tag="balance"):
    account: str
    member: str
    available: int
    frozen: int


class Holding(Event, tag="holding"):
    account: str
    member: str
    instrument: str
    vintage: int
    tradable: int
    frozen: int
    compliance_only: int
    locked: int  # bought today, sellable next trading day (T+1 resale)


class MemberCreated(Event, tag="member_created", kw_only=True):
    member: str
    key_id: str
    secret_hash: str


class AccountCreated(Event, tag="account_created", kw_only=True):
    account: str
    member: str
    type: str


class BlockedChanged(Event, tag="blocked", kw_only=True):
    member: str | None
    account: str | None
    blocked: bool


class InstrumentStatus(Event, tag="status", kw_only=True):
    instrument: str
    phase: Phase
    halted: bool


class ReferencePrice(Event, tag="reference", kw_only=True):
    instrument: str
    price: int
    lower: int
    upper: int


class DailyStats(msgspec.Struct, kw_only=True):
    open: int
    close: int
    high: int
    low: int
    volume: int
    notional: int


class DayOpened(Event, tag="day_opened", kw_only=True):
    trading_date: str  # YYYY-MM-DD, exchange local


class DayClosed(Event, tag="day_closed", kw_only=True):
    trading_date: str
    closes: dict[str, DailyStats]


class SnapshotMarked(Event, tag="snapshot_marked", kw_only=True):
    pass


class ScheduleChanged(Event, tag="schedule_changed", kw_only=True):
    """The scheduled trading day was switched on or off (``SetSchedule``)."""

    enabled: bool


# -- auctions --


class AuctionInfo(msgspec.Struct, kw_only=True):
    auction_id: int
    instrument: str
    vintage: int | None
    quantity: int
    reserve_price: int
    reserve_inputs: dict[str, int] | None  # lookback_days, factor_pct, vwap, cap, ...
    rule_set: str
    eligible: list[str]
    caps: dict[str, int]
    min_lot: int
    irrevocable: bool
    suspend_trading: bool
    start_ts: int | None
    end_ts: int | None
    state: AuctionState
    created_ts: int


class AuctionResults(msgspec.Struct, kw_only=True):
    quantity_offered: int
    valid_bid_quantity: int
    bidders: int
    winners: int
    quantity_sold: int
    clearing_price: int
    total_amount: int
    cover_ratio_bp: int  # valid bid quantity / offered, in basis points


class AuctionUpdate(Event, tag="auction", kw_only=True):
    """Public: an auction was created or changed state (with results once cleared)."""

    auction: AuctionInfo
    results: AuctionResults | None = None


class BidUpdate(Event, tag="bid", kw_only=True):
    """Private to the bidder's member (and operators): a bid's new state."""

    auction_id: int
    bid_id: int
    client_bid_id: str
    member: str
    account: str
    price: int
    quantity: int
    status: BidStatus
    allocated: int = 0
    amount: int = 0  # fen paid on settlement


# -- block trades --


class BlockUpdate(Event, tag="block_update", kw_only=True):
    """Private to both parties' members: a block proposal and its state."""

    block_id: int
    instrument: str
    side: Side  # the proposer's side
    price: int
    quantity: int
    proposer_account: str
    proposer_member: str
    counterparty_account: str
    counterparty_member: str
    state: BlockState
    trade_id: int = 0
    vintage: int | None = None


# -- retirement --


class Certificate(Event, tag="certificate", kw_only=True):
    """Public proof of a retirement (``seq`` = journal sequence of the retire command).

    ``vintage`` is set when all tonnes are of one vintage; ``vintages`` always breaks a
    retirement of a vintaged instrument down as (vintage, tonnes). An event's
    neutrality certificate has ``account``/``member``/``instrument`` empty, purpose
    ``event_neutrality`` and ``covers``: the retirement certificates it sums up."""

    certificate_id: int
    account: str
    member: str
    instrument: str
    vintage: int | None
    quantity: int
    purpose: str
    beneficiary: str
    event_id: str | None = None
    vintages: list[tuple[int, int]] | None = None
    covers: list[int] | None = None


class NeutralityEvent(Event, tag="neutrality_event", kw_only=True):
    """A registered large event and its retirement coverage."""

    event_id: str
    name: str
    footprint: int
    retired: int
    certificate_id: int | None = None


# -- supervision --


class RelatedGroup(Event, tag="related_group", kw_only=True):
    """A related-party group's new membership (empty: dissolved). Operator-only."""

    group: str
    accounts: list[str]


class AlertAcked(Event, tag="alert_acked", kw_only=True):
    """Surveillance alert ``alert_id`` was acknowledged. Operator-only."""

    alert_id: int
    operator: str
    note: str


# -- access --


class KeyUpdate(Event, tag="key", kw_only=True):
    """Private to operators: an API key was created, rotated or revoked (never its hashes).
    ``state``: active | revoked; ``grace_until`` (ns) is when a rotated-out secret stops working."""

    key_id: str
    member: str
    operator: str
    label: str
    scopes: list[str]
    allow: list[str]
    expires_ts: int
    created_ts: int
    state: str
    change: str  # created | rotated | revoked
    grace_until: int = 0


class OperatorCreated(Event, tag="operator_created", kw_only=True):
    operator: str
    role: str
    key_id: str


class OperatorRoleSet(Event, tag="operator_role_set", kw_only=True):
    operator: str
    role: str
    previous: str


AnyEvent = (
    Reject
    | ExecReport
    | Trade
    | BookLevel
    | Balance
    | Holding
    | MemberCreated
    | AccountCreated
    | BlockedChanged
    | InstrumentStatus
    | ReferencePrice
    | DayOpened
    | DayClosed
    | SnapshotMarked
    | ScheduleChanged
    | AuctionUpdate
    | BidUpdate
    | BlockUpdate
    | Certificate
    | NeutralityEvent
    | RelatedGroup
    | AlertAcked
    | KeyUpdate
    | OperatorCreated
    | OperatorRoleSet
)

command_encoder = msgspec.msgpack.Encoder()
command_decoder: msgspec.msgpack.Decoder[AnyCommand] = msgspec.msgpack.Decoder(AnyCommand)
event_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)
