"""The dashboard metrics (gateway/dashboard_metrics.py) read from engine state: a gauge with no
value (empty side, no cleared auction) is absent rather than 0, values are CNY and tonnes, and
only the newest cleared auction of an instrument is shown."""

from __future__ import annotations

from carbonx.engine.engine import Engine
from carbonx.engine.schema import AuctionClose, AuctionOpen
from carbonx.engine.testkit import place
from carbonx.gateway.dashboard_metrics import auction_metrics, book_metrics
from tests.auction.helpers import Clock, add_bidders, create, create_open, ok_bid


def samples(eng: Engine) -> dict[str, float]:
    out = {}
    for family in (*book_metrics(eng), *auction_metrics(eng)):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def test_an_empty_book_has_depth_zero_and_no_best_prices(engine: Engine) -> None:
    s = samples(engine)
    assert s["carbonx_book_depth_tonnes{instrument=SHEA,side=buy}"] == 0
    assert "carbonx_best_bid{instrument=SHEA}" not in s and "carbonx_best_ask{instrument=SHEA}" not in s
    assert s["carbonx_price_limit{bound=lower,instrument=SHEA}"] == 54.0 and s["carbonx_price_limit{bound=upper,instrument=SHEA}"] == 66.0
    assert "carbonx_auction_clearing_price{instrument=SHEA}" not in s and s["carbonx_auctions{state=open}"] == 0
    assert s["carbonx_auction_proceeds_total"] == 0


def test_depth_and_best_prices_follow_the_book(engine: Engine) -> None:
    place(engine, "A1", "buy", 5_900, 7)
    place(engine, "A1", "buy", 5_950, 3)
    place(engine, "B1", "sell", 6_100, 4)
    s = samples(engine)
    assert s["carbonx_best_bid{instrument=SHEA}"] == 59.5 and s["carbonx_best_ask{instrument=SHEA}"] == 61.0
    assert s["carbonx_book_depth_tonnes{instrument=SHEA,side=buy}"] == 10
    assert s["carbonx_book_depth_tonnes{instrument=SHEA,side=sell}"] == 4
    assert "carbonx_best_bid{instrument=CCER}" not in s


def test_the_newest_cleared_auction_per_instrument_and_the_live_ones(engine: Engine) -> None:
    clock = Clock()
    bidders = add_bidders(engine, "BID", 2)
    for quantity, price in ((100, 5_500), (200, 5_800)):
        aid = create_open(engine, clock, quantity=quantity)
        ok_bid(engine, clock, aid, bidders[0], price, quantity)
        ok_bid(engine, clock, aid, bidders[1], price + 100, quantity)
        engine.apply(AuctionClose(ts=clock(), auction_id=aid))
    newest = aid
    live = create(engine, clock, quantity=50)
    s = samples(engine)
    assert s["carbonx_auction_last_cleared{instrument=SHEA}"] == newest
    assert s["carbonx_auction_clearing_price{instrument=SHEA}"] == 59.0  # 400 t bid for 200: the higher bids take it all
    assert s["carbonx_auction_sold_tonnes{instrument=SHEA}"] == 200 and s["carbonx_auction_cover_ratio{instrument=SHEA}"] == 2.0
    assert s[f"carbonx_auction_offered_tonnes{{auction={live},instrument=SHEA}}"] == 50
    assert (s["carbonx_auctions{state=cleared}"], s["carbonx_auctions{state=scheduled}"]) == (2, 1)
    assert s["carbonx_auction_issued_tonnes_total"] == 300
    engine.apply(AuctionOpen(ts=clock(), auction_id=live))
    assert samples(engine)["carbonx_auctions{state=open}"] == 1
