"""Access end to end, over the real protocol against a real ``carbonx serve``: scoped keys,
allow-lists, revocation closing live sessions, rotation grace, expiry, operator roles.

One server for the module (the tests create their own keys and never touch the demo keys, so
they do not depend on each other's order)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from carbonx.gateway.client import Client, ClientClosed, RpcError
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, Server
from tests.e2e.conftest import operator, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("access") / "data") as srv:
        yield srv


async def _error(coro: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        await coro
    return info.value


async def new_key(server: Server, **params: Any) -> dict[str, Any]:
    async with operator(server) as op:
        result: dict[str, Any] = await op.call("admin.key.create", **({"member": "broker-a"} | params))
    assert result["secret"] and result["state"] == "active"
    return result


async def wait_closed(c: Client, within: float) -> float:
    """Seconds until the server closed ``c`` (fails after ``within``)."""
    start = time.monotonic()
    await c.wait_closed(within)
    assert c.closed
    return time.monotonic() - start


async def test_a_read_key_cannot_place_but_can_read(server: Server) -> None:
    key = await new_key(server, scopes=["read"], label="reporting")
    async with Client(server.trading) as c:
        login = await c.login(key["key_id"], key["secret"])
        assert login["member"] == "broker-a" and login["scopes"] == ["read"]
        err = await _error(c.place(ACCOUNTS["a"][0], "SHEA", "buy", 1, "55.00"))
        assert (err.reason, err.code) == ("NOT_AUTHORIZED", 1015) and "trade scope" in err.message
        for refused in (c.cancel_all(account=ACCOUNTS["a"][0]), c.cancel_on_disconnect(True)):
            assert (await _error(refused)).reason == "NOT_AUTHORIZED"
        assert (await c.account(ACCOUNTS["a"][0]))["account"] == ACCOUNTS["a"][0]
        await c.subscribe(["orders"])


async def test_a_trade_only_key_trades_but_does_not_query(server: Server) -> None:
    key = await new_key(server, scopes=["trade"])
    async with Client(server.trading) as c:
        await c.login(key["key_id"], key["secret"])
        placed = await c.place(ACCOUNTS["a"][0], "SHEA", "buy", 1, "55.00")
        assert placed["status"] == "new"
        assert (await _error(c.account(ACCOUNTS["a"][0]))).reason == "NOT_AUTHORIZED"
        assert (await _error(c.subscribe(["orders"]))).reason == "NOT_AUTHORIZED"
        assert await c.cancel_all(account=ACCOUNTS["a"][0]) >= 1


async def test_a_key_from_a_disallowed_address_cannot_log_in(server: Server) -> None:
    key = await new_key(server, allow=["127.0.0.2/32"])
    assert key["allow"] == ["127.0.0.2/32"]
    async with Client(server.trading, local_addr=("127.0.0.1", 0)) as c:
        err = await _error(c.login(key["key_id"], key["secret"]))
        assert (err.reason, err.code) == ("ADDRESS_NOT_ALLOWED", 1073) and "127.0.0.1" in err.message
    async with Client(server.trading, local_addr=("127.0.0.2", 0)) as c:  # Linux routes all of 127/8 to lo
        assert (await c.login(key["key_id"], key["secret"]))["member"] == "broker-a"


async def test_a_revoked_keys_sessions_close_within_a_second_and_it_cannot_log_in(server: Server) -> None:
    key = await new_key(server)
    async with Client(server.trading) as c1, Client(server.trading) as c2, Client(server.trading) as other:
        for c in (c1, c2):
            await c.login(key["key_id"], key["secret"])
        await other.login(*BROKERS["a"])  # the member's other key is not affected
        async with operator(server) as op:
            start = time.monotonic()
            revoked = await op.call("admin.key.revoke", key_id=key["key_id"])
            assert revoked["state"] == "revoked" and revoked["sessions_closed"] == 2
            for c in (c1, c2):
                await c.wait_closed(1.0)
            assert time.monotonic() - start < 1.0
            assert (c1.close_code, "revoked" in c1.close_reason) == (1008, True)
            assert (await _error(op.call("admin.key.revoke", key_id=key["key_id"]))).reason == "KEY_REVOKED"
            listed = {k["key_id"]: k for k in (await op.call("admin.key.list", member="broker-a"))["keys"]}
            assert listed[key["key_id"]]["state"] == "revoked" and listed[BROKERS["a"][0]]["state"] == "active"
            assert listed[BROKERS["a"][0]]["last_used"] is not None
        assert (await other.ping())["ts"] > 0
    async with Client(server.trading) as c:
        err = await _error(c.login(key["key_id"], key["secret"]))
        assert (err.reason, err.code) == ("KEY_REVOKED", 1071)


async def test_rotation_keeps_the_old_secret_only_for_the_grace_period(server: Server) -> None:
    key = await new_key(server)
    async with Client(server.trading) as old_session:
        await old_session.login(key["key_id"], key["secret"])
        async with operator(server) as op:
            rotated = await op.call("admin.key.rotate", key_id=key["key_id"], grace_s=2)
        new_secret = rotated["secret"]
        assert new_secret != key["secret"] and rotated["grace_until"] > time.time_ns()
        async with Client(server.trading) as c:  # during the grace period: both secrets
            await c.login(key["key_id"], key["secret"])
        async with Client(server.trading) as new_session:
            await new_session.login(key["key_id"], new_secret)
            # the grace period ends: the session on the old secret is closed, the new one stays
            await old_session.wait_closed(2 + 2.5)
            assert old_session.close_code == 1008
            assert (await new_session.ping())["ts"] > 0
    async with Client(server.trading) as c:
        err = await _error(c.login(key["key_id"], key["secret"]))  # after the grace period it is just a wrong secret
        assert err.reason == "NOT_AUTHENTICATED"
    await asyncio.sleep(1.1)  # that failure holds the key back for a second (gateway/logins.py)
    async with Client(server.trading) as c:
        assert (await c.login(key["key_id"], new_secret))["member"] == "broker-a"


async def test_an_expired_key_is_refused_and_its_sessions_closed(server: Server) -> None:
    key = await new_key(server, expires_ts=time.time_ns() + 2 * 10**9)
    async with Client(server.trading) as c:
        await c.login(key["key_id"], key["secret"])
        await c.wait_closed(2 + 2.5)
        assert c.close_code == 1008 and "expired" in c.close_reason
    async with Client(server.trading) as c:
        err = await _error(c.login(key["key_id"], key["secret"]))
        assert (err.reason, err.code) == ("KEY_EXPIRED", 1072)
    async with operator(server) as op:
        past = await _error(op.call("admin.key.create", member="broker-a", expires_ts=time.time_ns() - 1))
        assert (past.reason, past.field) == ("INVALID_KEY", "expires_ts")


@pytest.fixture
async def operators(server: Server) -> AsyncIterator[dict[str, tuple[str, str]]]:
    """A viewer and an operator-role identity (fresh names per test)."""
    out = {}
    suffix = str(time.monotonic_ns())[-8:]
    async with operator(server) as op:
        for role in ("viewer", "operator"):
            created = await op.call("admin.operator.create", operator=f"{role}-{suffix}", role=role)
            assert created["role"] == role and created["operator"] == f"{role}-{suffix}"
            out[role] = (created["key_id"], created["secret"])
    yield out


async def test_a_viewer_reads_but_cannot_halt_and_only_admin_manages_keys(server: Server, operators: dict[str, tuple[str, str]]) -> None:
    async with Client(server.admin) as viewer:
        login = await viewer.login(*operators["viewer"])
        assert login["role"] == "viewer" and login["operator"] is True
        assert "day_open" in await viewer.call("admin.status")
        err = await _error(viewer.call("admin.instrument.halt", instrument="SHEA"))
        assert (err.reason, err.code) == ("NOT_AUTHORIZED", 1015) and "operator role" in err.message
        assert (await _error(viewer.call("admin.key.list"))).reason == "NOT_AUTHORIZED"
    async with Client(server.admin) as ops:
        await ops.login(*operators["operator"])
        halted = await ops.call("admin.instrument.halt", instrument="CCER")
        assert halted["halted"] is True
        await ops.call("admin.instrument.resume", instrument="CCER")
        for admin_only in (
            ops.call("admin.key.create", member="broker-a"),
            ops.call("admin.member.create", member="x9", key_id="x9k", secret="12345678"),
        ):
            assert (await _error(admin_only)).reason == "NOT_AUTHORIZED"


async def test_a_role_change_applies_to_the_live_session_at_once(server: Server, operators: dict[str, tuple[str, str]]) -> None:
    viewer_id = operators["viewer"][0]
    async with Client(server.admin) as person, operator(server) as admin:
        assert (await person.login(*operators["viewer"]))["role"] == "viewer"
        listed = (await admin.call("admin.operator.list"))["operators"]
        name = next(o["operator"] for o in listed if viewer_id in o["keys"])
        assert (await _error(person.call("admin.instrument.halt", instrument="SHCER"))).reason == "NOT_AUTHORIZED"
        promoted = await admin.call("admin.operator.role", operator=name, role="operator")
        assert (promoted["role"], promoted["previous"], promoted["sessions_changed"]) == ("operator", "viewer", 1)
        assert (await person.call("admin.instrument.halt", instrument="SHCER"))["halted"] is True  # the same session, new rights
        await person.call("admin.instrument.resume", instrument="SHCER")
        demoted = await admin.call("admin.operator.role", operator=name, role="viewer")
        assert demoted["previous"] == "operator"
        assert (await _error(person.call("admin.instrument.halt", instrument="SHCER"))).reason == "NOT_AUTHORIZED"
        assert (await _error(person.call("admin.operator.role", operator=name, role="admin"))).reason == "NOT_AUTHORIZED"
        unknown = await _error(admin.call("admin.operator.role", operator="nobody-here", role="admin"))
        assert (unknown.reason, unknown.code) == ("UNKNOWN_OPERATOR", 1075)
        assert {o["operator"]: o["role"] for o in (await admin.call("admin.operator.list"))["operators"]}[name] == "viewer"


async def test_operator_keys_only_open_the_admin_listener(server: Server, operators: dict[str, tuple[str, str]]) -> None:
    # (failing on purpose from an address of their own: failures hold an address back for a while)
    async with Client(server.trading, local_addr=("127.0.0.3", 0)) as c:
        assert (await _error(c.login(*operators["viewer"]))).reason == "NOT_AUTHENTICATED"
    async with Client(server.admin, local_addr=("127.0.0.3", 0)) as c:
        assert (await _error(c.login(*BROKERS["b"]))).reason == "NOT_AUTHENTICATED"


async def test_revoking_an_operators_key_closes_its_admin_session(server: Server, operators: dict[str, tuple[str, str]]) -> None:
    async with Client(server.admin) as viewer, operator(server) as admin:
        await viewer.login(*operators["viewer"])
        await admin.call("admin.key.revoke", key_id=operators["viewer"][0])
        await viewer.wait_closed(1.0)
        with pytest.raises((ClientClosed, RpcError)):
            await viewer.call("admin.status")


async def test_bad_key_settings_are_refused_with_the_field(server: Server, tmp_path: Path) -> None:
    async with operator(server) as op:
        for params, field in (
            ({"member": "broker-a", "allow": ["10.0.0.999/8"]}, "allow"),
            ({"member": "broker-a", "scopes": []}, "scopes"),
            ({"member": "broker-a", "operator": "x"}, "member"),
            ({"member": "broker-a", "key_id": "ops"}, "key_id"),  # the bootstrap operator's
        ):
            err = await _error(op.call("admin.key.create", **params))
            assert err.field == field, (params, err)
        assert (await _error(op.call("admin.key.rotate", key_id="nope"))).reason == "UNKNOWN_KEY"
        await asyncio.sleep(0)
