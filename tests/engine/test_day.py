"""The trading day (MARKET_RULES §2): open = first listing trade, close = VWAP rounded
half-up to the tick (previous close without trades), the close becomes the next
reference and band, DAY orders expire while GTC orders survive, T+1 tonnes unlock."""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import DayClose, DayClosed, DayOpen, DayOpened, Deposit, ExecReport, InstrumentStatus, ReferencePrice
from carbonx.engine.testkit import (
    T0,
    accepted,
    book_ids,
    cash,
    check_events,
    funded_engine,
    instrument,
    make_config,
    oid,
    place,
    reason,
    reports,
    tonnes,
    trades,
)

DAY_NS = 86_400 * 10**9
CASH = 100_000_000


def trade(eng: Engine, price: int, qty: int, symbol: str = "X") -> None:
    place(eng, "A1", "sell", price, qty, symbol)
    assert trades(place(eng, "B1", "buy", price, qty, symbol)), "expected a trade"


def close_day(eng: Engine) -> tuple[list[object], DayClosed]:
    events = accepted(eng.apply(DayClose(ts=eng.ts + 1_000)))
    check_events(eng, events)
    (closed,) = [e for e in events if isinstance(e, DayClosed)]
    return events, closed  # type: ignore[return-value]


def next_day(eng: Engine) -> None:
    accepted(eng.apply(DayOpen(ts=eng.ts + DAY_NS)))


def test_open_high_low_close_volume() -> None:
    eng = funded_engine(make_config(instrument("X")))
    trade(eng, 6010, 10)  # open
    trade(eng, 6050, 5)
    trade(eng, 5980, 5)
    _, closed = close_day(eng)
    stats = closed.closes["X"]
    notional = 6010 * 10 + 6050 * 5 + 5980 * 5
    assert (stats.open, stats.high, stats.low, stats.volume, stats.notional) == (6010, 6050, 5980, 20, notional)
    assert stats.close == 6013  # VWAP 6012.5 rounds half up
    assert closed.trading_date == "2025-11-25"


def test_close_rounds_half_up_to_a_coarse_tick() -> None:
    eng = funded_engine(make_config(instrument("X", tick="0.05")))
    trade(eng, 6000, 1)
    trade(eng, 6005, 1)  # VWAP 60.025: exactly half a tick -> up to 60.05
    _, closed = close_day(eng)
    assert closed.closes["X"].close == 6005


def test_close_below_half_a_tick_rounds_down() -> None:
    eng = funded_engine(make_config(instrument("X", tick="0.05")))
    trade(eng, 6000, 3)
    trade(eng, 6005, 2)  # VWAP 60.02 -> 60.00
    _, closed = close_day(eng)
    assert closed.closes["X"].close == 6000


def test_without_trades_open_and_close_are_the_previous_close() -> None:
    eng = funded_engine(make_config(instrument("X", reference_price="61.23")))
    _, closed = close_day(eng)
    stats = closed.closes["X"]
    assert (stats.open, stats.close, stats.high, stats.low, stats.volume) == (6123, 6123, 6123, 6123, 0)


def test_close_becomes_the_reference_and_the_band_rolls() -> None:
    eng = funded_engine(make_config(instrument("X")))
    trade(eng, 6600, 1)  # at the upper limit
    events, _ = close_day(eng)
    refs = [(e.price, e.lower, e.upper) for e in events if isinstance(e, ReferencePrice)]
    assert refs == [(6600, 5940, 7260)]
    next_day(eng)
    accepted(place(eng, "A1", "buy", 7260, 1, "X"))
    assert reason(place(eng, "A1", "buy", 7261, 1, "X")) == R.PRICE_OUT_OF_BAND
    assert reason(place(eng, "A1", "buy", 5939, 1, "X")) == R.PRICE_OUT_OF_BAND


def test_open_is_the_first_trade_even_if_not_the_highest() -> None:
    eng = funded_engine(make_config(instrument("X")))
    trade(eng, 5990, 1)
    trade(eng, 6100, 1)
    _, closed = close_day(eng)
    assert (closed.closes["X"].open, closed.closes["X"].high, closed.closes["X"].low) == (5990, 6100, 5990)


def test_statistics_start_afresh_each_day() -> None:
    eng = funded_engine(make_config(instrument("X")))
    trade(eng, 6100, 4)
    close_day(eng)
    next_day(eng)
    trade(eng, 6090, 2)
    _, closed = close_day(eng)
    stats = closed.closes["X"]
    assert (stats.open, stats.close, stats.volume) == (6090, 6090, 2)


def test_day_orders_expire_and_gtc_orders_survive() -> None:
    eng = funded_engine(make_config(instrument("X")), cash=CASH)
    day = oid(place(eng, "A1", "buy", 5900, 10, "X"))
    gtc = oid(place(eng, "A1", "buy", 5900, 10, "X", tif="gtc"))
    sell = oid(place(eng, "B1", "sell", 6100, 10, "X"))
    place(eng, "A2", "buy", 6100, 4, "X")  # sell is partially filled
    events, _ = close_day(eng)
    expired = {r.order_id: r for r in reports(events) if r.exec_type == "expired"}
    assert set(expired) == {day, sell}
    assert (expired[sell].status, expired[sell].cum_qty, expired[sell].leaves_qty) == ("expired", 4, 0)
    assert book_ids(eng, "X") == ([gtc], [])
    assert cash(eng, "A1") == (CASH - 59_000, 59_000)
    assert tonnes(eng, "B1", "X") == (10_000 - 4, 0, 0, 0)
    assert set(eng.orders) == {gtc}  # finished orders leave at the close
    next_day(eng)
    fills = place(eng, "B2", "sell", 5900, 10, "X")
    assert [(t.buy_order_id, t.quantity) for t in trades(fills)] == [(gtc, 10)]


def test_day_close_and_open_publish_the_phase(engine: Engine) -> None:
    events, _ = close_day(engine)
    assert {(e.instrument, e.phase) for e in events if isinstance(e, InstrumentStatus)} == {
        ("SHEA", "closed"),
        ("CCER", "closed"),
        ("SHCER", "closed"),
    }
    assert reason(place(engine, "A1", "buy", 6000, 1)) == R.MARKET_CLOSED
    events = accepted(engine.apply(DayOpen(ts=T0 + DAY_NS)))
    assert [e.trading_date for e in events if isinstance(e, DayOpened)] == ["2025-11-26"]
    assert {e.phase for e in events if isinstance(e, InstrumentStatus)} == {"open"}


def test_day_cannot_close_or_open_twice(engine: Engine) -> None:
    assert reason(engine.apply(DayOpen(ts=T0 + 1))) == R.INVALID_STATE
    close_day(engine)
    assert reason(engine.apply(DayClose(ts=engine.ts + 1))) == R.DAY_NOT_OPEN


def test_t1_tonnes_unlock_at_the_close(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, tonnes=100)
    place(eng, "A1", "sell", 8000, 30, "CCER")
    place(eng, "B1", "buy", 8000, 30, "CCER")
    assert tonnes(eng, "B1", "CCER") == (100, 0, 0, 30)
    events, _ = close_day(eng)
    holdings = [e for e in events if getattr(e, "account", None) == "B1" and getattr(e, "instrument", None) == "CCER"]
    assert [(h.tradable, h.locked) for h in holdings] == [(130, 0)]  # type: ignore[attr-defined]
    assert tonnes(eng, "B1", "CCER") == (130, 0, 0, 0)


def test_expiry_releases_sell_holds_of_every_vintage(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, tonnes=0)
    eng.apply(Deposit(ts=T0 + 1, account="A1", instrument="SHEA", quantity=5, vintage=2024))
    eng.apply(Deposit(ts=T0 + 1, account="A1", instrument="SHEA", quantity=5, vintage=2025))
    place(eng, "A1", "sell", 6100, 8)
    events, _ = close_day(eng)
    assert [r.exec_type for r in events if isinstance(r, ExecReport)] == ["expired"]
    assert tonnes(eng, "A1", "SHEA") == (10, 0, 0, 0)
