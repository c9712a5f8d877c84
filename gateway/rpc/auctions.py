"""Auctions: public reads, bidding (members), and the operator's life cycle (create, open, close, cancel)."""

from __future__ import annotations

import secrets
from typing import Any

from carbonx.engine import auction as auctions
from carbonx.engine import reasons as R
from carbonx.engine.schema import (
    AuctionAmendBid,
    AuctionBid,
    AuctionCancel,
    AuctionClose,
    AuctionCreate,
    AuctionOpen,
    AuctionUpdate,
    AuctionWithdrawBid,
    BidUpdate,
    Event,
)
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import (
    AmendBidParams,
    AuctionCreateParams,
    AuctionRefParams,
    BidParams,
    MyBidsParams,
    NoParams,
    WithdrawBidParams,
    parse_id,
    parse_price,
    reserve_factor_pct,
)
from carbonx.gateway.protocol.views import auction_view, bid_view
from carbonx.gateway.rpc.call import Call, first
from carbonx.gateway.rpc.registry import method


@method("auction.list", NoParams, "public", listener="both")
def list_auctions(call: Call, p: NoParams) -> None:
    out = []
    for info in auctions.list_auctions(call.gw.engine):
        view = auctions.auction_view(call.gw.engine, info.auction_id)
        out.append(auction_view(info, view[1] if view else None))
    call.read({"auctions": out})


@method("auction.get", AuctionRefParams, "public", listener="both")
def get_auction(call: Call, p: AuctionRefParams) -> None:
    view = auctions.auction_view(call.gw.engine, parse_id(p.auction_id))
    if view is None:
        raise RpcError.business(R.UNKNOWN_AUCTION, f"no auction {p.auction_id!r}", "auction_id")
    call.read(auction_view(*view))


@method("auction.bid", BidParams, "private", order=True)
def bid(call: Call, p: BidParams) -> None:
    cmd = AuctionBid(
        ts=call.recv_ns, member=call.broker(), auction_id=parse_id(p.auction_id), account=p.account,
        price=parse_price(p.price), quantity=p.quantity, client_bid_id=p.client_bid_id,
    )  # fmt: skip
    call.command(cmd, lambda events: bid_view(first(events, BidUpdate)))


@method("auction.amend_bid", AmendBidParams, "private", order=True)
def amend(call: Call, p: AmendBidParams) -> None:
    cmd = AuctionAmendBid(
        ts=call.recv_ns, member=call.broker(), auction_id=parse_id(p.auction_id), bid_id=parse_id(p.bid_id),
        price=None if p.price is None else parse_price(p.price), quantity=p.quantity,
    )  # fmt: skip
    call.command(cmd, lambda events: bid_view(first(events, BidUpdate)))


@method("auction.withdraw_bid", WithdrawBidParams, "private", order=True)
def withdraw(call: Call, p: WithdrawBidParams) -> None:
    cmd = AuctionWithdrawBid(ts=call.recv_ns, member=call.broker(), auction_id=parse_id(p.auction_id), bid_id=parse_id(p.bid_id))
    call.command(cmd, lambda events: bid_view(first(events, BidUpdate)))


@method("auction.my_bids", MyBidsParams, "private")
def my_bids(call: Call, p: MyBidsParams) -> None:
    call.account(p.account)
    bids = auctions.bids_of(call.gw.engine, call.broker(), parse_id(p.auction_id), p.account)
    if bids is None:
        raise RpcError.business(R.UNKNOWN_AUCTION, f"no auction {p.auction_id!r}", "auction_id")
    call.read({"bids": [bid_view(b) for b in bids]})


@method("admin.auction.create", AuctionCreateParams, "operator", role="operator")
def create(call: Call, p: AuctionCreateParams) -> None:
    reserve = p.reserve
    cmd = AuctionCreate(
        ts=call.recv_ns, instrument=p.instrument, vintage=p.vintage, quantity=p.quantity,
        reserve_price=None if p.reserve_price is None else parse_price(p.reserve_price, "reserve_price"),
        reserve_lookback_days=reserve.lookback_days if reserve else None,
        reserve_factor_pct=reserve_factor_pct(reserve.factor) if reserve else 100,
        reserve_cap=parse_price(reserve.cap, "reserve.cap") if reserve and reserve.cap else None,
        rule_set=p.rule_set, eligible=list(p.eligible) if p.eligible is not None else None,
        caps={str(k): v for k, v in p.caps.items()} if p.caps is not None else None, min_lot=p.min_lot, irrevocable=p.irrevocable,
        suspend_trading=p.suspend_trading, start_ts=p.start_ts, end_ts=p.end_ts,
        seed=p.seed if p.seed is not None else secrets.randbits(63),
    )  # fmt: skip
    call.command(cmd, auction_result)


@method("admin.auction.open", AuctionRefParams, "operator", role="operator")
def open(call: Call, p: AuctionRefParams) -> None:
    call.command(AuctionOpen(ts=call.recv_ns, auction_id=parse_id(p.auction_id)), auction_result)


@method("admin.auction.close", AuctionRefParams, "operator", role="operator")
def close(call: Call, p: AuctionRefParams) -> None:
    call.command(AuctionClose(ts=call.recv_ns, auction_id=parse_id(p.auction_id)), auction_result)


@method("admin.auction.cancel", AuctionRefParams, "operator", role="operator")
def cancel(call: Call, p: AuctionRefParams) -> None:
    call.command(AuctionCancel(ts=call.recv_ns, auction_id=parse_id(p.auction_id)), auction_result)


@method("admin.auction.bids", AuctionRefParams, "operator", role="viewer")
def bids(call: Call, p: AuctionRefParams) -> None:
    bids = auctions.all_bids(call.gw.engine, parse_id(p.auction_id))
    if bids is None:
        raise RpcError.business(R.UNKNOWN_AUCTION, f"no auction {p.auction_id!r}", "auction_id")
    call.read({"bids": [bid_view(b) | {"member": b.member} for b in bids]})


def auction_result(events: list[Event]) -> dict[str, Any]:
    """The auction's final state after the command (closing publishes closed, then cleared)."""
    ev = first(events, AuctionUpdate)
    for e in events:
        if type(e) is AuctionUpdate:
            ev = e
    return auction_view(ev.auction, ev.results)
