"""Amend, cancel and mass cancel (MARKET_RULES §2, PROTOCOL order.amend/cancel):
priority on amend, re-holding cash and tonnes, and who may touch which order."""

from __future__ import annotations

import pytest

from carbonx.engine import reasons as R
from carbonx.engine.checks import order_ref_failure
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CancelAll, Deposit, ExecReport
from carbonx.engine.testkit import (
    accepted,
    amend,
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
    reason,
    rejects,
    reports,
    state_bytes,
    tonnes,
    trades,
)

CASH = 100_000_000


@pytest.fixture
def eng() -> Engine:
    return funded_engine(make_config(instrument("X"), instrument("Y", reference_price="30.00")), cash=CASH)


def two_bids(eng: Engine) -> tuple[int, int]:
    first = oid(place(eng, "A1", "buy", 6000, 10, "X"))
    second = oid(place(eng, "A2", "buy", 6000, 10, "X"))
    return first, second


# ---------------------------------------------------------------------- amend and priority


def test_reducing_quantity_keeps_priority_and_releases_cash(eng: Engine) -> None:
    first, second = two_bids(eng)
    events = accepted(amend(eng, "A1", first, quantity=4))
    check_events(eng, events)
    (r,) = reports(events)
    assert (r.exec_type, r.status, r.quantity, r.leaves_qty) == ("replaced", "new", 4, 4)
    assert cash(eng, "A1") == (CASH - 24_000, 24_000)
    assert book_ids(eng, "X")[0] == [first, second]
    assert eng.depth("X")[0] == [(6000, 14)]
    fills = place(eng, "B1", "sell", 6000, 4, "X")
    assert [t.buy_order_id for t in trades(fills)] == [first]


def test_increasing_quantity_loses_priority(eng: Engine) -> None:
    first, second = two_bids(eng)
    events = accepted(amend(eng, "A1", first, quantity=15))
    assert reports(events)[0].quantity == 15
    assert cash(eng, "A1") == (CASH - 90_000, 90_000)
    assert book_ids(eng, "X")[0] == [second, first]


def test_price_change_loses_priority_even_when_changed_back(eng: Engine) -> None:
    first, second = two_bids(eng)
    accepted(amend(eng, "A1", first, price=6001))
    assert book_ids(eng, "X")[0] == [first, second]  # better price: now first
    accepted(amend(eng, "A1", first, price=6000))
    assert book_ids(eng, "X")[0] == [second, first]
    assert cash(eng, "A1") == (CASH - 60_000, 60_000)


def test_amend_that_crosses_trades_at_once_at_the_resting_price(eng: Engine) -> None:
    ask = oid(place(eng, "B1", "sell", 6005, 4, "X"))
    bid = oid(place(eng, "A1", "buy", 6000, 10, "X"))
    events = accepted(amend(eng, "A1", bid, price=6010))
    check_events(eng, events)
    assert exec_types(events, bid) == ["replaced", "trade"]
    (trade,) = trades(events)
    assert (trade.sell_order_id, trade.price, trade.quantity, trade.aggressor) == (ask, 6005, 4, "buy")
    assert eng.depth("X") == ([(6010, 6)], [])
    assert cash(eng, "A1") == (CASH - 24_020 - 36_060, 36_060)


def test_amend_a_partially_filled_order(eng: Engine) -> None:
    bid = oid(place(eng, "A1", "buy", 6000, 10, "X"))
    place(eng, "B1", "sell", 6000, 4, "X")
    for qty in (3, 4):
        rej = rejects(amend(eng, "A1", bid, quantity=qty))
        assert [(r.reason, r.field) for r in rej] == [(R.INVALID_QUANTITY, "quantity")]
    events = accepted(amend(eng, "A1", bid, quantity=5))
    (r,) = reports(events)
    assert (r.status, r.quantity, r.cum_qty, r.leaves_qty) == ("partially_filled", 5, 4, 1)
    assert cash(eng, "A1") == (CASH - 24_000 - 6_000, 6_000)


def test_amend_by_client_order_id(eng: Engine) -> None:
    place(eng, "A1", "buy", 6000, 10, "X", client_order_id="mine")
    events = accepted(amend(eng, "A1", client_order_id="mine", quantity=2))
    assert reports(events)[0].client_order_id == "mine"
    accepted(amend(eng, "A1", client_order_id="mine", price=5990))  # still found after re-queueing
    assert eng.depth("X")[0] == [(5990, 2)]


def test_amend_sell_re_freezes_and_releases_tonnes(eng: Engine) -> None:
    ask = oid(place(eng, "B1", "sell", 6000, 10, "X"))
    accepted(amend(eng, "B1", ask, quantity=25))
    assert tonnes(eng, "B1", "X") == (9_975, 25, 0, 0)
    accepted(amend(eng, "B1", ask, quantity=5))
    assert tonnes(eng, "B1", "X") == (9_995, 5, 0, 0)
    accepted(amend(eng, "B1", ask, price=6100, quantity=8))
    assert tonnes(eng, "B1", "X") == (9_992, 8, 0, 0)


@pytest.mark.parametrize(
    ("fields", "expected", "field"),
    [
        ({}, R.INVALID_ORDER, "price"),
        ({"price": 6601}, R.PRICE_OUT_OF_BAND, "price"),
        ({"price": 0}, R.INVALID_PRICE, "price"),
        ({"quantity": 0}, R.INVALID_QUANTITY, "quantity"),
        ({"quantity": 100_000}, R.INVALID_QUANTITY, "quantity"),
        ({"quantity": 9_999}, R.INSUFFICIENT_FUNDS, "quantity"),
        ({"price": 6600, "quantity": 9_000}, R.INSUFFICIENT_FUNDS, "quantity"),
    ],
)
def test_amend_rejects_change_nothing(eng: Engine, fields: dict[str, int], expected: str, field: str) -> None:
    funded = funded_engine(make_config(instrument("X")), cash=600_000)
    bid = oid(place(funded, "A1", "buy", 6000, 10, "X"))
    before = state_bytes(funded)
    events = amend(funded, "A1", bid, **fields)
    assert reason(events) == expected
    assert rejects(events)[0].field == field and rejects(events)[0].order_id == bid
    assert state_bytes(funded) == before


def test_amend_sell_beyond_holdings(eng: Engine) -> None:
    ask = oid(place(eng, "B1", "sell", 6000, 10, "X"))
    assert reason(amend(eng, "B1", ask, quantity=10_001)) == R.INSUFFICIENT_HOLDINGS
    accepted(amend(eng, "B1", ask, quantity=10_000))


def test_off_tick_amend() -> None:
    eng = funded_engine(make_config(instrument("X", tick="0.05")))
    bid = oid(place(eng, "A1", "buy", 6000, 10, "X"))
    assert reason(amend(eng, "A1", bid, price=6002)) == R.INVALID_TICK


def test_post_only_amend_that_would_cross(eng: Engine) -> None:
    place(eng, "B1", "sell", 6010, 10, "X")
    bid = oid(place(eng, "A1", "buy", 6000, 10, "X", post_only=True))
    assert reason(amend(eng, "A1", bid, price=6010)) == R.POST_ONLY_WOULD_CROSS
    accepted(amend(eng, "A1", bid, price=6009))
    accepted(amend(eng, "A1", bid, quantity=20))  # same price: no cross check needed


# ---------------------------------------------------------------------- cancel


def test_cancel_ends_the_order_once(eng: Engine) -> None:
    bid = oid(place(eng, "A1", "buy", 6000, 10, "X"))
    events = accepted(cancel(eng, "A1", bid))
    check_events(eng, events)
    (r,) = reports(events)
    assert (r.exec_type, r.status, r.leaves_qty, r.quantity) == ("cancelled", "cancelled", 0, 10)
    assert cash(eng, "A1") == (CASH, 0)
    assert eng.depth("X") == ([], [])
    rej = rejects(cancel(eng, "A1", bid))
    assert [(r.reason, r.message) for r in rej] == [(R.UNKNOWN_ORDER, "order is not open")]


def test_cancel_by_client_order_id(eng: Engine) -> None:
    place(eng, "A1", "buy", 6000, 10, "X", client_order_id="c")
    accepted(cancel(eng, "A1", client_order_id="c"))
    assert reason(cancel(eng, "A1", client_order_id="c")) == R.UNKNOWN_ORDER


def test_cancel_needs_an_order_reference(eng: Engine) -> None:
    assert reason(cancel(eng, "A1")) == R.INVALID_ORDER


def test_an_order_reference_names_exactly_one_id(eng: Engine) -> None:
    """order_id and client_order_id together are refused (not silently resolved by id),
    for cancels and amends alike, with the same answer readers get from order_ref_failure."""
    order_id = oid(place(eng, "A1", "buy", 6000, 10, "X", client_order_id="c"))
    before = state_bytes(eng)
    for events in (cancel(eng, "A1", order_id, client_order_id="c"), amend(eng, "A1", order_id, client_order_id="c", quantity=5)):
        assert reason(events) == R.INVALID_ORDER
        assert rejects(events)[0].field == "order_id"
    assert reason(amend(eng, "A1", quantity=5)) == R.INVALID_ORDER
    assert state_bytes(eng) == before
    rej = rejects(cancel(eng, "A1"))[0]
    assert order_ref_failure(order_id, "c") == order_ref_failure(0, "") == (rej.reason, rej.message, rej.field)
    assert order_ref_failure(order_id, "") is None and order_ref_failure(0, "c") is None


def test_another_members_order_id_is_unknown_not_forbidden(eng: Engine) -> None:
    theirs = oid(place(eng, "B1", "buy", 6000, 10, "X"))
    mine_wrong_account = rejects(cancel(eng, "A1", theirs))
    nowhere = rejects(cancel(eng, "A1", 999_999))
    assert [(r.reason, r.message) for r in mine_wrong_account] == [(R.UNKNOWN_ORDER, "order does not exist")]
    assert [(r.reason, r.message) for r in nowhere] == [(R.UNKNOWN_ORDER, "order does not exist")]
    assert reason(amend(eng, "A1", theirs, quantity=1)) == R.UNKNOWN_ORDER
    # and naming their account is NOT_AUTHORIZED, like an unknown account
    assert reason(cancel(eng, "B1", theirs, member="M1")) == R.NOT_AUTHORIZED
    assert reason(cancel(eng, "ZZ", theirs, member="M1")) == R.NOT_AUTHORIZED
    assert eng.orders[theirs].leaves_qty == 10


def test_filled_order_cannot_be_cancelled_or_amended(eng: Engine) -> None:
    bid = oid(place(eng, "A1", "buy", 6000, 10, "X"))
    place(eng, "B1", "sell", 6000, 10, "X")
    assert reason(cancel(eng, "A1", bid)) == R.UNKNOWN_ORDER
    assert reason(amend(eng, "A1", bid, quantity=20)) == R.UNKNOWN_ORDER


# ---------------------------------------------------------------------- mass cancel


def populate(eng: Engine) -> dict[str, int]:
    ids = {
        "A1-X-buy": oid(place(eng, "A1", "buy", 5900, 1, "X", session="s1")),
        "A1-X-sell": oid(place(eng, "A1", "sell", 6100, 1, "X", session="s2")),
        "A1-Y-buy": oid(place(eng, "A1", "buy", 2900, 1, "Y", session="s1")),
        "A2-X-buy": oid(place(eng, "A2", "buy", 5900, 1, "X", session="s1")),
        "B1-X-buy": oid(place(eng, "B1", "buy", 5900, 1, "X", session="s3")),
    }
    return ids


def cancelled_by(eng: Engine, cmd: CancelAll) -> set[int]:
    events = accepted(eng.apply(cmd))
    check_events(eng, events)
    done = [e for e in events if isinstance(e, ExecReport)]
    assert all(r.exec_type == "cancelled" for r in done)
    return {r.order_id for r in done}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"member": "M1"}, {"A1-X-buy", "A1-X-sell", "A1-Y-buy", "A2-X-buy"}),
        ({"member": "M1", "account": "A1"}, {"A1-X-buy", "A1-X-sell", "A1-Y-buy"}),
        ({"member": "M1", "instrument": "Y"}, {"A1-Y-buy"}),
        ({"member": "M1", "side": "sell"}, {"A1-X-sell"}),
        ({"member": "M1", "account": "A1", "instrument": "X", "side": "buy"}, {"A1-X-buy"}),
        ({"member": "M1", "session": "s1"}, {"A1-X-buy", "A1-Y-buy", "A2-X-buy"}),
        ({"member": "M2", "session": "s1"}, set()),
        ({}, {"A1-X-buy", "A1-X-sell", "A1-Y-buy", "A2-X-buy", "B1-X-buy"}),
        ({"instrument": "X", "side": "buy"}, {"A1-X-buy", "A2-X-buy", "B1-X-buy"}),
    ],
)
def test_cancel_all_filters(eng: Engine, filters: dict[str, str], expected: set[str]) -> None:
    ids = populate(eng)
    got = cancelled_by(eng, CancelAll(ts=eng.ts + 1, **filters))  # type: ignore[arg-type]
    assert got == {ids[k] for k in expected}
    for key, order_id in ids.items():
        assert (eng.orders[order_id].leaves_qty == 0) == (key in expected)
    assert cash(eng, "B1")[1] == (0 if "B1-X-buy" in expected else 5900)


def test_cancel_all_for_another_members_account_is_not_authorized(eng: Engine) -> None:
    populate(eng)
    assert reason(eng.apply(CancelAll(ts=eng.ts + 1, member="M1", account="B1"))) == R.NOT_AUTHORIZED
    assert reason(eng.apply(CancelAll(ts=eng.ts + 1, member="M1", account="ZZ"))) == R.NOT_AUTHORIZED
    assert reason(eng.apply(CancelAll(ts=eng.ts + 1, member="M1", instrument="NOPE"))) == R.UNKNOWN_INSTRUMENT


def test_cancel_all_releases_every_hold(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    place(eng, "A1", "buy", 6000, 10)
    place(eng, "A1", "sell", 6100, 10)
    place(eng, "A1", "buy", 8000, 10, "CCER")
    accepted(eng.apply(CancelAll(ts=eng.ts + 1, member="M1", account="A1")))
    assert cash(eng, "A1") == (CASH, 0)
    assert tonnes(eng, "A1", "SHEA") == (10_000, 0, 0, 0)


# ---------------------------------------------------------------------- vintages


def vintage_engine(demo_config: MarketConfig) -> Engine:
    """A1 holds SHEA 2024: 5 t, 2025: 5 t, 2026: 5 t."""
    eng = funded_engine(demo_config, tonnes=0)
    for vintage in (2024, 2025, 2026):
        eng.apply(Deposit(ts=eng.ts, account="A1", instrument="SHEA", quantity=5, vintage=vintage))
    return eng


def by_vintage(eng: Engine, account: str) -> list[tuple[int, int, int]]:
    return [(v, p.tradable, p.frozen) for v, p in sorted(eng.accounts[account].holdings["SHEA"].items())]


def test_reducing_a_sell_releases_the_newest_vintage_first(demo_config: MarketConfig) -> None:
    eng = vintage_engine(demo_config)
    ask = oid(place(eng, "A1", "sell", 6000, 12))
    assert by_vintage(eng, "A1") == [(2024, 0, 5), (2025, 0, 5), (2026, 3, 2)]
    accepted(amend(eng, "A1", ask, quantity=7))
    assert by_vintage(eng, "A1") == [(2024, 0, 5), (2025, 3, 2), (2026, 5, 0)]
    fills = accepted(place(eng, "B1", "buy", 6000, 7))
    assert trades(fills)[0].vintages == [(2024, 5), (2025, 2)]
    assert by_vintage(eng, "A1") == [(2024, 0, 0), (2025, 3, 0), (2026, 5, 0)]


def test_increasing_a_sell_freezes_more_of_the_oldest_tradable_vintage(demo_config: MarketConfig) -> None:
    eng = vintage_engine(demo_config)
    ask = oid(place(eng, "A1", "sell", 6000, 4))
    accepted(amend(eng, "A1", ask, quantity=9))
    assert by_vintage(eng, "A1") == [(2024, 0, 5), (2025, 1, 4), (2026, 5, 0)]
    place(eng, "B1", "buy", 6000, 2)
    accepted(amend(eng, "A1", ask, quantity=15))  # 13 left to hold: everything
    assert by_vintage(eng, "A1") == [(2024, 0, 3), (2025, 0, 5), (2026, 0, 5)]
    assert reason(amend(eng, "A1", ask, quantity=16)) == R.INSUFFICIENT_HOLDINGS
    accepted(cancel(eng, "A1", ask))
    assert by_vintage(eng, "A1") == [(2024, 3, 0), (2025, 5, 0), (2026, 5, 0)]


def test_decrement_on_a_multi_vintage_sell(demo_config: MarketConfig) -> None:
    eng = vintage_engine(demo_config)
    ask = oid(place(eng, "A1", "sell", 6000, 12))
    events = accepted(place(eng, "A1", "buy", 6000, 4, stp="decrement"))
    check_events(eng, events)
    assert eng.orders[ask].leaves_qty == 8
    assert by_vintage(eng, "A1") == [(2024, 0, 5), (2025, 2, 3), (2026, 5, 0)]
