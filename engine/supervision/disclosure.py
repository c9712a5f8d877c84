"""The day's market report (information disclosure), derived from the event stream.

``DayReports.observe(events)`` follows the journal's events; each ``DayClosed`` completes
one ``DayReport`` (returned, and kept by date). ``report_json`` / ``report_csv`` are its
file bytes: both are functions of the events alone, so the report written at the day close
and one regenerated from the journal later (``carbonx report day``) are byte-identical.

A report covers the trading date's listing and block trades and what happened since the
previous day close: auctions cleared, retirement certificates and event-neutrality
certificates issued. Money and prices are decimal strings (CNY, 2 decimals), tonnes
integers. docs/disclosure.md defines every field and its source rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from carbonx.engine.schema import AuctionUpdate, Certificate, DayClosed, DayOpened, Event, Holding, ReferencePrice, Trade
from carbonx.engine.supervision.thresholds import DisclosureSpec
from carbonx.engine.units import format_fen

MAX_DAYS_KEPT = 1_000  # reports kept in memory for disclosure.get (the files keep every day)


class InstrumentDay(msgspec.Struct, kw_only=True):
    instrument: str
    open: str  # first listing trade of the day; no listing trade: the previous close
    high: str
    low: str
    close: str  # VWAP of the day's listing trades (blocks excluded); none: the previous close
    previous_close: str
    change: str  # close - previous close
    change_bp: int  # change in basis points of the previous close (truncated towards 0)
    listing_volume: int
    listing_amount: str
    listing_trades: int
    block_volume: int
    block_amount: str
    block_trades: int
    trades: int


class AuctionDay(msgspec.Struct, kw_only=True):
    """The published results of an auction cleared in the period (auction.get's fields)."""

    auction_id: int
    instrument: str
    vintage: int | None
    state: str
    quantity_offered: int
    valid_bid_quantity: int
    bidders: int
    winners: int
    quantity_sold: int
    clearing_price: str
    total_amount: str
    cover_ratio_bp: int


class RetirementTotal(msgspec.Struct, kw_only=True):
    instrument: str
    purpose: str
    certificates: int
    quantity: int


class NeutralityDay(msgspec.Struct, kw_only=True):
    certificate_id: int
    event_id: str
    event_name: str
    quantity: int
    covers: list[int]


class LargeHolder(msgspec.Struct, kw_only=True):
    instrument: str
    holder: str  # the account, or "holder-N" (N by size) unless [disclosure] holders_public
    quantity: int


class DayReport(msgspec.Struct, kw_only=True):
    trading_date: str
    close_seq: int  # journal sequence of the day close that produced it
    close_ts: int
    instruments: list[InstrumentDay]
    auctions: list[AuctionDay]
    retirements: list[RetirementTotal]
    neutrality: list[NeutralityDay]
    large_holder_threshold: int
    large_holders: list[LargeHolder]


class _Tally:
    """One instrument's trading of the day."""

    __slots__ = (
        "block_amount",
        "block_trades",
        "block_volume",
        "high",
        "listing_amount",
        "listing_trades",
        "listing_volume",
        "low",
        "open",
    )

    def __init__(self) -> None:
        self.open = self.high = self.low = 0
        self.listing_volume = self.listing_amount = self.listing_trades = 0
        self.block_volume = self.block_amount = self.block_trades = 0


def _bp(change: int, base: int) -> int:
    if base <= 0:
        return 0
    magnitude = abs(change) * 10_000 // base
    return magnitude if change >= 0 else -magnitude


class DayReports:
    """Builds each day's ``DayReport`` from the events (see the module docstring)."""

    def __init__(self, spec: DisclosureSpec) -> None:
        self.spec = spec
        self.reports: dict[str, DayReport] = {}
        self.previous: dict[str, int] = {}  # instrument -> previous close (the reference at day open)
        self.tallies: dict[str, _Tally] = {}
        self.auctions: list[AuctionDay] = []
        self.retired: dict[tuple[str, str], list[int]] = {}  # (instrument, purpose) -> [certificates, tonnes]
        self.neutrality: list[NeutralityDay] = []
        self.positions: dict[tuple[str, str, int], int] = {}
        self.totals: dict[tuple[str, str], int] = {}  # (instrument, account) -> tonnes held
        self.open_seq = -1
        self.done: list[DayReport] = []

    _handlers: ClassVar[dict[type, Callable[[DayReports, Any], None]]] = {}  # filled below the class

    def observe(self, events: list[Event]) -> list[DayReport]:
        """Take the next events in journal order; return the reports they completed."""
        self.done = []
        handlers = self._handlers
        for ev in events:
            handler = handlers.get(type(ev))
            if handler is not None:
                handler(self, ev)
        return self.done

    def _reference(self, ev: ReferencePrice) -> None:
        if ev.seq == self.open_seq:  # the references set by the day open: the previous closes
            self.previous[ev.instrument] = ev.price

    def _day_open(self, ev: DayOpened) -> None:
        self.open_seq = ev.seq
        self.tallies.clear()

    def _day_close(self, ev: DayClosed) -> None:
        self.done.append(self._close(ev))

    def _trade(self, t: Trade) -> None:
        tally = self.tallies.get(t.instrument)
        if tally is None:
            tally = self.tallies[t.instrument] = _Tally()
        amount = t.price * t.quantity
        if t.block:
            tally.block_volume += t.quantity
            tally.block_amount += amount
            tally.block_trades += 1
            return
        if not tally.listing_trades:
            tally.open = tally.high = tally.low = t.price
        else:
            tally.high = max(tally.high, t.price)
            tally.low = min(tally.low, t.price)
        tally.listing_volume += t.quantity
        tally.listing_amount += amount
        tally.listing_trades += 1

    def _holding(self, h: Holding) -> None:
        key = (h.account, h.instrument, h.vintage)
        total = h.tradable + h.frozen + h.compliance_only + h.locked
        old = self.positions.get(key, 0)
        if total != old:
            self.positions[key] = total
            pos = (h.instrument, h.account)
            self.totals[pos] = self.totals.get(pos, 0) + total - old

    def _auction(self, ev: AuctionUpdate) -> None:
        r, a = ev.results, ev.auction
        if r is None or a.state != "cleared":
            return
        self.auctions.append(
            AuctionDay(
                auction_id=a.auction_id,
                instrument=a.instrument,
                vintage=a.vintage,
                state=a.state,
                quantity_offered=r.quantity_offered,
                valid_bid_quantity=r.valid_bid_quantity,
                bidders=r.bidders,
                winners=r.winners,
                quantity_sold=r.quantity_sold,
                clearing_price=format_fen(r.clearing_price),
                total_amount=format_fen(r.total_amount),
                cover_ratio_bp=r.cover_ratio_bp,
            )
        )

    def _certificate(self, c: Certificate) -> None:
        if c.covers is not None and not c.account:  # an event's neutrality certificate
            self.neutrality.append(
                NeutralityDay(
                    certificate_id=c.certificate_id,
                    event_id=c.event_id or "",
                    event_name=c.beneficiary,
                    quantity=c.quantity,
                    covers=list(c.covers),
                )
            )
            return
        total = self.retired.setdefault((c.instrument, c.purpose), [0, 0])
        total[0] += 1
        total[1] += c.quantity

    def _close(self, ev: DayClosed) -> DayReport:
        rows = []
        for sym, stats in ev.closes.items():
            tally = self.tallies.get(sym) or _Tally()
            prev = self.previous.get(sym, stats.close)
            traded = tally.listing_trades > 0
            change = stats.close - prev
            rows.append(
                InstrumentDay(
                    instrument=sym,
                    open=format_fen(tally.open if traded else prev),
                    high=format_fen(tally.high if traded else prev),
                    low=format_fen(tally.low if traded else prev),
                    close=format_fen(stats.close),
                    previous_close=format_fen(prev),
                    change=format_fen(change),
                    change_bp=_bp(change, prev),
                    listing_volume=tally.listing_volume,
                    listing_amount=format_fen(tally.listing_amount),
                    listing_trades=tally.listing_trades,
                    block_volume=tally.block_volume,
                    block_amount=format_fen(tally.block_amount),
                    block_trades=tally.block_trades,
                    trades=tally.listing_trades + tally.block_trades,
                )
            )
            self.previous[sym] = stats.close
        report = DayReport(
            trading_date=ev.trading_date,
            close_seq=ev.seq,
            close_ts=ev.ts,
            instruments=sorted(rows, key=lambda r: r.instrument),
            auctions=self.auctions,
            retirements=[
                RetirementTotal(instrument=sym, purpose=purpose, certificates=n, quantity=q)
                for (sym, purpose), (n, q) in sorted(self.retired.items())
            ],
            neutrality=self.neutrality,
            large_holder_threshold=self.spec.large_holder_t,
            large_holders=self._holders(),
        )
        self.auctions, self.retired, self.neutrality = [], {}, []
        self.tallies.clear()
        self.reports.pop(ev.trading_date, None)
        self.reports[ev.trading_date] = report
        if len(self.reports) > MAX_DAYS_KEPT:
            del self.reports[next(iter(self.reports))]
        return report

    def _holders(self) -> list[LargeHolder]:
        big = sorted(((sym, -q, acct) for (sym, acct), q in self.totals.items() if q >= self.spec.large_holder_t))
        out = []
        rank: dict[str, int] = {}
        for sym, neg, acct in big:
            rank[sym] = rank.get(sym, 0) + 1
            out.append(LargeHolder(instrument=sym, holder=acct if self.spec.holders_public else f"holder-{rank[sym]}", quantity=-neg))
        return out


DayReports._handlers = {
    Trade: DayReports._trade,
    Holding: DayReports._holding,
    ReferencePrice: DayReports._reference,
    DayOpened: DayReports._day_open,
    AuctionUpdate: DayReports._auction,
    Certificate: DayReports._certificate,
    DayClosed: DayReports._day_close,
}


def report_json(report: DayReport) -> bytes:
    """The report file's bytes: indented JSON, fields in declaration order, final newline."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"


CSV_COLUMNS = tuple(InstrumentDay.__struct_fields__)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def report_csv(report: DayReport) -> bytes:
    """One row per instrument (``trading_date`` then ``InstrumentDay``'s fields), CRLF lines (RFC 4180)."""
    lines = [",".join(("trading_date", *CSV_COLUMNS))]
    for row in report.instruments:
        lines.append(",".join(_cell(v) for v in (report.trading_date, *(getattr(row, c) for c in CSV_COLUMNS))))
    return ("\r\n".join(lines) + "\r\n").encode()
