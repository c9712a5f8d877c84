"""Cluster mode under failure, with real processes: 3 NATS nodes, 2 ``carbonx engine``, 2 ``carbonx
gateway`` (gateway.cluster.testkit.ClusterKit), brokers on FailoverClients sending crossing orders
through both gateways (gateway.cluster.orderflow) while something is killed.

After each: every acknowledged order is there with its order id, no trade twice, cum_qty = its
trades, contiguous book seqs on every connection (check_flow), and ``carbonx journal verify
--cluster --full`` replays the command stream from empty to a state whose digest equals every
snapshot the engines wrote (both engines' states agree at the same seq).

Needs the roles (h/cluster); skipped with that reason until ``carbonx engine`` exists. Each test
prints its figures (``pytest -s``): failover time, how long writes paused.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator

import pytest

from carbonx.gateway.cluster.orderflow import OrderFlow, check_flow
from carbonx.gateway.cluster.testkit import ClusterKit, roles_available
from carbonx.gateway.failover import FailoverClient
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, write_config


@functools.cache
def _roles() -> bool:
    return roles_available()


pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not _roles(), reason="carbonx engine/gateway roles not available (h/cluster not merged)"),
]

LEASE_TTL_S = 2.0
SNAPSHOT_EVERY = 300


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterKit]:
    # snapshots every few hundred commands: each leader writes some, and verify --full compares
    # every one with the replay from empty (the engines' states agree at the same seq)
    cluster = {"lease_ttl_s": LEASE_TTL_S, "snapshot_every": SNAPSHOT_EVERY}
    base = tmp_path_factory.mktemp("kit")
    # check_flow looks every acknowledged order up: thousands of requests, above the default rate limits
    limits = {"requests_per_s": 1_000_000.0, "request_burst": 1_000_000, "orders_per_s": 1_000_000.0, "order_burst": 1_000_000}
    with ClusterKit(base, cluster=cluster, base_config=write_config(base / "base.toml", limits=limits)) as kit:
        yield kit


async def _settle(kit: ClusterKit) -> None:
    for i in range(len(kit.gateways)):
        await asyncio.to_thread(kit.wait_gateway_ready, i)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_kill9_the_active_engine_under_load(kit: ClusterKit, seed: int) -> None:
    active = await asyncio.to_thread(kit.wait_active)
    flow = await OrderFlow(kit.trading_urls, rate=200, seed=seed).start()
    try:
        await asyncio.sleep(0.5 + 0.1 * seed)
        killed_at = time.monotonic()
        kit.kill9_engine(active)
        new = await asyncio.to_thread(kit.wait_active, active, 15.0)
        assert new != active
        await asyncio.sleep(1.5)
    finally:
        await flow.close()
    first = flow.first_ack_after(killed_at)
    assert first is not None, "orders are acknowledged again after the takeover"
    summary = await check_flow(flow, kit.trading_urls[0])
    print(
        f"\nseed {seed}: engine {active} killed, engine {new} active; first order sent after the kill acknowledged after {first - killed_at:.2f} s; {summary}"
    )
    kit.start_engine(active)  # back as a standby for the next run
    report = kit.verify_full()
    checks = report["snapshots"]
    assert isinstance(checks, list) and checks and all(c["ok"] for c in checks), report
    print(f"verify --full: {report['records']} commands, digest {str(report['digest'])[:16]}…, {len(checks)} snapshots agree")


async def test_kill9_a_nats_node_under_load(kit: ClusterKit) -> None:
    stream = str(kit.cluster_table()["command_stream"])
    leader = kit.nats.stream_leader(stream)
    assert leader is not None
    flow = await OrderFlow(kit.trading_urls, rate=200, seed=11).start()
    try:
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        kit.nats.kill9(leader)
        await asyncio.sleep(10.0)
        assert flow.first_ack_after(killed_at + 8.0) is not None, "trading goes on with two nodes of three"
        kit.nats.restart(leader)
        await asyncio.sleep(2.0)
    finally:
        await flow.close()
    pause = flow.longest_pause(after=killed_at - 1.0)
    summary = await check_flow(flow, kit.trading_urls[0])
    print(f"\nNATS node {leader} (stream leader) killed: writes paused at most {pause:.2f} s; {summary}")
    others = [i for i in range(len(kit.nats.nodes)) if i != leader]
    deadline = time.monotonic() + 30
    while True:  # the restarted node catches up: holds every message the others hold
        states = [kit.nats.stream_state(i, stream) for i in (leader, *others)]
        if states[0] is not None and all(s is not None and s.get("last_seq") == states[0].get("last_seq") for s in states):
            break
        assert time.monotonic() < deadline, f"restarted node did not catch up: {states}"
        await asyncio.sleep(0.2)
    await _settle(kit)


async def test_kill9_a_gateway_its_clients_fail_over_and_cod_cancels_exactly_its_sessions(kit: ClusterKit) -> None:
    urls = kit.trading_urls
    cod = FailoverClient(urls, *BROKERS["a"], reconnect_s=30)  # on gateway 0, cancel-on-disconnect
    plain = FailoverClient(urls, *BROKERS["a"], reconnect_s=30)  # on gateway 0, no COD
    other = FailoverClient(urls[::-1], *BROKERS["b"], reconnect_s=30)  # on gateway 1, COD: its gateway lives
    async with cod, plain, other:
        await cod.cancel_on_disconnect(True)
        await other.cancel_on_disconnect(True)
        account_a, account_b = ACCOUNTS["a"][0], ACCOUNTS["b"][0]

        async def rest(fc: FailoverClient, account: str, coid: str, side: str, price: str) -> str:
            reply = await fc.call(
                "order.place", account=account, instrument="SHEA", side=side, quantity=1, price=price, client_order_id=coid
            )
            return str(reply["order_id"])

        await rest(cod, account_a, "gw-cod-1", "buy", "55.00")
        await rest(plain, account_a, "gw-plain-1", "buy", "55.01")
        await rest(other, account_b, "gw-other-1", "sell", "65.00")
        kit.kill9_gateway(0)
        await cod.wait_connected(30)
        await plain.wait_connected(30)
        assert cod.url == urls[1] and plain.url == urls[1], "the session moved to the other gateway"
        await rest(cod, account_a, "gw-cod-2", "buy", "55.02")  # placed by the new session, on a live gateway

        async def status(coid: str, fc: FailoverClient, account: str) -> str:
            return str((await fc.client.get_order(account, client_order_id=coid))["status"])

        deadline = time.monotonic() + 30
        while await status("gw-cod-1", cod, account_a) != "cancelled":
            assert time.monotonic() < deadline, "the lost gateway's COD session was not cancelled"
            await asyncio.sleep(0.2)
        await asyncio.sleep(LEASE_TTL_S)
        assert await status("gw-plain-1", plain, account_a) == "new", "no COD: stays"
        assert await status("gw-other-1", other, account_b) == "new", "COD on a live gateway: stays"
        assert await status("gw-cod-2", cod, account_a) == "new", "the new session's order: stays"
        for fc, account in ((cod, account_a), (other, account_b)):
            await fc.cancel_on_disconnect(False)
            await fc.client.cancel_all(account=account)
    await asyncio.to_thread(kit.restart_gateway, 0)


async def test_a_deposed_leader_woken_up_contradicts_nothing(kit: ClusterKit) -> None:
    active = await asyncio.to_thread(kit.wait_active)
    flow = await OrderFlow(kit.trading_urls, rate=150, seed=21).start()
    try:
        await asyncio.sleep(1.0)
        kit.stop_engine(active)  # SIGSTOP past the lease
        new = await asyncio.to_thread(kit.wait_active, active, 15.0 + LEASE_TTL_S)
        await asyncio.sleep(1.0)
        kit.cont_engine(active)  # wakes up believing it leads
        await asyncio.sleep(3 * LEASE_TTL_S)
        assert await asyncio.to_thread(kit.active_engine) == new, "the woken engine did not take the lease back"
    finally:
        await flow.close()
    summary = await check_flow(flow, kit.trading_urls[0])
    report = kit.verify_full()
    checks = report["snapshots"]
    assert isinstance(checks, list) and all(c["ok"] for c in checks)
    print(f"\nengine {active} stopped and woken, engine {new} stays active; {summary}; verify --full ok")
    if not kit.engines[active].running:
        kit.start_engine(active)
