"""Reserve price: VWAP of listing trades over the look-back window x factor, capped,
rounded half up to the tick; block trades and today's trades never count; the
computation and its inputs are part of the published record."""

from __future__ import annotations

from fractions import Fraction

import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AuctionCreate, AuctionUpdate, BlockAccept, BlockPropose, DayClose, DayOpen, PlaceOrder, Reject
from carbonx.engine.testkit import T0, funded_engine
from tests.auction.helpers import only

DAY = 86_400 * 10**9


def trade(eng: Engine, ts: int, price: int, qty: int) -> None:
    """One listing trade: A1 (M1) sells to B1 (M2)."""
    eng.apply(PlaceOrder(ts=ts, member="M1", account="A1", instrument="SHEA", side="sell", price=price, quantity=qty))
    events = eng.apply(PlaceOrder(ts=ts + 1, member="M2", account="B1", instrument="SHEA", side="buy", price=price, quantity=qty))
    assert any(type(e).__name__ == "Trade" for e in events), events


def block(eng: Engine, ts: int, price: int, qty: int) -> None:
    events = eng.apply(
        BlockPropose(
            ts=ts,
            member="M1",
            account="A1",
            instrument="SHEA",
            side="sell",
            price=price,
            quantity=qty,
            counterparty_account="B1",
            vintage=2025,
        )
    )
    block_id = events[0].block_id  # type: ignore[attr-defined]
    events = eng.apply(BlockAccept(ts=ts + 1, member="M2", account="B1", block_id=block_id))
    assert any(getattr(e, "block", False) for e in events), events


def next_day(eng: Engine, ts: int) -> int:
    eng.apply(DayClose(ts=ts))
    eng.apply(DayOpen(ts=ts + DAY // 2))
    return ts + DAY // 2 + 10**9


@pytest.fixture
def history(demo_config: MarketConfig) -> tuple[Engine, int]:
    """Day 1: 100 t @ 60.00, 300 t @ 61.00 and a 100,000 t block at 54.00.
    Day 2: 200 t @ 59.00. Day 3 (today, open): 50 t @ 64.00."""
    eng = funded_engine(demo_config, cash=10**10, tonnes=300_000)
    ts = T0 + 10**9
    trade(eng, ts, 6_000, 100)
    trade(eng, ts + 10, 6_100, 300)
    block(eng, ts + 20, 5_400, 100_000)
    ts = next_day(eng, ts + 100)
    trade(eng, ts, 5_900, 200)
    ts = next_day(eng, ts + 100)
    trade(eng, ts, 6_400, 50)
    return eng, ts + 100


def create(eng: Engine, ts: int, **kw: object) -> AuctionUpdate | Reject:
    events = eng.apply(AuctionCreate(ts=ts, instrument="SHEA", vintage=2025, quantity=1_000, **kw))  # type: ignore[arg-type]
    found = only(events, Reject) or only(events, AuctionUpdate)
    assert len(found) == 1
    result: AuctionUpdate | Reject = found[0]
    return result


def reference(notional: int, volume: int, factor_pct: int, tick: int) -> int:
    """Independent check: exact rational VWAP x factor, nearest tick, halves up."""
    raw = Fraction(notional, volume) * Fraction(factor_pct, 100) / tick
    whole = raw.numerator // raw.denominator
    return (whole + (1 if raw - whole >= Fraction(1, 2) else 0)) * tick


@pytest.mark.parametrize(
    ("days", "factor", "notional", "volume"),
    [
        (1, 100, 200 * 5_900, 200),
        (1, 120, 200 * 5_900, 200),
        (2, 100, 100 * 6_000 + 300 * 6_100 + 200 * 5_900, 600),  # 60.1666.. -> 60.17
        (2, 120, 100 * 6_000 + 300 * 6_100 + 200 * 5_900, 600),
        (5, 100, 100 * 6_000 + 300 * 6_100 + 200 * 5_900, 600),  # fewer closed days than asked
    ],
)
def test_vwap_of_listing_trades_times_factor(history: tuple[Engine, int], days: int, factor: int, notional: int, volume: int) -> None:
    eng, ts = history
    update = create(eng, ts, reserve_lookback_days=days, reserve_factor_pct=factor)
    assert isinstance(update, AuctionUpdate), update
    expected = reference(notional, volume, factor, 1)
    assert update.auction.reserve_price == expected
    inputs = update.auction.reserve_inputs
    assert inputs is not None
    assert (inputs["notional"], inputs["volume"], inputs["factor_pct"], inputs["computed"], inputs["lookback_days"]) == (
        notional, volume, factor, expected, days,
    )  # fmt: skip
    assert inputs["days_used"] == min(days, 2)


def test_pinned_values(history: tuple[Engine, int]) -> None:
    """The same figures by hand: (600,000 + 1,830,000 + 1,180,000) / 600 = 6016.67 fen."""
    eng, ts = history
    for factor, price in ((100, 6_017), (120, 7_220)):
        update = create(eng, ts, reserve_lookback_days=2, reserve_factor_pct=factor)
        assert isinstance(update, AuctionUpdate) and update.auction.reserve_price == price


def test_block_trades_and_todays_trades_never_count(history: tuple[Engine, int]) -> None:
    eng, ts = history
    closed = eng.instruments["SHEA"].history
    assert [v for _, _, v in closed] == [400, 200]  # the 100,000 t block left no trace
    update = create(eng, ts, reserve_lookback_days=2)
    assert isinstance(update, AuctionUpdate) and update.auction.reserve_inputs is not None
    assert update.auction.reserve_inputs["volume"] == 600  # today's 50 t @ 64.00 excluded


def test_rounding_to_a_coarser_tick(history: tuple[Engine, int], demo_config: MarketConfig) -> None:
    eng, ts = history
    demo_config.instruments["SHEA"].tick = 5
    update = create(eng, ts, reserve_lookback_days=2)
    assert isinstance(update, AuctionUpdate)
    assert update.auction.reserve_price == 6_015 == reference(3_610_000, 600, 100, 5)


def test_rounding_halves_up(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    ts = T0 + 10**9
    trade(eng, ts, 6_000, 1)
    trade(eng, ts + 10, 6_001, 1)  # VWAP 6000.5 fen exactly
    ts = next_day(eng, ts + 100)
    update = create(eng, ts, reserve_lookback_days=1)
    assert isinstance(update, AuctionUpdate) and update.auction.reserve_price == 6_001


def test_cap_limits_the_computed_reserve(history: tuple[Engine, int]) -> None:
    eng, ts = history
    update = create(eng, ts, reserve_lookback_days=2, reserve_factor_pct=120, reserve_cap=7_000)
    assert isinstance(update, AuctionUpdate)
    assert update.auction.reserve_price == 7_000
    assert update.auction.reserve_inputs is not None
    assert (update.auction.reserve_inputs["computed"], update.auction.reserve_inputs["cap"]) == (7_220, 7_000)
    update = create(eng, ts, reserve_lookback_days=2, reserve_cap=7_000)  # cap above: no effect
    assert isinstance(update, AuctionUpdate) and update.auction.reserve_price == 6_017


def test_given_reserve_price_has_no_inputs(history: tuple[Engine, int]) -> None:
    eng, ts = history
    update = create(eng, ts, reserve_price=4_500)
    assert isinstance(update, AuctionUpdate)
    assert (update.auction.reserve_price, update.auction.reserve_inputs) == (4_500, None)


def test_no_listing_trades_in_window(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, cash=10**10, tonnes=300_000)
    ts = T0 + 10**9
    block(eng, ts, 6_000, 100_000)  # only a block trade: no reference data
    ts = next_day(eng, ts + 100)
    result = create(eng, ts, reserve_lookback_days=3)
    assert isinstance(result, Reject) and (result.reason, result.field) == ("NO_REFERENCE_DATA", "reserve_lookback_days")
    assert eng.auctions.auctions == {} and eng.auctions.next_auction_id == 1


@pytest.mark.parametrize(
    ("kw", "reason", "field"),
    [
        ({}, "INVALID_ORDER", "reserve_price"),
        ({"reserve_price": 5_000, "reserve_lookback_days": 2}, "INVALID_ORDER", "reserve_price"),
        ({"reserve_price": 0}, "INVALID_PRICE", "reserve_price"),
        ({"reserve_lookback_days": 0}, "INVALID_ORDER", "reserve_lookback_days"),
        ({"reserve_lookback_days": 2, "reserve_factor_pct": 0}, "INVALID_ORDER", "reserve_factor_pct"),
        ({"reserve_lookback_days": 2, "reserve_cap": -1}, "INVALID_PRICE", "reserve_cap"),
    ],
)
def test_reserve_rejects(history: tuple[Engine, int], kw: dict[str, object], reason: str, field: str) -> None:
    eng, ts = history
    result = create(eng, ts, **kw)
    assert isinstance(result, Reject) and (result.reason, result.field) == (reason, field)
