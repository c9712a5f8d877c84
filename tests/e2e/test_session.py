"""Sessions over the wire: login, authentication, and member isolation."""

from __future__ import annotations

import asyncio
import re

import pytest

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import BROKERS, OPERATOR, Server
from tests.e2e.conftest import broker


async def _error(coro: object) -> RpcError:
    with pytest.raises(RpcError) as info:
        await coro  # type: ignore[misc]
    return info.value


def _shape(err: RpcError, *ids: str) -> tuple[int, str | None, str | None, str]:
    """What a client learns from an error, with the ids it itself sent blanked out (and
    the journal ``seq`` of the reject, a global counter that says nothing about accounts)."""
    message = err.message
    for ident in ids:
        message = message.replace(ident, "<id>")
    data = {k: v for k, v in err.data.items() if k not in ("account", "order_id", "client_order_id", "seq")}
    return err.code, err.reason, err.field, message + repr(sorted(data.items()))


async def test_login_returns_member_accounts_and_session(shared_server: Server) -> None:
    async with Client(shared_server.trading) as c:
        result = await c.login(*BROKERS["a"])
        assert result["member"] == "broker-a"
        assert sorted(result["accounts"]) == ["A-001", "A-002"]
        assert isinstance(result["session_id"], str) and result["session_id"]
        assert result["heartbeat_s"] > 0
        pong = await c.ping()
        assert isinstance(pong["ts"], int)


async def _login_error(c: Client, key_id: str, secret: str) -> RpcError:
    """The error of a failed login, once any back-off from earlier failures has passed."""
    while True:
        err = await _error(c.login(key_id, secret))
        if err.reason != "LOGIN_THROTTLED":
            return err
        await asyncio.sleep(err.data["retry_after_ms"] / 1000 + 0.05)


@pytest.mark.parametrize(
    ("case", "key_id", "secret"),
    [
        (1, "demo-a", "wrong-secret"),
        (2, "no-such-key", "demo-a-secret"),
        (3, "demo-a", "demo-a-secret "),
        (4, "demo-b", "demo-a-secret"),
        (5, "ops", "ops-secret"),
    ],
)
async def test_login_failures_are_uniform_and_leave_the_session_anonymous(
    shared_server: Server, case: int, key_id: str, secret: str
) -> None:
    """A wrong secret, an unknown key, or operator credentials on the trading listener all
    fail the same way (no key enumeration) and the session stays unauthenticated. (From
    source addresses of their own: failed logins back off their address, see test_admission.)"""
    address = f"127.0.1.{case}"
    async with Client(shared_server.trading, local_addr=(address, 0)) as c, Client(shared_server.trading, local_addr=(address, 0)) as d:
        err = await _login_error(c, key_id, secret)
        assert 1000 <= err.code <= 1999 or err.code == -32602, err
        wrong = await _login_error(d, f"no-such-key-{case}", "x")
        assert (err.code, err.reason, err.message) == (wrong.code, wrong.reason, wrong.message)
        after = await _error(c.account("A-001"))
        assert after.reason == "NOT_AUTHENTICATED"


async def test_login_with_missing_or_mistyped_fields_is_a_shape_error(shared_server: Server) -> None:
    async with Client(shared_server.trading) as c:
        assert (await _error(c.request("session.login", {"key_id": "demo-a"}))).code == -32602
        assert (await _error(c.request("session.login", {"key_id": "demo-a", "secret": ""}))).code == -32602
        assert (await _error(c.request("session.login", {"key_id": 7, "secret": "demo-a-secret"}))).code == -32602
        assert (await _error(c.request("session.login", {"key_id": "demo-a", "secret": "demo-a-secret", "extra": 1}))).code == -32602
        await c.login(*BROKERS["a"])  # the connection survived all of it


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("order.place", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 1}),
        ("order.cancel", {"account": "A-001", "order_id": "1"}),
        ("order.cancel_all", {}),
        ("order.list", {"account": "A-001"}),
        ("account.get", {"account": "A-001"}),
        ("trade.list", {"account": "A-001"}),
    ],
)
async def test_private_methods_need_login(shared_server: Server, method: str, params: dict[str, object]) -> None:
    async with Client(shared_server.trading) as c:
        err = await _error(c.request(method, params))
        assert err.reason == "NOT_AUTHENTICATED"
        assert 1000 <= err.code <= 1999


async def test_operator_methods_do_not_exist_on_the_trading_listener(shared_server: Server) -> None:
    async with broker(shared_server, "a") as c:
        err = await _error(c.call("admin.instrument.halt", instrument="SHEA"))
        assert err.code == -32601
        status = await c.account("A-001")
        assert status["account"] == "A-001"


async def test_broker_credentials_do_not_open_the_admin_listener(shared_server: Server) -> None:
    async with Client(shared_server.admin) as c:
        await _error(c.login(*BROKERS["a"]))
        err = await _error(c.call("admin.instrument.halt", instrument="SHEA"))
        assert err.reason == "NOT_AUTHENTICATED" or err.code == -32601
        # The failed login above may throttle this address for a moment (LOGIN_THROTTLED says
        # how long, as any client would honour); then the operator gets in.
        try:
            await c.login(*OPERATOR)
        except RpcError as throttled:
            assert throttled.reason == "LOGIN_THROTTLED", throttled
            await asyncio.sleep(throttled.data["retry_after_ms"] / 1000 + 0.05)
            await c.login(*OPERATOR)


async def test_another_members_account_looks_exactly_like_an_unknown_one(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a:
        for call in (
            lambda acct: a.account(acct),
            lambda acct: a.list_orders(acct),
            lambda acct: a.trades(acct),
            lambda acct: a.place(acct, "SHEA", "buy", 1, "55.00"),
            lambda acct: a.cancel_all(account=acct),
        ):
            theirs = await _error(call("B-001"))
            unknown = await _error(call("Z-404"))
            assert theirs.reason == "NOT_AUTHORIZED"
            assert _shape(theirs, "B-001") == _shape(unknown, "Z-404")


async def test_another_members_order_looks_exactly_like_an_unknown_one(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        report = await b.place("B-001", "SHEA", "buy", 3, "55.01", client_order_id="b-secret-order")
        theirs_id = report["order_id"]
        unknown_id = str(int(theirs_id) + 1_000_000)
        for name, call in (
            ("get", lambda oid: a.get_order("A-001", oid)),
            ("cancel", lambda oid: a.cancel("A-001", oid)),
            ("amend", lambda oid: a.amend("A-001", oid, quantity=1)),
        ):
            theirs = await _error(call(theirs_id))
            unknown = await _error(call(unknown_id))
            assert theirs.reason == "UNKNOWN_ORDER", name
            assert _shape(theirs, theirs_id) == _shape(unknown, unknown_id), name
        by_coid = await _error(a.get_order("A-001", client_order_id="b-secret-order"))
        assert by_coid.reason == "UNKNOWN_ORDER"
        # and through B's own account id: the account is what A may not name
        via_account = await _error(a.get_order("B-001", theirs_id))
        assert via_account.reason == "NOT_AUTHORIZED"
        assert re.search(r"b-secret-order|55\.01", via_account.message + repr(via_account.data)) is None
        # B's order is untouched by all of it
        still = await b.get_order("B-001", theirs_id)
        assert (still["status"], still["leaves_qty"]) == ("new", 3)


async def test_private_orders_channel_only_carries_own_reports(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        await a.subscribe(["orders"])
        await b.subscribe(["orders"])
        mine = await b.place("B-002", "SHCER", "sell", 2, "21.00")
        await b.wait_for(lambda n: n.method == "orders" and n.params.get("order_id") == mine["order_id"], 5)
        await a.ping()  # a round trip after B's report was published
        assert not [n for n in a.history if n.method == "orders" and n.params.get("account", "").startswith("B-")]


async def test_logout_ends_the_authenticated_session(shared_server: Server) -> None:
    async with broker(shared_server, "a") as c:
        await c.logout()
        err = await _error(c.account("A-001"))
        assert err.reason == "NOT_AUTHENTICATED"
