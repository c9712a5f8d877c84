"""The desks' data: auction rounds and their sealed bids, block proposals, the retirement registry.

Plain state (msgspec Structs, part of every engine snapshot) with no rules: the rules
that change it live in ``auction``, ``blocks`` and ``retirement``. Kept below those
modules so the exchange state (``state.ExchangeState``) can hold the desks without
importing any rule module.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from carbonx.engine.schema import AuctionInfo, AuctionResults, Certificate, NeutralityEvent

TieRule = Literal["time", "random", "pro_rata"]
PriceRule = Literal["lowest_filled", "highest_rejected"]
UnderRule = Literal["fill", "cancel"]


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """The settings that distinguish the rule sets; see ``clear`` for their meaning."""

    ties: TieRule
    price: PriceRule
    undersubscribed: UnderRule
    irrevocable: bool = False


class Bid(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One sealed bid. ``prio`` is the seq of the command that gave it its time
    priority (submission, or the last amend that raised it or changed its price).
    Only ints and strs inside, so it can stay out of the cycle collector (``gc=False``):
    100,000 bids must not slow every collection during clearing."""

    bid_id: int
    auction_id: int
    client_bid_id: str
    member: str
    account: str
    price: int
    quantity: int
    prio: int
    frozen: int  # fen held for this bid: price * quantity while live
    status: str = "active"
    allocated: int = 0
    amount: int = 0
    seq: int = 0  # seq and ts of the bid's last change
    ts: int = 0


class Auction(msgspec.Struct, kw_only=True):
    """An auction round: its public record, its rules and seed, and its sealed bids."""

    info: AuctionInfo
    rules: Rules
    seed: int
    bids: dict[int, Bid] = {}
    declared: dict[str, int] = {}  # account -> declared tonnes of its live bids
    client_ids: dict[str, dict[str, int]] = {}  # account -> live client_bid_id -> bid_id
    results: AuctionResults | None = None


class AuctionDesk(msgspec.Struct, kw_only=True):
    """Every auction round and its bids; ``proceeds`` is the fen paid by winners to
    the issuing authority (the counterpart of the tonnes issued), kept for audits."""

    next_auction_id: int = 1
    next_bid_id: int = 1
    auctions: dict[int, Auction] = {}
    proceeds: int = 0
    issued: int = 0  # tonnes credited to winners over all auctions


class Proposal(msgspec.Struct, kw_only=True):
    """One block proposal and what the proposer has frozen for it.

    ``vintage`` is None when the proposer did not restrict the vintage (instruments
    without vintages always use None here; their holdings live under vintage 0).
    ``frozen_cash`` is the buyer-proposer's hold; ``alloc`` the seller-proposer's
    frozen ``[[vintage, tonnes], ...]``. ``seq``/``ts`` are those of the last change.
    """

    block_id: int
    instrument: str
    side: str  # the proposer's side
    price: int
    quantity: int
    vintage: int | None
    proposer_account: str
    proposer_member: str
    counterparty_account: str
    counterparty_member: str
    state: str = "proposed"
    trade_id: int = 0
    frozen_cash: int = 0
    alloc: list[list[int]] = []
    seq: int = 0
    ts: int = 0


class BlockDesk(msgspec.Struct, kw_only=True):
    """Today's block proposals by id (open ones and those finished today)."""

    next_block_id: int = 1
    proposals: dict[int, Proposal] = {}


class Registry(msgspec.Struct, kw_only=True):
    """Every certificate and neutrality event ever issued, and the tonnes retired."""

    next_certificate_id: int = 1
    certificates: dict[int, Certificate] = {}
    events: dict[str, NeutralityEvent] = {}  # current state of each event
    event_retirements: dict[str, list[int]] = {}  # event id -> retirement certificate ids
    retired_total: dict[str, int] = {}  # instrument -> tonnes retired, all accounts
