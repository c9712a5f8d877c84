"""Loopback tests of the gateway: sessions, order entry, durability, limits, operators."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from carbonx.engine import reasons as R
from carbonx.gateway import protocol
from carbonx.gateway.journal import LocalJournal
from carbonx.gateway.recovery import recover
from tests.gateway.support import Harness, ManualJournal, demo_settings, start


@pytest.fixture
async def h(tmp_path: Path):  # type: ignore[no-untyped-def]
    harness = await start(tmp_path)
    yield harness
    await harness.gw.shutdown()


def sell(price: str = "60.00", qty: int = 10, account: str = "A-001", **kw: object) -> dict[str, object]:
    return {"account": account, "instrument": "SHEA", "side": "sell", "price": price, "quantity": qty, **kw}


def buy(price: str = "60.00", qty: int = 10, account: str = "B-001", **kw: object) -> dict[str, object]:
    return {"account": account, "instrument": "SHEA", "side": "buy", "price": price, "quantity": qty, **kw}


# ----------------------------------------------------------------------------- sessions


async def test_bootstrap_funds_demo_accounts_once(tmp_path: Path) -> None:
    h = await start(tmp_path)
    eng = h.gw.engine
    assert set(eng.accounts) == {"A-001", "A-002", "B-001", "B-002"} and eng.day_open
    assert eng.accounts["A-001"].available == 1_000_000_000
    assert await h.gw.bootstrap() == 0, "nothing to do when the state already has everything"
    await h.gw.shutdown()


async def test_login_failures_look_alike_and_private_methods_need_login(h: Harness) -> None:
    c = await h.client()
    # from other source addresses: a failed login backs off its key id and address (test_admission)
    other, another = await h.client(local_addr=("127.0.0.2", 0)), await h.client(local_addr=("127.0.0.3", 0))
    wrong_secret = await other.fail("session.login", key_id="demo-b", secret="nope")
    unknown_key = await another.fail("session.login", key_id="nobody", secret="nope")
    assert wrong_secret.error == unknown_key.error
    assert wrong_secret.reason == R.NOT_AUTHENTICATED and wrong_secret.code == protocol.reason_code(R.NOT_AUTHENTICATED)
    assert (await c.fail("order.place", **sell())).reason == R.NOT_AUTHENTICATED
    assert (await c.fail("account.get", account="A-001")).reason == R.NOT_AUTHENTICATED
    assert (await c.ok("ping"))["ts"] > 0, "ping is public"
    res = await c.ok("session.login", key_id="demo-a", secret="demo-a-secret")
    assert res["member"] == "broker-a" and res["accounts"] == ["A-001", "A-002"] and res["session_id"]
    assert (await c.fail("session.login", key_id="demo-a", secret="demo-a-secret")).reason == R.INVALID_STATE


async def test_repeated_login_failures_close_the_connection(tmp_path: Path) -> None:
    h = await start(tmp_path, demo_settings(max_login_failures=2))
    c = await h.client()
    await c.fail("session.login", key_id="demo-a", secret="x")
    await c.fail("session.login", key_id="demo-a", secret="y")
    with pytest.raises(ConnectionClosed):
        await c.recv()
    assert c.ws.close_code == 1008
    await h.gw.shutdown()


async def test_operator_only_on_admin_listener(h: Harness) -> None:
    c = await h.client()
    assert (await c.fail("session.login", key_id="ops", secret="ops-secret")).reason == R.NOT_AUTHENTICATED
    assert (await c.fail("admin.day.close")).code == protocol.METHOD_NOT_FOUND
    a = await h.client(admin=True, local_addr=("127.0.0.2", 0))  # its failed login backs off that address
    assert (await a.fail("session.login", key_id="demo-a", secret="demo-a-secret")).reason == R.NOT_AUTHENTICATED
    assert (await a.fail("admin.status")).reason == R.NOT_AUTHENTICATED
    assert (await a.fail("order.place", **sell())).code == protocol.METHOD_NOT_FOUND, "no trading on the admin listener"
    op = await h.operator()
    assert (await op.ok("admin.status"))["day_open"] is True
    acct = await op.ok("account.get", account="B-002")
    assert acct["member"] == "broker-b", "operators see every account"


async def test_another_members_account_or_order_is_indistinguishable_from_unknown(h: Harness) -> None:
    a, b = await h.broker("a"), await h.broker("b")
    theirs = await a.fail("account.get", account="B-001")
    unknown = await a.fail("account.get", account="Z-999")
    assert (
        (theirs.code, theirs.reason, theirs.field) == (unknown.code, unknown.reason, unknown.field) == (1015, R.NOT_AUTHORIZED, "account")
    )
    assert theirs.error["message"].replace("B-001", "X") == unknown.error["message"].replace("Z-999", "X")
    placed_theirs = await a.fail("order.place", **buy(account="B-001"))
    placed_unknown = await a.fail("order.place", **buy(account="Z-999"))
    assert (placed_theirs.reason, placed_theirs.field) == (placed_unknown.reason, placed_unknown.field) == (R.NOT_AUTHORIZED, "account")
    b_order = await b.ok("order.place", **buy("59.00"))
    foreign = await a.fail("order.get", account="A-001", order_id=b_order["order_id"])
    missing = await a.fail("order.get", account="A-001", order_id="99999")
    assert foreign.error == missing.error
    cancel_foreign = await a.fail("order.cancel", account="A-001", order_id=b_order["order_id"])
    cancel_missing = await a.fail("order.cancel", account="A-001", order_id="99999")
    assert (cancel_foreign.reason, cancel_foreign.field) == (cancel_missing.reason, cancel_missing.field) == (R.UNKNOWN_ORDER, "order_id")


# ----------------------------------------------------------------------------- order entry


async def test_trade_between_two_brokers_with_reports_and_print(h: Harness) -> None:
    a, b = await h.broker("a"), await h.broker("b")
    await a.ok("subscribe", channels=["orders", "trades.SHEA"])
    resting = await a.ok("order.place", **sell("60.00", 10, client_order_id="s-1"))
    assert (resting["exec_type"], resting["status"], resting["leaves_qty"], resting["client_order_id"]) == ("new", "new", 10, "s-1")
    taker = await b.ok("order.place", **buy("60.50", 4))
    assert (taker["exec_type"], taker["status"], taker["cum_qty"], taker["leaves_qty"]) == ("trade", "filled", 4, 0)
    assert taker["avg_price"] == "60.00" and taker["last_price"] == "60.00" and taker["trade_id"]
    fill = (await a.note("orders", where=lambda p: p["exec_type"] == "trade"))["params"]
    assert fill["kind"] == "execution_report" and fill["order_id"] == resting["order_id"]
    assert (fill["status"], fill["cum_qty"], fill["leaves_qty"], fill["quantity"]) == ("partially_filled", 4, 6, 10)
    trade = (await a.note("trades"))["params"]
    assert trade == {"channel": "trades.SHEA", "trade_id": taker["trade_id"], "instrument": "SHEA", "price": "60.00", "quantity": 4,
                     "aggressor": "buy", "seq": taker["seq"], "ts": taker["ts"]}  # fmt: skip
    got = await a.ok("order.get", account="A-001", client_order_id="s-1")
    assert (got["order_id"], got["cum_qty"], got["leaves_qty"], got["avg_price"]) == (resting["order_id"], 4, 6, "60.00")
    trades = (await b.ok("trade.list", account="B-001"))["trades"]
    assert [(t["side"], t["quantity"], t["price"], t["order_id"]) for t in trades] == [("buy", 4, "60.00", taker["order_id"])]
    acct = await b.ok("account.get", account="B-001")
    assert acct["holdings"]["SHEA"]["vintages"]["2025"]["tradable"] == 100_004


async def test_amend_cancel_and_cancel_all(h: Harness) -> None:
    a = await h.broker("a")
    o = await a.ok("order.place", **sell("61.00", 10, client_order_id="k"))
    amended = await a.ok("order.amend", account="A-001", client_order_id="k", quantity=6)
    assert (amended["exec_type"], amended["quantity"], amended["leaves_qty"]) == ("replaced", 6, 6)
    repriced = await a.ok("order.amend", account="A-001", order_id=o["order_id"], price="61.50")
    assert repriced["price"] == "61.50"
    cancelled = await a.ok("order.cancel", account="A-001", order_id=o["order_id"])
    assert (cancelled["exec_type"], cancelled["status"], cancelled["leaves_qty"]) == ("cancelled", "cancelled", 0)
    again = await a.fail("order.cancel", account="A-001", order_id=o["order_id"])
    assert again.reason == R.UNKNOWN_ORDER
    for i in range(3):
        await a.ok("order.place", **sell(f"62.0{i}", 1))
    await a.ok("order.place", **sell("62.00", 1, account="A-002"))
    assert (await a.ok("order.cancel_all", account="A-001"))["cancelled"] == 3
    assert (await a.ok("order.cancel_all"))["cancelled"] == 1
    assert (await a.ok("order.list", account="A-001", open_only=True))["orders"] == []
    # Exactly one of order_id / client_order_id: the engine's rule, one answer for every method.
    for method in ("order.cancel", "order.amend", "order.get"):
        both = await a.fail(method, account="A-001", order_id="1", client_order_id="k")
        neither = await a.fail(method, account="A-001")
        empty = await a.fail(method, account="A-001", client_order_id="")
        for err in (both, neither, empty):
            assert (err.reason, err.code, err.field) == (R.INVALID_ORDER, protocol.reason_code(R.INVALID_ORDER), "order_id"), method


async def test_duplicate_client_order_id_and_engine_rejects_reach_the_wire(h: Harness) -> None:
    a = await h.broker("a")
    await a.ok("order.place", **sell("61.00", 1, client_order_id="dup"))
    dup = await a.fail("order.place", **sell("61.00", 1, client_order_id="dup"))
    assert (dup.reason, dup.code) == (R.DUPLICATE_CLIENT_ORDER_ID, protocol.reason_code(R.DUPLICATE_CLIENT_ORDER_ID))
    assert (await a.fail("order.place", **sell("99.00"))).reason == R.PRICE_OUT_OF_BAND
    assert (await a.fail("order.place", **sell("60.001"))).reason == R.INVALID_TICK
    assert (await a.fail("order.place", **sell(qty=0))).reason == R.INVALID_QUANTITY
    assert (await a.fail("order.place", **sell(qty=10_000_000))).error["data"]["reason"] in (R.INVALID_QUANTITY, R.BLOCK_SIZE_REQUIRED)
    await a.ok("order.place", **buy("59.00", 99_999, account="A-001"))  # freezes ~5.9M of the 10M CNY
    assert (await a.fail("order.place", **buy("59.00", 99_999, account="A-001"))).reason == R.INSUFFICIENT_FUNDS
    unknown = await a.fail("order.place", account="A-001", instrument="NOPE", side="buy", price="1.00", quantity=1)
    assert unknown.reason == R.UNKNOWN_INSTRUMENT


async def test_reply_and_fanout_wait_for_durability(tmp_path: Path) -> None:
    journal = ManualJournal()
    h = await start(tmp_path, journal=journal)
    a, b = await h.broker("a"), await h.broker("b")
    await b.ok("subscribe", channels=["book.SHEA"])
    snap = await b.note("book")
    journal.hold = True
    req = {"jsonrpc": "2.0", "id": 99, "method": "order.place", "params": sell("60.00", 5)}
    await a.ws.send(json.dumps(req))
    with pytest.raises(TimeoutError):
        await a.recv(timeout=0.3)
    with pytest.raises(TimeoutError):
        await b.recv(timeout=0.1)
    assert h.gw.engine.seq == journal.appended[-1][0] > journal.durable_seq, "applied and journaled, not yet durable"
    read = {"jsonrpc": "2.0", "id": 100, "method": "account.get", "params": {"account": "A-001"}}
    await a.ws.send(json.dumps(read))
    with pytest.raises(TimeoutError):
        await a.recv(timeout=0.2)
    journal.release()
    reply = await a.recv()
    assert reply["id"] == 99 and reply["result"]["seq"] == journal.durable_seq
    assert (await a.recv())["id"] == 100, "reads queue behind earlier commands"
    update = await b.note("book")
    assert update["params"]["seq"] == snap["params"]["seq"] + 1 and update["params"]["asks"] == [["60.00", 5]]
    journal.hold = False
    await h.gw.shutdown()


async def test_cancel_on_disconnect_cancels_only_that_sessions_orders(h: Harness) -> None:
    a1, a2 = await h.broker("a"), await h.broker("a")
    assert (await a1.ok("session.cancel_on_disconnect", enabled=True)) == {"enabled": True}
    mine = await a1.ok("order.place", **sell("63.00", 1))
    other = await a2.ok("order.place", **sell("63.00", 1))
    await a1.close()
    for _ in range(100):
        got = await a2.ok("order.get", account="A-001", order_id=mine["order_id"])
        if got["status"] == "cancelled":
            break
        await asyncio.sleep(0.02)
    assert got["status"] == "cancelled"
    assert (await a2.ok("order.get", account="A-001", order_id=other["order_id"]))["status"] == "new"


async def test_logout_keeps_orders_even_with_cancel_on_disconnect(h: Harness) -> None:
    a = await h.broker("a")
    await a.ok("session.cancel_on_disconnect", enabled=True)
    o = await a.ok("order.place", **sell("63.00", 1))
    await a.ok("session.logout")
    assert (await a.fail("order.list", account="A-001")).reason == R.NOT_AUTHENTICATED
    await a.close()
    await asyncio.sleep(0.1)
    a2 = await h.broker("a")
    assert (await a2.ok("order.get", account="A-001", order_id=o["order_id"]))["status"] == "new"


# ----------------------------------------------------------------------------- limits and bad input


async def test_rate_limit_then_close_on_abuse(tmp_path: Path) -> None:
    h = await start(tmp_path, demo_settings(requests_per_s=1.0, request_burst=3, max_violations=3))
    c = await h.client()
    for _ in range(3):
        await c.ok("ping")
    limited = await c.fail("ping")
    assert (limited.reason, limited.code) == (R.RATE_LIMITED, protocol.reason_code(R.RATE_LIMITED))
    await c.fail("ping")
    await c.fail("ping")
    with pytest.raises(ConnectionClosed):
        await c.recv()
    assert c.ws.close_code == 1008
    assert h.gw.rate_limited == 3
    await h.gw.shutdown()


async def test_order_rate_is_limited_separately(tmp_path: Path) -> None:
    h = await start(tmp_path, demo_settings(orders_per_s=0.5, order_burst=2))
    a = await h.broker("a")
    await a.ok("order.place", **sell("64.00", 1))
    await a.ok("order.place", **sell("64.00", 1))
    assert (await a.fail("order.place", **sell("64.00", 1))).reason == R.RATE_LIMITED
    assert (await a.ok("order.list", account="A-001"))["orders"], "reads still pass"
    await h.gw.shutdown()


async def test_malformed_input_gets_clear_errors_and_the_connection_survives(h: Harness) -> None:
    a = await h.broker("a")
    await a.ws.send("{nope")
    err = await a.recv()
    assert err["id"] is None and err["error"]["code"] == protocol.PARSE_ERROR
    await a.ws.send(json.dumps({"jsonrpc": "2.0", "id": 5, "method": "order.place", "params": {**sell(), "quantity": "ten"}}))
    err = await a.recv()
    assert err["id"] == 5 and err["error"]["code"] == protocol.INVALID_PARAMS and err["error"]["data"]["field"] == "quantity"
    assert (await a.fail("order.plac", **sell())).code == protocol.METHOD_NOT_FOUND
    assert (await a.fail("order.place", **sell(), typo=1)).field == "typo"
    seq = h.gw.engine.seq
    assert (await a.ok("order.place", **sell("64.00", 1)))["seq"] == seq + 1, "nothing malformed reached the engine"


async def test_oversized_frame_closes_with_1009(tmp_path: Path) -> None:
    h = await start(tmp_path, demo_settings(max_frame_bytes=4096))
    c = await h.client()
    await c.ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "a" * 5000}}))
    with pytest.raises(ConnectionClosed):
        await c.recv()
    assert c.ws.close_code == 1009
    await h.gw.shutdown()


async def test_connections_per_member_limit(tmp_path: Path) -> None:
    h = await start(tmp_path, demo_settings(max_connections_per_member=1))
    await h.broker("a")
    c = await h.client()
    err = await c.fail("session.login", key_id="demo-a", secret="demo-a-secret")
    assert err.reason == protocol.TOO_MANY_CONNECTIONS
    await h.broker("b")
    await h.gw.shutdown()


async def test_msgpack_subprotocol(h: Harness) -> None:
    c = await h.client(binary=True)
    assert c.ws.subprotocol == "carbonx.v1.msgpack"
    await c.ok("session.login", key_id="demo-a", secret="demo-a-secret")
    o = await c.ok("order.place", **sell("65.00", 2))
    assert o["price"] == "65.00" and o["status"] == "new"
    assert (await c.fail("order.place", **sell("65.00", 2), bad=True)).code == protocol.INVALID_PARAMS


async def test_unknown_path_is_404(h: Harness) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as exc:
        await connect(h.trading.replace("/v1", "/v2"))
    assert exc.value.response.status_code == 404


# ----------------------------------------------------------------------------- operators


async def test_operator_halt_block_and_day_close(h: Harness) -> None:
    op, a = await h.operator(), await h.broker("a")
    await a.ok("subscribe", channels=["status.SHEA"])
    assert (await a.note("status"))["params"]["phase"] == "open"
    assert (await op.ok("admin.instrument.halt", instrument="SHEA"))["phase"] == "halted"
    assert (await a.note("status"))["params"]["phase"] == "halted"
    assert (await a.fail("order.place", **sell())).reason == R.INSTRUMENT_HALTED
    await op.ok("admin.instrument.resume", instrument="SHEA")
    assert (await op.fail("admin.instrument.resume", instrument="SHEA")).reason == R.INVALID_STATE
    o = await a.ok("order.place", **sell("61.00", 1))
    blocked = await op.ok("admin.block", account="A-001")
    assert blocked["blocked"] is True and blocked["account"] == "A-001"
    assert (await a.ok("order.get", account="A-001", order_id=o["order_id"]))["status"] == "cancelled", (
        "the kill switch cancels open orders"
    )
    assert (await a.fail("order.place", **sell())).reason == R.ACCOUNT_BLOCKED
    await op.ok("admin.unblock", account="A-001")
    closed = await op.ok("admin.day.close")
    assert closed["closes"]["SHEA"]["close"] == "60.00"
    assert (await a.fail("order.place", **sell())).reason == R.MARKET_CLOSED
    assert (await op.ok("admin.day.open"))["trading_date"]


async def test_operator_creates_member_account_and_funds_it(h: Harness) -> None:
    op = await h.operator()
    assert (await op.ok("admin.member.create", member="broker-c", key_id="demo-c", secret="demo-c-secret"))["member"] == "broker-c"
    assert (await op.fail("admin.member.create", member="broker-c", key_id="demo-x", secret="whatever1")).reason == R.ALREADY_EXISTS
    await op.ok("admin.account.create", account="C-001", member="broker-c", type="institution")
    dep = await op.ok("admin.account.deposit", account="C-001", cash="1000.50")
    assert dep["cash"] == {"available": "1000.50", "frozen": "0.00"}
    dep = await op.ok("admin.account.deposit", account="C-001", instrument="SHEA", quantity=5, vintage=2025)
    assert dep["holdings"][0]["tradable"] == 5
    assert (await op.fail("admin.account.withdraw", account="C-001", cash="5000.00")).reason == R.INSUFFICIENT_FUNDS
    assert (await op.fail("admin.account.deposit", account="C-001", cash="1.234")).reason == R.INVALID_AMOUNT
    c = await h.client()
    res = await c.ok("session.login", key_id="demo-c", secret="demo-c-secret")
    assert res["accounts"] == ["C-001"]


async def test_admin_snapshot_is_written_at_a_durable_seq(h: Harness, tmp_path: Path) -> None:
    op = await h.operator()
    res = await op.ok("admin.snapshot")
    assert res["seq"] == h.gw.engine.seq and Path(res["path"]).exists()
    from carbonx.gateway.snapshots import SnapshotStore

    latest = SnapshotStore(tmp_path).latest()
    assert latest is not None and latest[0] == res["seq"]


async def test_graceful_shutdown_closes_with_1001_and_flushes(tmp_path: Path) -> None:
    h = await start(tmp_path)
    a = await h.broker("a")
    await a.ok("session.cancel_on_disconnect", enabled=True)
    await a.ok("order.place", **sell("61.00", 1))
    await h.gw.shutdown()
    with pytest.raises(ConnectionClosed):
        await a.recv()
    assert a.ws.close_code == 1001
    assert h.gw.journal.durable_seq == h.gw.engine.seq
    assert not any(o.status == "new" for o in h.gw.engine.orders.values()), "cancel-on-disconnect ran before the journal closed"


async def test_a_failed_journal_stops_the_exchange(tmp_path: Path) -> None:
    journal = ManualJournal()
    h = await start(tmp_path, journal=journal)
    h.gw.stop_event = asyncio.Event()
    a = await h.broker("a")

    def broken(seq: int, cmd: object) -> None:
        raise OSError("disk gone")

    journal.append = broken  # type: ignore[method-assign]
    err = await a.fail("order.place", **sell("61.00", 1))
    assert err.reason == protocol.SHUTTING_DOWN and "journal" in err.error["message"], "the documented answer, never -32603"
    assert h.gw.stop_event.is_set() and not h.gw.ready and h.gw.fatal is not None
    assert (await a.fail("order.place", **sell("61.00", 1))).reason == protocol.SHUTTING_DOWN, "no more commands once the journal failed"
    await h.gw.shutdown()


async def test_session_clock_changes_become_journaled_ticks(tmp_path: Path) -> None:
    from carbonx.engine.schema import Tick

    journal = ManualJournal()
    h = await start(tmp_path, journal=journal)  # tick_s = 0.2 in the test settings
    w = await h.client()
    await w.ok("subscribe", channels=["status.CCER"])
    assert (await w.note("status"))["params"]["phase"] == "open"
    h.gw.engine.instruments["CCER"].phase = "closed"  # as if the last published phase were stale
    status = (await w.note("status", timeout=3))["params"]
    assert (status["instrument"], status["phase"]) == ("CCER", "open")
    assert any(isinstance(cmd, Tick) for _, cmd in journal.appended), "the phase change went through the journal"
    await h.gw.shutdown()


async def test_engine_time_never_goes_backwards(tmp_path: Path) -> None:
    from carbonx.engine.schema import Tick

    journal = ManualJournal()
    h = await start(tmp_path, journal=journal)
    now = h.gw.engine.ts
    h.gw.seq.submit(Tick(ts=now - 10**9))  # a clock step back by one second
    assert journal.appended[-1][1].ts == now == h.gw.engine.ts
    await h.gw.shutdown()


async def test_snapshot_archives_the_segments_it_covers_and_restart_still_recovers(tmp_path: Path) -> None:
    """Small segments roll often; a snapshot moves the ones it covers to archive/, and a
    restart from snapshot + live tail sees exactly the same state."""
    journal = LocalJournal(tmp_path, policy="none", segment_bytes=2048)
    await journal.start()
    h = await start(tmp_path, journal=journal)
    a = await h.broker("a")
    for i in range(40):
        await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price=f"59.{i:02d}", quantity=1)
    op = await h.operator()
    before = sorted(p.name for p in (tmp_path / "journal").iterdir())
    snap = await op.ok("admin.snapshot")
    assert snap["archived_segments"] >= 1 and len(before) > snap["archived_segments"]
    assert len(list((tmp_path / "archive").iterdir())) == snap["archived_segments"]
    digest = h.gw.engine.digest()
    await h.gw.shutdown()
    assert recover(tmp_path, h.gw.settings.market).engine.digest() == digest


async def test_cancel_all_answers_its_seq_even_when_nothing_was_cancelled(h: Harness) -> None:
    """The mass cancel is journaled and uses a seq whether or not it found orders (issue 9 item 8)."""
    a = await h.broker("a")
    res = await a.ok("order.cancel_all", account="A-001")
    assert res == {"cancelled": 0, "seq": h.gw.engine.seq} and isinstance(res["seq"], int)
    ops = await h.operator()
    res = await ops.ok("admin.order.cancel_all", member="broker-a")
    assert res == {"cancelled": 0, "seq": h.gw.engine.seq}
    await a.ok("order.place", **sell("64.00", 1))
    res = await a.ok("order.cancel_all", account="A-001")
    assert res == {"cancelled": 1, "seq": h.gw.engine.seq}
