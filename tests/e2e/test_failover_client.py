"""FailoverClient against real ``carbonx serve`` processes: the session moves to the next gateway.

Two independent embedded servers stand in for two gateways (their markets are separate, so this
proves the client side: URL rotation, re-login, COD re-enabled, re-subscription with a fresh book
snapshot, a request in flight failing with ClientClosed, giving up when no gateway answers).
The same client over a real cluster is tests/cluster/test_kills.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carbonx.gateway.client import ClientClosed
from carbonx.gateway.failover import FailoverClient
from carbonx.gateway.testkit import BROKERS
from tests.e2e.conftest import broker, running_server


async def test_session_fails_over_to_the_next_gateway_and_is_restored(tmp_path: Path) -> None:
    with running_server(tmp_path / "a") as first, running_server(tmp_path / "b") as second:
        async with FailoverClient([first.trading, second.trading], *BROKERS["a"], reconnect_s=20) as fc:
            assert fc.url == first.trading
            await fc.cancel_on_disconnect(True)
            await fc.subscribe(["book.SHEA", "orders"])
            await fc.call("order.place", account="A-001", instrument="SHEA", side="buy", quantity=5, price="59.00", client_order_id="f-1")
            old_session = fc.session_id
            first.kill9()
            with pytest.raises(ClientClosed):  # in flight or sent to the dead connection: fate unknown to the client
                await fc.client.call("ping")
            client = await fc.wait_connected(20)
            assert fc.url == second.trading and fc.reconnects == 1 and fc.session_id not in (None, old_session)
            await client.wait_for(lambda n: n.channel == "book.SHEA" and n.params.get("type") == "snapshot", 5)
            assert fc.books["SHEA"].synced, "re-subscribed: the book is rebuilt from a fresh snapshot"
            placed = await fc.call(
                "order.place", account="A-001", instrument="SHEA", side="buy", quantity=7, price="59.10", client_order_id="f-2"
            )
            note = await client.wait_for(lambda n: n.channel == "orders" and n.params.get("order_id") == placed["order_id"], 5)
            assert note.params["exec_type"] == "new", "the orders channel is subscribed again"
            # COD was re-enabled on the new session: dropping it cancels the order placed on it
            await client.abort()
            async with broker(second, "a") as observer:
                for _ in range(100):
                    order = await observer.get_order("A-001", client_order_id="f-2")
                    if order["status"] == "cancelled":
                        break
                    await asyncio.sleep(0.05)
                assert order["status"] == "cancelled"
            await fc.wait_connected(20)  # and it came back again, on the only gateway left
            assert fc.reconnects == 2 and fc.url == second.trading


async def test_connect_skips_a_dead_url_and_gives_up_after_reconnect_s(tmp_path: Path) -> None:
    with running_server(tmp_path / "a") as only:
        dead = "ws://127.0.0.1:1"
        async with FailoverClient([dead, only.trading], *BROKERS["b"], reconnect_s=5) as fc:
            assert fc.url == only.trading and (await fc.call("ping"))["ts"] > 0
            old = fc.client
            only.kill9()
            await old.wait_closed(5)
            with pytest.raises(ClientClosed, match="no gateway"):
                await fc.wait_connected(15)
            with pytest.raises(ClientClosed):
                await fc.call("ping")
    with pytest.raises(ClientClosed, match="no gateway"):
        await FailoverClient([dead], *BROKERS["a"], reconnect_s=0.5).connect()


async def test_order_flow_and_its_checks_on_one_embedded_server(tmp_path: Path) -> None:
    """The cluster kill tests' load and checks (gateway.cluster.orderflow), proven on one server."""
    from carbonx.gateway.cluster.orderflow import OrderFlow, check_flow

    with running_server(tmp_path / "a") as server:
        flow = await OrderFlow([server.trading], rate=150, seed=5).start()
        await asyncio.sleep(1.5)
        await flow.close()
        summary = await check_flow(flow, server.trading)
        assert summary["acked"] >= 100 and summary["trades"] > 0 and summary["unknown"] == 0
