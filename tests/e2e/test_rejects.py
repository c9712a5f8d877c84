"""Every business reject reason is reachable over the wire, with a clear error and no side effect.

Each case checks the JSON-RPC error (code in 1000-1999, ``data.reason``, the offending
``field`` where the protocol names one) and that the account is exactly as before: a reject
never freezes cash or tonnes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import Server
from tests.e2e.conftest import broker, operator


async def _reject(coro: Awaitable[Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        await coro
    err = info.value
    assert 1000 <= err.code <= 1999, err
    assert err.message, "a reject must say what is wrong"
    return err


async def _unchanged(c: Client, account: str, action: Callable[[], Awaitable[RpcError]]) -> RpcError:
    before = await c.account(account)
    err = await action()
    assert await c.account(account) == before, f"{err.reason} changed the account"
    return err


CASES: list[tuple[str, str, str, dict[str, Any], str | None]] = [
    # (reason, broker, account, order.place params, expected field)
    ("PRICE_OUT_OF_BAND", "a", "A-001", {"instrument": "SHEA", "side": "buy", "price": "66.01", "quantity": 1}, "price"),
    ("PRICE_OUT_OF_BAND", "a", "A-001", {"instrument": "SHEA", "side": "sell", "price": "53.99", "quantity": 1}, "price"),
    ("INVALID_QUANTITY", "a", "A-001", {"instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 0}, "quantity"),
    ("INVALID_QUANTITY", "a", "A-001", {"instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 100_000}, "quantity"),
    ("NOT_ELIGIBLE", "b", "B-002", {"instrument": "CCER", "side": "buy", "price": "80.00", "quantity": 1}, None),
    ("HOLDING_LIMIT", "b", "B-002", {"instrument": "SHCER", "side": "buy", "price": "20.00", "quantity": 60_000}, None),
    ("UNKNOWN_INSTRUMENT", "a", "A-001", {"instrument": "NOPE", "side": "buy", "price": "60.00", "quantity": 1}, "instrument"),
    ("INVALID_ORDER", "a", "A-001", {"instrument": "SHEA", "side": "buy", "type": "market", "price": "60.00", "quantity": 1}, None),
    (
        "INSUFFICIENT_HOLDINGS",
        "a",
        "A-001",
        {"instrument": "SHEA", "side": "sell", "price": "60.00", "quantity": 99_999, "time_in_force": "gtc"},
        None,
    ),
]


@pytest.mark.parametrize(("reason", "who", "account", "params", "field"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_order_rejects(clean_books: Server, reason: str, who: str, account: str, params: dict[str, Any], field: str | None) -> None:
    async with broker(clean_books, who) as c:
        if reason == "INSUFFICIENT_HOLDINGS":  # freeze nearly all of it first: 100,000 t held
            await c.place(account, "SHEA", "sell", 99_999, "66.00", time_in_force="gtc")
        err = await _unchanged(c, account, lambda: _reject(c.request("order.place", {"account": account, **params})))
        assert err.reason == reason, err
        if field is not None:
            assert err.field == field, err


async def test_invalid_tick(clean_books: Server) -> None:
    """The tick is 0.01 and a wire price has at most 2 decimals: a third decimal is off-tick."""
    async with broker(clean_books, "a") as c:
        err = await _unchanged(c, "A-001", lambda: _reject(c.place("A-001", "SHEA", "buy", 1, "60.005")))
        assert err.reason == "INVALID_TICK", err
        assert err.field == "price"


async def test_insufficient_funds(clean_books: Server) -> None:
    async with broker(clean_books, "a") as c:
        first = await c.place("A-002", "SHEA", "buy", 99_999, "54.00")  # freezes ~5.4 M of 10 M
        assert first["status"] == "new"
        err = await _unchanged(c, "A-002", lambda: _reject(c.place("A-002", "SHEA", "buy", 99_999, "54.00")))
        assert err.reason == "INSUFFICIENT_FUNDS"


async def test_duplicate_client_order_id_among_live_orders(clean_books: Server) -> None:
    async with broker(clean_books, "a") as c:
        await c.place("A-001", "SHEA", "buy", 5, "54.50", client_order_id="dup-1")
        err = await _unchanged(c, "A-001", lambda: _reject(c.place("A-001", "SHEA", "buy", 5, "54.50", client_order_id="dup-1")))
        assert err.reason == "DUPLICATE_CLIENT_ORDER_ID"
        assert err.field == "client_order_id"
        # the same id on another account of the same member is a different order
        other = await c.place("A-002", "SHEA", "buy", 5, "54.50", client_order_id="dup-1")
        assert other["client_order_id"] == "dup-1"


async def test_unknown_order(clean_books: Server) -> None:
    async with broker(clean_books, "a") as c:
        for action in (
            lambda: c.cancel("A-001", "987654321"),
            lambda: c.get_order("A-001", "987654321"),
            lambda: c.amend("A-001", "987654321", quantity=1),
            lambda: c.cancel("A-001", client_order_id="never-sent"),
            lambda: c.cancel("A-001", "not-a-number"),
        ):
            assert (await _reject(action())).reason == "UNKNOWN_ORDER"


async def test_cancel_of_a_done_order_is_unknown(clean_books: Server) -> None:
    async with broker(clean_books, "a") as c:
        placed = await c.place("A-001", "SHEA", "buy", 5, "54.50")
        cancelled = await c.cancel("A-001", placed["order_id"])
        assert (cancelled["exec_type"], cancelled["status"], cancelled["leaves_qty"]) == ("cancelled", "cancelled", 0)
        err = await _reject(c.cancel("A-001", placed["order_id"]))
        assert err.reason in ("UNKNOWN_ORDER", "ORDER_NOT_AMENDABLE")


async def test_post_only_would_cross(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        await b.place("B-001", "SHEA", "sell", 5, "61.00")
        err = await _unchanged(a, "A-001", lambda: _reject(a.place("A-001", "SHEA", "buy", 5, "61.00", post_only=True)))
        assert err.reason == "POST_ONLY_WOULD_CROSS"


async def test_not_authenticated(shared_server: Server) -> None:
    async with Client(shared_server.trading) as c:
        err = await _reject(c.place("A-001", "SHEA", "buy", 1, "60.00"))
        assert err.reason == "NOT_AUTHENTICATED"


async def test_rate_limited_then_connection_closed_on_abuse(shared_server: Server) -> None:
    """1,500 requests at once against a budget of 400 + 200/s: the first ones pass, then
    RATE_LIMITED replies, and 50 of those in a row close the connection with 1008, while
    other sessions are unaffected. (The burst is large so that the bucket cannot refill
    meanwhile even on a slow, shared machine.)"""
    async with broker(shared_server, "a") as abuser, broker(shared_server, "a") as bystander:
        replies = await asyncio.gather(*(abuser.ping() for _ in range(1500)), return_exceptions=True)
        limited = [r for r in replies if isinstance(r, RpcError) and r.reason == "RATE_LIMITED"]
        assert len(limited) >= 50, "1,500 requests at once must exceed the budget"
        assert 1000 <= limited[0].code <= 1999 and limited[0].message
        assert sum(isinstance(r, dict) for r in replies) >= 100
        await abuser.wait_closed(10)
        assert abuser.close_code == 1008, (abuser.close_code, abuser.close_reason)
        assert (await bystander.ping())["ts"] > 0


async def test_order_rate_is_limited_separately(clean_books: Server) -> None:
    """240 orders at once: the order bucket (burst 200, 100/s) limits some, fewer than 50 in
    a row, so the connection stays open and plain requests still pass. On a machine so slow
    that the bucket refilled meanwhile, wait for it to fill and try again."""
    async with broker(clean_books, "b") as c:
        placed: list[dict[str, Any]] = []
        for _ in range(3):
            replies = await asyncio.gather(*(c.place("B-001", "SHEA", "buy", 1, "54.00") for _ in range(240)), return_exceptions=True)
            limited = [r for r in replies if isinstance(r, RpcError) and r.reason == "RATE_LIMITED"]
            placed += [r for r in replies if isinstance(r, dict)]
            if limited:
                break
            await asyncio.sleep(2.1)
        assert limited and placed
        assert (await c.ping())["ts"] > 0  # plain requests still have budget
        listed = await c.list_orders("B-001", "SHEA", open_only=True)
        assert {o["order_id"] for o in listed} >= {r["order_id"] for r in placed}
        assert len(listed) == len(placed), "a rate-limited order must not exist"


# ---------------------------------------------------------------- operator-driven rejects


async def test_instrument_halted_accepts_cancels_only(fresh_server: Server) -> None:
    async with operator(fresh_server) as ops, broker(fresh_server, "a") as c:
        await c.subscribe(["status.SHEA"])
        resting = await c.place("A-001", "SHEA", "buy", 5, "59.00")
        await ops.call("admin.instrument.halt", instrument="SHEA")
        await c.wait_for(lambda n: n.channel == "status.SHEA" and n.params.get("halted") is True, 5)
        err = await _unchanged(c, "A-001", lambda: _reject(c.place("A-001", "SHEA", "buy", 5, "59.00")))
        assert err.reason == "INSTRUMENT_HALTED"
        amend = await _reject(c.amend("A-001", resting["order_id"], price="59.50"))
        assert amend.reason == "INSTRUMENT_HALTED"
        assert (await c.cancel("A-001", resting["order_id"]))["status"] == "cancelled"
        assert (await c.place("A-001", "CCER", "buy", 1, "80.00"))["status"] == "new"  # other books trade on
        await ops.call("admin.instrument.resume", instrument="SHEA")
        assert (await c.place("A-001", "SHEA", "buy", 5, "59.00"))["status"] == "new"


async def test_account_and_member_blocked_by_the_kill_switch(fresh_server: Server) -> None:
    async with operator(fresh_server) as ops, broker(fresh_server, "a") as c:
        resting = await c.place("A-001", "SHEA", "buy", 5, "59.00")
        await ops.call("admin.block", account="A-001")
        gone = await c.get_order("A-001", resting["order_id"])
        assert gone["status"] == "cancelled", "blocking cancels the account's open orders"
        err = await _unchanged(c, "A-001", lambda: _reject(c.place("A-001", "SHEA", "buy", 5, "59.00")))
        assert err.reason == "ACCOUNT_BLOCKED"
        assert (await c.place("A-002", "SHEA", "buy", 5, "59.00"))["status"] == "new"
        await ops.call("admin.unblock", account="A-001")
        await ops.call("admin.block", member="broker-a")
        assert (await _reject(c.place("A-002", "SHEA", "buy", 5, "59.00"))).reason == "ACCOUNT_BLOCKED"
        await ops.call("admin.unblock", member="broker-a")
        assert (await c.place("A-001", "SHEA", "buy", 5, "59.00"))["status"] == "new"


async def test_market_closed_after_day_close_and_reopen(fresh_server: Server) -> None:
    async with operator(fresh_server) as ops, broker(fresh_server, "a") as c, broker(fresh_server, "b") as b:
        await c.place("A-001", "SHEA", "buy", 10, "61.00")
        await b.place("B-001", "SHEA", "sell", 10, "61.00")
        closed = await ops.call("admin.day.close")
        assert closed["closes"]["SHEA"]["close"] == "61.00"
        assert closed["closes"]["SHEA"]["volume"] == 10
        err = await _unchanged(c, "A-001", lambda: _reject(c.place("A-001", "SHEA", "buy", 5, "60.00")))
        assert err.reason == "MARKET_CLOSED"
        await ops.call("admin.day.open")
        # the close became the reference: the band is now 54.90 .. 67.10
        assert (await c.place("A-001", "SHEA", "buy", 5, "67.10"))["status"] == "new"
        assert (await _reject(c.place("A-001", "SHEA", "buy", 5, "67.11"))).reason == "PRICE_OUT_OF_BAND"


async def test_t1_resale(clean_books: Server) -> None:
    """CCER tonnes bought today are locked until the next trading day."""
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        await a.place("A-001", "CCER", "sell", 99_999, "88.00", time_in_force="gtc")  # 1 t of old stock left free
        await b.place("B-001", "CCER", "sell", 10, "80.00")
        bought = await a.place("A-001", "CCER", "buy", 10, "80.00")
        assert bought["status"] == "filled"
        err = await _unchanged(a, "A-001", lambda: _reject(a.place("A-001", "CCER", "sell", 5, "87.00")))
        assert err.reason == "T1_RESALE", err
        assert (await a.place("A-001", "CCER", "sell", 1, "87.00"))["status"] == "new"  # the old tonne is free


async def test_market_order_without_liquidity(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a:
        try:
            report = await a.place("A-001", "CCER", "buy", 5, type="market")
        except RpcError as err:
            assert err.reason == "NO_LIQUIDITY", err
        else:
            assert (report["status"], report["cum_qty"], report["leaves_qty"]) == ("cancelled", 0, 0), report
            assert report.get("reason") == "NO_LIQUIDITY", report
        assert (await a.account("A-001"))["cash"]["frozen"] == "0.00"


@pytest.mark.parametrize(
    ("method", "params", "reason"),
    [
        ("admin.member.create", {"member": "broker-a", "key_id": "fresh-key", "secret": "long-enough-secret"}, "ALREADY_EXISTS"),
        ("admin.member.create", {"member": "broker-new", "key_id": "demo-a", "secret": "long-enough-secret"}, "ALREADY_EXISTS"),
        ("admin.account.create", {"account": "A-001", "member": "broker-a", "type": "institution"}, "ALREADY_EXISTS"),
        ("admin.account.create", {"account": "Z-001", "member": "no-such-member", "type": "institution"}, "UNKNOWN_MEMBER"),
        ("admin.account.deposit", {"account": "Z-404", "cash": "100.00"}, "UNKNOWN_ACCOUNT"),
        ("admin.account.deposit", {"account": "A-001", "cash": "0.00"}, "INVALID_AMOUNT"),
        ("admin.account.withdraw", {"account": "A-001", "cash": "99999999999.00"}, "INSUFFICIENT_FUNDS"),
        ("admin.instrument.halt", {"instrument": "NOPE"}, "UNKNOWN_INSTRUMENT"),
        ("admin.auction.open", {"auction_id": "424242"}, "UNKNOWN_AUCTION"),
        ("admin.day.open", {}, "INVALID_STATE"),
    ],
)
async def test_operator_rejects(shared_server: Server, method: str, params: dict[str, Any], reason: str) -> None:
    async with operator(shared_server) as ops, broker(shared_server, "a") as a:
        account_before = await a.account("A-001")
        before = await ops.call("admin.status")
        err = await _reject(ops.request(method, params))
        assert await a.account("A-001") == account_before
        assert err.reason == reason or (reason == "INVALID_STATE" and err.reason == "DAY_NOT_OPEN"), err
        after = await ops.call("admin.status")
        assert {k: v for k, v in after.items() if k not in ("seq", "durable_seq", "ts")} == {
            k: v for k, v in before.items() if k not in ("seq", "durable_seq", "ts")
        }
