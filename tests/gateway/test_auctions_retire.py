"""Auctions, retirement and neutrality events over the wire (loopback)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from carbonx.engine import reasons as R
from tests.gateway.support import Harness, start


@pytest.fixture
async def h(tmp_path: Path):  # type: ignore[no-untyped-def]
    harness = await start(tmp_path)
    yield harness
    await harness.gw.shutdown()


async def test_auction_round_over_the_wire(h: Harness) -> None:
    op, a, b, watcher = await h.operator(), await h.broker("a"), await h.broker("b"), await h.client()
    await watcher.ok("subscribe", channels=["auctions"])
    created = await op.ok("admin.auction.create", instrument="SHEA", vintage=2025, quantity=1000, reserve_price="55.00", seed=42)
    assert (created["state"], created["quantity"], created["reserve_price"]) == ("scheduled", 1000, "55.00")
    aid = created["auction_id"]
    assert (await watcher.note("auctions"))["params"]["state"] == "scheduled"
    assert (await a.fail("auction.bid", auction_id=aid, account="A-001", price="56.00", quantity=10)).reason == R.AUCTION_NOT_OPEN
    assert (await op.ok("admin.auction.open", auction_id=aid))["state"] == "open"
    bid_a = await a.ok("auction.bid", auction_id=aid, account="A-001", price="58.00", quantity=600, client_bid_id="a1")
    assert (bid_a["status"], bid_a["price"], bid_a["client_bid_id"]) == ("active", "58.00", "a1")
    await b.ok("auction.bid", auction_id=aid, account="B-001", price="57.00", quantity=600)
    assert (await a.fail("auction.bid", auction_id=aid, account="A-001", price="50.00", quantity=10)).reason == R.BELOW_RESERVE
    assert (await a.fail("auction.bid", auction_id=aid, account="B-001", price="58.00", quantity=10)).reason == R.NOT_AUTHORIZED
    mine = (await a.ok("auction.my_bids", auction_id=aid, account="A-001"))["bids"]
    assert [x["bid_id"] for x in mine] == [bid_a["bid_id"]], "a bidder sees only its own bids"
    assert (await a.fail("auction.my_bids", auction_id=aid, account="B-001")).reason == R.NOT_AUTHORIZED
    public = await watcher.ok("auction.get", auction_id=aid)
    assert "results" not in public and public["state"] == "open"
    everyone = (await op.ok("admin.auction.bids", auction_id=aid))["bids"]
    assert {x["member"] for x in everyone} == {"broker-a", "broker-b"}
    closed = await op.ok("admin.auction.close", auction_id=aid)
    assert closed["state"] == "cleared"
    res = closed["results"]
    assert (res["quantity_sold"], res["clearing_price"], res["bidders"], res["winners"]) == (1000, "57.00", 2, 2)
    assert (await watcher.ok("auction.get", auction_id=aid))["results"] == res
    assert (await watcher.ok("auction.list"))["auctions"][0]["results"] == res
    won = (await a.ok("auction.my_bids", auction_id=aid, account="A-001"))["bids"][0]
    assert (won["status"], won["allocated"]) == ("won", 600)
    assert (await watcher.fail("auction.get", auction_id="999")).reason == R.UNKNOWN_AUCTION
    assert (await watcher.fail("auction.get", auction_id="x")).reason == R.UNKNOWN_AUCTION


async def test_retirement_certificate_and_event_coverage(h: Harness) -> None:
    op, a, anyone = await h.operator(), await h.broker("a"), await h.client()
    ev = await op.ok("admin.event.create", event_id="expo-2026", name="Expo 2026", footprint=50)
    assert (ev["event_id"], ev["footprint"], ev["retired"], ev["certificate_id"]) == ("expo-2026", 50, 0, None)
    cert = await a.ok(
        "retire", account="A-001", instrument="SHEA", quantity=50, purpose="event_neutrality", beneficiary="Expo 2026", event_id="expo-2026"
    )
    assert (cert["account"], cert["quantity"], cert["vintage"], cert["event_id"]) == ("A-001", 50, 2025, "expo-2026")
    assert await anyone.ok("retire.certificate", certificate_id=cert["certificate_id"]) == cert
    assert cert["vintages"] == [{"vintage": 2025, "quantity": 50}] and cert["covers"] is None
    covered = await anyone.ok("event.get", event_id="expo-2026")
    assert covered["retired"] == 50 and covered["certificate_id"] is not None
    neutral = await anyone.ok("retire.certificate", certificate_id=covered["certificate_id"])
    assert (neutral["purpose"], neutral["event_id"], neutral["covers"]) == ("event_neutrality", "expo-2026", [cert["certificate_id"]])
    acct = await a.ok("account.get", account="A-001")
    assert acct["holdings"]["SHEA"]["tradable"] == 100_000 - 50
    assert (
        await a.fail("retire", account="A-001", instrument="SHEA", quantity=10**9, purpose="public_welfare", beneficiary="x")
    ).reason in (
        R.INSUFFICIENT_HOLDINGS,
        R.INVALID_QUANTITY,
    )
    assert (
        await a.fail("retire", account="B-001", instrument="SHEA", quantity=1, purpose="public_welfare", beneficiary="x")
    ).reason == R.NOT_AUTHORIZED
    assert (await anyone.fail("retire.certificate", certificate_id="404")).reason == "UNKNOWN_CERTIFICATE"
    assert (await anyone.fail("event.get", event_id="nope")).reason == R.UNKNOWN_EVENT
    bad = await a.fail("retire", account="A-001", instrument="SHEA", quantity=1, purpose="vanity", beneficiary="x")
    assert bad.field == "purpose"


async def test_auction_reserve_from_listing_history(h: Harness) -> None:
    op, a, b = await h.operator(), await h.broker("a"), await h.broker("b")
    params = {"instrument": "SHEA", "vintage": 2025, "quantity": 100, "reserve": {"lookback_days": 5, "factor": 120}}
    assert (await op.fail("admin.auction.create", **params)).reason == R.NO_REFERENCE_DATA, "no closed day with trades yet"
    await a.ok("order.place", account="A-001", instrument="SHEA", side="sell", price="62.00", quantity=10)
    await b.ok("order.place", account="B-001", instrument="SHEA", side="buy", price="62.00", quantity=10)
    await op.ok("admin.day.close")
    await op.ok("admin.day.open")
    created = await op.ok("admin.auction.create", **params)
    assert created["reserve_price"] == "74.40", "VWAP 62.00 x 1.2"
    assert created["reserve_inputs"]["lookback_days"] == 5
    bad = await op.fail("admin.auction.create", **{**params, "reserve": {"lookback_days": 5, "factor": 1.2}})
    assert bad.field == "reserve.factor", "a float factor is refused: decimals travel as strings"
    # The factor is passed through as a percentage, in any documented form; the engine checks its range.
    forms: list[tuple[str | int, int, str]] = [
        ("1.2", 120, "74.40"), ("120", 120, "74.40"), ("1.0", 100, "62.00"), (100, 100, "62.00"), ("1.15", 115, "71.30"), (150, 150, "93.00"),
    ]  # fmt: skip
    for factor, pct, reserve in forms:
        created = await op.ok("admin.auction.create", **{**params, "reserve": {"lookback_days": 5, "factor": factor}})
        assert (created["reserve_price"], created["reserve_inputs"]["factor_pct"]) == (reserve, pct), factor
    for factor in (0, -5, 5000, "0.00"):
        out_of_range = await op.fail("admin.auction.create", **{**params, "reserve": {"lookback_days": 5, "factor": factor}})
        assert (out_of_range.reason, out_of_range.field) == (R.INVALID_ORDER, "reserve_factor_pct"), factor
    malformed = await op.fail("admin.auction.create", **{**params, "reserve": {"lookback_days": 5, "factor": "1.2.3"}})
    assert (malformed.code, malformed.field) == (-32602, "reserve.factor")


async def test_auction_eligibility_and_caps_reach_the_engine(h: Harness) -> None:
    op = await h.operator()
    created = await op.ok(
        "admin.auction.create", instrument="SHEA", vintage=2025, quantity=100, reserve_price="55.00",
        eligible=["covered_entity"], caps={"covered_entity": 40},
    )  # fmt: skip
    assert (created["eligible"], created["caps"]) == (["covered_entity"], {"covered_entity": 40})


async def test_bidding_window_opens_and_closes_on_the_clock(h: Harness) -> None:
    """An auction with a window needs no operator at its edges: the gateway's clock
    opens it at start_ts and closes, clears and settles it at end_ts (journaled)."""
    op, a, watcher = await h.operator(), await h.broker("a"), await h.client()
    await watcher.ok("subscribe", channels=["auctions"])
    now = time.time_ns()
    created = await op.ok(
        "admin.auction.create", instrument="SHEA", vintage=2025, quantity=100, reserve_price="55.00",
        start_ts=now + 300_000_000, end_ts=now + 1_500_000_000, seed=7,
    )  # fmt: skip
    aid = created["auction_id"]
    assert created["state"] == "scheduled"
    states = [(await watcher.note("auctions"))["params"]["state"] for _ in range(2)]
    assert states == ["scheduled", "open"]
    await a.ok("auction.bid", auction_id=aid, account="A-001", price="56.00", quantity=40)
    states = [(await watcher.note("auctions", timeout=5.0))["params"]["state"] for _ in range(2)]
    assert states == ["closed", "cleared"]
    done = await watcher.ok("auction.get", auction_id=aid)
    assert (done["results"]["quantity_sold"], done["results"]["clearing_price"]) == (40, "56.00")
