"""Market data: channels, shadow books, coalescing (stage 5 of the data path, with ``outbound``).

Only durable events reach this module (``EventSink.publish`` is called in sequence
order once the journal has made a command durable), so nothing published here can be
lost by a crash. The module keeps its own *shadow* of each book, built from the
``BookLevel`` events, because the engine may already be ahead of durability.

Every message leaves through ``carbonx.gateway.outbound.Outbound`` (encoded once per wire
format, with the slow-consumer guard).

Book channels coalesce: level changes accumulate and go out once per tick
(``coalesce_ms``) as one ``update`` with absolute level quantities, so a burst of
orders costs one message per instrument per tick instead of one per order. The
checksum of each update is ``carbonx.gateway.protocol.book.checksum``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from sortedcontainers import SortedDict

from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AuctionUpdate,
    BidUpdate,
    BlockUpdate,
    BookLevel,
    Certificate,
    DayOpened,
    Event,
    ExecReport,
    InstrumentStatus,
    ReferencePrice,
    Trade,
)
from carbonx.engine.units import format_fen
from carbonx.gateway import protocol
from carbonx.gateway.outbound import Outbound
from carbonx.gateway.protocol.book import CHECKSUM_LEVELS, checksum, wire_levels
from carbonx.gateway.sequencer import EventSink
from carbonx.gateway.sessions import Session

log = logging.getLogger("carbonx.marketdata")

MAX_DEPTH = 100


class ShadowBook:
    """One instrument's book as published: price -> quantity per side, plus pending changes."""

    def __init__(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        self.bids: SortedDict = SortedDict({-p: q for p, q in bids})  # negated: best first
        self.asks: SortedDict = SortedDict(dict(asks))
        self.dirty_bids: dict[int, int] = {}  # price -> quantity last published (changed this tick)
        self.dirty_asks: dict[int, int] = {}
        self.seq = 0  # the full-depth channel's counter
        self.ts = 0

    def set_level(self, ev: BookLevel) -> None:
        if ev.side == "buy":
            book, dirty, key = self.bids, self.dirty_bids, -ev.price
        else:
            book, dirty, key = self.asks, self.dirty_asks, ev.price
        if ev.price not in dirty:  # remember the level as last published, once per tick
            dirty[ev.price] = book.get(key, 0)
        if ev.quantity:
            book[key] = ev.quantity
        else:
            book.pop(key, None)
        self.ts = ev.ts

    def take_changes(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Levels whose quantity differs from the last published one (a level that came
        and went within one tick is no change at all), best first; resets the tick."""
        bids = sorted(((p, self.bids.get(-p, 0)) for p, was in self.dirty_bids.items() if self.bids.get(-p, 0) != was), reverse=True)
        asks = sorted((p, self.asks.get(p, 0)) for p, was in self.dirty_asks.items() if self.asks.get(p, 0) != was)
        self.dirty_bids.clear()
        self.dirty_asks.clear()
        return bids, asks

    def top(self, n: int | None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bid_keys = self.bids.keys()[:n] if n else self.bids.keys()
        ask_keys = self.asks.keys()[:n] if n else self.asks.keys()
        return [(-k, self.bids[k]) for k in bid_keys], [(k, self.asks[k]) for k in ask_keys]

    def best(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        bid = (-self.bids.keys()[0], self.bids.values()[0]) if self.bids else None
        ask = (self.asks.keys()[0], self.asks.values()[0]) if self.asks else None
        return bid, ask


class DepthView:
    """A ``book.SYM.N`` channel: the top N levels last sent, to diff against."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.seq = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def diff(self, book: ShadowBook) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        bids, asks = book.top(self.depth)
        new_bids, new_asks = dict(bids), dict(asks)
        db = _level_diff(self.bids, new_bids, reverse=True)
        da = _level_diff(self.asks, new_asks, reverse=False)
        self.bids, self.asks = new_bids, new_asks
        return (db, da) if db or da else None


def _level_diff(old: dict[int, int], new: dict[int, int], reverse: bool) -> list[tuple[int, int]]:
    changed = [(p, q) for p, q in new.items() if old.get(p) != q]
    changed += [(p, 0) for p in old if p not in new]
    changed.sort(reverse=reverse)
    return changed


class Ticker:
    """Per-instrument day statistics, updated from durable events only."""

    def __init__(self, state: Any, phase: str) -> None:
        self.open, self.high, self.low, self.last = state.open, state.high, state.low, state.last
        self.volume, self.notional = state.volume, state.notional
        self.reference, self.lower, self.upper = state.reference, state.lower, state.upper
        self.phase, self.halted = phase, state.halted
        self.ts = 0

    def trade(self, t: Trade) -> None:
        self.last = t.price
        self.open = self.open or t.price
        self.high = max(self.high, t.price)
        self.low = min(self.low, t.price) if self.low else t.price
        self.volume += t.quantity
        self.notional += t.price * t.quantity

    def reset_day(self) -> None:
        self.open = self.high = self.low = self.last = self.volume = self.notional = 0


class ChannelError(ValueError):
    """A channel name that does not exist; ``reason`` says which wire reason to use."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


PER_INSTRUMENT = ("book", "trades", "ticker", "status")


class MarketData(EventSink):
    """All public channels plus the private ``orders`` channel."""

    def __init__(
        self,
        engine: Engine,
        outbound: Outbound,
        coalesce_s: float = 0.005,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.outbound = outbound
        self.coalesce_s = coalesce_s
        self.symbols = list(engine.specs)
        self.books = {s: ShadowBook(*engine.depth(s)) for s in self.symbols}
        self.tickers = {s: Ticker(engine.instruments[s], engine.instruments[s].phase) for s in self.symbols}
        self.depth_views: dict[str, DepthView] = {}  # channel name -> view
        self.channels: dict[str, set[Session]] = {}  # channel name -> subscribers
        self.orders: dict[str, set[Session]] = {}  # member -> sessions subscribed to "orders"
        self.operators_orders: set[Session] = set()
        self.dirty: set[str] = set()
        self.ticker_dirty: set[str] = set()
        self.flush_handle: asyncio.Handle | None = None
        self.last_seq = engine.seq

    # ------------------------------------------------------------------ subscriptions

    def parse_channel(self, name: str) -> tuple[str, str | None, int | None]:
        """(kind, instrument, depth); raises ChannelError."""
        if name in ("auctions", "orders", "disclosure", "surveillance"):
            return name, None, None
        parts = name.split(".")
        if len(parts) in (2, 3) and parts[0] in PER_INSTRUMENT and parts[1] in self.books:
            if len(parts) == 2:
                return parts[0], parts[1], None
            if parts[0] == "book" and parts[2].isdigit() and 1 <= int(parts[2]) <= MAX_DEPTH:
                return "book", parts[1], int(parts[2])
        if len(parts) >= 2 and parts[0] in PER_INSTRUMENT and parts[1] not in self.books:
            raise ChannelError("UNKNOWN_INSTRUMENT", f"unknown instrument {parts[1]!r} in channel {name!r}")
        raise ChannelError(
            protocol.UNKNOWN_CHANNEL,
            f"unknown channel {name!r}: expected book.SYM[.DEPTH], trades.SYM, ticker.SYM, status.SYM, auctions, orders, "
            "disclosure or (operators) surveillance",
        )

    def subscribe(self, session: Session, name: str) -> None:
        """Add the subscriber, then send the channel's initial state (book snapshot etc.)."""
        kind, symbol, depth = self.parse_channel(name)
        if kind == "orders":
            if session.operator:
                self.operators_orders.add(session)
            else:
                self.orders.setdefault(session.member or "", set()).add(session)
            return
        if symbol is None:  # auctions, disclosure, surveillance: no initial state (their list/get methods give it)
            self.channels.setdefault(name, set()).add(session)
            return
        if kind == "book":
            self.flush()  # pending updates go to existing subscribers first: the snapshot includes them
            if depth is not None and name not in self.depth_views:
                self.depth_views[name] = DepthView(depth)
                self.depth_views[name].diff(self.books[symbol])
        self.channels.setdefault(name, set()).add(session)
        if kind == "book":
            self._send_snapshot(session, name, symbol, depth)
        elif kind == "ticker":
            self.outbound.send_one(session, self._ticker_message(symbol))
        elif kind == "status":
            self.outbound.send_one(session, self._status_message(symbol))

    def unsubscribe(self, session: Session, name: str) -> None:
        if name == "orders":
            self.operators_orders.discard(session)
            for member_sessions in self.orders.values():
                member_sessions.discard(session)
            return
        subs = self.channels.get(name)
        if subs is not None:
            subs.discard(session)
            if not subs:
                del self.channels[name]
                self.depth_views.pop(name, None)

    def drop(self, session: Session) -> None:
        """Forget every subscription of a closed connection."""
        for name in list(session.subscriptions):
            self.unsubscribe(session, name)
        session.subscriptions.clear()
        self.outbound.forget(session)

    def subscription_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, subs in self.channels.items():
            kind = name.split(".")[0]
            counts[kind] = counts.get(kind, 0) + len(subs)
        counts["orders"] = sum(len(s) for s in self.orders.values()) + len(self.operators_orders)
        return counts

    # ------------------------------------------------------------------ messages

    def _send_snapshot(self, session: Session, name: str, symbol: str, depth: int | None) -> None:
        book = self.books[symbol]
        bids, asks = book.top(depth)
        seq = self.depth_views[name].seq if depth is not None else book.seq
        msg = {
            "channel": name,
            "type": "snapshot",
            "seq": seq,
            "bids": wire_levels(bids),
            "asks": wire_levels(asks),
            "checksum": checksum(bids, asks),
            "ts": book.ts,
        }
        self.outbound.send_one(session, protocol.notification("book", msg))

    def _ticker_message(self, symbol: str) -> dict[str, Any]:
        t = self.tickers[symbol]
        bid, ask = self.books[symbol].best()
        return protocol.notification(
            "ticker",
            {
                "channel": f"ticker.{symbol}",
                "instrument": symbol,
                "bid": format_fen(bid[0]) if bid else None,
                "bid_qty": bid[1] if bid else 0,
                "ask": format_fen(ask[0]) if ask else None,
                "ask_qty": ask[1] if ask else 0,
                "last": format_fen(t.last) if t.last else None,
                "open": format_fen(t.open) if t.open else None,
                "high": format_fen(t.high) if t.high else None,
                "low": format_fen(t.low) if t.low else None,
                "volume": t.volume,
                "vwap": protocol.avg_price(t.notional, t.volume),
                "reference": format_fen(t.reference),
                "lower": format_fen(t.lower),
                "upper": format_fen(t.upper),
                "phase": t.phase,
                "halted": t.halted,
                "seq": self.last_seq,
                "ts": t.ts,
            },
        )

    def _status_message(self, symbol: str) -> dict[str, Any]:
        t = self.tickers[symbol]
        return protocol.notification(
            "status",
            {"channel": f"status.{symbol}", "instrument": symbol, "phase": t.phase, "halted": t.halted, "seq": self.last_seq, "ts": t.ts},
        )

    # ------------------------------------------------------------------ publishing

    def publish(self, seq: int, events: list[Event]) -> None:
        self.last_seq = seq
        for ev in events:
            handler = self._handlers.get(type(ev))
            if handler is not None:
                handler(self, ev)
        if (self.dirty or self.ticker_dirty) and self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(self.coalesce_s, self.flush)

    def _on_level(self, ev: BookLevel) -> None:
        self.books[ev.instrument].set_level(ev)
        self.dirty.add(ev.instrument)

    def _on_trade(self, ev: Trade) -> None:
        ticker = self.tickers.get(ev.instrument)
        if ticker is None:
            return
        if not ev.block:
            ticker.trade(ev)
            ticker.ts = ev.ts
            self.ticker_dirty.add(ev.instrument)
        subs = self.channels.get(f"trades.{ev.instrument}")
        if subs:
            msg = protocol.public_trade(ev)
            msg["channel"] = f"trades.{ev.instrument}"
            self.outbound.send(subs, protocol.notification("trades", msg))

    def _on_status(self, ev: InstrumentStatus) -> None:
        t = self.tickers[ev.instrument]
        t.phase, t.halted, t.ts = ev.phase, ev.halted, ev.ts
        self.ticker_dirty.add(ev.instrument)
        subs = self.channels.get(f"status.{ev.instrument}")
        if subs:
            self.outbound.send(subs, self._status_message(ev.instrument))

    def _on_reference(self, ev: ReferencePrice) -> None:
        t = self.tickers[ev.instrument]
        t.reference, t.lower, t.upper, t.ts = ev.price, ev.lower, ev.upper, ev.ts
        self.ticker_dirty.add(ev.instrument)

    def _on_day_open(self, ev: DayOpened) -> None:
        for t in self.tickers.values():
            t.reset_day()
        self.ticker_dirty.update(self.tickers)

    def _on_auction(self, ev: AuctionUpdate) -> None:
        subs = self.channels.get("auctions")
        if subs:
            msg = protocol.auction_view(ev.auction, ev.results)
            msg.update(channel="auctions", seq=ev.seq, ts=ev.ts)
            self.outbound.send(subs, protocol.notification("auctions", msg))

    def _private(self, members: Iterable[str], kind: str, body: dict[str, Any]) -> None:
        targets: set[Session] = set(self.operators_orders)
        for m in members:
            targets |= self.orders.get(m, set())
        if targets:
            body["channel"] = "orders"
            body["kind"] = kind
            self.outbound.send(targets, protocol.notification("orders", body))

    def _on_exec(self, ev: ExecReport) -> None:
        if self.orders.get(ev.member) or self.operators_orders:
            self._private((ev.member,), "execution_report", protocol.exec_report(ev))

    def _on_bid(self, ev: BidUpdate) -> None:
        if self.orders.get(ev.member) or self.operators_orders:
            self._private((ev.member,), "bid", protocol.bid_view(ev))

    def _on_block(self, ev: BlockUpdate) -> None:
        body = protocol.block_view(ev)
        kind = "block_proposal" if ev.state == "proposed" else "block_update"
        self._private({ev.proposer_member, ev.counterparty_member}, kind, body)

    def _on_certificate(self, ev: Certificate) -> None:
        if self.orders.get(ev.member) or self.operators_orders:
            self._private((ev.member,), "certificate", protocol.certificate_view(ev))

    _handlers: ClassVar[dict[type, Callable[[MarketData, Any], None]]] = {
        BookLevel: _on_level,
        Trade: _on_trade,
        InstrumentStatus: _on_status,
        ReferencePrice: _on_reference,
        DayOpened: _on_day_open,
        AuctionUpdate: _on_auction,
        ExecReport: _on_exec,
        BidUpdate: _on_bid,
        BlockUpdate: _on_block,
        Certificate: _on_certificate,
    }

    # ------------------------------------------------------------------ coalesced flush

    def flush(self) -> None:
        """Send one book update per changed instrument (per channel) and the tickers."""
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        for symbol in self.dirty:
            self._flush_book(symbol)
        self.dirty.clear()
        for symbol in self.ticker_dirty:
            subs = self.channels.get(f"ticker.{symbol}")
            if subs:
                self.outbound.send(subs, self._ticker_message(symbol))
        self.ticker_dirty.clear()

    def _flush_book(self, symbol: str) -> None:
        book = self.books[symbol]
        self.ticker_dirty.add(symbol)
        bids, asks = book.take_changes()
        if bids or asks:
            book.seq += 1
            name = f"book.{symbol}"
            subs = self.channels.get(name)
            if subs:
                top_b, top_a = book.top(CHECKSUM_LEVELS)
                self._send_update(subs, name, book.seq, bids, asks, checksum(top_b, top_a), book.ts)
        for name, view in self.depth_views.items():
            if name.startswith(f"book.{symbol}."):
                diff = view.diff(book)
                if diff is not None:
                    view.seq += 1
                    top_b, top_a = book.top(view.depth)
                    self._send_update(self.channels.get(name, set()), name, view.seq, diff[0], diff[1], checksum(top_b, top_a), book.ts)

    def _send_update(self, subs: set[Session], name: str, seq: int, bids: Any, asks: Any, crc: int, ts: int) -> None:
        msg = {
            "channel": name,
            "type": "update",
            "seq": seq,
            "bids": wire_levels(bids),
            "asks": wire_levels(asks),
            "checksum": crc,
            "ts": ts,
        }
        self.outbound.send(subs, protocol.notification("book", msg))

    def close(self) -> None:
        self.flush()

    # ------------------------------------------------------------------ metrics

    def book_stats(self) -> dict[str, tuple[int, int, int | None]]:
        """symbol -> (bid levels, ask levels, spread in fen or None)."""
        out = {}
        for symbol, book in self.books.items():
            bid, ask = book.best()
            spread = ask[0] - bid[0] if bid and ask else None
            out[symbol] = (len(book.bids), len(book.asks), spread)
        return out
