"""Continuous matching (MARKET_RULES §2-§3): price-time priority, executions at the
resting price, order types and times in force, settlement of cash and tonnes, fees,
and the execution reports' FIX semantics."""

from __future__ import annotations

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import BookLevel, Deposit, SetReference
from carbonx.engine.testkit import (
    T0,
    accepted,
    balances,
    book_ids,
    cancel,
    cash,
    check_events,
    exec_types,
    funded_engine,
    instrument,
    make_config,
    oid,
    place,
    reports,
    tonnes,
    trades,
)

CASH = 100_000_000


def no_fee_engine(**settings: object) -> Engine:
    """Instrument X (reference 60.00, no fees) with the four funded accounts."""
    return funded_engine(make_config(instrument("X", **settings)), cash=CASH, tonnes=10_000)


# ---------------------------------------------------------------------- priority


def test_price_then_time_priority_and_trades_at_resting_prices() -> None:
    eng = no_fee_engine()
    s1 = oid(place(eng, "A1", "sell", 6010, 10, "X"))
    s2 = oid(place(eng, "A2", "sell", 6000, 10, "X"))
    s3 = oid(place(eng, "A1", "sell", 6000, 10, "X"))
    s4 = oid(place(eng, "A2", "sell", 6020, 10, "X"))
    assert book_ids(eng, "X")[1] == [s2, s3, s1, s4]
    events = accepted(place(eng, "B1", "buy", 6010, 25, "X"))
    check_events(eng, events)
    assert [(t.sell_order_id, t.price, t.quantity) for t in trades(events)] == [(s2, 6000, 10), (s3, 6000, 10), (s1, 6010, 5)]
    assert book_ids(eng, "X")[1] == [s1, s4]
    assert eng.depth("X") == ([], [(6010, 5), (6020, 10)])


def test_sell_aggressor_hits_the_highest_bid_first() -> None:
    eng = no_fee_engine()
    b1 = oid(place(eng, "A1", "buy", 5990, 10, "X"))
    b2 = oid(place(eng, "A2", "buy", 6000, 10, "X"))
    b3 = oid(place(eng, "A1", "buy", 5990, 10, "X"))
    events = accepted(place(eng, "B1", "sell", 5980, 25, "X"))
    assert [(t.buy_order_id, t.price, t.quantity, t.aggressor) for t in trades(events)] == [
        (b2, 6000, 10, "sell"),
        (b1, 5990, 10, "sell"),
        (b3, 5990, 5, "sell"),
    ]


def test_non_crossing_orders_rest_and_publish_levels() -> None:
    eng = no_fee_engine()
    events = accepted(place(eng, "A1", "buy", 5990, 10, "X"))
    assert [(e.side, e.price, e.quantity) for e in events if isinstance(e, BookLevel)] == [("buy", 5990, 10)]
    events = accepted(place(eng, "A2", "buy", 5990, 7, "X"))
    assert [(e.side, e.price, e.quantity) for e in events if isinstance(e, BookLevel)] == [("buy", 5990, 17)]
    accepted(place(eng, "B1", "sell", 6000, 3, "X"))
    assert not eng.books["X"].crossed()
    assert eng.depth("X") == ([(5990, 17)], [(6000, 3)])


def test_buy_filling_below_its_limit_releases_the_difference() -> None:
    eng = no_fee_engine()
    place(eng, "B1", "sell", 6000, 10, "X")
    events = accepted(place(eng, "A1", "buy", 6100, 15, "X"))
    (trade,) = trades(events)
    assert (trade.price, trade.quantity) == (6000, 10)
    # paid 10 x 60.00; the 5 t left rest with exactly 5 x 61.00 frozen
    assert cash(eng, "A1") == (CASH - 60_000 - 30_500, 30_500)
    assert cash(eng, "B1") == (CASH + 60_000, 0)
    assert tonnes(eng, "A1", "X") == (10_010, 0, 0, 0)
    assert tonnes(eng, "B1", "X") == (9_990, 0, 0, 0)


def test_partial_fill_keeps_the_resting_order_at_the_front() -> None:
    eng = no_fee_engine()
    s1 = oid(place(eng, "A1", "sell", 6000, 10, "X"))
    s2 = oid(place(eng, "A2", "sell", 6000, 10, "X"))
    place(eng, "B1", "buy", 6000, 4, "X")
    assert book_ids(eng, "X")[1] == [s1, s2]
    assert tonnes(eng, "A1", "X") == (9_990, 6, 0, 0)
    events = accepted(place(eng, "B1", "buy", 6000, 8, "X"))
    assert [(t.sell_order_id, t.quantity) for t in trades(events)] == [(s1, 6), (s2, 2)]


# ---------------------------------------------------------------------- order types and TIF


def test_market_order_never_rests_and_sweeps_within_the_band() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6000, 5, "X")
    place(eng, "A1", "sell", 6600, 5, "X")
    market = place(eng, "B1", "buy", None, 15, "X", type="market")
    check_events(eng, market)
    order = oid(market)
    assert [(t.price, t.quantity) for t in trades(market)] == [(6000, 5), (6600, 5)]
    last = reports(market, order)[-1]
    assert (last.exec_type, last.status, last.cum_qty, last.leaves_qty, last.reason) == (
        "cancelled",
        "cancelled",
        10,
        0,
        "UNFILLED_REMAINDER",
    )
    assert last.cum_notional == 6000 * 5 + 6600 * 5
    assert book_ids(eng, "X") == ([], [])
    assert cash(eng, "B1") == (CASH - 63_000, 0)


def test_market_order_does_not_reach_beyond_a_new_band() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6500, 5, "X", tif="gtc")
    eng.apply(SetReference(ts=eng.ts + 1, instrument="X", price=5500))  # band now [49.50, 60.50]
    events = place(eng, "B1", "buy", None, 5, "X", type="market")
    assert trades(events) == []
    assert reports(events)[-1].reason == "NO_LIQUIDITY"
    assert cash(eng, "B1") == (CASH, 0)


def test_market_sell_against_an_empty_book_is_cancelled_and_releases_tonnes() -> None:
    eng = no_fee_engine()
    events = accepted(place(eng, "B1", "sell", None, 5, "X", type="market"))
    assert exec_types(events, oid(events)) == ["new", "cancelled"]
    assert reports(events)[-1].reason == "NO_LIQUIDITY"
    assert tonnes(eng, "B1", "X") == (10_000, 0, 0, 0)


def test_ioc_fills_what_it_can_and_cancels_the_rest() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6000, 4, "X")
    events = accepted(place(eng, "B1", "buy", 6000, 10, "X", tif="ioc"))
    check_events(eng, events)
    order = oid(events)
    assert exec_types(events, order) == ["new", "trade", "cancelled"]
    final = reports(events, order)[-1]
    assert (final.status, final.cum_qty, final.leaves_qty, final.quantity) == ("cancelled", 4, 0, 10)
    assert cash(eng, "B1") == (CASH - 24_000, 0)
    assert book_ids(eng, "X") == ([], [])


def test_fok_without_enough_liquidity_does_nothing() -> None:
    eng = no_fee_engine()
    s1 = oid(place(eng, "A1", "sell", 6000, 4, "X"))
    place(eng, "A2", "sell", 6010, 4, "X")
    place(eng, "A2", "sell", 6020, 4, "X")  # beyond the limit
    events = accepted(place(eng, "B1", "buy", 6010, 9, "X", tif="fok"))
    check_events(eng, events)
    assert exec_types(events, oid(events)) == ["new", "cancelled"]
    assert reports(events)[-1].reason == "NO_LIQUIDITY"
    assert trades(events) == []
    assert cash(eng, "B1") == (CASH, 0)
    assert book_ids(eng, "X")[1][0] == s1
    assert eng.depth("X")[1] == [(6000, 4), (6010, 4), (6020, 4)]


def test_fok_with_enough_liquidity_fills_completely_across_levels() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6000, 4, "X")
    place(eng, "A2", "sell", 6010, 4, "X")
    events = accepted(place(eng, "B2", "buy", 6010, 8, "X", tif="fok"))
    assert [(t.price, t.quantity) for t in trades(events)] == [(6000, 4), (6010, 4)]
    assert reports(events)[-1].status == "filled"


def test_fok_counts_no_own_orders_as_liquidity() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6000, 5, "X")
    place(eng, "B1", "sell", 6000, 5, "X")  # B1's own order in the way
    place(eng, "A2", "sell", 6000, 5, "X")
    before = eng.depth("X")
    events = accepted(place(eng, "B1", "buy", 6000, 10, "X", tif="fok"))
    assert trades(events) == [] and exec_types(events, oid(events)) == ["new", "cancelled"]
    assert eng.depth("X") == before
    # with cancel_oldest the own order would be cancelled, so the others count
    events = accepted(place(eng, "B1", "buy", 6000, 10, "X", tif="fok", stp="cancel_oldest"))
    assert [t.sell_account for t in trades(events)] == ["A1", "A2"]
    assert reports(events, oid(events))[-1].status == "filled"
    assert eng.depth("X") == ([], [])


def test_fok_ignores_own_orders_behind_the_liquidity_it_needs() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6000, 10, "X")
    place(eng, "B1", "sell", 6010, 5, "X")
    events = accepted(place(eng, "B1", "buy", 6010, 10, "X", tif="fok"))
    assert [(t.sell_account, t.quantity) for t in trades(events)] == [("A1", 10)]


def test_gtc_and_day_orders_rest() -> None:
    eng = no_fee_engine()
    day = oid(place(eng, "A1", "buy", 5990, 1, "X"))
    gtc = oid(place(eng, "A1", "buy", 5990, 1, "X", tif="gtc"))
    assert book_ids(eng, "X")[0] == [day, gtc]
    assert eng.orders[gtc].tif == "gtc"


# ---------------------------------------------------------------------- settlement, fees


def test_fill_settles_delivery_versus_payment_with_fees(demo_config: MarketConfig) -> None:
    """SHEA charges 0.05% per side: 7 t at 60.01 = 420.07 CNY, fee 0.21 each."""
    eng = funded_engine(demo_config)
    place(eng, "A1", "sell", 6001, 7)
    events = accepted(place(eng, "B1", "buy", 6001, 7))
    (trade,) = trades(events)
    assert (trade.buy_fee, trade.sell_fee, trade.vintages) == (21, 21, [(2025, 7)])
    assert cash(eng, "B1") == (CASH - 42_007 - 21, 0)
    assert cash(eng, "A1") == (CASH + 42_007 - 21, 0)
    assert eng.fees_collected == 42


def test_fees_are_charged_per_fill_rounded_down_and_never_exceed_the_hold() -> None:
    """Fee 0.09%: one tonne at 60.01 costs 5.4009 fen fee -> 5; three fills charge
    15 while the order froze floor(16.2027) = 16; the extra fen comes back."""
    eng = funded_engine(make_config(instrument("X", fee_buy="0.0009")), cash=CASH)
    for account in ("A1", "A2", "B2"):
        place(eng, account, "sell", 6001, 1, "X")
    events = accepted(place(eng, "B1", "buy", 6001, 3, "X"))
    assert balances(events, "B1")[0].frozen == 18_003 + 16
    assert [t.buy_fee for t in trades(events)] == [5, 5, 5]
    assert cash(eng, "B1") == (CASH - 18_003 - 15, 0)
    assert eng.fees_collected == 15


def test_sell_delivers_the_oldest_vintage_first(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, tonnes=0)
    eng.apply(Deposit(ts=T0 + 1, account="A1", instrument="SHEA", quantity=10, vintage=2024))
    eng.apply(Deposit(ts=T0 + 1, account="A1", instrument="SHEA", quantity=10, vintage=2026))
    eng.apply(Deposit(ts=T0 + 1, account="A1", instrument="SHEA", quantity=10, vintage=2025))
    place(eng, "A1", "sell", 6000, 15)
    events = accepted(place(eng, "B1", "buy", 6000, 15))
    assert trades(events)[0].vintages == [(2024, 10), (2025, 5)]
    holdings = eng.accounts["B1"].holdings["SHEA"]
    assert (holdings[2024].tradable, holdings[2025].tradable) == (10, 5)
    a1 = eng.accounts["A1"].holdings["SHEA"]
    assert [(v, p.tradable, p.frozen) for v, p in sorted(a1.items())] == [(2024, 0, 0), (2025, 5, 0), (2026, 10, 0)]


def test_cancel_releases_exactly_what_is_still_frozen(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    buy = oid(place(eng, "A1", "buy", 6000, 10))
    place(eng, "B1", "sell", 6000, 4)
    # hold for the 6 t left: 360.00 + fee 0.18
    assert cash(eng, "A1")[1] == 36_000 + 18
    events = accepted(cancel(eng, "A1", buy))
    assert cash(eng, "A1") == (CASH - 24_000 - 12, 0)
    check_events(eng, events)
    sell = oid(place(eng, "B1", "sell", 6000, 10))
    place(eng, "A1", "buy", 6000, 3)
    cancel(eng, "B1", sell)
    assert tonnes(eng, "B1", "SHEA") == (10_000 - 4 - 3, 0, 0, 0)


# ---------------------------------------------------------------------- execution reports


def test_execution_reports_follow_fix_semantics() -> None:
    eng = no_fee_engine()
    rest = oid(place(eng, "A1", "sell", 6000, 10, "X", client_order_id="s-1"))
    first = place(eng, "B1", "buy", 6000, 4, "X")
    check_events(eng, first)
    (r,) = reports(first, rest)
    assert (r.exec_type, r.status, r.quantity, r.cum_qty, r.leaves_qty, r.last_qty, r.last_price) == (
        "trade",
        "partially_filled",
        10,
        4,
        6,
        4,
        6000,
    )
    assert r.client_order_id == "s-1" and r.trade_id == trades(first)[0].trade_id
    second = place(eng, "B1", "buy", 6000, 6, "X")
    check_events(eng, second)
    (r,) = reports(second, rest)
    assert (r.status, r.cum_qty, r.leaves_qty, r.cum_notional) == ("filled", 10, 0, 60_000)


def test_every_event_carries_the_commands_seq() -> None:
    eng = no_fee_engine()
    for account, side in (("A1", "sell"), ("A2", "sell"), ("B1", "buy")):
        events = place(eng, account, side, 6000, 5 if side == "sell" else 10, "X")
        assert events and {e.seq for e in events} == {eng.seq}
        check_events(eng, events)


def test_trade_ids_are_consecutive_and_trades_are_listed_per_account() -> None:
    eng = no_fee_engine()
    place(eng, "A1", "sell", 6000, 5, "X")
    place(eng, "A2", "sell", 6000, 5, "X")
    events = place(eng, "B1", "buy", 6000, 10, "X")
    assert [t.trade_id for t in trades(events)] == [1, 2]
    assert [t.trade_id for t in eng.trades_of("M2", "B1")] == [1, 2]
    assert [t.trade_id for t in eng.trades_of("M1", "A2")] == [2]
    assert eng.trades_of("M1", "B1") == []  # another member's account shows nothing
