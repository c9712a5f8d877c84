"""The audit log end to end: every admin-listener call — reads, refusals and failed logins
included — is recorded with the operator identity, the source address, the time, the method
and params (secrets redacted) and the result; it survives kill -9, and ``admin.audit.list`` /
``carbonx admin audit`` read it back."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from carbonx.gateway.audit import FILE_NAME, read_entries
from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import OPERATOR, start_server
from tests.e2e.conftest import operator
from tests.e2e.test_admin_cli import ok_json


async def _error(coro: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        await coro
    return info.value


async def test_every_admin_call_is_audited_with_identity_and_address_and_survives_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        started = time.time_ns()
        async with operator(server) as boot:  # the bootstrap operator (environment/configuration), from 127.0.0.1
            viewer = await boot.call("admin.operator.create", operator="vera", role="viewer")
            halted = await boot.call("admin.instrument.halt", instrument="SHEA")
            await boot.call("admin.instrument.resume", instrument="SHEA")
            await _error(boot.call("admin.auction.bids", auction_id="999"))  # a read, refused: audited too
        async with Client(server.admin, local_addr=("127.0.0.5", 0)) as c:
            await c.login(viewer["key_id"], viewer["secret"])
            await c.call("admin.status")
            refused = await _error(c.call("admin.instrument.halt", instrument="SHEA"))
            assert refused.reason == "NOT_AUTHORIZED"
        async with Client(server.admin, local_addr=("127.0.0.6", 0)) as c:
            await _error(c.login("nobody", "wrong-secret"))
        server.kill9()  # no flush, no goodbye

        entries = read_entries(data / "audit" / FILE_NAME, limit=1000)
        text = (data / "audit" / FILE_NAME).read_text()
        assert viewer["secret"] not in text and OPERATOR[1] not in text and "wrong-secret" not in text

        def find(method: str, identity: str | None, address: str) -> dict[str, Any]:
            found = [e for e in entries if e["method"] == method and e["identity"] == identity and e["address"] == address]
            assert len(found) == 1, (method, identity, address, entries)
            return found[0]

        login = find("session.login", None, "127.0.0.1")
        assert login["params"] == {"key_id": OPERATOR[0], "secret": "***"} and login["result"] == "ok"
        halt = find("admin.instrument.halt", OPERATOR[0], "127.0.0.1")
        assert halt["role"] == "admin" and halt["params"] == {"instrument": "SHEA"}
        assert (halt["result"], halt["seq"]) == ("ok", halted["seq"]) and started <= halt["ts"] <= halt["done_ts"]
        bids = find("admin.auction.bids", OPERATOR[0], "127.0.0.1")
        assert (bids["result"], bids["reason"]) == ("error", "UNKNOWN_AUCTION")
        assert find("admin.operator.create", OPERATOR[0], "127.0.0.1")["params"] == {"operator": "vera", "role": "viewer"}
        status = find("admin.status", "vera", "127.0.0.5")
        assert (status["role"], status["result"]) == ("viewer", "ok")
        denied = find("admin.instrument.halt", "vera", "127.0.0.5")
        assert (denied["result"], denied["reason"], denied["code"]) == ("error", "NOT_AUTHORIZED", 1015)
        failed = find("session.login", None, "127.0.0.6")
        assert (failed["key_id"], failed["result"], failed["reason"]) == ("nobody", "error", "NOT_AUTHENTICATED")
        assert all(e["result"] in ("ok", "error") for e in entries)  # every answer was recorded before it was sent

        # after the crash: the same log, read over the protocol and by the CLI, and appended to
        server = start_server(data)
        async with operator(server) as boot:
            listed = (await boot.call("admin.audit.list", operator="vera", limit=10))["entries"]
            assert [e["method"] for e in listed] == ["admin.status", "admin.instrument.halt"]
            assert [e["address"] for e in listed] == ["127.0.0.5", "127.0.0.5"]
        cli = await ok_json(server, "audit", "--method", "admin.instrument.halt")
        assert [(e["identity"], e["result"]) for e in cli["entries"]] == [(OPERATOR[0], "ok"), ("vera", "error")]
        last = (await ok_json(server, "audit", "--limit", "1"))["entries"]
        assert last[0]["method"] == "admin.audit.list" and last[0]["result"] is None  # its own request: answered after
        server.terminate()
        lines = [json.loads(line) for line in (data / "audit" / FILE_NAME).read_text().splitlines()]
        assert len({rec["id"] for rec in lines}) > len(entries)  # appended across restarts, nothing rewritten
    finally:
        if server.proc.poll() is None:
            server.terminate()


async def test_a_torn_last_line_is_skipped_and_the_log_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "audit").mkdir(parents=True)
    (data / "audit" / FILE_NAME).write_text('{"kind":"request","id":"x-1","ts":1,"method":"admin.status"}\n{"kind":"res')
    server = start_server(data)
    try:
        async with operator(server) as boot:
            entries = (await boot.call("admin.audit.list"))["entries"]
        assert entries[0]["id"] == "x-1" and entries[0]["result"] is None
        assert [e["method"] for e in entries[1:]] == ["session.login", "admin.audit.list"]
    finally:
        server.terminate()


async def test_every_admin_listener_method_is_audited(tmp_path: Path) -> None:
    """Structural: a viewer calls every admin-listener method (mutations are refused for its
    role, reads answer or fail on missing params); each call is in the log with its result."""
    from carbonx.gateway.rpc import ADMIN_METHODS

    server = start_server(tmp_path / "data")
    try:
        async with operator(server) as boot:
            viewer = await boot.call("admin.operator.create", operator="vic", role="viewer")
        methods = sorted(set(ADMIN_METHODS) - {"ping", "session.login", "session.logout"})
        async with Client(server.admin, local_addr=("127.0.0.7", 0)) as c:
            await c.login(viewer["key_id"], viewer["secret"])
            for name in methods:
                with contextlib.suppress(RpcError):
                    await c.call(name)
            await c.call("unsubscribe", channels=["orders"])
            await c.call("session.logout")
            await c.call("ping")  # liveness only: not audited
            await _error(c.call("admin.status"))  # logged out: not an operator call, not audited
        entries = read_entries(tmp_path / "data" / "audit" / FILE_NAME, lambda e: e["address"] == "127.0.0.7", limit=1000)
        seen = {e["method"] for e in entries if e["identity"] == "vic"}
        assert seen == set(methods) | {"unsubscribe", "session.logout"}
        assert all(e["result"] in ("ok", "error") for e in entries)
        refused = {e["method"] for e in entries if e.get("reason") == "NOT_AUTHORIZED"}
        assert {"admin.instrument.halt", "admin.key.create", "admin.day.close", "admin.snapshot"} <= refused
        assert [e["method"] for e in entries].count("admin.status") == 1 and "ping" not in {e["method"] for e in entries}
    finally:
        server.terminate()
