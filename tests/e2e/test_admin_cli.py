"""``carbonx admin``: the operator's CLI, run as a subprocess against the real server, the way an
operator would (credentials in the environment or a mode-600 file).

Every command runs at least once; the important ones also on an error path. ``--json`` output is
compared with what the protocol answers to the same read; exit statuses are the documented ones
(0 done, 1 refused, 2 usage/credentials, 3 cannot connect/login refused, 4 outcome unknown).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from carbonx.gateway import admin_cli
from carbonx.gateway.client import Client
from carbonx.gateway.rpc import ADMIN_METHODS
from carbonx.gateway.testkit import OPERATOR, ROOT, Server, carbonx_argv
from tests.e2e.conftest import broker, operator, running_server

ENV = {k: v for k, v in os.environ.items() if not k.startswith("CARBONX_")}
OPS_ENV = ENV | {"CARBONX_OPERATOR_KEY_ID": OPERATOR[0], "CARBONX_OPERATOR_SECRET": OPERATOR[1]}


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)


def admin(url: str | None, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> Run:
    """``carbonx admin [--url URL] ARGS`` as a subprocess (the console script's entry point)."""
    argv = carbonx_argv("admin", *(("--url", url) if url else ()), *args)
    proc = subprocess.run(argv, env=OPS_ENV if env is None else env, input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)
    return Run(proc)


async def cli(server: Server, *args: str, **kw: Any) -> Run:
    return await asyncio.to_thread(admin, server.admin, *args, **kw)


async def ok_json(server: Server, *args: str, **kw: Any) -> Any:
    run = await cli(server, "--json", *args, **kw)
    assert run.rc == 0, run.err
    return run.json()


async def refused(server: Server, *args: str, reason: str | None = None, **kw: Any) -> dict[str, Any]:
    """Run a command that the exchange must refuse: exit 1, the JSON-RPC error on stdout, the
    message and reason on stderr."""
    run = await cli(server, "--json", *args, **kw)
    assert run.rc == admin_cli.EXIT_REJECTED, (run.rc, run.out, run.err)
    error: dict[str, Any] = run.json()
    assert error["message"] in run.err
    if reason is not None:
        assert error["data"]["reason"] == reason, error
        assert f"reason {reason}" in run.err
    return error


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("admin-cli") / "data") as srv:
        yield srv


# --------------------------------------------------------------------------- coverage and help


def test_every_admin_listener_method_has_a_command() -> None:
    _, table = admin_cli.build_parser()
    covered = {c.method for c in table.values()}
    # session handling is the CLI's own business; ``watch`` unsubscribes by ending.
    wanted = set(ADMIN_METHODS) - {"session.login", "session.logout", "unsubscribe"}
    assert wanted <= covered, wanted - covered


def test_help_lists_every_command_and_each_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    run = admin(None, "--help")
    assert run.rc == 0
    for name in ("status", "day", "schedule", "member", "account", "halt", "resume", "reference", "block", "unblock", "cancel-all",
                 "auction", "event", "snapshot", "order", "trade", "certificate", "watch", "call"):  # fmt: skip
        assert f"\n    {name} " in run.out, name
    assert "exit status" in run.out and "CARBONX_OPERATOR_SECRET" in run.out
    _, table = admin_cli.build_parser()
    for key, command in table.items():
        assert admin_cli.main([*key.split(":"), "--help"]) == 0
        out = capsys.readouterr().out
        assert "--json" in out and "--credentials" in out, key
        if command.method:
            assert command.method in out, key
    for group in ("day", "schedule", "member", "account", "order", "trade", "auction", "event", "certificate"):
        assert admin_cli.main([group, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(k.split(":")[1] in out for k in table if k.startswith(group + ":")), group


def test_usage_errors_exit_2_before_connecting() -> None:
    # No server at all: a usage error must be found before any connection is tried.
    url = "ws://127.0.0.1:9/v1"
    assert admin(url, "no-such-command").rc == 2
    assert admin(url, "halt").rc == 2  # missing SYM
    run = admin(url, "account", "deposit", "A-001")
    assert run.rc == 2 and "--cash" in run.err
    run = admin(url, "order", "get", "A-001")
    assert run.rc == 2 and "exactly one of --order-id and --client-order-id" in run.err
    run = admin(url, "call", "admin.instrument.set_reference", '{"instrument": "SHEA", "price": 61.5}')
    assert run.rc == 2 and "decimal strings" in run.err
    run = admin(url, "auction", "create", "SHEA", "10", "--cap", "institution")
    assert run.rc == 2 and "TYPE=TONNES" in run.err
    run = admin("http://127.0.0.1:9/", "status")
    assert run.rc == 2 and "ws://" in run.err


# --------------------------------------------------------------------------- credentials and connection


def test_missing_credentials_name_the_variables() -> None:
    run = admin("ws://127.0.0.1:9/v1", "status", env=ENV)
    assert run.rc == 2
    assert "CARBONX_OPERATOR_KEY_ID and CARBONX_OPERATOR_SECRET" in run.err and "--credentials" in run.err
    run = admin("ws://127.0.0.1:9/v1", "status", env=ENV | {"CARBONX_OPERATOR_KEY_ID": "ops"})
    assert run.rc == 2 and "CARBONX_OPERATOR_SECRET" in run.err and "CARBONX_OPERATOR_KEY_ID and" not in run.err


async def test_credentials_file_formats_and_permissions(server: Server, tmp_path: Path) -> None:
    forms = {
        "plain.toml": f'key_id = "{OPERATOR[0]}"\nsecret = "{OPERATOR[1]}"\n',
        "table.toml": f'[operator]\nkey_id = "{OPERATOR[0]}"\nsecret = "{OPERATOR[1]}"\n',
        "ops.env": f"# operator\nexport CARBONX_OPERATOR_KEY_ID={OPERATOR[0]}\nCARBONX_OPERATOR_SECRET='{OPERATOR[1]}'\n",
    }
    for name, text in forms.items():
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o600)
        run = await cli(server, "--credentials", str(path), "ping", env=ENV)
        assert run.rc == 0, (name, run.err)
        # the option is also accepted after the sub-command
        assert (await cli(server, "ping", "--credentials", str(path), env=ENV)).rc == 0
    path = tmp_path / "plain.toml"
    for mode in (0o644, 0o604, 0o620):
        path.chmod(mode)
        run = await cli(server, "--credentials", str(path), "status", env=ENV)
        assert run.rc == 2, mode
        assert f"{mode:04o}" in run.err and "chmod 600" in run.err
    path.chmod(0o640)  # group-readable is the operator's choice (a shared ops group)
    assert (await cli(server, "--credentials", str(path), "ping", env=ENV)).rc == 0
    half = tmp_path / "half.toml"
    half.write_text('key_id = "ops"\n')
    half.chmod(0o600)
    run = await cli(server, "--credentials", str(half), "status", env=ENV)
    assert run.rc == 2 and "needs both key_id and secret" in run.err
    run = await cli(server, "--credentials", str(tmp_path / "absent"), "status", env=ENV)
    assert run.rc == 2 and "cannot read credentials file" in run.err


async def test_wrong_secret_is_login_refused(server: Server) -> None:
    run = await cli(server, "status", env=OPS_ENV | {"CARBONX_OPERATOR_SECRET": "not-the-secret"})
    assert run.rc == admin_cli.EXIT_UNAVAILABLE
    assert "login refused" in run.err and "NOT_AUTHENTICATED" in run.err
    assert run.out == ""


def test_server_down_cannot_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = admin(f"ws://127.0.0.1:{port}/v1", "--timeout", "3", "status")
    assert run.rc == admin_cli.EXIT_UNAVAILABLE
    assert f"cannot connect to ws://127.0.0.1:{port}/v1" in run.err


def test_no_reply_is_outcome_unknown() -> None:
    """A server that accepts the login and then never answers: exit 4, 'check before retrying'."""
    ready = threading.Event()
    port: list[int] = []
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            request = json.loads(message)
            if request["method"] == "session.login":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"member": None, "operator": True}}))

    async def silent_server() -> None:
        async with serve(handler, "127.0.0.1", 0) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            stop.append((loop, done))
            ready.set()
            await done

    thread = threading.Thread(target=lambda: asyncio.run(silent_server()), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        run = admin(f"ws://127.0.0.1:{port[0]}/v1", "--timeout", "1", "halt", "SHEA")
        assert run.rc == admin_cli.EXIT_UNKNOWN, run.err
        assert "no reply to admin.instrument.halt" in run.err and "may or may not have been applied" in run.err
    finally:
        if stop:
            loop, done = stop[0]
            loop.call_soon_threadsafe(done.set_result, None)
        thread.join(10)


# --------------------------------------------------------------------------- commands


async def test_status_ping_snapshot_and_call(server: Server) -> None:
    status = await ok_json(server, "status")
    assert set(status) == {"seq", "durable_seq", "day_open", "trading_date", "phases", "sessions", "schedule"}
    assert set(status["phases"]) == {"SHEA", "CCER", "SHCER"} and 0 < status["durable_seq"] <= status["seq"]
    async with operator(server) as op:
        direct = await op.call("admin.status")
    assert direct["phases"] == status["phases"] and direct["trading_date"] == status["trading_date"]
    human = await cli(server, "status")
    assert human.rc == 0 and "phases.SHEA" in human.out and "durable_seq" in human.out
    assert isinstance((await ok_json(server, "ping"))["ts"], int)
    snap = await ok_json(server, "snapshot")
    assert Path(snap["path"]).is_file() and snap["seq"] >= status["seq"]
    raw = await ok_json(server, "call", "admin.status")
    assert set(raw) == set(status)
    await refused(server, "call", "admin.no_such_thing")


async def test_member_create_reads_the_secret_from_stdin(server: Server) -> None:
    created = await ok_json(server, "member", "create", "broker-c", "--key-id", "demo-c", stdin="broker-c-secret\n")
    assert created["member"] == "broker-c" and created["key_id"] == "demo-c" and created["seq"] > 0
    await ok_json(server, "account", "create", "C-001", "--member", "broker-c", "--type", "institution")
    async with Client(server.trading) as c:
        login = await c.login("demo-c", "broker-c-secret")
    assert login["member"] == "broker-c" and login["accounts"] == ["C-001"]
    await refused(server, "member", "create", "broker-d", "--key-id", "demo-d", stdin="short\n")  # < 8 chars
    await refused(server, "member", "create", "broker-c", "--key-id", "demo-c2", stdin="another-secret\n")
    run = await cli(server, "member", "create", "broker-e", "--key-id", "demo-e", stdin="")
    assert run.rc == 2 and "no secret on stdin" in run.err
    await refused(server, "account", "create", "C-002", "--member", "nobody", "--type", "individual")


async def test_deposit_withdraw_and_account_get_match_the_protocol(server: Server) -> None:
    await ok_json(server, "account", "create", "D-001", "--member", "broker-a", "--type", "institution")
    dep = await ok_json(server, "account", "deposit", "D-001", "--cash", "1234.56")
    assert dep["account"] == "D-001" and dep["cash"] == {"available": "1234.56", "frozen": "0.00"}
    dep = await ok_json(server, "account", "deposit", "D-001", "--instrument", "SHEA", "--quantity", "70", "--vintage", "2025")
    assert dep["holdings"][0]["instrument"] == "SHEA" and dep["holdings"][0]["tradable"] == 70
    wd = await ok_json(
        server, "account", "withdraw", "D-001", "--cash", "0.56", "--instrument", "SHEA", "--quantity", "20", "--vintage", "2025"
    )
    assert wd["cash"]["available"] == "1234.00" and wd["holdings"][0]["tradable"] == 50
    shown = await ok_json(server, "account", "get", "D-001")
    async with operator(server) as op:
        assert shown == await op.call("account.get", account="D-001")
    human = await cli(server, "account", "get", "D-001")
    assert human.rc == 0 and "cash.available" in human.out and "1234.00" in human.out
    await refused(server, "account", "deposit", "D-001", "--cash", "100.005", reason="INVALID_AMOUNT")
    err = await refused(server, "account", "withdraw", "D-001", "--cash", "99999.00")
    assert err["data"]["reason"]
    await refused(server, "account", "get", "NOPE")


async def test_halt_resume_and_reference(server: Server) -> None:
    halted = await ok_json(server, "halt", "SHCER")
    assert halted["instrument"] == "SHCER" and halted["halted"] is True and halted["phase"] == "halted"
    assert (await ok_json(server, "status"))["phases"]["SHCER"] == "halted"
    resumed = await ok_json(server, "resume", "SHCER")
    assert resumed["halted"] is False and resumed["phase"] != "halted"
    await refused(server, "halt", "NOPE")
    ref = await ok_json(server, "reference", "SHCER", "21.00")
    assert ref == {"instrument": "SHCER", "price": "21.00", "lower": ref["lower"], "upper": ref["upper"], "seq": ref["seq"]}
    assert ref["lower"] == "18.90" and ref["upper"] == "23.10"
    human = await cli(server, "reference", "SHCER", "20.00")
    assert human.rc == 0 and "upper" in human.out
    await refused(server, "reference", "SHCER", "20.001")


async def test_block_unblock_and_cancel_all(server: Server) -> None:
    async with broker(server, "b") as b:
        await b.place("B-002", "SHCER", "sell", 5, "20.50", client_order_id="rest-1")
        await b.place("B-002", "SHCER", "sell", 5, "20.60", client_order_id="rest-2")
        order = await ok_json(server, "order", "get", "B-002", "--client-order-id", "rest-1")
        assert order == await b.get_order("B-002", client_order_id="rest-1")
        listed = await ok_json(server, "order", "list", "B-002", "--open-only")
        assert {o["client_order_id"] for o in listed["orders"]} >= {"rest-1", "rest-2"}
        human = await cli(server, "order", "list", "B-002", "--instrument", "SHCER")
        assert human.rc == 0 and "CLIENT_ORDER_ID" in human.out and "rest-2" in human.out
        cancelled = await ok_json(server, "cancel-all", "--account", "B-002", "--instrument", "SHCER", "--side", "sell")
        assert cancelled["cancelled"] == 2
        await b.place("B-002", "SHCER", "sell", 5, "20.50", client_order_id="rest-3")
        blocked = await ok_json(server, "block", "--account", "B-002")
        assert blocked["account"] == "B-002" and blocked["blocked"] is True
        gone = await b.get_order("B-002", client_order_id="rest-3")
        assert gone["status"] == "cancelled"
        unblocked = await ok_json(server, "unblock", "--account", "B-002")
        assert unblocked["blocked"] is False
        member = await ok_json(server, "block", "--member", "broker-b")
        assert member["member"] == "broker-b" and member["blocked"] is True
        assert (await ok_json(server, "unblock", "--member", "broker-b"))["blocked"] is False
    await refused(server, "block", "--member", "nobody")
    await refused(server, "order", "get", "B-002", "--order-id", "999999")


async def test_trade_list(server: Server) -> None:
    async with broker(server, "a") as a, broker(server, "b") as b:
        await b.place("B-001", "SHEA", "sell", 3, "60.00", client_order_id="t-sell")
        await a.place("A-001", "SHEA", "buy", 3, "60.00", client_order_id="t-buy")
        trades = await ok_json(server, "trade", "list", "A-001", "--instrument", "SHEA")
        assert trades == await a.call("trade.list", account="A-001", instrument="SHEA")
        assert any(t["quantity"] == 3 for t in trades["trades"])
    human = await cli(server, "trade", "list", "A-001")
    assert human.rc == 0 and "TRADE_ID" in human.out
    await refused(server, "trade", "list", "NOPE")


async def test_auction_life_cycle(server: Server) -> None:
    created = await ok_json(server, "auction", "create", "SHEA", "100", "--vintage", "2025", "--reserve-price", "55.00",
                            "--eligible", "covered_entity,institution", "--cap", "institution=80", "--cap", "covered_entity=100",
                            "--min-lot", "1", "--revocable", "--seed", "7")  # fmt: skip
    aid = created["auction_id"]
    assert created["state"] == "scheduled" and created["caps"] == {"institution": 80, "covered_entity": 100}
    assert created["reserve_price"] == "55.00" and created["irrevocable"] is False
    assert (await ok_json(server, "auction", "open", aid))["state"] == "open"
    async with broker(server, "a") as a:
        await a.auction_bid(aid, "A-001", "56.00", 60)
        await a.auction_bid(aid, "A-002", "57.00", 60)
    bids = await ok_json(server, "auction", "bids", aid)
    assert {(b["account"], b["member"]) for b in bids["bids"]} == {("A-001", "broker-a"), ("A-002", "broker-a")}
    human = await cli(server, "auction", "bids", aid)
    assert human.rc == 0 and "MEMBER" in human.out and "broker-a" in human.out
    closed = await ok_json(server, "auction", "close", aid)
    assert closed["state"] == "cleared" and closed["results"]["quantity_sold"] == 100
    got = await ok_json(server, "auction", "get", aid)
    async with operator(server) as op:
        assert got == await op.call("auction.get", auction_id=aid)
        listed = await ok_json(server, "auction", "list")
        assert listed == await op.call("auction.list")
    # a computed reserve reaches the engine (no closed days with trades here: refused, naming the field)
    err = await refused(server, "auction", "create", "SHEA", "10", "--vintage", "2026", "--lookback-days", "5", "--factor", "1.2",
                        "--reserve-cap", "70.00", reason="NO_REFERENCE_DATA")  # fmt: skip
    assert err["data"]["field"] == "reserve_lookback_days"
    other = await ok_json(server, "auction", "create", "SHEA", "10", "--vintage", "2026", "--reserve-price", "50.00", "--suspend-trading")
    assert other["suspend_trading"] is True
    assert (await ok_json(server, "auction", "cancel", other["auction_id"]))["state"] == "cancelled"
    await refused(server, "auction", "open", aid)  # already cleared
    await refused(server, "auction", "get", "424242", reason="UNKNOWN_AUCTION")
    await refused(server, "auction", "bids", "424242", reason="UNKNOWN_AUCTION")
    await refused(server, "auction", "close", "424242", reason="UNKNOWN_AUCTION")
    await refused(server, "auction", "create", "NOPE", "10", "--reserve-price", "1.00")


async def test_events_and_certificates(server: Server) -> None:
    ev = await ok_json(server, "event", "create", "expo-2026", "--name", "Expo 2026", "--footprint", "4")
    assert ev == {"event_id": "expo-2026", "name": "Expo 2026", "footprint": 4, "retired": 0, "certificate_id": None}
    async with broker(server, "a") as a:
        cert = await a.call("retire", account="A-001", instrument="SHEA", quantity=4, purpose="event_neutrality",
                            beneficiary="Expo", event_id="expo-2026")  # fmt: skip
    got = await ok_json(server, "event", "get", "expo-2026")
    assert got["retired"] == 4 and got["certificate_id"]
    shown = await ok_json(server, "certificate", "get", cert["certificate_id"])
    async with operator(server) as op:
        assert shown == await op.call("retire.certificate", certificate_id=cert["certificate_id"])
    await refused(server, "event", "create", "expo-2026", "--name", "again", "--footprint", "1")
    await refused(server, "event", "get", "nope", reason="UNKNOWN_EVENT")
    await refused(server, "certificate", "get", "999999")


async def test_day_close_and_open(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        closed = await ok_json(srv, "day", "close")
        assert closed["trading_date"] and set(closed["closes"]) == {"SHEA", "CCER", "SHCER"}
        assert set(closed["closes"]["SHEA"]) == {"open", "close", "high", "low", "volume"}
        assert (await ok_json(srv, "status"))["day_open"] is False
        await refused(srv, "day", "close")
        opened = await ok_json(srv, "day", "open")
        assert opened["trading_date"] and opened["seq"] > closed["seq"]
        await refused(srv, "day", "open")
        human = await cli(srv, "status")
        assert human.rc == 0 and re.search(r"^day_open +yes$", human.out, re.M), human.out


def _start_watch(server: Server, *args: str) -> subprocess.Popen[str]:
    """``carbonx admin watch ...`` in the background, returned once its subscription is in place."""
    argv = carbonx_argv("admin", "--url", server.admin, "watch", *args)
    proc = subprocess.Popen(argv, env=OPS_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "watching" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


async def test_watch_prints_notifications(server: Server) -> None:
    proc = await asyncio.to_thread(_start_watch, server, "--json", "status.SHCER", "orders", "--count", "3")
    try:
        async with broker(server, "b") as b:
            await b.place("B-002", "SHCER", "sell", 5, "20.70", client_order_id="watch-1")
            assert (await cli(server, "halt", "SHCER")).rc == 0
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
            assert proc.returncode == 0, err
            notes = [json.loads(line) for line in out.splitlines()]
            assert [n["method"] for n in notes] == ["status", "orders", "status"], notes
            assert notes[0]["params"]["channel"] == "status.SHCER" and notes[0]["params"]["halted"] is False
            assert notes[1]["params"]["client_order_id"] == "watch-1" and notes[1]["params"]["account"] == "B-002"
            assert notes[2]["params"]["halted"] is True
            assert (await cli(server, "resume", "SHCER")).rc == 0
            await b.cancel_all(account="B-002")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc = await asyncio.to_thread(_start_watch, server, "auctions", "--count", "1")
    try:
        created = await ok_json(server, "auction", "create", "CCER", "10", "--reserve-price", "70.00")
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, err
        assert out.startswith(f"auctions auctions auction_id={created['auction_id']} instrument=CCER"), out
        assert (await ok_json(server, "auction", "cancel", created["auction_id"]))["state"] == "cancelled"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = await cli(server, "watch", "no.such.channel")
    assert run.rc == admin_cli.EXIT_REJECTED and "reason" in run.err


async def test_wrong_endpoint_and_tls_mismatch_cannot_connect(server: Server, tmp_path: Path) -> None:
    host_port = server.admin.removeprefix("ws://").removesuffix("/v1")
    run = await asyncio.to_thread(admin, f"wss://{host_port}/v1", "--timeout", "5", "status")
    assert run.rc == admin_cli.EXIT_UNAVAILABLE and "cannot connect" in run.err  # TLS to a plain listener
    run = await asyncio.to_thread(admin, server.admin, "--cafile", str(tmp_path / "ca.pem"), "status")
    assert run.rc == admin_cli.EXIT_USAGE and "--cafile is for wss://" in run.err
    run = await asyncio.to_thread(admin, f"wss://{host_port}/v1", "--cafile", str(tmp_path / "absent.pem"), "status")
    assert run.rc == admin_cli.EXIT_USAGE and "cannot load --cafile" in run.err


def test_watch_ends_with_exit_3_when_the_exchange_stops(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        proc = _start_watch(srv, "auctions")
        try:
            assert srv.terminate() == 0
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == admin_cli.EXIT_UNAVAILABLE, err
    assert "while watching" in err
