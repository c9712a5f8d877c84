"""Helpers for the auction tests: an engine with bidders, and thin command wrappers
that return the interesting event (or the Reject)."""

from __future__ import annotations

from typing import Any

from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AuctionAmendBid,
    AuctionBid,
    AuctionClose,
    AuctionCreate,
    AuctionOpen,
    AuctionUpdate,
    AuctionWithdrawBid,
    BidUpdate,
    Event,
    Reject,
)
from carbonx.engine.testkit import T0, add_bidders, only

__all__ = ["add_bidders", "only"]  # re-exported: the auction tests import them from here

SEC = 1_000_000_000


class Clock:
    """Strictly increasing command times, one second apart."""

    def __init__(self) -> None:
        self.ts = T0 + 3600 * SEC

    def __call__(self) -> int:
        self.ts += SEC
        return self.ts


def create(eng: Engine, clock: Clock, **kw: Any) -> int:
    """Create and return the auction id; fails the test on a reject."""
    args: dict[str, Any] = {"instrument": "SHEA", "vintage": 2025, "quantity": 1_000, "reserve_price": 5_000, "seed": 42}
    args.update(kw)
    events = eng.apply(AuctionCreate(ts=clock(), **args))
    assert not only(events, Reject), events
    (update,) = only(events, AuctionUpdate)
    return int(update.auction.auction_id)


def create_open(eng: Engine, clock: Clock, **kw: Any) -> int:
    auction_id = create(eng, clock, **kw)
    assert not only(eng.apply(AuctionOpen(ts=clock(), auction_id=auction_id)), Reject)
    return auction_id


def member_of(eng: Engine, account: str) -> str:
    return eng.accounts[account].member


def bid(eng: Engine, clock: Clock, auction_id: int, account: str, price: int, quantity: int, **kw: Any) -> BidUpdate | Reject:
    """Submit a bid as the account's own member (``member=`` overrides)."""
    member = kw.pop("member", None) or member_of(eng, account)
    events = eng.apply(AuctionBid(ts=clock(), member=member, auction_id=auction_id, account=account, price=price, quantity=quantity, **kw))
    return _one(events)


def ok_bid(eng: Engine, clock: Clock, auction_id: int, account: str, price: int, quantity: int, **kw: Any) -> int:
    result = bid(eng, clock, auction_id, account, price, quantity, **kw)
    assert isinstance(result, BidUpdate), result
    return result.bid_id


def amend(eng: Engine, clock: Clock, auction_id: int, member: str, bid_id: int, **kw: Any) -> BidUpdate | Reject:
    return _one(eng.apply(AuctionAmendBid(ts=clock(), member=member, auction_id=auction_id, bid_id=bid_id, **kw)))


def withdraw(eng: Engine, clock: Clock, auction_id: int, member: str, bid_id: int) -> BidUpdate | Reject:
    return _one(eng.apply(AuctionWithdrawBid(ts=clock(), member=member, auction_id=auction_id, bid_id=bid_id)))


def _one(events: list[Event]) -> BidUpdate | Reject:
    found = only(events, Reject) or only(events, BidUpdate)
    assert len(found) == 1, events
    result: BidUpdate | Reject = found[0]
    return result


def close(eng: Engine, clock: Clock, auction_id: int) -> list[Event]:
    events = eng.apply(AuctionClose(ts=clock(), auction_id=auction_id))
    assert not only(events, Reject), events
    return events


def allocations(events: list[Event]) -> dict[int, int]:
    """bid id -> tonnes allocated, from the settlement BidUpdates."""
    return {b.bid_id: b.allocated for b in only(events, BidUpdate)}


def final_update(events: list[Event]) -> AuctionUpdate:
    update: AuctionUpdate = only(events, AuctionUpdate)[-1]
    return update


def cash_total(eng: Engine) -> int:
    return sum(a.available + a.frozen for a in eng.accounts.values())
