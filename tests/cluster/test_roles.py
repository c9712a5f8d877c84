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
import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from carbonx.engine.engine import Engine
from carbonx.engine.schema import DayOpened, Reject
from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.cluster.events import decode_events
from carbonx.gateway.cluster.journal import connect, read_stream
from carbonx.gateway.cluster.testkit import ClusterKit, roles_available
from carbonx.gateway.sequencer import apply_replicated
from carbonx.gateway.settings import load_settings
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, OPERATOR, scrape


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
        await a.place(ACCOUNTS["a"][0], "SHEA", "buy", 1, "59.00", client_order_id="x-rest")
        mass = await a.request("order.cancel_all", {"account": ACCOUNTS["a"][0]})
        assert mass["cancelled"] == 1 and mass["seq"] > 0  # the seq the stream gave it, though submit could not know it
        got_metrics = await asyncio.to_thread(scrape, kit.gateways[0])
        assert got_metrics["carbonx_cluster_gateway_applied_seq"] >= mass["seq"]
        assert got_metrics["carbonx_cluster_events_watermark"] >= mass["seq"]
        assert got_metrics["carbonx_cluster_gateway_waiting"] == 0
        assert got_metrics["carbonx_journal_durable_seq"] >= mass["seq"]  # released up to there
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
    await asyncio.wait_for(_place_ok(kit.gateways[0].trading, "a", 60, "after-2"), 30)  # the new leader snapshots
    kit.start_engine(active)  # back as a standby
    await asyncio.sleep(1.0)
    assert await asyncio.to_thread(kit.active_engine) == new
    report = await asyncio.to_thread(kit.verify_full)  # the snapshots written equal a replay from empty
    assert report["ok"] and report["snapshots"] and all(s["ok"] for s in report["snapshots"]), report


async def events_agree_with_the_command_stream(kit: ClusterKit) -> int:
    """Every events-stream message matches what a fresh replay of the command stream produces,
    the messages cover every seq once, in order (a deposed leader's or a takeover's duplicate was
    dropped). Returns the number of commands checked."""
    settings = load_settings(kit.config_path)
    cs = settings.cluster
    nc = await connect(cs.nats_urls)
    js = nc.jetstream()
    try:
        expected: dict[int, bytes] = {}
        engine = Engine(settings.market)
        async for seq, cmd in read_stream(js, cs.command_stream):
            assert seq == engine.seq + 1
            expected[seq] = msgspec.msgpack.encode(apply_replicated(engine, cmd))
        info = await js.stream_info(cs.events_stream)
        sub = await js.subscribe(cs.events_subject, stream=cs.events_stream, ordered_consumer=True)
        covered = 0
        day_opens = 0
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=10)
            for seq, origin, events in decode_events(msg.data):
                assert seq == covered + 1, f"events for seq {seq} after {covered}: a gap or a duplicate"
                assert msgspec.msgpack.encode(events) == expected[seq], f"events of seq {seq} contradict the command stream"
                if origin.startswith("engine."):  # clock/bootstrap/GatewayLost: one producer, so never refused as a duplicate
                    assert not [e for e in events if isinstance(e, Reject)], (seq, origin, events)
                day_opens += sum(1 for e in events if isinstance(e, DayOpened))
                covered = seq
        assert day_opens == 1  # the day was opened by exactly one party, once
        await sub.unsubscribe()
        assert covered >= len(expected) - 50  # the last batches may still be on their way
        return covered
    finally:
        await nc.close()


async def test_a_deposed_leader_woken_after_its_lease_publishes_nothing_contradicting(kit: ClusterKit) -> None:
    active = await asyncio.to_thread(kit.wait_active)
    await _place_ok(kit.gateways[0].trading, "a", 3, "pre-stop")
    kit.stop_engine(active)  # SIGSTOP: frozen while holding the lease
    try:
        new = await asyncio.to_thread(kit.wait_active, active, 20.0)
        assert new != active
        await asyncio.wait_for(_place_ok(kit.gateways[1].trading, "b", 60, "while-stopped"), 30)  # acked by the new leader
    finally:
        kit.cont_engine(active)  # wakes up believing nothing happened
    await asyncio.sleep(2.0)
    await asyncio.wait_for(_place_ok(kit.gateways[0].trading, "a", 3, "post-cont"), 30)
    assert await asyncio.to_thread(kit.active_engine) == new
    log = kit.engines[active].log_tail(200)
    assert "standby now" in log or "local deadline passed" in log, log
    assert await events_agree_with_the_command_stream(kit) > 0
    report = kit.verify_full()  # a replay from empty reaches the digest of every snapshot either leader wrote
    assert report["ok"] and report["snapshots"] and all(s["ok"] for s in report["snapshots"]), report


async def test_losing_a_gateway_cancels_exactly_its_cancel_on_disconnect_orders(kit: ClusterKit) -> None:
    await asyncio.to_thread(kit.wait_active)
    survivor = await broker(kit.gateways[0].trading, "a")
    doomed = await broker(kit.gateways[1].trading, "b")
    plain = await broker(kit.gateways[1].trading, "b")
    try:
        await survivor.cancel_on_disconnect(True)
        await doomed.cancel_on_disconnect(True)
        kept = await survivor.place(ACCOUNTS["a"][0], "SHEA", "buy", 2, "58.00", client_order_id="cod-keep")
        lost = await doomed.place(ACCOUNTS["b"][0], "SHEA", "buy", 3, "58.10", client_order_id="cod-lost")
        plain_order = await plain.place(ACCOUNTS["b"][0], "SHEA", "buy", 4, "58.20", client_order_id="cod-plain")
        kit.kill9_gateway(1)
        await asyncio.to_thread(kit.restart_gateway, 1)  # the same id at once: a new life (boot nonce)
        await asyncio.to_thread(kit.wait_gateway_ready, 1)
        reborn = await broker(kit.gateways[1].trading, "b")
        await reborn.cancel_on_disconnect(True)
        new_life = await reborn.place(ACCOUNTS["b"][0], "SHEA", "buy", 5, "58.30", client_order_id="cod-new-life")
        checker = await broker(kit.gateways[0].trading, "b")
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                got = await checker.get_order(ACCOUNTS["b"][0], lost["order_id"])
                if got["status"] == "cancelled":
                    break
                assert asyncio.get_running_loop().time() < deadline, got
                await asyncio.sleep(0.2)
            assert got.get("reason") in (None, "GATEWAY_LOST")
            assert (await checker.get_order(ACCOUNTS["b"][0], plain_order["order_id"]))["status"] == "new"  # not COD
            assert (await survivor.get_order(ACCOUNTS["a"][0], kept["order_id"]))["status"] == "new"  # another gateway
            assert (await checker.get_order(ACCOUNTS["b"][0], new_life["order_id"]))["status"] == "new"  # the new life's
        finally:
            await checker.close()
            await reborn.close()
    finally:
        await survivor.close()
        for c in (doomed, plain):
            with contextlib.suppress(Exception):
                await c.abort()


async def test_a_gateway_stopped_after_the_engines_exits_at_once_and_its_cod_cancels_survive(tmp_path: Any) -> None:
    """A whole-cluster stop in the wrong order: the engine first, then the gateway, with an order
    the gateway applied but no engine released (its reply still owed). The gateway must not wait
    ``publish_retry_s`` (30 s) for a release no engine will give: it stores its own commands in
    the stream (the cancel-on-disconnect cancel of its still-connected broker among them), waits
    a short grace and exits 0. Nothing stored is lost: the engine, started again, applies the
    order and then the cancel."""
    import time

    with ClusterKit(tmp_path, engines_count=1, gateways_count=1, nats_nodes=1, cluster={"lease_ttl_s": 2.0}) as kit:
        await asyncio.to_thread(kit.wait_active)
        c = await broker(kit.gateways[0].trading, "a")
        try:
            await c.cancel_on_disconnect(True)
            acked = await c.place(ACCOUNTS["a"][0], "SHEA", "buy", 2, "58.00", client_order_id="cod-acked")
            assert acked["status"] == "new", acked
            engine = kit.engines[0].proc
            assert engine is not None
            engine.terminate()
            assert await asyncio.to_thread(engine.wait, 15) == 0, kit.logs()
            owed = asyncio.ensure_future(c.place(ACCOUNTS["a"][0], "SHEA", "buy", 3, "58.10", client_order_id="cod-owed"))
            await asyncio.sleep(1.0)  # stored and applied by the gateway's replica; no engine to release it
            assert not owed.done(), owed
            started = time.monotonic()
            code = await asyncio.to_thread(kit.gateways[0].terminate, 25)
            took = time.monotonic() - started
        finally:
            with contextlib.suppress(BaseException):
                await c.abort()
        assert code == 0, kit.logs()
        assert took < 10, f"the gateway took {took:.1f}s to stop\n{kit.logs()}"
        assert "not released" in kit.gateways[0].log_tail(), kit.logs()  # it waited for the engine, briefly
        await asyncio.to_thread(kit.start_engine, 0)
        await asyncio.to_thread(kit.wait_active)
        await asyncio.to_thread(kit.restart_gateway, 0)
        await asyncio.to_thread(kit.wait_gateway_ready, 0)
        checker = await broker(kit.gateways[0].trading, "a")
        try:
            for coid in ("cod-acked", "cod-owed"):
                got = await checker.get_order(ACCOUNTS["a"][0], client_order_id=coid)
                assert got["status"] == "cancelled", got
        finally:
            await checker.close()


async def test_revoking_a_key_or_changing_a_role_on_one_gateway_applies_on_the_other(kit: ClusterKit) -> None:
    """Access is cluster-wide: a key revoked through gateway 0 (a journaled command every
    replica applies) cuts off the session logged in with it on gateway 1 within a second or
    so (each gateway's access sweep), not only the revoking gateway's own sessions; a role
    changed through gateway 0 reaches an operator's live session on gateway 1 the same way."""
    await asyncio.to_thread(kit.wait_active)
    op = await Client(kit.gateways[0].admin).connect()
    try:
        await op.login(*OPERATOR)
        key = await op.call("admin.key.create", member="broker-a", label="cluster-revoke")
        elsewhere = await Client(kit.gateways[1].trading).connect()
        await elsewhere.login(key["key_id"], key["secret"])
        assert (await elsewhere.ping())["ts"] > 0
        revoked = await op.call("admin.key.revoke", key_id=key["key_id"])
        assert revoked["state"] == "revoked"
        await elsewhere.wait_closed(5.0)
        assert (elsewhere.close_code, "revoked" in (elsewhere.close_reason or "")) == (1008, True)
        # a role change too: promoted through gateway 0, the live session on gateway 1 gets it
        person = await op.call("admin.operator.create", operator="cluster-viewer", role="viewer")
        other = await Client(kit.gateways[1].admin).connect()
        try:
            await other.login(person["key_id"], person["secret"])
            with pytest.raises(RpcError) as refused:
                await other.call("admin.instrument.halt", instrument="SHCER")
            assert refused.value.reason == "NOT_AUTHORIZED"
            await op.call("admin.operator.role", operator="cluster-viewer", role="operator")
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                try:
                    assert (await other.call("admin.instrument.halt", instrument="SHCER"))["halted"] is True
                    break
                except RpcError as e:
                    assert e.reason == "NOT_AUTHORIZED" and asyncio.get_running_loop().time() < deadline, e
                    await asyncio.sleep(0.2)
            await other.call("admin.instrument.resume", instrument="SHCER")
        finally:
            await other.close()
    finally:
        await op.close()
