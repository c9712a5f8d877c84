"""The order book of one instrument: price levels, each a FIFO queue (price-time priority).

Layout chosen for CPython speed (see docs/performance.md):
- ``levels`` is a plain dict price -> Level, so adding to or cancelling from an
  existing level is a dict lookup; the sorted price index (a SortedList) is touched
  only when a level appears or empties.
- A level's queue is a deque. Cancelling clears the order's ``resting`` flag and
  leaves it in the deque (O(1)); such entries are skipped and dropped when they reach
  the front. An order that loses priority (amend) is re-queued as a fresh copy, so a
  stale queue entry is always recognisable by ``resting == False``. Behind a live order
  that never leaves (a level that never empties) dead entries would pile up without
  bound, each keeping its finished order alive past the ``[retention]`` window, so a
  queue with more dead than live entries (plus slack) is compacted (amortised O(1)).
- Bid prices are kept negated in the index so that index[0] is always the best price.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import msgspec
from sortedcontainers import SortedList


class Order(msgspec.Struct, gc=False):
    """A live (or finished) order. Mutable: the engine updates it in place.

    Positional construction (``matching.place``) is the hot path: keep the field order.
    ``gc=False``: an order references no container that could lead back to it, so the
    cyclic collector need not track (and rescan) the book's live orders."""

    order_id: int
    client_order_id: str
    member: str
    account: str
    instrument: str
    side: str
    type: str
    price: int  # limit price (for a market order: the band limit it may trade to)
    quantity: int
    tif: str
    post_only: bool
    stp: str
    session: str
    ts: int  # time of acceptance (time priority is the queue position)
    leaves_qty: int
    cum_qty: int = 0
    cum_notional: int = 0
    frozen_cash: int = 0  # buys: fen still frozen for this order, fees included
    # sells: frozen tonnes ((vintage, qty), ...), oldest first; tuples (not lists) so resting orders
    # add nothing for the cyclic GC to scan; encoded as [[vintage, qty], ...] either way
    alloc: tuple[tuple[int, int], ...] | None = None
    status: str = "new"
    resting: bool = False  # live in its level's queue; False = gone (a queue entry to skip)


# A level's queue may hold up to live + DEAD_SLACK dead entries before it is compacted.
DEAD_SLACK = 32


class Level:
    """One price level: FIFO queue and the live total quantity."""

    __slots__ = ("live", "price", "qty", "queue")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0
        self.live = 0
        self.queue: deque[Order] = deque()

    def head(self) -> Order | None:
        """The oldest live order, dropping dead entries on the way."""
        queue = self.queue
        while queue:
            order = queue[0]
            if order.resting:
                return order
            queue.popleft()
        return None

    def orders(self) -> Iterator[Order]:
        """Live orders in time priority."""
        return (o for o in self.queue if o.resting)

    def compact(self) -> None:
        """Drop the dead entries (in place: the deque stays the same object)."""
        queue = self.queue
        live = [o for o in queue if o.resting]
        queue.clear()
        queue.extend(live)


class BookSide:
    """One side: levels by price, a sorted index of prices, and the cached best price
    (reading SortedList[0] costs ~0.5 µs; the cache is refreshed only when the best
    level appears or empties)."""

    __slots__ = ("index", "is_bid", "levels", "top")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.index: SortedList = SortedList()  # bid prices negated: index[0] is best
        self.top: int | None = None  # best price

    def best(self) -> Level | None:
        top = self.top
        return None if top is None else self.levels[top]

    def best_price(self) -> int | None:
        return self.top

    def add(self, order: Order) -> int:
        """Queue ``order`` at the back of its level; returns the level's new quantity."""
        price = order.price
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = Level(price)
            top = self.top
            if self.is_bid:
                self.index.add(-price)
                if top is None or price > top:
                    self.top = price
            else:
                self.index.add(price)
                if top is None or price < top:
                    self.top = price
        level.queue.append(order)
        order.resting = True
        level.live += 1
        level.qty += order.leaves_qty
        return level.qty

    def reduce(self, price: int, qty: int, gone: bool) -> int:
        """Take ``qty`` off a level (``gone``: an order left it). Returns the new level
        quantity; an empty level is removed from the index."""
        level = self.levels[price]
        level.qty -= qty
        if gone:
            level.live -= 1
            if not level.live:
                del self.levels[price]
                index = self.index
                if self.is_bid:
                    index.remove(-price)
                    if price == self.top:
                        self.top = -index[0] if index else None
                else:
                    index.remove(price)
                    if price == self.top:
                        self.top = index[0] if index else None
                return 0
            if len(level.queue) > 2 * level.live + DEAD_SLACK:  # more dead than live entries
                level.compact()
        return level.qty

    def iter_levels(self) -> Iterator[Level]:
        """Levels best price first."""
        levels = self.levels
        if self.is_bid:
            return (levels[-k] for k in self.index)
        return (levels[k] for k in self.index)

    def depth(self, n: int | None = None) -> list[tuple[int, int]]:
        out = []
        for level in self.iter_levels():
            out.append((level.price, level.qty))
            if n is not None and len(out) >= n:
                break
        return out


class Book:
    """Both sides of one instrument's book."""

    __slots__ = ("asks", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = BookSide(True)
        self.asks = BookSide(False)

    def side(self, side: str) -> BookSide:
        return self.bids if side == "buy" else self.asks

    def opposite(self, side: str) -> BookSide:
        return self.asks if side == "buy" else self.bids

    def orders_in_priority(self) -> Iterator[Order]:
        """Every live order, bids then asks, each best price first then time."""
        for book_side in (self.bids, self.asks):
            for level in book_side.iter_levels():
                yield from level.orders()

    def crossed(self) -> bool:
        bid, ask = self.bids.best_price(), self.asks.best_price()
        return bid is not None and ask is not None and bid >= ask
