"""The metrics the Grafana dashboards (deploy/grafana/) need beyond the alerts' ones: book depth
in tonnes and best prices, the price band, and the auction desk (auctions by state, tonnes on
offer, the last cleared auction's results per instrument, proceeds and tonnes issued).

Like ``metrics.GatewayCollector`` this reads engine state when ``/metrics`` is scraped and does
no work per command. The book is read from the engine (``depth``: one pass over the price
levels, a few hundred at most), so it is the book as matched, which the published one
follows within ``coalesce_ms``. Prices are CNY; a gauge that has no value (an empty side, no
cleared auction yet) is absent rather than 0, so a dashboard shows a gap, not a false price.
Series are bounded by instruments (and by the auctions still in play for the per-auction ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from carbonx.engine.schema import AuctionResults, AuctionState

if TYPE_CHECKING:
    from carbonx.engine.engine import Engine
    from carbonx.gateway.app import Gateway

AUCTION_STATES: tuple[str, ...] = get_args(AuctionState)


def book_metrics(eng: Engine) -> Iterator[Metric]:
    """Depth (tonnes per side), best bid/ask and the price band, per instrument."""
    depth = GaugeMetricFamily("carbonx_book_depth_tonnes", "Tonnes resting in the book", labels=["instrument", "side"])
    best_bid = GaugeMetricFamily("carbonx_best_bid", "Best bid price (CNY); absent when no bid rests", labels=["instrument"])
    best_ask = GaugeMetricFamily("carbonx_best_ask", "Best ask price (CNY); absent when no ask rests", labels=["instrument"])
    limit = GaugeMetricFamily("carbonx_price_limit", "Price band today (CNY): lower and upper limit", labels=["instrument", "bound"])
    for sym, st in eng.instruments.items():
        bids, asks = eng.depth(sym)
        depth.add_metric([sym, "buy"], sum(q for _, q in bids))
        depth.add_metric([sym, "sell"], sum(q for _, q in asks))
        if bids:
            best_bid.add_metric([sym], bids[0][0] / 100)
        if asks:
            best_ask.add_metric([sym], asks[0][0] / 100)
        limit.add_metric([sym, "lower"], st.lower / 100)
        limit.add_metric([sym, "upper"], st.upper / 100)
    yield from (depth, best_bid, best_ask, limit)


def auction_metrics(eng: Engine) -> Iterator[Metric]:
    """The auction desk: counts by state, tonnes offered by live auctions, the newest cleared
    auction's results per instrument, and the desk's running totals."""
    desk = eng.auctions
    by_state = dict.fromkeys(AUCTION_STATES, 0)
    offered = GaugeMetricFamily(
        "carbonx_auction_offered_tonnes", "Tonnes offered by a scheduled or open auction", labels=["auction", "instrument"]
    )
    last: dict[str, tuple[int, AuctionResults]] = {}  # instrument -> (auction id, results) of its newest cleared auction
    for aid, auction in desk.auctions.items():
        info = auction.info
        by_state[info.state] = by_state.get(info.state, 0) + 1
        if info.state in ("scheduled", "open"):
            offered.add_metric([str(aid), info.instrument], info.quantity)
        elif info.state == "cleared" and auction.results is not None:
            last[info.instrument] = (aid, auction.results)
    count = GaugeMetricFamily("carbonx_auctions", "Auctions on the desk by state", labels=["state"])
    for state, n in by_state.items():
        count.add_metric([state], n)
    price = GaugeMetricFamily("carbonx_auction_clearing_price", "Clearing price of the newest cleared auction (CNY)", labels=["instrument"])
    cover = GaugeMetricFamily(
        "carbonx_auction_cover_ratio", "Valid bid tonnes / tonnes offered, newest cleared auction", labels=["instrument"]
    )
    sold = GaugeMetricFamily("carbonx_auction_sold_tonnes", "Tonnes sold by the newest cleared auction", labels=["instrument"])
    newest = GaugeMetricFamily("carbonx_auction_last_cleared", "Id of the newest cleared auction", labels=["instrument"])
    for sym, (aid, res) in sorted(last.items()):
        price.add_metric([sym], res.clearing_price / 100)
        cover.add_metric([sym], res.cover_ratio_bp / 10_000)
        sold.add_metric([sym], res.quantity_sold)
        newest.add_metric([sym], aid)
    yield from (count, offered, price, cover, sold, newest)
    yield CounterMetricFamily("carbonx_auction_proceeds", "Proceeds of every cleared auction (CNY)", value=desk.proceeds / 100)
    yield CounterMetricFamily("carbonx_auction_issued_tonnes", "Tonnes credited to auction winners", value=desk.issued)


class DashboardCollector:
    """``book_metrics`` and ``auction_metrics`` of the gateway's engine, at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def collect(self) -> Iterator[Metric]:
        yield from book_metrics(self.gw.engine)
        yield from auction_metrics(self.gw.engine)
