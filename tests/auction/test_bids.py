"""Bids: every reject reason (and that a reject changes nothing), amend and withdraw,
caps per participant type, and sealed visibility at the engine level."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine import auction as A
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AuctionCancel, AuctionClose, AuctionOpen, BidUpdate, Reject, SetBlocked
from carbonx.engine.testkit import funded_engine
from tests.auction.helpers import Clock, add_bidders, amend, bid, close, create, create_open, ok_bid, only, withdraw


@pytest.fixture
def eng(demo_config: MarketConfig) -> Engine:
    return funded_engine(demo_config)  # A1 institution, A2 covered (M1); B1 covered, B2 individual (M2)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def assert_reject(eng: Engine, result: BidUpdate | Reject, reason: str, field: str | None, before: str) -> None:
    """A reject with this reason and field, and nothing but the sequence changed."""
    assert isinstance(result, Reject), result
    assert (result.reason, result.field) == (reason, field), result
    after = msgspec.msgpack.encode(msgspec.structs.replace(eng._snapshot_struct(), seq=0, ts=0))
    assert after == before


def state(eng: Engine) -> str:
    return msgspec.msgpack.encode(msgspec.structs.replace(eng._snapshot_struct(), seq=0, ts=0))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("account", "kw", "reason", "field"),
    [
        ("A2", {"auction_id": 99}, "UNKNOWN_AUCTION", "auction_id"),
        ("B1", {}, "NOT_AUTHORIZED", "account"),  # M1 bidding with M2's account
        ("ZZ", {}, "NOT_AUTHORIZED", "account"),  # unknown account: same answer
        ("B2", {"member": "M2"}, "NOT_ELIGIBLE", "account"),  # individuals have no cap key: not eligible
        ("A2", {"price": 0}, "INVALID_PRICE", "price"),
        ("A2", {"price": 5_000 + 1, "tick": 5}, "INVALID_TICK", "price"),
        ("A2", {"price": 4_999}, "BELOW_RESERVE", "price"),
        ("A2", {"quantity": 0}, "INVALID_QUANTITY", "quantity"),
        ("A2", {"quantity": 150}, "INVALID_LOT", "quantity"),
        ("A1", {"quantity": 50_100}, "BIDDER_CAP", "quantity"),  # institution cap 50,000 t
        ("A2", {"quantity": 100_100}, "BIDDER_CAP", "quantity"),  # covered entity cap 100,000 t
        ("A2", {"price": 500_000, "quantity": 300}, "INSUFFICIENT_FUNDS", "quantity"),  # 1.5m CNY > 1m
        ("A2", {"client_bid_id": "bad id é"}, "INVALID_ORDER", "client_bid_id"),
    ],
)
def test_bid_rejects(
    eng: Engine, clock: Clock, demo_config: MarketConfig, account: str, kw: dict[str, object], reason: str, field: str
) -> None:
    if kw.pop("tick", None):  # an instrument whose tick is 5 fen
        demo_config.instruments["SHEA"].tick = 5
    auction_id = create_open(eng, clock, min_lot=100)
    args: dict[str, object] = {"price": 5_000, "quantity": 100, "member": "M1"} | kw
    target = int(args.pop("auction_id", auction_id))  # type: ignore[call-overload]
    before = state(eng)
    assert_reject(eng, bid(eng, clock, target, account, **args), reason, field, before)  # type: ignore[arg-type]


def test_blocked_account_and_closed_window_are_rejected(eng: Engine, clock: Clock) -> None:
    scheduled = create(eng, clock)
    before = state(eng)
    assert_reject(eng, bid(eng, clock, scheduled, "A2", 5_000, 10), "AUCTION_NOT_OPEN", "auction_id", before)
    eng.apply(AuctionOpen(ts=clock(), auction_id=scheduled))
    eng.apply(SetBlocked(ts=clock(), member="M1"))
    before = state(eng)
    assert_reject(eng, bid(eng, clock, scheduled, "A2", 5_000, 10), "ACCOUNT_BLOCKED", "account", before)
    eng.apply(SetBlocked(ts=clock(), member="M1", blocked=False))
    close(eng, clock, scheduled)
    before = state(eng)
    assert_reject(eng, bid(eng, clock, scheduled, "A2", 5_000, 10), "AUCTION_NOT_OPEN", "auction_id", before)


def test_window_times_are_enforced(eng: Engine, clock: Clock) -> None:
    start = clock.ts + 10 * 10**9
    auction_id = create_open(eng, clock, start_ts=start, end_ts=start + 5 * 10**9)
    assert isinstance(bid(eng, clock, auction_id, "A2", 5_000, 10), Reject)  # before the window
    clock.ts = start - 1
    assert isinstance(bid(eng, clock, auction_id, "A2", 5_000, 10), BidUpdate)  # at start_ts
    clock.ts = start + 5 * 10**9 - 1
    result = bid(eng, clock, auction_id, "A2", 5_000, 10)  # at end_ts: closed
    assert isinstance(result, Reject) and result.reason == "AUCTION_NOT_OPEN"


def test_duplicate_client_bid_id_among_live_bids(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    first = ok_bid(eng, clock, auction_id, "A2", 5_000, 10, client_bid_id="c-1")
    before = state(eng)
    assert_reject(
        eng, bid(eng, clock, auction_id, "A2", 5_100, 10, client_bid_id="c-1"), "DUPLICATE_CLIENT_ORDER_ID", "client_bid_id", before
    )
    assert isinstance(bid(eng, clock, auction_id, "A1", 5_100, 10, client_bid_id="c-1"), BidUpdate)  # other account: fine
    withdraw(eng, clock, auction_id, "M1", first)
    assert isinstance(bid(eng, clock, auction_id, "A2", 5_100, 10, client_bid_id="c-1"), BidUpdate)  # no longer live


def test_bid_freezes_price_times_quantity(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    acct = eng.accounts["A2"]
    available = acct.available
    events = eng.apply(A.AuctionBid(ts=clock(), member="M1", auction_id=auction_id, account="A2", price=5_250, quantity=40))
    assert (acct.available, acct.frozen) == (available - 210_000, 210_000)
    assert [type(e).__name__ for e in events] == ["BidUpdate", "Balance"]


def test_cap_counts_every_live_bid_of_the_account(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock, caps={"institution": 1_000})
    first = ok_bid(eng, clock, auction_id, "A1", 5_000, 600)
    result = bid(eng, clock, auction_id, "A1", 5_100, 500)
    assert isinstance(result, Reject) and result.reason == "BIDDER_CAP"
    ok_bid(eng, clock, auction_id, "A1", 5_100, 400)  # 1,000 t declared: at the cap
    result = amend(eng, clock, auction_id, "M1", first, quantity=700)
    assert isinstance(result, Reject) and result.reason == "BIDDER_CAP"
    withdraw(eng, clock, auction_id, "M1", first)
    ok_bid(eng, clock, auction_id, "A1", 5_100, 600)  # withdrawing freed the cap


def test_caps_per_participant_type_and_eligible_override(eng: Engine, clock: Clock) -> None:
    """Per-auction caps override the market's per type; a type listed in ``eligible``
    without a cap key (individual) may bid with no cap."""
    auction_id = create_open(eng, clock, eligible=["individual", "covered_entity"], caps={"covered_entity": 2_000}, quantity=10_000)
    info = A.auction_view(eng, auction_id)
    assert info is not None and info[0].caps == {"covered_entity": 2_000} and info[0].eligible == ["covered_entity", "individual"]
    assert isinstance(bid(eng, clock, auction_id, "B2", 5_000, 9_000), BidUpdate)  # individual: uncapped
    result = bid(eng, clock, auction_id, "A1", 5_000, 10)  # institution not listed
    assert isinstance(result, Reject) and result.reason == "NOT_ELIGIBLE"
    result = bid(eng, clock, auction_id, "B1", 5_000, 2_001)
    assert isinstance(result, Reject) and result.reason == "BIDDER_CAP"
    assert isinstance(bid(eng, clock, auction_id, "B1", 5_000, 2_000), BidUpdate)


# ---------------------------------------------------------------------- amend / withdraw


def test_amend_moves_the_frozen_cash(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    acct = eng.accounts["A2"]
    start = acct.available
    bid_id = ok_bid(eng, clock, auction_id, "A2", 5_000, 100)
    result = amend(eng, clock, auction_id, "M1", bid_id, price=6_000, quantity=50)
    assert isinstance(result, BidUpdate) and (result.price, result.quantity, result.status) == (6_000, 50, "amended")
    assert (acct.available, acct.frozen) == (start - 300_000, 300_000)
    assert isinstance(withdraw(eng, clock, auction_id, "M1", bid_id), BidUpdate)
    assert (acct.available, acct.frozen) == (start, 0)


@pytest.mark.parametrize(
    ("kw", "reason", "field"),
    [
        ({}, "INVALID_ORDER", "price"),
        ({"price": 4_000}, "BELOW_RESERVE", "price"),
        ({"quantity": 15}, "INVALID_LOT", "quantity"),
        ({"quantity": 10_000_000}, "BIDDER_CAP", "quantity"),
        ({"price": 2_000_000, "quantity": 100}, "INSUFFICIENT_FUNDS", "quantity"),
        ({"bid_id": 99}, "UNKNOWN_BID", "bid_id"),
        ({"member": "M2"}, "UNKNOWN_BID", "bid_id"),  # another member's bid looks unknown
        ({"auction_id": 99}, "UNKNOWN_AUCTION", "auction_id"),
    ],
)
def test_amend_rejects(eng: Engine, clock: Clock, kw: dict[str, object], reason: str, field: str) -> None:
    auction_id = create_open(eng, clock, min_lot=10)
    bid_id = ok_bid(eng, clock, auction_id, "A2", 5_000, 100)
    args: dict[str, object] = {"auction_id": auction_id, "member": "M1", "bid_id": bid_id} | kw
    before = state(eng)
    result = amend(eng, clock, args.pop("auction_id"), args.pop("member"), args.pop("bid_id"), **args)  # type: ignore[arg-type]
    assert_reject(eng, result, reason, field, before)


def test_unknown_and_foreign_bid_ids_are_indistinguishable(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    mine = ok_bid(eng, clock, auction_id, "B1", 5_000, 100)
    foreign = withdraw(eng, clock, auction_id, "M1", mine)
    unknown = withdraw(eng, clock, auction_id, "M1", mine + 1000)
    assert isinstance(foreign, Reject) and isinstance(unknown, Reject)
    strip = {"seq", "ts", "message"}
    a = {k: v for k, v in msgspec.structs.asdict(foreign).items() if k not in strip}
    b = {k: v for k, v in msgspec.structs.asdict(unknown).items() if k not in strip}
    assert a == b and a["reason"] == "UNKNOWN_BID"
    assert foreign.message == f"no bid {mine} in auction {auction_id}"
    assert unknown.message == f"no bid {mine + 1000} in auction {auction_id}"


def test_withdrawn_bid_cannot_be_changed_again(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    bid_id = ok_bid(eng, clock, auction_id, "A2", 5_000, 100)
    withdraw(eng, clock, auction_id, "M1", bid_id)
    before = state(eng)
    assert_reject(eng, withdraw(eng, clock, auction_id, "M1", bid_id), "UNKNOWN_BID", "bid_id", before)
    assert_reject(eng, amend(eng, clock, auction_id, "M1", bid_id, price=5_100), "UNKNOWN_BID", "bid_id", before)


def test_irrevocable_bids(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock, irrevocable=True)
    bid_id = ok_bid(eng, clock, auction_id, "A2", 5_000, 100)
    before = state(eng)
    assert_reject(eng, amend(eng, clock, auction_id, "M1", bid_id, price=5_100), "BIDS_IRREVOCABLE", "bid_id", before)
    assert_reject(eng, withdraw(eng, clock, auction_id, "M1", bid_id), "BIDS_IRREVOCABLE", "bid_id", before)


def test_no_changes_after_the_window(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    bid_id = ok_bid(eng, clock, auction_id, "A2", 5_000, 100)
    close(eng, clock, auction_id)
    before = state(eng)
    assert_reject(eng, withdraw(eng, clock, auction_id, "M1", bid_id), "AUCTION_NOT_OPEN", "auction_id", before)
    assert_reject(eng, amend(eng, clock, auction_id, "M1", bid_id, quantity=10), "AUCTION_NOT_OPEN", "auction_id", before)


# ---------------------------------------------------------------------- lifecycle rejects


def test_lifecycle_rejects(eng: Engine, clock: Clock) -> None:
    auction_id = create(eng, clock)
    events = eng.apply(AuctionClose(ts=clock(), auction_id=auction_id))
    assert [e.reason for e in only(events, Reject)] == ["AUCTION_NOT_OPEN"]
    eng.apply(AuctionOpen(ts=clock(), auction_id=auction_id))
    events = eng.apply(AuctionOpen(ts=clock(), auction_id=auction_id))
    assert [e.reason for e in only(events, Reject)] == ["INVALID_STATE"]
    close(eng, clock, auction_id)
    events = eng.apply(AuctionCancel(ts=clock(), auction_id=auction_id))
    assert [e.reason for e in only(events, Reject)] == ["INVALID_STATE"]
    for cmd in (AuctionOpen, AuctionClose, AuctionCancel):
        events = eng.apply(cmd(ts=clock(), auction_id=77))
        assert [e.reason for e in only(events, Reject)] == ["UNKNOWN_AUCTION"]


# ---------------------------------------------------------------------- sealed visibility


def test_sealed_queries(eng: Engine, clock: Clock) -> None:
    auction_id = create_open(eng, clock)
    mine = ok_bid(eng, clock, auction_id, "A2", 5_500, 100, client_bid_id="x")
    theirs = ok_bid(eng, clock, auction_id, "B1", 5_600, 200)
    own = A.bids_of(eng, "M1", auction_id, "A2")
    assert own is not None and [(b.bid_id, b.client_bid_id, b.price, b.status) for b in own] == [(mine, "x", 5_500, "active")]
    assert A.bids_of(eng, "M1", auction_id, "B1") is None  # another member's account
    assert A.bids_of(eng, "M1", auction_id, "nope") is None
    assert A.bids_of(eng, "M1", 99, "A2") is None
    assert A.bids_of(eng, "M1", auction_id, "A1") == []
    everyone = A.all_bids(eng, auction_id)
    assert everyone is not None and [b.bid_id for b in everyone] == [mine, theirs]
    assert A.all_bids(eng, 99) is None
    view = A.auction_view(eng, auction_id)
    assert view is not None and view[1] is None  # no results during the window
    assert A.auction_view(eng, 99) is None
    assert [i.auction_id for i in A.list_auctions(eng)] == [auction_id]


def test_sealed_events(eng: Engine, clock: Clock) -> None:
    """During the window: bid events go only to the bidder's member (their ``member``
    field routes them), and public AuctionUpdates carry no counts, totals or prices."""
    add_bidders(eng, "M3", 2)
    auction_id = create(eng, clock)
    public = list(eng.apply(AuctionOpen(ts=clock(), auction_id=auction_id)))
    for account in ("A2", "B1", "M3-1"):
        events = eng.apply(
            A.AuctionBid(ts=clock(), member=eng.accounts[account].member, auction_id=auction_id, account=account, price=5_500, quantity=10)
        )
        for e in events:
            assert getattr(e, "member", None) == eng.accounts[account].member, e  # private events only
            assert getattr(e, "account", None) == account
        public += [e for e in events if not hasattr(e, "member")]
    updates = only(public, A.AuctionUpdate)
    assert updates and all(u.results is None for u in updates)
    info_fields = set(A.AuctionInfo.__struct_fields__)
    assert not info_fields & {"bidders", "bids", "valid_bid_quantity", "winners", "quantity_sold", "clearing_price"}
    assert len(public) == len(updates)  # nothing else public was emitted while bidding


def test_holding_limit_counts_declared_bids(eng: Engine, clock: Clock) -> None:
    """SHCER limits individuals to 50,000 t held; B2 holds 10,000 t, so its live bids
    may declare at most 40,000 t (won tonnes would count as held)."""
    auction_id = create_open(eng, clock, instrument="SHCER", vintage=None, eligible=["individual"], reserve_price=1_000)
    ok_bid(eng, clock, auction_id, "B2", 1_000, 30_000, member="M2")
    before = state(eng)
    assert_reject(eng, bid(eng, clock, auction_id, "B2", 1_000, 10_001, member="M2"), "HOLDING_LIMIT", "quantity", before)
    ok_bid(eng, clock, auction_id, "B2", 1_000, 10_000, member="M2")


@pytest.mark.parametrize(
    ("kw", "reason", "field"),
    [
        ({"instrument": "NOPE"}, "UNKNOWN_INSTRUMENT", "instrument"),
        ({"vintage": None}, "INVALID_ORDER", "vintage"),  # SHEA needs a vintage
        ({"vintage": 2019}, "INVALID_ORDER", "vintage"),  # not listed
        ({"instrument": "CCER", "vintage": 2025}, "INVALID_ORDER", "vintage"),  # CCER has none
        ({"rule_set": "dutch"}, "INVALID_ORDER", "rule_set"),
        ({"min_lot": 0}, "INVALID_LOT", "min_lot"),
        ({"quantity": 0}, "INVALID_QUANTITY", "quantity"),
        ({"quantity": 1_050, "min_lot": 100}, "INVALID_LOT", "quantity"),
        ({"start_ts": 10, "end_ts": 10}, "INVALID_ORDER", "end_ts"),
        ({"caps": {"robot": 5}}, "INVALID_ORDER", "caps"),
        ({"caps": {"institution": 0}}, "INVALID_ORDER", "caps"),
        ({"instrument": "CCER", "vintage": None, "eligible": ["individual"]}, "NOT_ELIGIBLE", "eligible"),  # CCER excludes individuals
        ({"eligible": []}, "NOT_ELIGIBLE", "eligible"),
        ({"eligible": ["institution", "institution"]}, "NOT_ELIGIBLE", "eligible"),
        ({"reserve_price": 5_000, "tick": 3}, "INVALID_TICK", "reserve_price"),
    ],
)
def test_create_rejects(eng: Engine, clock: Clock, demo_config: MarketConfig, kw: dict[str, object], reason: str, field: str) -> None:
    if "tick" in kw:
        demo_config.instruments["SHEA"].tick = int(kw.pop("tick"))  # type: ignore[call-overload]
    args: dict[str, object] = {"instrument": "SHEA", "vintage": 2025, "quantity": 1_000, "reserve_price": 5_000} | kw
    before = state(eng)
    events = eng.apply(A.AuctionCreate(ts=clock(), **args))  # type: ignore[arg-type]
    (reject,) = only(events, Reject)
    assert (reject.reason, reject.field) == (reason, field), reject
    assert len(events) == 1 and state(eng) == before
