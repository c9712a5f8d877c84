"""Session bounds over the wire: connections per member, login attempts, subscriptions."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import BROKERS, Server

PER_MEMBER = 16  # limits.max_connections_per_member in the demo configuration


async def _logged_in(server: Server, n: int) -> list[Client]:
    clients = []
    for _ in range(n):
        c = Client(server.trading)
        await c.connect()
        await c.login(*BROKERS["b"])
        clients.append(c)
    return clients


async def test_connections_per_member_are_bounded_and_released(fresh_server: Server) -> None:
    clients = await _logged_in(fresh_server, PER_MEMBER)
    try:
        async with Client(fresh_server.trading) as extra:
            with pytest.raises(RpcError) as full:
                await extra.login(*BROKERS["b"])
            assert 1000 <= full.value.code <= 1999 and "connections" in full.value.message
            async with Client(fresh_server.trading) as other_member:
                await other_member.login(*BROKERS["a"])  # the limit is per member
            await clients.pop().close()
            await asyncio.sleep(0.2)
            await extra.login(*BROKERS["b"])  # a freed slot can be used again
    finally:
        for c in clients:
            await c.close()


async def test_concurrent_logins_on_one_connection_do_not_leak_connection_slots(fresh_server: Server) -> None:
    """Two ``session.login`` requests sent back to back on one connection (the second
    arriving while the first is still verifying the secret) must not count the connection
    twice against the member's limit: after closing, every slot is free again."""
    for _ in range(PER_MEMBER + 2):
        async with Client(fresh_server.trading) as c:
            results = await asyncio.gather(c.login(*BROKERS["b"]), c.login(*BROKERS["b"]), return_exceptions=True)
            assert sum(isinstance(r, dict) for r in results) >= 1, results
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    clients = await _logged_in(fresh_server, PER_MEMBER)  # the full allowance is still there
    for c in clients:
        await c.close()


async def test_repeated_login_failures_close_the_connection(shared_server: Server) -> None:
    """From an address and with a key id of its own: failed logins back off both
    (LOGIN_THROTTLED, see test_admission), which must not hold back other tests' logins."""
    async with Client(shared_server.trading, local_addr=("127.0.0.9", 0)) as c:
        for _ in range(10):
            try:
                await c.login("nobody-9", "not-the-secret")
            except RpcError as err:
                assert err.reason in ("NOT_AUTHENTICATED", "LOGIN_THROTTLED")
            except ConnectionError:
                break
        with contextlib.suppress(TimeoutError):
            await c.wait_closed(5)
        assert c.closed and c.close_code == 1008, (c.close_code, c.close_reason)


async def test_subscriptions_per_connection_are_bounded(shared_server: Server) -> None:
    async with Client(shared_server.trading) as c:
        many = [f"book.SHEA.{d}" for d in range(1, 70)]
        with pytest.raises(RpcError) as at_once:
            await c.subscribe(many)
        assert at_once.value.field == "channels"
        assert await c.subscribe(many[:40])
        with pytest.raises(RpcError) as in_total:
            await c.subscribe(many[40:])  # 69 in total on one connection
        assert "subscriptions" in in_total.value.message and in_total.value.field == "channels"
        assert await c.subscribe(["trades.SHEA"])  # within the limit it still works
