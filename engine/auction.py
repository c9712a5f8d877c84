"""Paid competitive allocation: sealed-bid, uniform-price allowance auctions (MARKET_RULES §5).

State lives in ``AuctionDesk`` (part of every engine snapshot). Handlers are registered
in ``HANDLERS`` (command type -> function(engine, command)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    pass


class AuctionDesk(msgspec.Struct, kw_only=True):
    """Every auction round and its bids."""

    next_auction_id: int = 1
    next_bid_id: int = 1


HANDLERS: dict[type, Any] = {}
