"""Block trades, auctions and retirement over the wire, through the client's typed methods."""

from __future__ import annotations

from decimal import Decimal

import pytest

from carbonx.gateway.client import RpcError
from carbonx.gateway.testkit import Server
from tests.e2e.conftest import broker, operator


def _fen(text: str) -> int:
    return int(Decimal(text) * 100)


async def test_block_trade_needs_both_parties(fresh_server: Server) -> None:
    async with broker(fresh_server, "a") as a, broker(fresh_server, "b") as b:
        await b.subscribe(["orders"])
        with pytest.raises(RpcError) as small:
            await a.block_propose("A-001", "SHEA", "sell", "60.00", 99_999, "B-001", vintage=2025)
        assert small.value.reason in ("BLOCK_TOO_SMALL", "INVALID_QUANTITY")
        proposal = await a.block_propose("A-001", "SHEA", "sell", "61.00", 100_000, "B-001", vintage=2025)
        block_id = proposal["block_id"]
        assert proposal["state"] == "proposed"
        note = await b.wait_for(lambda n: n.params.get("kind") == "block_proposal" and n.params.get("block_id") == block_id, 5)
        assert (note.params["quantity"], note.params["price"]) == (100_000, "61.00")
        # the proposer cannot accept its own block; an outsider's account is not authorised
        with pytest.raises(RpcError):
            await a.block_accept("A-001", block_id)
        before = await b.account("B-001")
        trade = await b.block_accept("B-001", block_id)
        assert (trade["price"], trade["quantity"], trade["block_id"]) == ("61.00", 100_000, block_id)
        after = await b.account("B-001")
        assert after["holdings"]["SHEA"]["tradable"] == before["holdings"]["SHEA"]["tradable"] + 100_000
        notional = 61_00 * 100_000
        assert _fen(before["cash"]["available"]) - _fen(after["cash"]["available"]) >= notional
        assert (await a.block_get("A-001", block_id))["state"] in ("accepted", "done", "executed", "settled")
        # block trades never move the listing market's last price
        async with broker(fresh_server, "b") as md:
            await md.subscribe(["ticker.SHEA"])
            ticker = await md.wait_for(lambda n: n.channel == "ticker.SHEA", 5)
            assert ticker.params["last"] in (None, "")


async def test_block_decline_and_cancel(fresh_server: Server) -> None:
    async with broker(fresh_server, "a") as a, broker(fresh_server, "b") as b:
        first = await a.block_propose("A-001", "SHEA", "sell", "60.00", 100_000, "B-001", vintage=2025)
        declined = await b.block_decline("B-001", first["block_id"])
        assert declined["state"] == "declined"
        second = await a.block_propose("A-001", "SHEA", "sell", "60.00", 100_000, "B-001", vintage=2025)
        cancelled = await a.block_cancel("A-001", second["block_id"])
        assert cancelled["state"] == "cancelled"
        with pytest.raises(RpcError) as late:
            await b.block_accept("B-001", second["block_id"])
        assert late.value.reason in ("UNKNOWN_BLOCK", "INVALID_STATE")
        assert (await a.account("A-001"))["holdings"]["SHEA"]["frozen"] == 0


async def test_sealed_auction_round(fresh_server: Server) -> None:
    async with operator(fresh_server) as ops, broker(fresh_server, "a") as a, broker(fresh_server, "b") as b:
        await b.subscribe(["auctions"])
        created = await ops.call("admin.auction.create", instrument="SHEA", vintage=2025, quantity=1_000, reserve_price="50.00")
        auction_id = created["auction_id"]
        await ops.call("admin.auction.open", auction_id=auction_id)
        with pytest.raises(RpcError) as low:
            await a.auction_bid(auction_id, "A-001", "49.99", 100)
        assert low.value.reason == "BELOW_RESERVE"
        high = await a.auction_bid(auction_id, "A-001", "58.00", 600, client_bid_id="a-high")
        await b.auction_bid(auction_id, "B-001", "55.00", 600)
        amended = await a.auction_amend_bid(auction_id, high["bid_id"], quantity=700)
        assert amended["quantity"] == 700
        # sealed: B sees only its own bids, and the public view shows no bid data
        assert [x["account"] for x in await b.auction_my_bids(auction_id, "B-001")] == ["B-001"]
        public = await b.auction_get(auction_id)
        assert public["state"] == "open" and "results" not in public
        closed = await ops.call("admin.auction.close", auction_id=auction_id)
        assert closed["state"] in ("cleared", "closed")
        results = (await b.auction_get(auction_id))["results"]
        published = await b.wait_for(
            lambda n: n.channel == "auctions" and n.params.get("auction_id") == auction_id and "results" in n.params, 5
        )
        assert published.params["results"] == results
        assert not [n for n in b.history if n.channel == "auctions" and "bids" in n.params], "bids never go out publicly"
        assert (results["quantity_offered"], results["quantity_sold"], results["bidders"], results["winners"]) == (1_000, 1_000, 2, 2)
        assert results["clearing_price"] == "55.00"  # uniform price: the lowest filled bid
        mine = {x["bid_id"]: x for x in await a.auction_my_bids(auction_id, "A-001")}
        assert mine[high["bid_id"]]["allocated"] == 700
        holdings = (await a.account("A-001"))["holdings"]["SHEA"]
        assert holdings["compliance_only"] >= 700, "won allowances are compliance-only"
        assert any(x["auction_id"] == auction_id for x in (await a.auction_list())["auctions"])


async def test_retirement_certificates(fresh_server: Server) -> None:
    async with operator(fresh_server) as ops, broker(fresh_server, "a") as a, broker(fresh_server, "b") as b:
        before = (await a.account("A-002"))["holdings"]["SHCER"]["tradable"]
        cert = await a.retire("A-002", "SHCER", 10, "public_welfare", "Pudong tree planting")
        assert (cert["quantity"], cert["purpose"], cert["account"]) == (10, "public_welfare", "A-002")
        assert (await a.account("A-002"))["holdings"]["SHCER"]["tradable"] == before - 10
        assert await b.certificate(cert["certificate_id"]) == cert  # certificates are public
        with pytest.raises(RpcError) as bad:
            await a.retire("A-002", "SHCER", 10, "vanity", "x")
        assert bad.value.code == -32602 or bad.value.reason == "INVALID_PURPOSE"

        await ops.call("admin.event.create", event_id="expo-2026", name="Expo", footprint=50)
        await a.retire("A-001", "CCER", 30, "event_neutrality", "Expo organiser", event_id="expo-2026")
        partial = await b.get_event("expo-2026")
        assert (partial["retired"], partial["certificate_id"]) == (30, None)
        await a.retire("A-001", "CCER", 20, "event_neutrality", "Expo organiser", event_id="expo-2026")
        covered = await b.get_event("expo-2026")
        assert covered["retired"] == 50 and covered["certificate_id"] is not None
