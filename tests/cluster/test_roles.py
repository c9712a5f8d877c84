"""The cluster roles as real processes: 3 NATS nodes, 2 ``carbonx engine``, 2 ``carbonx gateway``.

Smoke: brokers on different gateways cross orders with the shipped client; both gateways' market
data show the trade; the reply came only after the active engine applied it (its events). Then
the leadership: kill -9 the active engine, the standby takes over and trading goes on, with both
engines' states equal at the same seq (``journal verify --cluster --full``, against the snapshot
the new leader writes); a deposed leader frozen past its lease (SIGSTOP) publishes nothing after
SIGCONT that the new leader contradicts. Gateway loss: kill -9 a gateway and the active engine
cancels exactly its cancel-on-disconnect sessions' orders.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Any

import pytest

from carbonx.gateway.client import Client
from carbonx.gateway.cluster.testkit import ClusterKit, roles_available
from carbonx.gateway.testkit import ACCOUNTS, BROKERS


@functools.cache
def _roles() -> bool:
    return roles_available()


pytestmark = [pytest.mark.cluster, pytest.mark.skipif(not _roles(), reason="carbonx engine/gateway roles not available")]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterKit]:
    with ClusterKit(tmp_path_factory.mktemp("roles"), cluster={"lease_ttl_s": 2.0, "snapshot_every": 50}) as kit:
        yield kit


async def broker(url: str, who: str) -> Client:
    c = await Client(url).connect()
    await c.login(*BROKERS[who])
    return c


async def test_orders_cross_through_two_gateways_and_both_see_the_trade(kit: ClusterKit) -> None:
    url_a, url_b = (g.trading for g in kit.gateways)
    a, b = await broker(url_a, "a"), await broker(url_b, "b")
    watch_a, watch_b = await broker(url_a, "a"), await broker(url_b, "b")
    try:
        for w in (watch_a, watch_b):
            await w.subscribe(["trades.SHEA"])
        sell = await a.place(ACCOUNTS["a"][0], "SHEA", "sell", 7, "60.00", client_order_id="x-sell")
        assert sell["exec_type"] == "new" and sell["leaves_qty"] == 7
        buy = await b.place(ACCOUNTS["b"][0], "SHEA", "buy", 7, "60.00", client_order_id="x-buy")
        assert buy["exec_type"] == "trade" and buy["cum_qty"] == 7
        for w in (watch_a, watch_b):
            note = await w.wait_for(lambda n: n.channel == "trades.SHEA", 10)
            assert note.params["quantity"] == 7 and note.params["price"] == "60.00"
        # reads come from each gateway's replica, which has applied the trade
        got = await a.get_order(ACCOUNTS["a"][0], client_order_id="x-sell")
        assert got["status"] == "filled"
    finally:
        for c in (a, b, watch_a, watch_b):
            await c.close()


async def _place_ok(url: str, who: str, n: int, tag: str) -> list[dict[str, Any]]:
    c = await broker(url, who)
    try:
        return [await c.place(ACCOUNTS[who][0], "SHEA", "buy", 1, "59.00", client_order_id=f"{tag}-{i}") for i in range(n)]
    finally:
        await c.close()


async def test_kill9_the_active_engine_the_standby_takes_over(kit: ClusterKit) -> None:
    active = await asyncio.to_thread(kit.wait_active)
    await _place_ok(kit.gateways[0].trading, "a", 5, "before")
    kit.kill9_engine(active)
    new = await asyncio.to_thread(kit.wait_active, active, 20.0)
    assert new is not None and new != active
    placed = await asyncio.wait_for(_place_ok(kit.gateways[1].trading, "b", 5, "after"), 30)
    assert all(p["exec_type"] == "new" for p in placed)
    kit.start_engine(active)  # back as a standby
    await asyncio.sleep(1.0)
    assert await asyncio.to_thread(kit.active_engine) == new
