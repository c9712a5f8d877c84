"""``auction.due``: the bidding window's edges become ordinary commands at the right time."""

from __future__ import annotations

from carbonx.engine import auction
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AuctionClose, AuctionOpen
from tests.auction.helpers import SEC, Clock, create


def test_due_opens_at_start_and_closes_at_end(engine: Engine) -> None:
    clock = Clock()
    start = clock.ts + 10 * SEC
    aid = create(engine, clock, start_ts=start, end_ts=start + 60 * SEC)
    assert auction.due(engine, start - 1) == []
    (cmd,) = auction.due(engine, start)
    assert isinstance(cmd, AuctionOpen) and cmd.auction_id == aid and cmd.ts == start
    engine.apply(cmd)
    assert auction.due(engine, start + 59 * SEC) == [], "nothing to do inside the window"
    (cmd,) = auction.due(engine, start + 60 * SEC)
    assert isinstance(cmd, AuctionClose) and cmd.auction_id == aid
    engine.apply(cmd)
    assert engine.auctions.auctions[aid].info.state == "cleared"
    assert auction.due(engine, start + 3600 * SEC) == [], "a finished auction is never proposed again"


def test_due_leaves_windowless_auctions_to_the_operator(engine: Engine) -> None:
    clock = Clock()
    create(engine, clock)
    assert auction.due(engine, clock.ts + 10**6 * SEC) == []


def test_due_does_not_propose_an_open_that_would_be_refused(engine: Engine) -> None:
    """Two suspending rounds on one instrument: the second waits for the operator
    instead of being proposed (and rejected, and journaled) every second."""
    clock = Clock()
    start = clock.ts + 5 * SEC
    first = create(engine, clock, suspend_trading=True)
    engine.apply(AuctionOpen(ts=clock(), auction_id=first))
    create(engine, clock, suspend_trading=True, start_ts=start, end_ts=start + 60 * SEC)
    assert auction.due(engine, start + SEC) == []
