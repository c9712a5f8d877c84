"""Pre-trade risk (MARKET_RULES §2-§3): every reject reason of ``risk.check_place``,
its edge cases (band limits, tick rounding, exactly-enough cash) and the fixed order
in which the checks run. A rejected order must change nothing."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine import reasons as R
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AnyCommand,
    CreateAccount,
    DayClose,
    DayOpen,
    Deposit,
    PlaceOrder,
    Reject,
    SetBlocked,
    SetHalt,
    SetReference,
)
from carbonx.engine.testkit import (
    T0,
    accepted,
    amend,
    balances,
    book_ids,
    cancel,
    cash,
    check_events,
    funded_engine,
    instrument,
    make_config,
    oid,
    place,
    reason,
    rejects,
    state_bytes,
    tonnes,
)


def reject_unchanged(eng: Engine, expected: str, *args: object, **kwargs: object) -> Reject:
    """Place an order that must be rejected with ``expected`` and change nothing."""
    before = state_bytes(eng)
    events = place(eng, *args, **kwargs)  # type: ignore[arg-type]
    assert reason(events) == expected, events
    assert state_bytes(eng) == before
    check_events(eng, events)
    rej = rejects(events)[0]
    assert rej.command == "place"
    return rej


# ---------------------------------------------------------------------- quantity


@pytest.mark.parametrize("qty", [0, -1, 100_000, 250_000])
def test_quantity_outside_1_to_99999_is_rejected(engine: Engine, qty: int) -> None:
    rej = reject_unchanged(engine, R.INVALID_QUANTITY, "A1", "buy", 6000, qty)
    assert rej.field == "quantity"


def test_block_sized_quantity_points_to_block_trading(engine: Engine) -> None:
    rej = reject_unchanged(engine, R.INVALID_QUANTITY, "A1", "buy", 6000, 100_000)
    assert "block" in rej.message


@pytest.mark.parametrize("qty", [1, 99_999])
def test_quantity_limits_are_inclusive(qty: int) -> None:
    eng = funded_engine(make_config(instrument("X")), cash=10**12, tonnes=100_000)
    accepted(place(eng, "A1", "buy", 6000, qty, "X"))
    accepted(place(eng, "B1", "sell", 6100, qty, "X"))


def test_quantity_must_be_a_multiple_of_the_lot() -> None:
    eng = funded_engine(make_config(instrument("X", lot=10, min_qty=10)))
    assert reason(place(eng, "A1", "buy", 6000, 15, "X")) == R.INVALID_QUANTITY
    assert "lot 10" in rejects(place(eng, "A1", "buy", 6000, 25, "X"))[0].message
    accepted(place(eng, "A1", "buy", 6000, 20, "X"))


# ---------------------------------------------------------------------- price: tick and band


def test_demo_band_is_ten_percent_of_reference_and_limits_are_inclusive(engine: Engine) -> None:
    st = engine.instruments["SHEA"]
    assert (st.lower, st.upper) == (5400, 6600)
    accepted(place(engine, "A1", "buy", 6600, 1))
    accepted(place(engine, "B1", "sell", 5400 + 1200, 1))  # sells at the upper limit too
    accepted(place(engine, "A2", "buy", 5400, 1))
    reject_unchanged(engine, R.PRICE_OUT_OF_BAND, "A1", "buy", 6601, 1)
    reject_unchanged(engine, R.PRICE_OUT_OF_BAND, "B1", "sell", 5399, 1)


def test_band_rounds_upper_down_and_lower_up_to_the_tick(engine: Engine) -> None:
    """Reference 60.03: ±10% is [54.027, 66.033] -> [54.03, 66.03]."""
    events = engine.apply(SetReference(ts=T0 + 10, instrument="SHEA", price=6003))
    assert [(e.price, e.lower, e.upper) for e in events] == [(6003, 5403, 6603)]  # type: ignore[attr-defined]
    accepted(place(engine, "A1", "buy", 6603, 1))
    accepted(place(engine, "A1", "buy", 5403, 1))
    rej = reject_unchanged(engine, R.PRICE_OUT_OF_BAND, "A1", "buy", 6604, 1)
    assert rej.field == "price" and "54.03" in rej.message and "66.03" in rej.message
    reject_unchanged(engine, R.PRICE_OUT_OF_BAND, "B1", "sell", 5402, 1)


def test_band_rounding_with_a_coarse_tick() -> None:
    """Tick 0.05, reference 60.15: raw band [54.135, 66.165] -> [54.15, 66.15]."""
    eng = funded_engine(make_config(instrument("X", tick="0.05", reference_price="60.15")))
    st = eng.instruments["X"]
    assert (st.lower, st.upper) == (5415, 6615)
    accepted(place(eng, "A1", "buy", 6615, 1, "X"))
    accepted(place(eng, "A1", "buy", 5415, 1, "X"))
    assert reason(place(eng, "A1", "buy", 6620, 1, "X")) == R.PRICE_OUT_OF_BAND
    assert reason(place(eng, "A1", "buy", 5410, 1, "X")) == R.PRICE_OUT_OF_BAND


@pytest.mark.parametrize("price", [6001, 6004, 6016])
def test_off_tick_price_is_rejected(price: int) -> None:
    eng = funded_engine(make_config(instrument("X", tick="0.05")))
    rej = reject_unchanged(eng, R.INVALID_TICK, "A1", "buy", price, 1, "X")
    assert rej.field == "price" and "0.05" in rej.message
    accepted(place(eng, "A1", "buy", price - price % 5, 1, "X"))


@pytest.mark.parametrize("price", [0, -6000])
def test_limit_order_needs_a_positive_price(engine: Engine, price: int) -> None:
    reject_unchanged(engine, R.INVALID_PRICE, "A1", "buy", price, 1)


def test_band_is_checked_for_sells_too(engine: Engine) -> None:
    reject_unchanged(engine, R.PRICE_OUT_OF_BAND, "B1", "sell", 6601, 1)


# ---------------------------------------------------------------------- order shape


def test_market_order_with_a_price_is_invalid(engine: Engine) -> None:
    rej = reject_unchanged(engine, R.INVALID_ORDER, "A1", "buy", 6000, 1, type="market")
    assert rej.field == "price"
    for price in (0, -1):  # any price at all, 0 included (-1: what older gateways journaled)
        assert reject_unchanged(engine, R.INVALID_ORDER, "A1", "buy", price, 1, type="market").field == "price"


def test_limit_order_without_a_price_is_invalid(engine: Engine) -> None:
    rej = reject_unchanged(engine, R.INVALID_PRICE, "A1", "buy", None, 1)
    assert rej.field == "price"
    assert reject_unchanged(engine, R.INVALID_PRICE, "A1", "buy", 0, 1).field == "price"


def test_journaled_place_orders_written_before_price_was_optional_decode_the_same(engine: Engine) -> None:
    """Older journals omitted the 0 default of a market order's price and carried -1 for a
    market order that had a price: they decode to no price / a price, and apply as before."""
    old = {"c": "place", "ts": T0 + 5, "member": "M1", "account": "A1", "instrument": "SHEA", "side": "buy", "quantity": 1}
    decoder = msgspec.msgpack.Decoder(AnyCommand)
    market = decoder.decode(msgspec.msgpack.encode({**old, "type": "market"}))
    assert isinstance(market, PlaceOrder) and market.price is None
    assert reason(engine.apply(market)) is None
    priced = decoder.decode(msgspec.msgpack.encode({**old, "type": "market", "price": -1}))
    assert isinstance(priced, PlaceOrder) and priced.price == -1
    assert reason(engine.apply(priced)) == R.INVALID_ORDER
    written = msgspec.msgpack.decode(msgspec.msgpack.encode(market))  # what a journal holds now
    assert "price" not in written and written["type"] == "market"  # as before: no price key


def test_market_order_cannot_be_post_only(engine: Engine) -> None:
    rej = reject_unchanged(engine, R.INVALID_ORDER, "A1", "buy", None, 1, type="market", post_only=True)
    assert rej.field == "post_only"


@pytest.mark.parametrize("tif", ["ioc", "fok"])
def test_post_only_must_be_able_to_rest(engine: Engine, tif: str) -> None:
    rej = reject_unchanged(engine, R.INVALID_ORDER, "A1", "buy", 5900, 1, post_only=True, tif=tif)
    assert rej.field == "post_only"


def test_post_only_that_would_cross_is_rejected_not_repriced(engine: Engine) -> None:
    accepted(place(engine, "B1", "sell", 6000, 5))
    accepted(place(engine, "B1", "buy", 5900, 5))
    reject_unchanged(engine, R.POST_ONLY_WOULD_CROSS, "A1", "buy", 6000, 1, post_only=True)
    reject_unchanged(engine, R.POST_ONLY_WOULD_CROSS, "A1", "buy", 6100, 1, post_only=True)
    reject_unchanged(engine, R.POST_ONLY_WOULD_CROSS, "A1", "sell", 5900, 1, post_only=True)
    events = accepted(place(engine, "A1", "buy", 5999, 1, post_only=True))
    assert oid(events) in book_ids(engine, "SHEA")[0]
    accepted(place(engine, "A1", "sell", 6000, 1, post_only=True))  # joins the ask


def test_unknown_instrument(engine: Engine) -> None:
    rej = reject_unchanged(engine, R.UNKNOWN_INSTRUMENT, "A1", "buy", 6000, 1, "NOPE")
    assert rej.field == "instrument"


# ---------------------------------------------------------------------- who may trade


def test_another_members_account_looks_exactly_like_an_unknown_one(engine: Engine) -> None:
    theirs = reject_unchanged(engine, R.NOT_AUTHORIZED, "B1", "buy", 6000, 1, member="M1")
    unknown = reject_unchanged(engine, R.NOT_AUTHORIZED, "ZZ", "buy", 6000, 1, member="M1")
    assert theirs.field == unknown.field == "account"
    assert theirs.message.replace("B1", "?") == unknown.message.replace("ZZ", "?")


def test_ccer_excludes_individuals(engine: Engine) -> None:
    rej = reject_unchanged(engine, R.NOT_ELIGIBLE, "B2", "buy", 8000, 1, "CCER")
    assert "individual" in rej.message
    reject_unchanged(engine, R.NOT_ELIGIBLE, "B2", "sell", 8000, 1, "CCER")
    accepted(place(engine, "B2", "buy", 2000, 1, "SHCER"))
    accepted(place(engine, "A1", "buy", 8000, 1, "CCER"))


# ---------------------------------------------------------------------- full pre-funding


def test_buy_freezes_notional_plus_fee_and_exactly_enough_is_accepted(demo_config: MarketConfig) -> None:
    # SHEA fee 0.05%: 100 t at 60.00 = 6,000.00 + 3.00 fee
    need = 6000 * 100 + 6000 * 100 * 5 // 10_000
    eng = funded_engine(demo_config, cash=need)
    rej = reject_unchanged(eng, R.INSUFFICIENT_FUNDS, "A1", "buy", 6001, 100)
    assert rej.field == "quantity" and "6003.00" in rej.message
    events = accepted(place(eng, "A1", "buy", 6000, 100))
    assert cash(eng, "A1") == (0, need)
    assert [(b.available, b.frozen) for b in balances(events, "A1")] == [(0, need)]


def test_one_fen_short_is_rejected(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, cash=600_299)
    reject_unchanged(eng, R.INSUFFICIENT_FUNDS, "A1", "buy", 6000, 100)


def test_market_buy_freezes_at_the_upper_band(demo_config: MarketConfig) -> None:
    upper_hold = 6600 * 10 + 6600 * 10 * 5 // 10_000  # 66,033 fen
    eng = funded_engine(demo_config, cash=upper_hold - 1)
    accepted(place(eng, "B1", "sell", 6000, 10))
    # 60.00 x 10 would be affordable, but a market buy is held at the upper limit
    reject_unchanged(eng, R.INSUFFICIENT_FUNDS, "A1", "buy", None, 10, type="market")
    eng.apply(Deposit(ts=T0 + 5, account="A1", cash=1))
    before = cash(eng, "A1")[0]
    events = accepted(place(eng, "A1", "buy", None, 10, type="market"))
    assert balances(events, "A1")[0].frozen == upper_hold
    # it filled at 60.00: the difference to the band hold came back
    assert cash(eng, "A1") == (before - 60_000 - 30, 0)


def test_sell_needs_tradable_tonnes(engine: Engine) -> None:
    accepted(place(engine, "A1", "sell", 6000, 9_000))
    rej = reject_unchanged(engine, R.INSUFFICIENT_HOLDINGS, "A1", "sell", 6000, 1_001)
    assert "1000" in rej.message
    accepted(place(engine, "A1", "sell", 6000, 1_000))
    assert tonnes(engine, "A1", "SHEA") == (0, 10_000, 0, 0)


def test_compliance_only_tonnes_are_not_sellable(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, tonnes=0)
    eng.apply(Deposit(ts=T0 + 1, account="A1", instrument="SHEA", quantity=500, vintage=2025, compliance_only=True))
    reject_unchanged(eng, R.INSUFFICIENT_HOLDINGS, "A1", "sell", 6000, 1)
    assert tonnes(eng, "A1", "SHEA") == (0, 0, 500, 0)


def test_t1_resale_until_the_day_rolls(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, tonnes=0)
    eng.apply(Deposit(ts=T0 + 1, account="B1", instrument="CCER", quantity=10))
    accepted(place(eng, "B1", "sell", 8000, 10, "CCER"))
    accepted(place(eng, "A1", "buy", 8000, 10, "CCER"))
    assert tonnes(eng, "A1", "CCER") == (0, 0, 0, 10)
    rej = reject_unchanged(eng, R.T1_RESALE, "A1", "sell", 8000, 1, "CCER")
    assert "next trading day" in rej.message
    eng.apply(DayClose(ts=T0 + 100))
    assert tonnes(eng, "A1", "CCER") == (10, 0, 0, 0)
    eng.apply(DayOpen(ts=T0 + 86_400 * 10**9))
    accepted(place(eng, "A1", "sell", 8000, 10, "CCER"))


def test_t1_only_reports_t1_when_the_locked_tonnes_would_cover(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, tonnes=0)
    eng.apply(Deposit(ts=T0 + 1, account="B1", instrument="CCER", quantity=10))
    accepted(place(eng, "B1", "sell", 8000, 10, "CCER"))
    accepted(place(eng, "A1", "buy", 8000, 10, "CCER"))
    reject_unchanged(eng, R.INSUFFICIENT_HOLDINGS, "A1", "sell", 8000, 11, "CCER")


def test_without_t1_bought_tonnes_are_sellable_at_once(engine: Engine) -> None:
    accepted(place(engine, "B1", "sell", 6000, 10_000))
    accepted(place(engine, "A1", "buy", 6000, 10_000))
    accepted(place(engine, "A1", "sell", 6000, 20_000))


def test_holding_limit_counts_open_buys(demo_config: MarketConfig) -> None:
    """SHCER: individuals may hold at most 50,000 t; B2 starts with 10,000."""
    eng = funded_engine(demo_config)
    first = accepted(place(eng, "B2", "buy", 2000, 40_000, "SHCER"))
    rej = reject_unchanged(eng, R.HOLDING_LIMIT, "B2", "buy", 2000, 1, "SHCER")
    assert "50000" in rej.message
    accepted(cancel(eng, "B2", oid(first)))
    accepted(place(eng, "B2", "buy", 2000, 40_000, "SHCER"))
    # other participant types have no limit
    accepted(place(eng, "A1", "buy", 2000, 45_000, "SHCER"))


def test_holding_limit_counts_filled_tonnes(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    eng.apply(Deposit(ts=T0 + 2, account="A1", instrument="SHCER", quantity=30_000))
    accepted(place(eng, "A1", "sell", 2000, 40_000, "SHCER"))
    accepted(place(eng, "B2", "buy", 2000, 40_000, "SHCER"))
    assert tonnes(eng, "B2", "SHCER")[0] == 50_000
    reject_unchanged(eng, R.HOLDING_LIMIT, "B2", "buy", 2000, 1, "SHCER")
    accepted(place(eng, "B2", "sell", 2100, 1, "SHCER"))  # selling is always allowed


# ---------------------------------------------------------------------- client order ids


def test_duplicate_client_order_id_only_among_live_orders(engine: Engine) -> None:
    first = accepted(place(engine, "A1", "buy", 5900, 5, client_order_id="c-1"))
    rej = reject_unchanged(engine, R.DUPLICATE_CLIENT_ORDER_ID, "A1", "buy", 5800, 1, client_order_id="c-1")
    assert rej.client_order_id == "c-1" and rej.field == "client_order_id"
    accepted(place(engine, "A2", "buy", 5800, 1, client_order_id="c-1"))  # other account
    accepted(cancel(engine, "A1", oid(first)))
    second = accepted(place(engine, "A1", "buy", 5900, 5, client_order_id="c-1"))  # reuse after cancel
    accepted(place(engine, "B1", "sell", 5900, 5))
    assert engine.orders[oid(second)].status == "filled"
    accepted(place(engine, "A1", "buy", 5900, 5, client_order_id="c-1"))  # reuse after fill


@pytest.mark.parametrize("coid", ["x" * 37, "tab\there", "caf\u00e9"])
def test_client_order_id_must_be_printable_ascii_up_to_36(engine: Engine, coid: str) -> None:
    rej = reject_unchanged(engine, R.INVALID_ORDER, "A1", "buy", 6000, 1, client_order_id=coid)
    assert rej.field == "client_order_id"


def test_client_order_id_of_36_characters_is_fine(engine: Engine) -> None:
    accepted(place(engine, "A1", "buy", 6000, 1, client_order_id="x" * 36))


# ---------------------------------------------------------------------- blocked and phase


def test_blocked_account_cannot_place(engine: Engine) -> None:
    engine.apply(SetBlocked(ts=T0 + 1, account="A1"))
    rej = reject_unchanged(engine, R.ACCOUNT_BLOCKED, "A1", "buy", 6000, 1)
    assert rej.field == "account"
    accepted(place(engine, "A2", "buy", 6000, 1))


def test_halted_instrument_rejects_orders(engine: Engine) -> None:
    engine.apply(SetHalt(ts=T0 + 1, instrument="SHEA", halted=True))
    reject_unchanged(engine, R.INSTRUMENT_HALTED, "A1", "buy", 6000, 1)
    accepted(place(engine, "A1", "buy", 8000, 1, "CCER"))


# ---------------------------------------------------------------------- check order


def test_checks_run_in_the_documented_order(demo_config: MarketConfig) -> None:
    """Who you are, whether you may trade, whether the market is open, the order's
    shape (client id, quantity, tick, band, post-only), then cash or tonnes."""
    eng = funded_engine(demo_config, cash=0, tonnes=0)
    eng.apply(SetBlocked(ts=T0 + 1, account="B2"))
    eng.apply(CreateAccount(ts=T0 + 1, account="B3", member="M2", type="individual"))
    eng.apply(SetHalt(ts=T0 + 1, instrument="CCER", halted=True))
    # blocked beats ineligible, halted and a bad quantity
    assert reason(place(eng, "B2", "buy", 1, 0, "CCER")) == R.ACCOUNT_BLOCKED
    # ineligible beats halted and a bad quantity
    assert reason(place(eng, "B3", "buy", 1, 0, "CCER", member="M2")) == R.NOT_ELIGIBLE
    # halted beats a bad quantity and price
    assert reason(place(eng, "A1", "buy", 1, 0, "CCER")) == R.INSTRUMENT_HALTED
    # an invalid client order id beats a bad quantity
    assert reason(place(eng, "A1", "buy", 1, 0, client_order_id="x" * 40)) == R.INVALID_ORDER
    # quantity beats price
    assert reason(place(eng, "A1", "buy", 1, 0)) == R.INVALID_QUANTITY
    # market-with-price beats funds
    assert reason(place(eng, "A1", "buy", 6000, 1, type="market")) == R.INVALID_ORDER
    # band beats funds and holdings
    assert reason(place(eng, "A1", "buy", 9000, 1)) == R.PRICE_OUT_OF_BAND
    assert reason(place(eng, "A1", "sell", 9000, 1)) == R.PRICE_OUT_OF_BAND
    # post-only shape beats funds
    assert reason(place(eng, "A1", "buy", 6000, 1, post_only=True, tif="ioc")) == R.INVALID_ORDER
    # finally money and tonnes
    assert reason(place(eng, "A1", "buy", 6000, 1)) == R.INSUFFICIENT_FUNDS
    assert reason(place(eng, "A1", "sell", 6000, 1)) == R.INSUFFICIENT_HOLDINGS


def test_duplicate_client_order_id_beats_the_order_shape(engine: Engine) -> None:
    accepted(place(engine, "A1", "buy", 5900, 5, client_order_id="c"))
    assert reason(place(engine, "A1", "buy", 1, 0, client_order_id="c")) == R.DUPLICATE_CLIENT_ORDER_ID


def test_reject_echoes_the_command(engine: Engine) -> None:
    events = place(engine, "A1", "buy", 7000, 1, client_order_id="abc")
    (rej,) = rejects(events)
    assert (rej.seq, rej.ts) == (engine.seq, engine.ts)
    assert (rej.member, rej.account, rej.client_order_id, rej.command) == ("M1", "A1", "abc", "place")


def test_holding_limit_on_amend_counts_only_the_increase(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    bid = oid(accepted(place(eng, "B2", "buy", 2000, 39_000, "SHCER")))
    accepted(amend(eng, "B2", bid, quantity=40_000))  # exactly at the 50,000 t limit
    rej = rejects(amend(eng, "B2", bid, quantity=40_001))
    assert [(r.reason, r.field) for r in rej] == [(R.HOLDING_LIMIT, "quantity")]
    accepted(amend(eng, "B2", bid, price=1990))  # a price change alone adds nothing
    accepted(amend(eng, "B2", bid, quantity=30_000))
    accepted(place(eng, "B2", "buy", 2000, 10_000, "SHCER"))


def test_holding_limit_after_partial_fills_and_expiry(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    accepted(place(eng, "B2", "buy", 2000, 40_000, "SHCER"))
    accepted(place(eng, "A1", "sell", 2000, 5_000, "SHCER"))  # B2 now holds 15,000 with 35,000 open
    assert reason(place(eng, "B2", "buy", 2000, 1, "SHCER")) == R.HOLDING_LIMIT
    eng.apply(DayClose(ts=eng.ts + 1))
    eng.apply(DayOpen(ts=eng.ts + 86_400 * 10**9))
    accepted(place(eng, "B2", "buy", 2000, 35_000, "SHCER"))  # the expired buy no longer counts
    assert reason(place(eng, "B2", "buy", 2000, 1, "SHCER")) == R.HOLDING_LIMIT
