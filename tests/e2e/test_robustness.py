"""Hostile and broken input: every bad frame gets a clear error, never a corrupted state or a
dead connection (except an oversized frame, which the protocol closes with 1009)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import Server
from tests.e2e.conftest import broker


async def _orphan_error(c: Client, raw: str | bytes) -> dict[str, Any]:
    """Send a frame the server cannot attribute to a request and return its error."""
    seen = len(c.orphan_errors)
    await c.send_raw(raw)
    for _ in range(300):
        if len(c.orphan_errors) > seen:
            return c.orphan_errors[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no error reply to {raw[:60]!r}")


async def _state(c: Client) -> tuple[Any, ...]:
    """A-001's balances and orders (without ``seq``/``ts``: ``order.list`` stamps the engine
    sequence number the view is current as of, which any command anywhere advances)."""
    orders = [{k: v for k, v in o.items() if k not in ("seq", "ts")} for o in await c.list_orders("A-001")]
    return (await c.account("A-001"), orders)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", -32700),
        ('{"jsonrpc":"2.0","id":1,"method":"ping"', -32700),
        ("\x00\x01garbage", -32700),
        ('"just a string"', -32600),
        ("[]", -32600),
        ('{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600),
        ('{"jsonrpc":"2.0","id":1,"method":7}', -32600),
        ('{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}', -32600),
    ],
)
async def test_malformed_frames_get_an_error_and_the_connection_lives(clean_books: Server, raw: str, code: int) -> None:
    async with broker(clean_books, "a") as c:
        before = await _state(c)
        error = await _orphan_error(c, raw)
        assert error["code"] == code, error
        assert error.get("message"), error
        assert (await c.ping())["ts"] > 0
        assert await _state(c) == before


WRONG: list[tuple[str, dict[str, Any], str]] = [
    ("float price", {"price": 60.5}, "price"),
    ("number as string quantity", {"quantity": "10"}, "quantity"),
    ("negative quantity type ok but bool", {"quantity": True}, "quantity"),
    ("bad side", {"side": "hold"}, "side"),
    ("bad type", {"type": "stop"}, "type"),
    ("bad tif", {"time_in_force": "forever"}, "time_in_force"),
    ("price with exponent", {"price": "6e1"}, "price"),
    ("price with spaces", {"price": " 60.00"}, "price"),
    ("unknown field", {"colour": "red"}, "colour"),
    ("account as number", {"account": 1}, "account"),
    ("client id too long", {"client_order_id": "x" * 37}, "client_order_id"),
    ("client id not printable", {"client_order_id": "tab\there"}, "client_order_id"),
    ("huge account id", {"account": "A" * 5000}, "account"),
]


@pytest.mark.parametrize(("case", "change", "field"), WRONG, ids=[w[0] for w in WRONG])
async def test_wrong_types_are_clear_errors_without_side_effects(
    clean_books: Server, case: str, change: dict[str, Any], field: str
) -> None:
    params = {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 10} | change
    async with broker(clean_books, "a") as c:
        before = await _state(c)
        with pytest.raises(RpcError) as info:
            await c.request("order.place", params)
        err = info.value
        assert err.code == -32602 or 1000 <= err.code <= 1999, err
        assert field in err.message + repr(err.data), f"{case}: error does not name {field}: {err}"
        assert await _state(c) == before
        assert (await c.ping())["ts"] > 0


async def test_missing_params_and_unknown_methods(clean_books: Server) -> None:
    async with broker(clean_books, "a") as c:
        with pytest.raises(RpcError) as missing:
            await c.request("order.place", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00"})
        assert missing.value.code == -32602 and "quantity" in missing.value.message
        with pytest.raises(RpcError) as no_params:
            await c.request("order.place", None)
        assert no_params.value.code == -32602
        with pytest.raises(RpcError) as positional:
            await c.request("order.place", ["A-001"])  # type: ignore[arg-type]
        assert positional.value.code in (-32602, -32600)
        with pytest.raises(RpcError) as unknown:
            await c.call("order.teleport", account="A-001")
        assert unknown.value.code == -32601
        assert (await c.ping())["ts"] > 0


async def test_oversized_frame_closes_only_that_connection(clean_books: Server) -> None:
    async with broker(clean_books, "a") as big, broker(clean_books, "a") as other:
        resting = await other.place("A-002", "SHEA", "buy", 2, "55.00")
        before = await other.account("A-001")
        await big.send_raw('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + "x" * (100 * 1024) + '"}}')
        await big.wait_closed(5)
        assert big.close_code == 1009, (big.close_code, big.close_reason)
        assert await other.account("A-001") == before
        assert (await other.get_order("A-002", resting["order_id"]))["status"] == "new"
        assert (await other.ping())["ts"] > 0


async def test_frame_just_under_the_limit_is_accepted(clean_books: Server) -> None:
    async with broker(clean_books, "a") as c:
        with pytest.raises(RpcError) as info:  # an unknown field, but the frame itself is fine
            await c.request("ping", {"pad": "x" * (60 * 1024)})
        assert info.value.code == -32602
        assert not c.closed


async def test_unanswered_connection_does_not_block_others(clean_books: Server) -> None:
    """A client that opens a connection and never sends anything costs nobody anything."""
    async with Client(clean_books.trading) as idle, broker(clean_books, "b") as busy:
        for _ in range(20):
            await busy.ping()
        assert not idle.closed
