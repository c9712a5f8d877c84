"""Settlement and the lifecycle around it: conservation of cash and tonnes,
compliance-only credit that risk checks refuse to sell, cancellation releasing every
frozen fen, trading suspension, snapshot/restore mid-window and journal replay."""

from __future__ import annotations

import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AuctionAmendBid,
    AuctionBid,
    AuctionCancel,
    AuctionClose,
    AuctionCreate,
    AuctionOpen,
    AuctionWithdrawBid,
    BidUpdate,
    Command,
    Event,
    Holding,
    InstrumentStatus,
    PlaceOrder,
    Reject,
    command_decoder,
    command_encoder,
)
from carbonx.engine.testkit import T0, funded_engine
from tests.auction.helpers import Clock, add_bidders, amend, cash_total, close, create, create_open, final_update, ok_bid, only, withdraw


@pytest.fixture
def setup(demo_config: MarketConfig) -> tuple[Engine, Clock, list[str]]:
    eng = funded_engine(demo_config)
    return eng, Clock(), add_bidders(eng, "M3", 8)


def test_settlement_conserves_cash_and_tonnes(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, accounts = setup
    cash_before = cash_total(eng)
    funds = {a: eng.accounts[a].available for a in accounts}
    auction_id = create_open(eng, clock, quantity=2_000, rule_set="quebec", min_lot=10)
    for i, account in enumerate(accounts):
        ok_bid(eng, clock, auction_id, account, 5_000 + 100 * (i % 3), 300 + 10 * i)
    bid_id = ok_bid(eng, clock, auction_id, accounts[0], 5_150, 100)
    amend(eng, clock, auction_id, "M3", bid_id, price=5_200)
    events = close(eng, clock, auction_id)
    results = final_update(events).results
    assert results is not None and results.quantity_sold == 2_000
    price = results.clearing_price
    bids = only(events, BidUpdate)
    assert sum(b.amount for b in bids) == results.total_amount == price * results.quantity_sold
    assert all(b.amount == price * b.allocated for b in bids)
    # cash in = cash out: what left the accounts is what the issuer received
    assert cash_total(eng) + eng.auctions.proceeds == cash_before
    assert eng.auctions.proceeds == results.total_amount
    for account in accounts:
        acct = eng.accounts[account]
        paid = sum(b.amount for b in bids if b.account == account)
        assert (acct.available, acct.frozen) == (funds[account] - paid, 0)
    # tonnes allocated = tonnes sold = tonnes credited compliance-only
    credited = sum(
        eng.accounts[a].holdings.get("SHEA", {}).get(2025, None).compliance_only for a in accounts if "SHEA" in eng.accounts[a].holdings
    )  # type: ignore[union-attr]
    assert credited == sum(b.allocated for b in bids) == results.quantity_sold == eng.auctions.issued
    assert results.winners == len({b.account for b in bids if b.allocated})
    holdings = only(events, Holding)
    assert {h.account for h in holdings} == {b.account for b in bids if b.allocated}
    assert all(h.compliance_only and not h.tradable for h in holdings)


def test_compliance_only_tonnes_cannot_be_sold(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, (c1, *_) = setup
    auction_id = create_open(eng, clock, quantity=500)
    ok_bid(eng, clock, auction_id, c1, 5_500, 500)
    close(eng, clock, auction_id)
    assert eng.accounts[c1].holdings["SHEA"][2025].compliance_only == 500
    events = eng.apply(PlaceOrder(ts=clock(), member="M3", account=c1, instrument="SHEA", side="sell", price=6_000, quantity=1))
    assert [(r.reason, r.field) for r in only(events, Reject)] == [("INSUFFICIENT_HOLDINGS", "quantity")]


def test_vintageless_instrument_credits_vintage_zero(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, (c1, *_) = setup
    auction_id = create_open(eng, clock, instrument="CCER", vintage=None, quantity=100)
    ok_bid(eng, clock, auction_id, c1, 5_500, 100)
    close(eng, clock, auction_id)
    assert eng.accounts[c1].holdings["CCER"][0].compliance_only == 100


def test_cancel_releases_every_frozen_fen(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, accounts = setup
    before = {a: (acct.available, acct.frozen) for a, acct in eng.accounts.items()}
    auction_id = create_open(eng, clock, suspend_trading=True)
    live = [ok_bid(eng, clock, auction_id, a, 5_000 + 10 * i, 100 + i) for i, a in enumerate(accounts)]
    amend(eng, clock, auction_id, "M3", live[0], price=6_000, quantity=250)
    withdraw(eng, clock, auction_id, "M3", live[1])
    assert any(acct.frozen for acct in eng.accounts.values())
    events = eng.apply(AuctionCancel(ts=clock(), auction_id=auction_id))
    assert {a: (acct.available, acct.frozen) for a, acct in eng.accounts.items()} == before
    cancelled = only(events, BidUpdate)
    assert sorted(b.bid_id for b in cancelled) == sorted(set(live) - {live[1]})  # the withdrawn bid is already done
    assert all(b.status == "cancelled" and b.allocated == 0 and b.amount == 0 for b in cancelled)
    update = final_update(events)
    assert (update.auction.state, update.results) == ("cancelled", None)
    assert [(s.instrument, s.phase) for s in only(events, InstrumentStatus)] == [("SHEA", "open")]
    assert eng.auctions.proceeds == 0 and eng.auctions.issued == 0


def test_cancel_a_scheduled_auction(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, _ = setup
    auction_id = create(eng, clock, suspend_trading=True)
    events = eng.apply(AuctionCancel(ts=clock(), auction_id=auction_id))
    assert final_update(events).auction.state == "cancelled"
    assert not only(events, InstrumentStatus)  # never suspended
    assert [r.reason for r in only(eng.apply(AuctionOpen(ts=clock(), auction_id=auction_id)), Reject)] == ["INVALID_STATE"]


def test_trading_suspended_during_the_window(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, (c1, *_) = setup
    auction_id = create(eng, clock, suspend_trading=True)
    other = create(eng, clock, suspend_trading=True)
    events = eng.apply(AuctionOpen(ts=clock(), auction_id=auction_id))
    assert [(s.instrument, s.phase) for s in only(events, InstrumentStatus)] == [("SHEA", "auction")]
    assert eng.instruments["SHEA"].suspended_by == auction_id
    order = PlaceOrder(ts=clock(), member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=1)
    assert [r.reason for r in only(eng.apply(order), Reject)] == ["MARKET_CLOSED"]
    ccer = PlaceOrder(ts=clock(), member="M1", account="A1", instrument="CCER", side="sell", price=8_000, quantity=1)
    assert not only(eng.apply(ccer), Reject)  # other instruments keep trading
    assert [r.reason for r in only(eng.apply(AuctionOpen(ts=clock(), auction_id=other)), Reject)] == ["INVALID_STATE"]
    ok_bid(eng, clock, auction_id, c1, 5_500, 100)
    events = close(eng, clock, auction_id)
    assert [(s.instrument, s.phase) for s in only(events, InstrumentStatus)] == [("SHEA", "open")]
    assert eng.instruments["SHEA"].suspended_by == 0
    assert not only(
        eng.apply(PlaceOrder(ts=clock(), member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=1)), Reject
    )


def test_unsuspended_auction_leaves_trading_alone(setup: tuple[Engine, Clock, list[str]]) -> None:
    eng, clock, _ = setup
    events = eng.apply(AuctionOpen(ts=clock(), auction_id=create(eng, clock)))
    assert not only(events, InstrumentStatus) and eng.instruments["SHEA"].suspended_by == 0


# ---------------------------------------------------------------------- determinism


def script(accounts: list[str], clock: Clock) -> tuple[list[Command], list[Command]]:
    """An EU auction (seeded draw) with bids, amends and withdrawals, split in the
    middle of its open window."""
    first: list[Command] = [
        AuctionCreate(
            ts=clock(),
            instrument="SHEA",
            vintage=2025,
            quantity=1_000,
            reserve_price=5_000,
            rule_set="eu",
            seed=987654321,
            suspend_trading=True,
        ),
        AuctionOpen(ts=clock(), auction_id=1),
    ]
    for i, account in enumerate(accounts):
        first.append(
            AuctionBid(
                ts=clock(), member="M3", auction_id=1, account=account, price=5_500 if i % 2 else 5_300, quantity=200, client_bid_id=f"b{i}"
            )
        )
    second: list[Command] = [
        AuctionAmendBid(ts=clock(), member="M3", auction_id=1, bid_id=1, price=5_500),
        AuctionWithdrawBid(ts=clock(), member="M3", auction_id=1, bid_id=3),
        AuctionBid(ts=clock(), member="M1", auction_id=1, account="A2", price=5_500, quantity=300),
        AuctionClose(ts=clock(), auction_id=1),
    ]
    return first, second


def run(eng: Engine, commands: list[Command]) -> list[Event]:
    out: list[Event] = []
    for cmd in commands:
        out += eng.apply(cmd)
    return out


def test_snapshot_restore_mid_window_keeps_every_bid(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    accounts = add_bidders(eng, "M3", 8)
    first, second = script(accounts, Clock())
    run(eng, first)
    restored = Engine.restore(demo_config, eng.snapshot())
    assert restored.digest() == eng.digest()
    assert restored.auctions == eng.auctions and len(restored.auctions.auctions[1].bids) == len(accounts)
    uninterrupted = run(eng, second)
    resumed = run(restored, second)
    assert resumed == uninterrupted
    assert restored.digest() == eng.digest()
    assert not only(resumed, Reject)
    assert final_update(resumed).auction.state == "cleared"


def test_replaying_the_journal_reproduces_draws_and_results(demo_config: MarketConfig) -> None:
    """Commands through the journal's msgpack encoding, applied to a fresh engine:
    the same events (including the seeded tie-break) and the same digest."""
    eng = funded_engine(demo_config)
    accounts = add_bidders(eng, "M3", 8)
    setup_snapshot = eng.snapshot()
    first, second = script(accounts, Clock())
    original = run(eng, first + second)
    journal = [command_encoder.encode(c) for c in first + second]
    replay = Engine.restore(demo_config, setup_snapshot)
    replayed = run(replay, [command_decoder.decode(rec) for rec in journal])
    assert replayed == original
    assert replay.digest() == eng.digest()
    results = final_update(replayed).results
    assert results is not None and results.quantity_sold == 1_000


def test_results_are_queryable_once_published(setup: tuple[Engine, Clock, list[str]]) -> None:
    from carbonx.engine.auction import auction_view, bids_of

    eng, clock, (c1, c2, *_) = setup
    auction_id = create_open(eng, clock, quantity=300)
    ok_bid(eng, clock, auction_id, c1, 6_000, 200)
    ok_bid(eng, clock, auction_id, c2, 5_500, 200)
    events = eng.apply(AuctionClose(ts=T0 + 10**13, auction_id=auction_id))
    view = auction_view(eng, auction_id)
    assert view is not None and view[0].state == "cleared" and view[1] == final_update(events).results
    mine = bids_of(eng, "M3", auction_id, c2)
    assert mine is not None and [(b.status, b.allocated, b.amount) for b in mine] == [("partially_won", 100, 550_000)]
