"""Block trades: proposal holds, acceptance settlement, every rejection rule, expiry,
and the exclusion of blocks from open/close/VWAP/book/auction reserve inputs."""

from __future__ import annotations

import pytest

from carbonx.engine import reasons as R
from carbonx.engine.accounts import position
from carbonx.engine.blocks import block_view
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AuctionCreate,
    AuctionOpen,
    AuctionUpdate,
    Balance,
    BlockAccept,
    BlockCancel,
    BlockDecline,
    BlockPropose,
    BlockUpdate,
    DayClose,
    DayClosed,
    DayOpen,
    Deposit,
    Holding,
    PlaceOrder,
    SetBlocked,
    SetHalt,
    SetReference,
    Trade,
)
from carbonx.engine.testkit import T0, funded_engine
from tests.blocks.conftest import CASH, TONNES, cash_total, ledger, only, rejected, tonnes_total, with_spec

T = T0 + 60_000_000_000  # a minute after the day opened
QTY = 100_000
PRICE = 6_000  # fen: the SHEA reference price
NOTIONAL = PRICE * QTY
FEE = NOTIONAL * 50_000 // 100_000_000  # SHEA: 0.0005 per side


def propose(eng: Engine, **kw: object) -> list:  # type: ignore[type-arg]
    """A1 (member M1) proposes to B1 (member M2) unless told otherwise."""
    args: dict[str, object] = dict(
        ts=T, member="M1", account="A1", instrument="SHEA", side="buy", price=PRICE, quantity=QTY, counterparty_account="B1"
    )
    args.update(kw)
    return eng.apply(BlockPropose(**args))  # type: ignore[arg-type]


def proposed_id(events: list) -> int:  # type: ignore[type-arg]
    (update,) = only(events, BlockUpdate)
    assert update.state == "proposed"
    return int(update.block_id)


def accept(eng: Engine, block_id: int, member: str = "M2", account: str = "B1") -> list:  # type: ignore[type-arg]
    return eng.apply(BlockAccept(ts=T + 1, member=member, account=account, block_id=block_id))


# ---------------------------------------------------------------------- proposal holds


def test_buy_proposal_freezes_notional_plus_fee_and_is_visible_to_both_parties(eng: Engine) -> None:
    events = propose(eng)
    block_id = proposed_id(events)
    (bal,) = only(events, Balance)
    assert (bal.account, bal.available, bal.frozen) == ("A1", CASH - NOTIONAL - FEE, NOTIONAL + FEE)
    view = block_view(eng, "M2", "B1", block_id)
    assert view is not None
    assert (view.proposer_account, view.counterparty_account, view.counterparty_member, view.state) == ("A1", "B1", "M2", "proposed")
    assert block_view(eng, "M1", "A1", block_id) == view
    assert block_view(eng, "M2", "B2", block_id) is None  # the member's other account is no party
    assert block_view(eng, "M1", "B1", block_id) is None  # a party's account, but not this member's
    assert block_view(eng, "M2", "B1", block_id + 1) is None


def test_sell_proposal_freezes_tonnes(eng: Engine) -> None:
    events = propose(eng, side="sell")
    proposed_id(events)
    (hold,) = only(events, Holding)
    assert (hold.account, hold.vintage, hold.tradable, hold.frozen) == ("A1", 2025, TONNES - QTY, QTY)
    assert eng.accounts["A1"].frozen == 0


# ---------------------------------------------------------------------- settlement


def test_accept_settles_both_sides_as_one_block_trade(eng: Engine) -> None:
    money, tonnes = cash_total(eng), tonnes_total(eng, "SHEA")
    block_id = proposed_id(propose(eng))
    events = accept(eng, block_id)
    (trade,) = only(events, Trade)
    assert trade.block and trade.trade_id == 1
    assert (trade.buy_account, trade.sell_account, trade.buy_member, trade.sell_member) == ("A1", "B1", "M1", "M2")
    assert (trade.price, trade.quantity, trade.buy_fee, trade.sell_fee) == (PRICE, QTY, FEE, FEE)
    assert (trade.buy_order_id, trade.sell_order_id, trade.aggressor) == (0, 0, "sell")
    assert trade.vintages == [(2025, QTY)]
    (update,) = only(events, BlockUpdate)
    assert (update.state, update.trade_id) == ("accepted", 1)
    a1, b1 = eng.accounts["A1"], eng.accounts["B1"]
    assert (a1.available, a1.frozen) == (CASH - NOTIONAL - FEE, 0)
    assert (b1.available, b1.frozen) == (CASH + NOTIONAL - FEE, 0)
    assert position(a1, "SHEA", 2025).tradable == TONNES + QTY
    assert position(b1, "SHEA", 2025).tradable == TONNES - QTY
    assert position(b1, "SHEA", 2025).frozen == 0
    assert eng.fees_collected == 2 * FEE
    assert (cash_total(eng), tonnes_total(eng, "SHEA")) == (money, tonnes)
    assert eng.trades_of("M1", "A1") == [trade] == eng.trades_of("M2", "B1")
    assert block_view(eng, "M1", "A1", block_id) == update


def test_accepting_a_sell_proposal_freezes_and_pays_the_acceptors_cash(eng: Engine) -> None:
    block_id = proposed_id(propose(eng, side="sell", price=7_000))
    events = accept(eng, block_id)
    (trade,) = only(events, Trade)
    notional, fee = 7_000 * QTY, 7_000 * QTY * 50_000 // 100_000_000
    assert (trade.buy_account, trade.sell_account, trade.aggressor) == ("B1", "A1", "buy")
    assert eng.accounts["B1"].available == CASH - notional - fee
    assert eng.accounts["A1"].available == CASH + notional - fee
    assert position(eng.accounts["A1"], "SHEA", 2025).frozen == 0


def test_block_trade_is_excluded_from_open_close_vwap_book_and_reserve_inputs(eng: Engine) -> None:
    eng.apply(PlaceOrder(ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6_100, quantity=10))
    eng.apply(PlaceOrder(ts=T, member="M2", account="B1", instrument="SHEA", side="buy", price=6_100, quantity=10))
    st = eng.instruments["SHEA"]
    before = (st.open, st.high, st.low, st.last, st.volume, st.notional, st.trades)
    depth = eng.depth("SHEA")
    block_id = proposed_id(propose(eng, price=7_800))  # top of the block band, far above the listing trade
    only(accept(eng, block_id), Trade)
    assert (st.open, st.high, st.low, st.last, st.volume, st.notional, st.trades) == before == (6_100, 6_100, 6_100, 6_100, 10, 61_000, 1)
    assert eng.depth("SHEA") == depth
    closed = only(eng.apply(DayClose(ts=T + 2)), DayClosed)[0]
    stats = closed.closes["SHEA"]
    assert (stats.open, stats.close, stats.high, stats.low, stats.volume) == (6_100, 6_100, 6_100, 6_100, 10)
    assert st.reference == 6_100
    assert st.history[-1][1:] == (61_000, 10)  # the auction reserve's VWAP look-back input
    assert len(eng.trades) == 2  # but trade.list keeps the block


def test_a_day_with_only_a_block_trade_closes_at_the_previous_close(eng: Engine) -> None:
    only(accept(eng, proposed_id(propose(eng, price=4_200))), Trade)
    stats = only(eng.apply(DayClose(ts=T + 2)), DayClosed)[0].closes["SHEA"]
    assert (stats.open, stats.close, stats.volume, stats.notional) == (PRICE, PRICE, 0, 0)
    assert eng.instruments["SHEA"].reference == PRICE


def test_t1_resale_applies_to_block_purchases(eng: Engine) -> None:
    only(accept(eng, proposed_id(propose(eng, instrument="CCER", price=8_000))), Trade)
    pos = position(eng.accounts["A1"], "CCER", 0)
    assert (pos.tradable, pos.locked) == (TONNES, QTY)
    r = rejected(
        eng.apply(
            BlockPropose(
                ts=T, member="M1", account="A1", instrument="CCER", side="sell", price=8_000, quantity=TONNES + 1, counterparty_account="B1"
            )
        )
    )
    assert r.reason == R.T1_RESALE


def test_vintages_named_or_oldest_first(eng: Engine) -> None:
    eng.apply(Deposit(ts=T, account="B1", instrument="SHEA", quantity=30_000, vintage=2024))
    events = accept(eng, proposed_id(propose(eng)))
    assert only(events, Trade)[0].vintages == [(2024, 30_000), (2025, 70_000)]
    assert position(eng.accounts["A1"], "SHEA", 2024).tradable == 30_000
    # a buyer naming a vintage the seller lacks cannot be accepted; the proposal stays open
    block_id = proposed_id(propose(eng, vintage=2026))
    r = rejected(accept(eng, block_id))
    assert (r.reason, r.field) == (R.INSUFFICIENT_HOLDINGS, "quantity")
    assert "vintage 2026" in r.message
    eng.apply(Deposit(ts=T, account="B1", instrument="SHEA", quantity=QTY, vintage=2026))
    assert only(accept(eng, block_id), Trade)[0].vintages == [(2026, QTY)]
    # a seller naming a vintage freezes only that vintage
    eng.apply(Deposit(ts=T, account="A2", instrument="SHEA", quantity=QTY, vintage=2024))
    events = propose(eng, account="A2", side="sell", vintage=2025)
    assert [(h.vintage, h.frozen) for h in only(events, Holding)] == [(2025, QTY)]


# ---------------------------------------------------------------------- decline, cancel, expiry


@pytest.mark.parametrize(
    ("cmd", "member", "account", "state"), [(BlockDecline, "M2", "B1", "declined"), (BlockCancel, "M1", "A1", "cancelled")]
)
def test_decline_and_cancel_release_the_hold_exactly(eng: Engine, cmd: type, member: str, account: str, state: str) -> None:
    for side in ("buy", "sell"):
        block_id = proposed_id(propose(eng, side=side))
        events = eng.apply(cmd(ts=T, member=member, account=account, block_id=block_id))
        assert only(events, BlockUpdate)[0].state == state
        assert len(only(events, Balance if side == "buy" else Holding)) == 1
        assert (eng.accounts["A1"].frozen, position(eng.accounts["A1"], "SHEA", 2025).frozen) == (0, 0)
        assert [a.available for a in eng.accounts.values()] == [CASH] * 4
        assert rejected(accept(eng, block_id)).reason == R.UNKNOWN_BLOCK
        assert "no longer open" in rejected(accept(eng, block_id)).message


def test_open_proposals_expire_at_day_close_releasing_holds(eng: Engine) -> None:
    buy_id = proposed_id(propose(eng))
    sell_id = proposed_id(propose(eng, side="sell", account="A2", counterparty_account="B2", instrument="SHCER", price=2_000))
    events = eng.apply(DayClose(ts=T + 2))
    assert [(u.block_id, u.state) for u in only(events, BlockUpdate)] == [(buy_id, "expired"), (sell_id, "expired")]
    assert eng.accounts["A1"].available == CASH and eng.accounts["A1"].frozen == 0
    assert position(eng.accounts["A2"], "SHCER", 0).tradable == TONNES
    assert block_view(eng, "M1", "A1", buy_id) is None  # the desk keeps only the current day
    eng.apply(DayOpen(ts=T + 86_400_000_000_000))
    assert rejected(eng.apply(BlockAccept(ts=T + 86_400_000_000_001, member="M2", account="B1", block_id=buy_id))).reason == R.UNKNOWN_BLOCK


# ---------------------------------------------------------------------- who may act


def test_only_the_named_counterparty_may_accept_or_decline(eng: Engine) -> None:
    block_id = proposed_id(propose(eng))
    start = ledger(eng)
    for member, account, command in [
        ("M1", "A1", BlockAccept),  # the proposer itself
        ("M1", "A2", BlockAccept),  # the proposer's other account
        ("M2", "B2", BlockAccept),  # the counterparty member's other account
        ("M2", "B2", BlockDecline),
        ("M2", "B1", BlockCancel),  # the counterparty cannot cancel
        ("M2", "B2", BlockCancel),
    ]:
        r = rejected(eng.apply(command(ts=T, member=member, account=account, block_id=block_id)))
        assert (r.reason, r.field, r.message) == (R.UNKNOWN_BLOCK, "block_id", f"no block {block_id} for this account")
    for command in (BlockAccept, BlockDecline, BlockCancel):  # another member's account is not yours
        r = rejected(eng.apply(command(ts=T, member="M2", account="A1", block_id=block_id)))
        assert r.reason == R.NOT_AUTHORIZED
    assert rejected(accept(eng, 999)).reason == R.UNKNOWN_BLOCK
    assert ledger(eng) == start


# ---------------------------------------------------------------------- propose rejections


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"member": "M2"}, R.NOT_AUTHORIZED, "account"),
        ({"instrument": "XXX"}, R.UNKNOWN_INSTRUMENT, "instrument"),
        ({"counterparty_account": "A1"}, R.INVALID_ORDER, "counterparty_account"),
        ({"counterparty_account": "NOPE"}, R.UNKNOWN_ACCOUNT, "counterparty_account"),
        ({"quantity": QTY - 1}, R.BLOCK_TOO_SMALL, "quantity"),
        ({"quantity": 0}, R.INVALID_QUANTITY, "quantity"),
        ({"quantity": -QTY}, R.INVALID_QUANTITY, "quantity"),
        ({"price": 7_801}, R.PRICE_OUT_OF_BAND, "price"),
        ({"price": 4_199}, R.PRICE_OUT_OF_BAND, "price"),
        ({"price": 0}, R.INVALID_PRICE, "price"),
        ({"vintage": 2023}, R.INVALID_ORDER, "vintage"),
        ({"instrument": "CCER", "price": 8_000, "vintage": 2025}, R.INVALID_ORDER, "vintage"),
        ({"account": "B2", "member": "M2", "instrument": "CCER", "price": 8_000}, R.NOT_ELIGIBLE, "account"),
        (
            {"account": "B2", "member": "M2", "instrument": "SHCER", "price": 2_000, "counterparty_account": "A1"},
            R.HOLDING_LIMIT,
            "quantity",
        ),
        ({"quantity": 2_000_000}, R.INSUFFICIENT_FUNDS, "quantity"),
        ({"quantity": TONNES + 1, "side": "sell"}, R.INSUFFICIENT_HOLDINGS, "quantity"),
        ({"vintage": 2024, "side": "sell"}, R.INSUFFICIENT_HOLDINGS, "quantity"),
    ],
)
def test_propose_rejections_change_nothing(eng: Engine, changes: dict[str, object], reason: str, field: str) -> None:
    start = ledger(eng)
    r = rejected(propose(eng, **changes))
    assert (r.reason, r.field) == (reason, field), r.message
    assert ledger(eng) == start
    assert eng.blocks.next_block_id == 1


def test_band_edges_are_inclusive(eng: Engine) -> None:
    proposed_id(propose(eng, price=7_800))
    proposed_id(propose(eng, price=4_200))


def test_block_settings_are_per_instrument(demo_config: MarketConfig) -> None:
    config = with_spec(demo_config, "SHEA", block_min_qty=500, block_band_bp=500, tick=5, lot=10)
    eng = funded_engine(config, cash=CASH, tonnes=TONNES)
    assert rejected(propose(eng, quantity=499)).reason == R.BLOCK_TOO_SMALL
    assert rejected(propose(eng, quantity=505)).reason == R.INVALID_QUANTITY
    assert rejected(propose(eng, quantity=500, price=6_305)).reason == R.PRICE_OUT_OF_BAND
    assert rejected(propose(eng, quantity=500, price=6_301)).reason == R.INVALID_TICK
    proposed_id(propose(eng, quantity=500, price=6_300))


def test_blocks_trade_only_in_the_block_session_of_an_open_day(demo_config: MarketConfig) -> None:
    config = with_spec(demo_config, "SHEA", block_sessions=((13 * 3600, 15 * 3600),))
    eng = funded_engine(config, cash=CASH, tonnes=TONNES)  # T0 is 12:00 local
    r = rejected(propose(eng))
    assert (r.reason, r.field) == (R.MARKET_CLOSED, "instrument")
    hour = 3_600_000_000_000
    block_id = proposed_id(propose(eng, ts=T0 + hour))  # 13:00
    r = rejected(eng.apply(BlockAccept(ts=T0 + 3 * hour, member="M2", account="B1", block_id=block_id)))  # 15:00
    assert r.reason == R.MARKET_CLOSED
    only(eng.apply(BlockAccept(ts=T0 + 2 * hour, member="M2", account="B1", block_id=block_id)), Trade)
    eng.apply(DayClose(ts=T0 + 2 * hour))
    assert rejected(propose(eng, ts=T0 + 2 * hour)).reason == R.MARKET_CLOSED


def test_halted_instrument_rejects_propose_and_accept_but_not_decline(eng: Engine) -> None:
    block_id = proposed_id(propose(eng))
    eng.apply(SetHalt(ts=T, instrument="SHEA", halted=True))
    assert rejected(propose(eng)).reason == R.INSTRUMENT_HALTED
    r = rejected(accept(eng, block_id))
    assert (r.reason, r.field) == (R.INSTRUMENT_HALTED, "instrument")
    events = eng.apply(BlockDecline(ts=T, member="M2", account="B1", block_id=block_id))
    assert only(events, BlockUpdate)[0].state == "declined"


def test_kill_switch_cancels_open_proposals_of_either_party(eng: Engine) -> None:
    block_id = proposed_id(propose(eng))
    events = eng.apply(SetBlocked(ts=T, account="A1"))
    assert [(u.block_id, u.state) for u in only(events, BlockUpdate)] == [(block_id, "cancelled")]
    assert (eng.accounts["A1"].available, eng.accounts["A1"].frozen) == (CASH, 0)
    assert rejected(propose(eng)).reason == R.ACCOUNT_BLOCKED
    assert rejected(accept(eng, block_id)).reason == R.UNKNOWN_BLOCK
    eng.apply(SetBlocked(ts=T, account="A1", blocked=False))
    to_m2 = proposed_id(propose(eng))
    in_m1 = proposed_id(propose(eng, side="sell", counterparty_account="A2"))
    events = eng.apply(SetBlocked(ts=T, member="M2"))  # blocks the counterparty of one proposal only
    assert [(u.block_id, u.state) for u in only(events, BlockUpdate)] == [(to_m2, "cancelled")]
    assert eng.accounts["A1"].frozen == 0
    assert position(eng.accounts["A1"], "SHEA", 2025).frozen == QTY
    r = rejected(eng.apply(BlockAccept(ts=T, member="M2", account="B2", block_id=proposed_id(propose(eng, counterparty_account="B2")))))
    assert (r.reason, r.field) == (R.ACCOUNT_BLOCKED, "account")  # proposing to a blocked account is allowed; accepting is not
    only(eng.apply(BlockAccept(ts=T, member="M1", account="A2", block_id=in_m1)), Trade)


def test_no_blocks_while_an_auction_suspends_the_instrument(eng: Engine) -> None:
    block_id = proposed_id(propose(eng))
    eng.apply(AuctionCreate(ts=T, instrument="SHEA", vintage=2025, quantity=1_000, reserve_price=5_000, suspend_trading=True))
    assert only(eng.apply(AuctionOpen(ts=T, auction_id=1)), AuctionUpdate)
    for events in (propose(eng), accept(eng, block_id)):
        r = rejected(events)
        assert (r.reason, r.field) == (R.MARKET_CLOSED, "instrument")
        assert "auction" in r.message
    proposed_id(propose(eng, instrument="SHCER", price=2_000))  # other instruments trade on


# ---------------------------------------------------------------------- accept rejections


def test_accept_checks_the_acceptors_side_and_leaves_the_proposal_open(eng: Engine) -> None:
    block_id = proposed_id(propose(eng, side="sell", account="A2", counterparty_account="B2", instrument="SHCER", price=2_000))
    start = ledger(eng)
    assert rejected(accept(eng, block_id, account="B2")).reason == R.HOLDING_LIMIT  # B2 is an individual: 50,000 t limit
    assert ledger(eng) == start
    needed = PRICE * QTY + FEE
    poor = funded_engine(eng.config, cash=needed - 1, tonnes=TONNES)
    poor_id = proposed_id(propose(poor, side="sell"))
    start = ledger(poor)
    r = rejected(accept(poor, poor_id))
    assert (r.reason, r.field) == (R.INSUFFICIENT_FUNDS, "quantity")
    assert ledger(poor) == start
    poor.apply(Deposit(ts=T, account="B1", cash=1))
    only(accept(poor, poor_id), Trade)
    assert poor.accounts["B1"].available == 0 and poor.accounts["B1"].frozen == 0


def test_accept_rechecks_the_band_against_todays_reference(eng: Engine) -> None:
    block_id = proposed_id(propose(eng, price=7_800))
    eng.apply(SetReference(ts=T, instrument="SHEA", price=5_000))  # band is now [3500, 6500]
    r = rejected(accept(eng, block_id))
    assert (r.reason, r.field) == (R.PRICE_OUT_OF_BAND, "price")
    eng.apply(SetReference(ts=T, instrument="SHEA", price=6_000))
    only(accept(eng, block_id), Trade)


# ---------------------------------------------------------------------- determinism


def test_open_proposal_survives_snapshot_restore(eng: Engine) -> None:
    block_id = proposed_id(propose(eng, side="sell"))
    copy = Engine.restore(eng.config, eng.snapshot())
    assert copy.digest() == eng.digest()
    assert block_view(copy, "M2", "B1", block_id) == block_view(eng, "M2", "B1", block_id)
    assert accept(copy, block_id) == accept(eng, block_id)
    assert copy.digest() == eng.digest()


def test_random_block_flows_conserve_cash_and_tonnes(demo_config: MarketConfig) -> None:
    """A deterministic pseudo-random mix of proposals, accepts, declines and cancels
    between all four accounts: money (with fees) and tonnes are always conserved and
    nothing stays frozen once the day closes."""
    import random

    rng = random.Random(7)
    eng = funded_engine(demo_config, cash=CASH, tonnes=TONNES)
    money, tonnes = cash_total(eng), {s: tonnes_total(eng, s) for s in eng.specs}
    owners = {"A1": "M1", "A2": "M1", "B1": "M2", "B2": "M2"}
    open_ids: list[int] = []
    for step in range(300):
        ts = T + step
        if open_ids and rng.random() < 0.6:
            p = eng.blocks.proposals[open_ids.pop(rng.randrange(len(open_ids)))]
            kind = rng.choice([BlockAccept, BlockAccept, BlockDecline, BlockCancel])
            account = p.proposer_account if kind is BlockCancel else p.counterparty_account
            eng.apply(kind(ts=ts, member=owners[account], account=account, block_id=p.block_id))
        else:
            a, b = rng.sample(sorted(owners), 2)
            sym = rng.choice(["SHEA", "SHCER", "CCER"])
            ref = eng.instruments[sym].reference
            events = eng.apply(
                BlockPropose(
                    ts=ts,
                    member=owners[a],
                    account=a,
                    instrument=sym,
                    side=rng.choice(["buy", "sell"]),
                    price=ref + rng.randint(-ref // 4, ref // 4),
                    quantity=rng.randint(100_000, 160_000),
                    counterparty_account=b,
                )
            )
            open_ids += [u.block_id for u in only(events, BlockUpdate)]
        assert cash_total(eng) == money
        assert {s: tonnes_total(eng, s) for s in eng.specs} == tonnes
    assert any(t.block for t in eng.trades)
    eng.apply(DayClose(ts=T + 1_000))
    assert all(a.frozen == 0 for a in eng.accounts.values())
    assert all(p.frozen == 0 for a in eng.accounts.values() for v in a.holdings.values() for p in v.values())
