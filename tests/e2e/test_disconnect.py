"""Cancel-on-disconnect: a dropped session's orders are cancelled, nobody else's are."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from carbonx.gateway.client import Client, Notification
from carbonx.gateway.testkit import BROKERS, Server
from tests.e2e.conftest import broker


def _cancelled(order_id: str) -> Callable[[Notification], bool]:
    return lambda n: n.params.get("order_id") == order_id and n.params.get("exec_type") == "cancelled"


async def _statuses(c: Client, account: str, ids: list[str]) -> list[str]:
    return [(await c.get_order(account, oid))["status"] for oid in ids]


async def _eventually(c: Client, account: str, ids: list[str], want: str) -> None:
    for _ in range(300):
        if set(await _statuses(c, account, ids)) == {want}:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"orders {ids} not all {want}: {await _statuses(c, account, ids)}")


async def test_dropped_connection_cancels_its_own_orders_only(clean_books: Server) -> None:
    async with broker(clean_books, "a") as survivor:
        await survivor.subscribe(["orders"])
        mine = (await survivor.place("A-001", "SHEA", "buy", 4, "56.00"))["order_id"]
        doomed = Client(clean_books.trading)
        await doomed.connect()
        await doomed.login(*BROKERS["a"])
        assert (await doomed.cancel_on_disconnect(True)) is not None
        ids = [(await doomed.place(acct, "SHEA", "buy", 3, "56.10"))["order_id"] for acct in ("A-001", "A-002", "A-001")]
        await doomed.abort()  # TCP reset, no close handshake: a crashed client
        await _eventually(survivor, "A-001", [ids[0], ids[2]], "cancelled")
        await _eventually(survivor, "A-002", [ids[1]], "cancelled")
        for oid in ids:  # every cancellation reached the member's other session too
            await survivor.wait_for(_cancelled(oid), 5)
        assert (await survivor.get_order("A-001", mine))["status"] == "new"
        account = await survivor.account("A-002")
        assert account["cash"]["frozen"] == "0.00", "the cancelled order's hold was released"


async def test_clean_close_also_cancels(clean_books: Server) -> None:
    async with broker(clean_books, "b") as watcher:
        async with broker(clean_books, "b") as c:
            await c.cancel_on_disconnect(True)
            oid = (await c.place("B-001", "SHEA", "sell", 2, "64.00"))["order_id"]
        await _eventually(watcher, "B-001", [oid], "cancelled")


async def test_without_the_flag_orders_survive_the_connection(clean_books: Server) -> None:
    async with broker(clean_books, "b") as watcher:
        c = Client(clean_books.trading)
        await c.connect()
        await c.login(*BROKERS["b"])
        oid = (await c.place("B-001", "SHEA", "sell", 2, "64.00"))["order_id"]
        await c.abort()
        await asyncio.sleep(0.3)
        await watcher.ping()
        assert (await watcher.get_order("B-001", oid))["status"] == "new"


async def test_logout_then_disconnect_keeps_orders(clean_books: Server) -> None:
    """PROTOCOL: orders are cancelled when the connection drops, not after ``session.logout``."""
    async with broker(clean_books, "b") as watcher:
        c = Client(clean_books.trading)
        await c.connect()
        await c.login(*BROKERS["b"])
        await c.cancel_on_disconnect(True)
        oid = (await c.place("B-001", "SHEA", "sell", 2, "64.00"))["order_id"]
        await c.logout()
        await c.abort()
        await asyncio.sleep(0.3)
        await watcher.ping()
        assert (await watcher.get_order("B-001", oid))["status"] == "new"


async def test_disabling_the_flag(clean_books: Server) -> None:
    async with broker(clean_books, "b") as watcher:
        c = Client(clean_books.trading)
        await c.connect()
        await c.login(*BROKERS["b"])
        await c.cancel_on_disconnect(True)
        await c.cancel_on_disconnect(False)
        oid = (await c.place("B-001", "SHEA", "sell", 2, "64.00"))["order_id"]
        await c.abort()
        await asyncio.sleep(0.3)
        await watcher.ping()
        assert (await watcher.get_order("B-001", oid))["status"] == "new"
