"""Durability end to end: a restart keeps every acknowledged order, and so does ``kill -9``.

The kill -9 test (issue 2) runs the real process with ``--fsync-policy fsync``, drives it
from several connections, kills it at a seeded random moment under load, restarts it on the
same data directory and checks, against everything the clients were told:

* every acknowledged order exists, in a state at least as advanced as the last report the
  client received (terminal states exactly), with ``quantity = cum_qty + leaves_qty``;
* no order exists whose placement was rejected, and no order exists that was neither
  acknowledged nor still in flight at the moment of the kill;
* ``carbonx journal verify`` replays the journal from empty and its digest equals the state
  the server recovered (checked through a snapshot the recovered server writes, and through
  ``gateway.recovery.recover`` in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from carbonx.engine.config import load_market_text
from carbonx.gateway.client import Client, ClientError, RpcError
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, DEMO, Server, carbonx_argv, start_server, write_config
from tests.e2e.conftest import broker, operator, running_server

TERMINAL = ("filled", "cancelled", "expired", "rejected")
KEY = (
    "order_id",
    "client_order_id",
    "account",
    "instrument",
    "side",
    "type",
    "price",
    "quantity",
    "status",
    "cum_qty",
    "leaves_qty",
    "avg_price",
)


def _key(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report.get(k) for k in KEY}


async def _all_orders(server: Server) -> dict[str, dict[str, Any]]:
    orders: dict[str, dict[str, Any]] = {}
    for who in ("a", "b"):
        async with broker(server, who) as c:
            for account in ACCOUNTS[who]:
                for order in await c.list_orders(account):
                    orders[order["order_id"]] = order
    return orders


def _journal_verify(data_dir: Path, config: Path = DEMO) -> dict[str, Any]:
    done = subprocess.run(
        carbonx_argv("journal", "verify", str(data_dir), "--config", str(config)), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"journal verify failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


# ------------------------------------------------------------------ graceful restart


async def test_restart_keeps_every_acknowledged_order(tmp_path: Path) -> None:
    """SIGTERM: every acknowledged order and balance survives the restart exactly, except
    that a cancel-on-disconnect session's orders are cancelled (its connection dropped)."""
    data = tmp_path / "data"
    with running_server(data) as server:
        async with broker(server, "a") as a, broker(server, "b") as b, broker(server, "b") as cod:
            await cod.cancel_on_disconnect(True)
            guarded = await cod.place("B-002", "SHEA", "sell", 3, "65.00")
            placed = [await a.place("A-001", "SHEA", "buy", 10 + i, f"5{8 - i % 3}.{i:02d}", client_order_id=f"r-{i}") for i in range(6)]
            sold = await b.place("B-001", "SHEA", "sell", 15, "58.00")  # trades against the 58.xx bids
            await a.cancel("A-001", placed[5]["order_id"])
            await a.amend("A-001", placed[4]["order_id"], quantity=5)
            assert sold["cum_qty"] == 15
            before = {oid: _key(o) for oid, o in (await _all_orders(server)).items()}
            accounts = {acct: await (a if acct.startswith("A") else b).account(acct) for acct in ("A-001", "B-001")}
            closing = asyncio.create_task(a.wait_closed(15))
            assert await asyncio.to_thread(server.terminate) == 0
            await closing
            assert a.close_code == 1001, (a.close_code, a.close_reason)
    with running_server(data) as again:
        after = {oid: _key(o) for oid, o in (await _all_orders(again)).items()}
        gone = after.pop(guarded["order_id"])
        assert before.pop(guarded["order_id"])["status"] == "new" and gone["status"] == "cancelled"
        assert after == before
        async with broker(again, "a") as a, broker(again, "b") as b:
            assert await a.account("A-001") == accounts["A-001"]
            assert await b.account("B-001") == accounts["B-001"]
            # and it keeps trading with fresh ids
            new = await a.place("A-002", "SHEA", "buy", 1, "55.00")
            assert new["order_id"] not in before


# ------------------------------------------------------------------ kill -9


@dataclass
class Ledger:
    """What the clients were told, per order (keyed by our unique client_order_id)."""

    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # coid -> latest report
    rejected: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)  # sent, outcome unknown at the crash
    touched_in_flight: set[str] = field(default_factory=set)  # amend/cancel in flight at the crash

    def record(self, report: dict[str, Any]) -> None:
        coid = report.get("client_order_id")
        if not coid or not report.get("order_id") or report.get("status") == "rejected":
            return
        last = self.acked.get(coid)
        if last is None or report["seq"] >= last["seq"]:
            self.acked[coid] = report


async def _trader(c: Client, account: str, seed: int, ledger: Ledger, stop: asyncio.Event) -> None:
    """Places, amends and cancels as fast as replies come (4 requests in flight)."""
    rng = random.Random(seed)
    live: list[str] = []
    counter = 0

    async def one() -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1
            roll = rng.random()
            if roll < 0.75 or not live:
                coid = f"{account}-{seed}-{counter}"
                side = rng.choice(("buy", "sell"))
                price = f"{rng.randint(5900, 6100) / 100:.2f}" if rng.random() > 0.1 else "99.00"  # 10 % out of band
                ledger.in_flight.add(coid)
                try:
                    report = await c.place(account, "SHEA", side, rng.randint(1, 20), price, client_order_id=coid, time_in_force="gtc")
                except RpcError:
                    ledger.rejected.add(coid)
                    ledger.in_flight.discard(coid)
                    continue
                ledger.in_flight.discard(coid)
                ledger.record(report)
                if report["leaves_qty"]:
                    live.append(coid)
            else:
                coid = live.pop(rng.randrange(len(live)))
                ledger.touched_in_flight.add(coid)
                try:
                    if roll < 0.9:
                        report = await c.cancel(account, client_order_id=coid)
                    else:
                        report = await c.amend(account, client_order_id=coid, quantity=1)
                        live.append(coid)
                    ledger.record(report)
                except RpcError as err:
                    assert err.reason in ("UNKNOWN_ORDER", "ORDER_NOT_AMENDABLE", "INVALID_QUANTITY"), err
                ledger.touched_in_flight.discard(coid)

    with contextlib.suppress(ClientError, ConnectionError):
        await asyncio.gather(*(one() for _ in range(4)))


def _on_orders(ledger: Ledger) -> Any:
    def note(n: Any) -> None:
        if n.method == "orders" and n.params.get("kind", "execution_report") == "execution_report" and n.params.get("client_order_id"):
            ledger.record(n.params)

    return note


async def _load_then_kill(server: Server, seed: int, ledger: Ledger, snapshot_midway: bool) -> None:
    """Four traders at full speed; optionally an operator snapshot under load (so recovery
    has to restore it and replay the tail); then ``kill -9`` at a seeded moment."""
    rng = random.Random(seed)
    stop = asyncio.Event()
    clients = []
    for who, account in (("a", "A-001"), ("a", "A-002"), ("b", "B-001"), ("b", "B-002")):
        c = Client(server.trading, timeout=5)
        await c.connect()
        await c.login(*BROKERS[who])
        await c.subscribe(["orders"])
        c.on_notification(_on_orders(ledger), "orders")
        clients.append((c, account))
    traders = [asyncio.create_task(_trader(c, acct, seed * 10 + i, ledger, stop)) for i, (c, acct) in enumerate(clients)]
    moment = rng.uniform(0.4, 1.6)  # the seeded moment
    if snapshot_midway:
        await asyncio.sleep(moment / 2)
        async with operator(server) as ops:
            await ops.call("admin.snapshot")
        await asyncio.sleep(moment / 2)
    else:
        await asyncio.sleep(moment)
    server.kill9()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*traders), 10)
    for c, _ in clients:
        await c.close()


def _check_recovered(ledger: Ledger, recovered: dict[str, dict[str, Any]]) -> None:
    by_coid = {o["client_order_id"]: o for o in recovered.values()}
    assert len(by_coid) == len(recovered), "client order ids are unique in this test"
    for coid, last in ledger.acked.items():
        got = by_coid.get(coid)
        assert got is not None, f"acknowledged order {coid} ({last['order_id']}) lost"
        assert got["order_id"] == last["order_id"]
        assert got["cum_qty"] >= last["cum_qty"], (coid, last, got)
        if last["status"] in TERMINAL:
            assert (got["status"], got["cum_qty"]) == (last["status"], last["cum_qty"]), (coid, last, got)
        elif coid not in ledger.touched_in_flight:
            assert got["price"] == last["price"], (coid, last, got)
        if got["status"] in TERMINAL:
            assert got["leaves_qty"] == 0
        else:
            assert got["quantity"] == got["cum_qty"] + got["leaves_qty"], got
    assert not ledger.rejected & set(by_coid), "a rejected order exists after recovery"
    unexplained = set(by_coid) - set(ledger.acked) - ledger.in_flight
    assert not unexplained, f"orders nobody was told about and none in flight: {sorted(unexplained)[:5]}"


@pytest.mark.parametrize(("seed", "snapshot_midway"), [(1, False), (2, True), (3, False), (4, True)])
async def test_kill9_under_load_loses_no_acknowledged_order(tmp_path: Path, seed: int, snapshot_midway: bool) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "fast.toml", limits={"orders_per_s": 5000.0, "order_burst": 5000, "requests_per_s": 5000.0, "request_burst": 5000}
    )
    ledger = Ledger()
    server = start_server(data, fsync="fsync", config=config)
    try:
        await _load_then_kill(server, seed, ledger, snapshot_midway)
    finally:
        server.kill9()
    print(
        f"seed {seed}: {len(ledger.acked)} acknowledged, {len(ledger.rejected)} rejected, {len(ledger.in_flight)} placements in flight at the kill"
    )
    assert len(ledger.acked) > 50, f"too little load before the kill: {len(ledger.acked)} acknowledged"
    assert ledger.rejected, "the flow includes out-of-band orders"

    crashed = _journal_verify(data, config)  # the crashed directory as it is: replays cleanly
    newest = max(r["seq"] for r in ledger.acked.values())
    assert crashed["last_seq"] >= newest, f"acknowledged seq {newest} is not in the journal (ends at {crashed['last_seq']})"

    with running_server(data, fsync="fsync", config=config) as again:
        if snapshot_midway:  # recovery restored the mid-load snapshot and replayed only the tail
            started = re.search(r"recovered seq (\d+) \(snapshot (\d+), (\d+) replayed", again.log_path.read_text())
            assert started is not None and int(started.group(2)) > 0, again.log_tail()
            assert int(started.group(2)) + int(started.group(3)) == int(started.group(1))
        recovered_orders = await _all_orders(again)
        _check_recovered(ledger, recovered_orders)
        async with broker(again, "a") as a:  # it trades on, with fresh order ids
            fresh = await a.place("A-001", "SHEA", "buy", 1, "55.00", client_order_id="after-recovery")
            assert fresh["order_id"] not in recovered_orders
            assert int(fresh["order_id"]) > max(int(oid) for oid in recovered_orders)
        async with operator(again) as ops:
            snap = await ops.call("admin.snapshot")
        assert await asyncio.to_thread(again.terminate) == 0
    report = _journal_verify(data, config)
    print(f"seed {seed}: verify {report}")
    assert report["ok"] is True, report
    assert len(report["snapshots"]) == (2 if snapshot_midway else 1), report["snapshots"]
    for check in report["snapshots"]:
        assert check["ok"] is True and check["saved_digest"] == check["replayed_digest"], check
    mine = [s for s in report["snapshots"] if s["seq"] == snap["seq"]]
    assert mine and mine[0]["saved_digest"] == mine[0]["replayed_digest"], (snap, report)
    assert snap["seq"] >= crashed["last_seq"]

    from carbonx.gateway.recovery import recover

    recovered = await asyncio.to_thread(recover, data, load_market_text(config.read_text()))
    assert recovered.engine.digest() == report["digest"]
    assert recovered.engine.seq == report["last_seq"]
