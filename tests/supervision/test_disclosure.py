"""The day report: a scripted day equals the hand-computed report; a day with no trades
reports the previous close; the same events give the same bytes."""

from __future__ import annotations

import msgspec

from carbonx.engine.schema import (
    AuctionBid,
    AuctionClose,
    AuctionCreate,
    AuctionOpen,
    BlockAccept,
    BlockPropose,
    DayClose,
    DayOpen,
    EventCreate,
    PlaceOrder,
    Reject,
    Retire,
)
from carbonx.engine.supervision.disclosure import DayReport, DayReports, report_csv, report_json
from carbonx.engine.supervision.thresholds import DisclosureSpec
from carbonx.engine.testkit import MEMBER_OF, T0, instrument, make_config
from tests.supervision.kit import Watched, watched

S = 1_000_000_000
DAY = 86_400 * S


def _do(eng: Watched, cmd: object) -> None:
    events = eng.apply(cmd)  # type: ignore[arg-type]
    assert not [e for e in events if isinstance(e, Reject)], events


def _cross(eng: Watched, buyer: str, seller: str, price: int, qty: int) -> None:
    for account, side in ((seller, "sell"), (buyer, "buy")):
        _do(
            eng, PlaceOrder(ts=eng.ts + S, member=MEMBER_OF[account], account=account, instrument="X", side=side, price=price, quantity=qty)
        )  # type: ignore[arg-type]


def scripted_day() -> Watched:
    config = make_config(instrument("X", block_sessions=[["00:00", "24:00"]]))
    eng = watched(config=config, tonnes=200_000, cash=10**10)
    _cross(eng, "A1", "B1", 6050, 100)  # the open
    _cross(eng, "A2", "B2", 6100, 50)  # the high
    _cross(eng, "A1", "B1", 5980, 50)  # the low
    _do(
        eng,
        BlockPropose(
            ts=eng.ts + S, member="M1", account="A1", instrument="X", side="sell", price=6200, quantity=100_000, counterparty_account="B1"
        ),
    )
    _do(eng, BlockAccept(ts=eng.ts + S, member="M2", account="B1", block_id=1))
    _do(eng, AuctionCreate(ts=eng.ts + S, instrument="X", quantity=1_000, reserve_price=5_000, seed=1))
    _do(eng, AuctionOpen(ts=eng.ts + S, auction_id=1))
    _do(eng, AuctionBid(ts=eng.ts + S, member="M2", auction_id=1, account="B1", price=5_500, quantity=600))
    _do(eng, AuctionBid(ts=eng.ts + S, member="M1", auction_id=1, account="A2", price=5_200, quantity=600))
    _do(eng, AuctionClose(ts=eng.ts + S, auction_id=1))
    _do(eng, Retire(ts=eng.ts + S, member="M1", account="A1", instrument="X", quantity=300, purpose="public_welfare", beneficiary="Zoo"))
    _do(eng, EventCreate(ts=eng.ts + S, event_id="expo", name="Expo 2026", footprint=200))
    _do(
        eng,
        Retire(
            ts=eng.ts + S,
            member="M2",
            account="B1",
            instrument="X",
            quantity=250,
            purpose="event_neutrality",
            beneficiary="Expo",
            event_id="expo",
        ),
    )
    _do(eng, DayClose(ts=T0 + 3 * 3600 * S))
    return eng


def reports_of(eng: Watched, spec: DisclosureSpec) -> list[DayReport]:
    reports = DayReports(spec)
    return [r for events in eng.log for r in reports.observe(events)]


EXPECTED_DAY = {
    "trading_date": "2025-11-25",
    "instruments": [
        {
            "instrument": "X",
            "open": "60.50",  # the first listing trade
            "high": "61.00",
            "low": "59.80",
            "close": "60.45",  # (60.50x100 + 61.00x50 + 59.80x50) / 200; the block at 62.00 left out
            "previous_close": "60.00",
            "change": "0.45",
            "change_bp": 75,
            "listing_volume": 200,
            "listing_amount": "12090.00",
            "listing_trades": 3,
            "block_volume": 100_000,
            "block_amount": "6200000.00",
            "block_trades": 1,
            "trades": 4,
        }
    ],
    "auctions": [
        {
            "auction_id": 1,
            "instrument": "X",
            "vintage": None,
            "state": "cleared",
            "quantity_offered": 1_000,
            "valid_bid_quantity": 1_200,
            "bidders": 2,
            "winners": 2,
            "quantity_sold": 1_000,
            "clearing_price": "52.00",  # the lowest filled bid
            "total_amount": "52000.00",
            "cover_ratio_bp": 12_000,
        }
    ],
    "retirements": [
        {"instrument": "X", "purpose": "event_neutrality", "certificates": 1, "quantity": 250},
        {"instrument": "X", "purpose": "public_welfare", "certificates": 1, "quantity": 300},
    ],
    "neutrality": [{"event_id": "expo", "event_name": "Expo 2026", "quantity": 250}],
    "large_holder_threshold": 150_000,
    # B1: 200,000 - 150 sold + 100,000 block + 600 won - 250 retired; A2: + 50 + 400 won; B2: - 50
    "large_holders": [
        {"instrument": "X", "holder": "holder-1", "quantity": 300_200},
        {"instrument": "X", "holder": "holder-2", "quantity": 200_450},
        {"instrument": "X", "holder": "holder-3", "quantity": 199_950},
    ],
}


def test_the_scripted_day_equals_the_hand_computed_report() -> None:
    (report,) = reports_of(scripted_day(), DisclosureSpec(large_holder_t=150_000))
    got = msgspec.to_builtins(report)
    for cert in got["neutrality"]:
        assert len(cert.pop("covers")) == 1 and cert.pop("certificate_id") > 0
    got.pop("close_seq"), got.pop("close_ts")
    assert got == EXPECTED_DAY


def test_public_holders_are_named() -> None:
    (report,) = reports_of(scripted_day(), DisclosureSpec(large_holder_t=150_000, holders_public=True))
    assert [h.holder for h in report.large_holders] == ["B1", "A2", "B2"]


def test_a_day_without_trades_reports_the_previous_close() -> None:
    eng = scripted_day()
    _do(eng, DayOpen(ts=T0 + DAY))
    _do(eng, DayClose(ts=T0 + DAY + 3600 * S))
    _, second = reports_of(eng, DisclosureSpec())
    (row,) = second.instruments
    assert second.trading_date == "2025-11-26"
    assert (row.open, row.high, row.low, row.close, row.previous_close, row.change, row.change_bp) == (
        "60.45",
        "60.45",
        "60.45",
        "60.45",
        "60.45",
        "0.00",
        0,
    )
    assert (row.listing_volume, row.block_volume, row.trades, second.auctions, second.retirements) == (0, 0, 0, [], [])


def test_the_same_events_give_the_same_bytes() -> None:
    eng = scripted_day()
    a, b = reports_of(eng, DisclosureSpec()), reports_of(eng, DisclosureSpec())
    assert report_json(a[0]) == report_json(b[0]) and report_csv(a[0]) == report_csv(b[0])
    csv = report_csv(a[0]).decode().split("\r\n")
    assert csv[0].startswith("trading_date,instrument,open,high,low,close,previous_close,change")
    assert csv[1].startswith("2025-11-25,X,60.50,61.00,59.80,60.45,60.00,0.45,75,200,12090.00,3,100000,6200000.00,1,4")
    assert msgspec.json.decode(report_json(a[0]))["instruments"][0]["close"] == "60.45"
