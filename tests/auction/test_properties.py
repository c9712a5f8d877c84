"""Property tests: for random bid sets under every rule set, the allocation never
exceeds the offer, no bidder pays above its bid, every winner pays the same price,
and that price is what a brute-force reference computes from the definitions."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from carbonx.engine.auction import PRESETS, Bid, Rules, clear
from carbonx.engine.config import load_market_text
from carbonx.engine.schema import AuctionBid, AuctionClose, AuctionCreate, AuctionOpen, BidUpdate, Reject
from carbonx.engine.testkit import T0, funded_engine
from tests.auction.helpers import add_bidders, cash_total, final_update, only
from tests.conftest import DEMO

RESERVE = 1_000


@dataclass
class Case:
    rule_set: str
    lot: int
    offer: int
    bids: list[Bid]
    seed: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    rule_set = draw(st.sampled_from(sorted(PRESETS)))
    lot = draw(st.sampled_from([1, 10]))
    offer = draw(st.integers(1, 60)) * lot
    specs = draw(st.lists(st.tuples(st.integers(RESERVE, RESERVE + 6), st.integers(1, 15)), max_size=25))
    bids = [
        Bid(
            bid_id=i + 1,
            auction_id=1,
            client_bid_id="",
            member="M",
            account=f"a{i % 7}",
            price=p,
            quantity=n * lot,
            prio=100 + i,
            frozen=p * n * lot,
        )
        for i, (p, n) in enumerate(specs)
    ]
    order = draw(st.permutations(bids))  # clearing must not depend on the input order
    return Case(rule_set, lot, offer, list(order), draw(st.integers(0, 2**32)))


def reference_price(case: Case, rules: Rules) -> int | None:
    """Brute force from the definitions; None = cancelled. O(n^2) on purpose."""
    demand = sum(b.quantity for b in case.bids)
    prices = {b.price for b in case.bids}
    if demand < case.offer and rules.undersubscribed == "cancel":
        return None
    if not demand:
        return 0
    if demand <= case.offer:
        return min(prices) if rules.price == "lowest_filled" else RESERVE
    marginal = max(p for p in prices if sum(b.quantity for b in case.bids if b.price >= p) >= case.offer)
    if rules.price == "lowest_filled" or sum(b.quantity for b in case.bids if b.price >= marginal) > case.offer:
        return marginal
    return max(p for p in prices if p < marginal)


def greedy_by_time(case: Case) -> dict[int, int]:
    """Reference allocation under time priority: fill in (price desc, time) order."""
    left, out = case.offer, {}
    for b in sorted(case.bids, key=lambda b: (-b.price, b.prio)):
        n = min(left, b.quantity)
        if n:
            out[b.bid_id] = n
        left -= n
    return out


@settings(max_examples=400, deadline=None)
@given(cases())
def test_clearing_properties(case: Case) -> None:
    rules = PRESETS[case.rule_set]
    outcome = clear(case.bids, case.offer, case.lot, RESERVE, rules, case.seed)
    expected = reference_price(case, rules)
    if expected is None:
        assert outcome.cancelled and not outcome.allocations
        return
    assert not outcome.cancelled
    by_id = {b.bid_id: b for b in case.bids}
    alloc = outcome.allocations
    sold = sum(alloc.values())
    assert sold == min(case.offer, sum(b.quantity for b in case.bids))  # never above the offer, never idle supply
    assert all(0 < n <= by_id[i].quantity and n % case.lot == 0 for i, n in alloc.items())
    if sold:
        assert outcome.price == expected
        assert all(outcome.price <= by_id[i].price for i in alloc)  # nobody pays above its bid
        assert outcome.price >= RESERVE
        marginal = min(by_id[i].price for i in alloc)
        assert all(alloc.get(b.bid_id) == b.quantity for b in case.bids if b.price > marginal)  # only one level rationed
        assert all(b.bid_id not in alloc for b in case.bids if b.price < marginal)
    if rules.ties == "time":
        assert alloc == greedy_by_time(case)
    if rules.ties == "pro_rata" and sold == case.offer:
        tied = [b for b in case.bids if b.price == min(by_id[i].price for i in alloc)]
        rest = case.offer - sum(alloc.get(b.bid_id, 0) for b in case.bids if b not in tied)
        total = sum(b.quantity for b in tied)
        for b in tied:  # the whole lots of its proportional share, plus at most one drawn leftover lot
            floor_lots = (b.quantity // case.lot) * (rest // case.lot) // (total // case.lot)
            assert alloc.get(b.bid_id, 0) // case.lot in (floor_lots, floor_lots + 1)
        drawn = sum(alloc.get(b.bid_id, 0) // case.lot - (b.quantity // case.lot) * (rest // case.lot) // (total // case.lot) for b in tied)
        assert drawn < len(tied)


def test_clearing_is_independent_of_input_order_and_deterministic() -> None:
    bids = [
        Bid(bid_id=i, auction_id=1, client_bid_id="", member="M", account="a", price=1_000, quantity=10, prio=i, frozen=0)
        for i in range(1, 9)
    ]
    for rule_set in PRESETS:
        one = clear(bids, 30, 10, RESERVE, PRESETS[rule_set], 5)
        two = clear(list(reversed(bids)), 30, 10, RESERVE, PRESETS[rule_set], 5)
        assert one == two


CONFIG = load_market_text(DEMO.read_text())


@settings(max_examples=60, deadline=None)
@given(
    rule_set=st.sampled_from(sorted(PRESETS)),
    offer=st.integers(1, 40).map(lambda n: n * 50),
    specs=st.lists(st.tuples(st.integers(0, 5), st.integers(RESERVE, RESERVE + 4), st.integers(1, 12)), max_size=20),
    seed=st.integers(0, 2**32),
)
def test_settlement_properties_through_the_engine(rule_set: str, offer: int, specs: list[tuple[int, int, int]], seed: int) -> None:
    """Every winner pays the same price x its allocation, no more than its bid;
    cash leaving the accounts equals the published total amount."""
    eng = funded_engine(CONFIG)
    accounts = add_bidders(eng, "M3", 6)
    ts = T0 + 10**12
    eng.apply(
        AuctionCreate(
            ts=ts, instrument="SHEA", vintage=2025, quantity=offer, reserve_price=RESERVE, rule_set=rule_set, min_lot=50, seed=seed
        )
    )  # type: ignore[arg-type]
    eng.apply(AuctionOpen(ts=ts + 1, auction_id=1))
    before = cash_total(eng)
    prices = {}
    for k, (who, price, lots) in enumerate(specs):
        events = eng.apply(AuctionBid(ts=ts + 2 + k, member="M3", auction_id=1, account=accounts[who], price=price, quantity=lots * 50))
        assert not only(events, Reject)
        prices[only(events, BidUpdate)[0].bid_id] = price
    events = eng.apply(AuctionClose(ts=ts + 10**9, auction_id=1))
    update = final_update(events)
    results = update.results
    assert results is not None
    settled = only(events, BidUpdate)
    if update.auction.state == "cancelled":
        assert rule_set == "eu" and results.valid_bid_quantity < offer
        assert cash_total(eng) == before and all(b.status == "cancelled" for b in settled)
        return
    winners = [b for b in settled if b.allocated]
    assert results.quantity_sold == sum(b.allocated for b in winners) <= offer
    assert {b.amount // b.allocated for b in winners} <= {results.clearing_price}  # one uniform price
    assert all(b.amount == b.allocated * results.clearing_price and results.clearing_price <= prices[b.bid_id] for b in winners)
    assert before - cash_total(eng) == results.total_amount == sum(b.amount for b in settled)
    assert all(a.frozen == 0 for a in eng.accounts.values())
