"""JSON-RPC 2.0 batches against the real server: one frame holding an array of calls is answered
with one array frame; invalid members get their own error objects, notifications no entry, an
all-notification batch no reply at all; calls run in order; every member is charged to the rate
budgets; the batch length is capped (``limits.max_batch``). JSON and MessagePack alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from carbonx.gateway.client import MSGPACK, RpcError
from carbonx.gateway.testkit import BROKERS, Server, write_config
from tests.e2e.conftest import broker, running_server


async def _raw(server: Server, binary: bool) -> ClientConnection:
    ws = await connect(server.trading, subprotocols=[MSGPACK] if binary else None)  # type: ignore[list-item]
    key_id, secret = BROKERS["a"]
    await _send(ws, binary, {"jsonrpc": "2.0", "id": 0, "method": "session.login", "params": {"key_id": key_id, "secret": secret}})
    assert "result" in await _answer(ws, binary)
    return ws


async def _send(ws: ClientConnection, binary: bool, obj: Any) -> None:
    await ws.send(msgspec.msgpack.encode(obj) if binary else json.dumps(obj))


async def _answer(ws: ClientConnection, binary: bool, timeout: float = 10) -> Any:
    """The next reply (a dict, or an array for a batch), skipping notifications."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), timeout)
        message = msgspec.msgpack.decode(frame) if binary else json.loads(frame)
        if isinstance(message, list) or "id" in message:
            return message


def _place(rid: int | None, price: str, coid: str, quantity: int = 1) -> dict[str, Any]:
    params = {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": price, "quantity": quantity, "client_order_id": coid}
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": "order.place", "params": params}
    if rid is not None:
        req["id"] = rid
    return req


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_mixed_batch_answers_every_member_by_id_in_order(clean_books: Server, binary: bool) -> None:
    ws = await _raw(clean_books, binary)
    tag = "mp" if binary else "js"
    batch = [
        _place(11, "55.01", f"{tag}-b1"),
        1,  # not a request: its own -32600 with id null
        {"jsonrpc": "2.0", "id": 12, "method": "no.such.method"},
        _place(None, "55.02", f"{tag}-b2"),  # a notification: executed, no entry
        {"jsonrpc": "2.0", "id": 13, "method": "order.place", "params": {"account": "A-001"}},  # invalid params
        {"jsonrpc": "2.0", "id": 14, "method": "order.cancel", "params": {"account": "A-001", "client_order_id": f"{tag}-b1"}},
        {"jsonrpc": "2.0", "id": "r15", "method": "order.list", "params": {"account": "A-001", "open_only": True}},
        [{"jsonrpc": "2.0", "id": 16, "method": "ping"}],  # batches do not nest
        {"jsonrpc": "2.0", "id": 17, "method": "ping", "extra": 1},  # unknown envelope member, id still echoed
    ]
    await _send(ws, binary, batch)
    answer = await _answer(ws, binary)
    assert isinstance(answer, list)
    assert [a["id"] for a in answer] == [11, None, 12, 13, 14, "r15", None, 17]  # members' order, notification left out
    by_id = {a["id"]: a for a in answer if a["id"] is not None}
    assert by_id[11]["result"]["status"] == "new"
    assert [a["error"]["code"] for a in answer if a["id"] is None] == [-32600, -32600]
    assert by_id[12]["error"]["code"] == -32601
    assert by_id[13]["error"]["code"] == -32602
    assert by_id[14]["result"]["status"] == "cancelled"  # ran after the place it cancels
    assert by_id[17]["error"]["code"] == -32600
    open_orders = by_id["r15"]["result"]["orders"]
    assert [o["client_order_id"] for o in open_orders] == [f"{tag}-b2"]  # the notification's order, placed before the read
    await ws.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_batch_refused_whole_and_notifications_only(clean_books: Server, binary: bool) -> None:
    ws = await _raw(clean_books, binary)
    await _send(ws, binary, [])
    answer = await _answer(ws, binary)
    assert (answer["id"], answer["error"]["code"]) == (None, -32600) and "empty batch" in answer["error"]["message"]
    await _send(ws, binary, [{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "ping"}])  # no reply at all
    await _send(ws, binary, {"jsonrpc": "2.0", "id": 99, "method": "ping"})
    answer = await _answer(ws, binary)
    assert isinstance(answer, dict) and answer["id"] == 99  # the first thing answered after the notifications
    await ws.close()


async def test_client_call_batch_keeps_order_and_reports_failures_in_place(clean_books: Server) -> None:
    for subprotocol in (None, MSGPACK):
        async with broker(clean_books, "a") as a:
            coid = f"cb-{subprotocol or 'json'}"
            results = await a.call_batch(
                [
                    ("order.place", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "55.10", "quantity": 3,
                                     "client_order_id": coid}),
                    ("order.amend", {"account": "A-001", "client_order_id": coid, "quantity": 2}),
                    ("order.place", {"account": "NOPE", "instrument": "SHEA", "side": "buy", "price": "55.10", "quantity": 1}),
                    ("order.get", {"account": "A-001", "client_order_id": coid}),
                    ("order.cancel", {"account": "A-001", "client_order_id": coid}),
                ]
            )  # fmt: skip
            assert results[0]["status"] == "new" and results[0]["quantity"] == 3
            assert results[1]["quantity"] == 2
            assert isinstance(results[2], RpcError) and results[2].reason == "NOT_AUTHORIZED"
            assert results[3]["quantity"] == 2 and results[3]["status"] != "cancelled"  # read before the cancel
            assert results[4]["status"] == "cancelled"
            with pytest.raises(ValueError):
                await a.call_batch([])


async def test_batch_length_and_rate_budgets(tmp_path: Path) -> None:
    """``max_batch`` caps a batch (one -32600 for the frame, nothing executed); every member is
    charged to the request budget, so a batch past the budget gets RATE_LIMITED members."""
    config = write_config(tmp_path / "b.toml", limits={"max_batch": 5, "requests_per_s": 0.001, "request_burst": 8})
    with running_server(tmp_path / "data", config=config) as server:
        ws = await _raw(server, binary=False)  # the login used 1 of the 8 tokens
        await _send(ws, False, [_place(i, "55.20", f"cap-{i}") for i in range(6)])
        answer = await _answer(ws, False)
        assert answer["error"]["code"] == -32600 and "at most 5" in answer["error"]["message"]  # the frame took 1 token
        await _send(ws, False, [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(5)])
        answer = await _answer(ws, False)
        assert [a["id"] for a in answer] == [0, 1, 2, 3, 4]
        assert ["result" in a for a in answer] == [True, True, True, True, True]  # tokens 3..7
        await _send(ws, False, [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(3)])
        answer = await _answer(ws, False)
        assert ["result" in a for a in answer] == [True, False, False]  # the 8th token, then none
        assert answer[1]["error"]["data"]["reason"] == "RATE_LIMITED"
        async with broker(server, "a") as a:
            assert await a.list_orders("A-001") == []  # the refused batch placed nothing
        await ws.close()


async def test_batch_of_garbage_counts_every_member_as_a_violation(tmp_path: Path) -> None:
    config = write_config(tmp_path / "v.toml", limits={"max_violations": 4})
    with running_server(tmp_path / "data", config=config) as server:
        ws = await _raw(server, binary=False)
        await _send(ws, False, [1, 2, 3, 4, 5])
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await _answer(ws, False)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_members_after_an_async_member_wait_for_it(clean_books: Server, binary: bool) -> None:
    """session.login hashes in a worker thread: the members after it run once it is done."""
    ws = await connect(clean_books.trading, subprotocols=[MSGPACK] if binary else None)  # type: ignore[list-item]
    key_id, secret = BROKERS["b"]
    await _send(
        ws,
        binary,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "account.get", "params": {"account": "B-001"}},  # before the login: refused
            {"jsonrpc": "2.0", "id": 2, "method": "session.login", "params": {"key_id": key_id, "secret": secret}},
            {"jsonrpc": "2.0", "id": 3, "method": "account.get", "params": {"account": "B-001"}},
        ],
    )
    await _send(
        ws, binary, {"jsonrpc": "2.0", "id": 4, "method": "account.get", "params": {"account": "B-002"}}
    )  # the next frame waits too
    answer = await _answer(ws, binary)
    assert [a["id"] for a in answer] == [1, 2, 3]
    assert answer[0]["error"]["data"]["reason"] == "NOT_AUTHENTICATED"
    assert "B-001" in answer[1]["result"]["accounts"]
    assert answer[2]["result"]["account"] == "B-001"
    after = await _answer(ws, binary)
    assert after["id"] == 4 and after["result"]["account"] == "B-002"
    await ws.close()
