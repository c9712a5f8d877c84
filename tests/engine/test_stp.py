"""Self-trade prevention (MARKET_RULES §2): two orders of the same account never trade
with each other; the aggressor's ``stp`` mode decides which side gives way."""

from __future__ import annotations

import pytest

from carbonx.engine.engine import Engine
from carbonx.engine.testkit import (
    accepted,
    book_ids,
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


@pytest.fixture
def eng() -> Engine:
    return funded_engine(make_config(instrument("X")), cash=CASH)


def test_default_cancel_newest_cancels_the_aggressor(eng: Engine) -> None:
    own = oid(place(eng, "A1", "sell", 6000, 10, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 10, "X"))
    check_events(eng, events)
    agg = oid(events)
    assert trades(events) == []
    assert exec_types(events, agg) == ["new", "cancelled"]
    assert reports(events, agg)[-1].reason == "SELF_TRADE_PREVENTION"
    assert book_ids(eng, "X")[1] == [own]
    assert cash(eng, "A1") == (CASH, 0)


def test_cancel_newest_after_filling_better_prices_from_others(eng: Engine) -> None:
    place(eng, "B1", "sell", 5990, 3, "X")
    own = oid(place(eng, "A1", "sell", 6000, 10, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 10, "X"))
    assert [(t.sell_account, t.quantity) for t in trades(events)] == [("B1", 3)]
    last = reports(events, oid(events))[-1]
    assert (last.status, last.cum_qty, last.leaves_qty) == ("cancelled", 3, 0)
    assert book_ids(eng, "X")[1] == [own]


def test_same_member_different_accounts_do_trade(eng: Engine) -> None:
    place(eng, "A1", "sell", 6000, 10, "X")
    events = accepted(place(eng, "A2", "buy", 6000, 10, "X"))
    assert [(t.buy_account, t.sell_account) for t in trades(events)] == [("A2", "A1")]


def test_cancel_oldest_cancels_resting_and_keeps_matching(eng: Engine) -> None:
    own = oid(place(eng, "A1", "sell", 6000, 5, "X"))
    other = oid(place(eng, "B1", "sell", 6000, 5, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 8, "X", stp="cancel_oldest"))
    check_events(eng, events)
    assert exec_types(events, own) == ["cancelled"]
    assert reports(events, own)[0].reason == "SELF_TRADE_PREVENTION"
    assert [(t.sell_order_id, t.quantity) for t in trades(events)] == [(other, 5)]
    agg = oid(events)
    assert book_ids(eng, "X") == ([agg], [])
    assert eng.orders[agg].leaves_qty == 3
    assert tonnes(eng, "A1", "X") == (10_005, 0, 0, 0)


def test_cancel_both_cancels_both(eng: Engine) -> None:
    own = oid(place(eng, "A1", "sell", 6000, 5, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 8, "X", stp="cancel_both"))
    check_events(eng, events)
    agg = oid(events)
    assert exec_types(events, own) == ["cancelled"]
    assert exec_types(events, agg) == ["new", "cancelled"]
    assert book_ids(eng, "X") == ([], [])
    assert cash(eng, "A1") == (CASH, 0)
    assert tonnes(eng, "A1", "X") == (10_000, 0, 0, 0)


def test_decrement_smaller_aggressor_shrinks_the_resting_order(eng: Engine) -> None:
    own = oid(place(eng, "A1", "sell", 6000, 10, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 4, "X", stp="decrement"))
    check_events(eng, events)
    agg = oid(events)
    assert exec_types(events, agg) == ["new", "cancelled"]
    (replaced,) = reports(events, own)
    assert (replaced.exec_type, replaced.quantity, replaced.leaves_qty, replaced.reason) == ("replaced", 6, 6, "SELF_TRADE_PREVENTION")
    assert eng.depth("X") == ([], [(6000, 6)])
    assert tonnes(eng, "A1", "X") == (9_994, 6, 0, 0)
    assert cash(eng, "A1") == (CASH, 0)


def test_decrement_larger_aggressor_continues_and_rests(eng: Engine) -> None:
    own = oid(place(eng, "A1", "sell", 6000, 4, "X"))
    other = oid(place(eng, "B1", "sell", 6000, 3, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 10, "X", stp="decrement"))
    check_events(eng, events)
    agg = oid(events)
    assert exec_types(events, own) == ["cancelled"]
    assert [(t.sell_order_id, t.quantity) for t in trades(events)] == [(other, 3)]
    assert exec_types(events, agg) == ["new", "replaced", "trade"]
    final = eng.orders[agg]
    assert (final.quantity, final.cum_qty, final.leaves_qty) == (6, 3, 3)
    assert eng.depth("X") == ([(6000, 3)], [])
    assert cash(eng, "A1") == (CASH - 18_000 - 18_000, 18_000)


def test_decrement_equal_sizes_cancels_both(eng: Engine) -> None:
    own = oid(place(eng, "A1", "sell", 6000, 5, "X"))
    events = accepted(place(eng, "A1", "buy", 6000, 5, "X", stp="decrement"))
    assert exec_types(events, own) == ["cancelled"]
    assert exec_types(events, oid(events)) == ["new", "cancelled"]
    assert book_ids(eng, "X") == ([], [])


@pytest.mark.parametrize("stp", ["cancel_newest", "cancel_oldest", "cancel_both", "decrement"])
def test_no_mode_ever_trades_with_itself(eng: Engine, stp: str) -> None:
    for price in (6000, 6010, 6020):
        place(eng, "A1", "sell", price, 5, "X")
    place(eng, "B1", "sell", 6010, 5, "X")
    events = accepted(place(eng, "A1", "buy", 6020, 30, "X", stp=stp))
    check_events(eng, events)
    assert all(t.buy_account != t.sell_account for t in trades(events))
    assert not eng.books["X"].crossed()
