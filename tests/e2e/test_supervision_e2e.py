"""Surveillance and disclosure over the real protocol: the operator-only ``surveillance``
channel, ``admin.surveillance.list``/``ack``, related-party groups, the day report on the
``disclosure`` channel, ``disclosure.get`` and its files, a restart that keeps all of it
(from the checkpoint the graceful stop wrote beside its snapshot), and ``carbonx report day`` giving the same bytes."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from carbonx.gateway import supervision_checkpoint as checkpoints
from carbonx.gateway.client import RpcError
from carbonx.gateway.snapshots import SnapshotStore
from carbonx.gateway.testkit import DEMO, carbonx_argv, scrape, start_server
from tests.e2e.conftest import broker, operator, running_server

WASH_LOW = 'carbonx_surveillance_alerts_total{detector="wash_trade",severity="low"}'


async def test_alerts_acks_reports_survive_restart_and_regenerate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data) as server:
        async with operator(server) as ops, broker(server, "a") as a, broker(server, "b") as b:
            with pytest.raises(RpcError) as refused:
                await a.subscribe(["surveillance"])
            assert refused.value.reason == "NOT_AUTHORIZED"
            await ops.subscribe(["surveillance"])
            await b.subscribe(["disclosure"])
            await ops.call("admin.related.set", group="desk-7", accounts=["B-001", "A-001"])
            assert await ops.call("admin.related.list") == {"groups": [{"group": "desk-7", "accounts": ["A-001", "B-001"]}]}
            # A-002 sells to A-001: both accounts of broker-a
            await a.place("A-002", "SHEA", "sell", 10, "60.00")
            trade = await a.place("A-001", "SHEA", "buy", 10, "60.00")
            assert trade["status"] == "filled"
            note = await ops.wait_for(lambda n: n.channel == "surveillance")
            assert (note.params["detector"], note.params["severity"], note.params["accounts"], note.params["members"]) == (
                "wash_trade",
                "low",
                ["A-001", "A-002"],
                ["broker-a"],
            )
            assert note.params["figures"]["price"] == "60.00"
            alert_id = note.params["alert_id"]
            # B-001 sells to A-001: different members, but a declared group: high
            await b.place("B-001", "SHEA", "sell", 5, "60.00")
            await a.place("A-001", "SHEA", "buy", 5, "60.00")
            high = await ops.wait_for(lambda n: n.channel == "surveillance" and n.params["severity"] == "high")
            assert high.params["accounts"] == ["A-001", "B-001"]

            listed = await ops.call("admin.surveillance.list")
            assert [x["alert_id"] for x in listed["alerts"]] == [alert_id, high.params["alert_id"]]
            page = await ops.call("admin.surveillance.list", limit=1)
            assert len(page["alerts"]) == 1 and page["next_after_id"] == alert_id
            acked = await ops.call("admin.surveillance.ack", alert_id=alert_id, note="client accounts of one broker")
            assert acked["acked"] is True
            assert [x["alert_id"] for x in (await ops.call("admin.surveillance.list", unacked=True))["alerts"]] == [high.params["alert_id"]]
            for bad, reason in ((alert_id, "INVALID_STATE"), ("999999", "UNKNOWN_ALERT")):
                with pytest.raises(RpcError) as err:
                    await ops.call("admin.surveillance.ack", alert_id=bad)
                assert err.value.reason == reason

            closed = await ops.call("admin.day.close")
            date = closed["trading_date"]
            report = await b.wait_for(lambda n: n.channel == "disclosure")
            assert report.params["trading_date"] == date
            got = await b.call("disclosure.get", date=date)
            assert await b.call("disclosure.get") == got == {k: v for k, v in report.params.items() if k != "channel"}  # the latest
            shea = next(row for row in got["instruments"] if row["instrument"] == "SHEA")
            assert (shea["open"], shea["close"], shea["listing_volume"], shea["listing_trades"]) == ("60.00", "60.00", 15, 2)
            with pytest.raises(RpcError) as err:
                await b.call("disclosure.get", date="1999-01-01")
            assert err.value.reason == "UNKNOWN_REPORT"
        assert scrape(server)[WASH_LOW] == 1
        server.terminate()
    json_path, csv_path = data / "reports" / f"{date}.json", data / "reports" / f"{date}.csv"
    written = json_path.read_bytes(), csv_path.read_bytes()

    # The graceful stop wrote a snapshot and, beside it, a checkpoint of the consumers.
    assert [seq for seq, _ in checkpoints.files(data)] == [seq for seq, _ in SnapshotStore(data).files()][-1:]
    server = start_server(data)  # restart: everything comes back (checkpoint + journal since its snapshot)
    try:
        assert "supervision: checkpoint at seq" in server.log_tail(200), server.log_tail(200)
        async with operator(server) as ops, broker(server, "b") as b:
            again = await ops.call("admin.surveillance.list")
            first, second = again["alerts"]
            assert second == listed["alerts"][1]  # the same alert, id and evidence, re-derived
            assert (first["acked"], first["ack_note"], first["ack_operator"]) == (True, "client accounts of one broker", "ops")
            assert {k: v for k, v in first.items() if not k.startswith("ack")} == {
                k: v for k, v in listed["alerts"][0].items() if not k.startswith("ack")
            }
            assert await ops.call("admin.related.list") == {"groups": [{"group": "desk-7", "accounts": ["A-001", "B-001"]}]}
            assert await b.call("disclosure.get", date=date) == got
        assert scrape(server)[WASH_LOW] == 1
    finally:
        server.terminate()

    out = tmp_path / "regenerated"
    run = subprocess.run(
        carbonx_argv("report", "day", date, "--data", str(data), "--config", str(DEMO), "--out", str(out)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert ((out / f"{date}.json").read_bytes(), (out / f"{date}.csv").read_bytes()) == written
    missing = subprocess.run(
        carbonx_argv("report", "day", "1999-01-01", "--data", str(data), "--config", str(DEMO)), capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "no trading day 1999-01-01" in missing.stderr


async def test_a_snapshot_taken_under_load_gets_a_checkpoint_at_its_own_seq(tmp_path: Path) -> None:
    """Orders in flight (applied, waiting for their fsync) while the operator snapshots: the
    checkpoint is carried through their events, so it sits at the snapshot's seq and a restart
    replays nothing for the consumers before it."""
    data = tmp_path / "data"
    with running_server(data, fsync="fsync") as server:
        async with operator(server) as ops, broker(server, "a") as a, broker(server, "b") as b:
            for _ in range(3):
                flood = asyncio.gather(
                    *(c.place(acct, "SHEA", side, 1, "60.00") for c, acct, side in [(a, "A-001", "buy"), (b, "B-001", "sell")] * 15)
                )
                await asyncio.sleep(0.01)
                snap = await ops.call("admin.snapshot")
                await flood
                assert [seq for seq, _ in checkpoints.files(data)][-1] == snap["seq"]
                await asyncio.sleep(0.5)  # the order budget refills (limits.order_burst)
        server.kill9()
    server = start_server(data)
    try:
        log = server.log_tail(200)
        assert f"supervision: checkpoint at seq {snap['seq']}, snapshot {snap['seq']}," in log, log
    finally:
        server.terminate()
