"""Helpers shared by the engine tests: small configurations, order shortcuts and the
checks every execution report must pass (FIX semantics, the command's seq)."""

from __future__ import annotations

import calendar
import datetime
from typing import Any

import msgspec

from carbonx.engine.config import MarketConfig, parse_market
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AmendOrder,
    Balance,
    CancelOrder,
    Event,
    ExecReport,
    PlaceOrder,
    Reject,
    Trade,
)
from tests.conftest import T0

MEMBER_OF = {"A1": "M1", "A2": "M1", "B1": "M2", "B2": "M2"}
ALL_WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAY: dict[str, Any] = {"weekdays": ALL_WEEK, "sessions": [["00:00", "24:00"]]}


def instrument(symbol: str = "X", **settings: Any) -> dict[str, Any]:
    """One ``[[instrument]]`` table: reference 60.00, tick 0.01, no fees unless given."""
    return {"symbol": symbol, "reference_price": "60.00", **settings}


def make_config(*instruments: dict[str, Any], calendar_table: dict[str, Any] | None = None) -> MarketConfig:
    """A MarketConfig from plain tables (the dict ``tomllib`` would produce)."""
    return parse_market({"calendar": calendar_table or ALL_DAY, "instrument": list(instruments)})


def local_ts(date: str, hhmmss: str, utc_offset_h: int = 8) -> int:
    """ns timestamp of an exchange-local wall-clock time (fixed UTC offset)."""
    d = datetime.date.fromisoformat(date)
    h, m, *rest = (int(p) for p in hhmmss.split(":"))
    s = rest[0] if rest else 0
    secs = calendar.timegm((d.year, d.month, d.day, h, m, s)) - utc_offset_h * 3600
    return secs * 1_000_000_000


class Clock:
    """Strictly increasing command timestamps so time priority is visible in ``ts``."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def next_ts(eng: Engine) -> int:
    """1 µs after the engine's last command (so time priority shows in ``ts``)."""
    return (eng.ts or T0) + 1_000


def place(
    eng: Engine,
    account: str = "A1",
    side: str = "buy",
    price: int | None = 6000,
    quantity: int = 10,
    instrument: str = "SHEA",
    *,
    member: str | None = None,
    ts: int | None = None,
    **fields: Any,
) -> list[Event]:
    """Place an order for ``account`` on behalf of its own member (unless ``member``)."""
    cmd = PlaceOrder(
        ts=next_ts(eng) if ts is None else ts,
        member=member or MEMBER_OF.get(account, "M1"),
        account=account,
        instrument=instrument,
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        **fields,
    )
    return eng.apply(cmd)


def amend(eng: Engine, account: str, order_id: int = 0, *, member: str | None = None, ts: int | None = None, **fields: Any) -> list[Event]:
    cmd = AmendOrder(ts=ts or next_ts(eng), member=member or MEMBER_OF.get(account, "M1"), account=account, order_id=order_id, **fields)
    return eng.apply(cmd)


def cancel(eng: Engine, account: str, order_id: int = 0, *, member: str | None = None, ts: int | None = None, **fields: Any) -> list[Event]:
    cmd = CancelOrder(ts=ts or next_ts(eng), member=member or MEMBER_OF.get(account, "M1"), account=account, order_id=order_id, **fields)
    return eng.apply(cmd)


def rejects(events: list[Event]) -> list[Reject]:
    return [e for e in events if isinstance(e, Reject)]


def reason(events: list[Event]) -> str | None:
    """The reject reason of a command's events, None if it was accepted."""
    found = rejects(events)
    assert len(found) <= 1, found
    if found:
        assert len(events) == 1, "a rejected command emits nothing but its Reject"
        return found[0].reason
    return None


def accepted(events: list[Event]) -> list[Event]:
    assert reason(events) is None, rejects(events)
    return events


def reports(events: list[Event], order_id: int | None = None) -> list[ExecReport]:
    return [e for e in events if isinstance(e, ExecReport) and (order_id is None or e.order_id == order_id)]


def trades(events: list[Event]) -> list[Trade]:
    return [e for e in events if isinstance(e, Trade)]


def balances(events: list[Event], account: str) -> list[Balance]:
    return [e for e in events if isinstance(e, Balance) and e.account == account]


def oid(events: list[Event]) -> int:
    """The order id of the order a place command created."""
    news = [e for e in events if isinstance(e, ExecReport) and e.exec_type == "new"]
    assert news, f"no new order in {events}"
    return news[0].order_id


def exec_types(events: list[Event], order_id: int) -> list[str]:
    return [r.exec_type for r in reports(events, order_id)]


def cash(eng: Engine, account: str) -> tuple[int, int]:
    """(available, frozen) fen."""
    acct = eng.accounts[account]
    return acct.available, acct.frozen


def tonnes(eng: Engine, account: str, symbol: str) -> tuple[int, int, int, int]:
    """(tradable, frozen, compliance_only, locked) summed over vintages."""
    by_vintage = eng.accounts[account].holdings.get(symbol, {})
    return (
        sum(p.tradable for p in by_vintage.values()),
        sum(p.frozen for p in by_vintage.values()),
        sum(p.compliance_only for p in by_vintage.values()),
        sum(p.locked for p in by_vintage.values()),
    )


def book_ids(eng: Engine, symbol: str) -> tuple[list[int], list[int]]:
    """Live order ids per side in priority order: (bids, asks)."""
    book = eng.books[symbol]
    bids = [o.order_id for level in book.bids.iter_levels() for o in level.orders()]
    asks = [o.order_id for level in book.asks.iter_levels() for o in level.orders()]
    return bids, asks


_STATUS_FOR = {
    "new": {"new"},
    "trade": {"partially_filled", "filled"},
    "cancelled": {"cancelled"},
    "expired": {"expired"},
    "replaced": {"new", "partially_filled"},
}


def check_report(r: ExecReport) -> None:
    """FIX semantics of one execution report (PROTOCOL.md, Execution report)."""
    assert r.status in _STATUS_FOR[r.exec_type], (r.exec_type, r.status)
    if r.status in ("new", "partially_filled"):
        assert r.leaves_qty > 0, r
        assert r.quantity == r.cum_qty + r.leaves_qty, r
    else:
        assert r.leaves_qty == 0, r
    if r.status == "filled":
        assert r.cum_qty == r.quantity, r
    assert (r.status == "partially_filled") == (r.cum_qty > 0 and r.leaves_qty > 0), r
    if r.exec_type == "trade":
        assert r.last_qty > 0 and r.last_price > 0 and r.trade_id > 0, r
    assert r.cum_qty >= 0 and r.cum_notional >= 0


def check_events(eng: Engine, events: list[Event]) -> None:
    """Every event carries the command's seq and ts; every report is FIX-consistent."""
    for e in events:
        assert e.seq == eng.seq and e.ts == eng.ts, e
        if isinstance(e, ExecReport):
            check_report(e)


def state_bytes(eng: Engine) -> bytes:
    """The engine state without the sequence number and time (which every command
    advances, accepted or not): equal bytes = a command changed nothing else."""
    snap = msgspec.structs.replace(eng._snapshot_struct(), seq=0, ts=0)
    return msgspec.msgpack.encode(snap)
