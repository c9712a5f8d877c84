"""Regression for issue 9 item 1: one authenticated message used to stop the exchange.

A price given as a 20-digit string passed the wire parser, was applied, then could not be
journaled (MessagePack integers end at 2^64) and the journal failure stopped the server;
after a restart it happened again. Against the real server, over JSON and MessagePack:
every such request gets a specific error, the server stays up, keeps trading, and does so
again after a restart on the same data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.protocol import MSGPACK_SUBPROTOCOL
from carbonx.gateway.testkit import Server
from tests.e2e.conftest import broker, operator, running_server

HUGE = "99999999999999999999"

BROKER_ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    ("order.place", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": HUGE, "quantity": 1}, "INVALID_PRICE"),
    ("order.amend", {"account": "A-001", "order_id": "1", "price": HUGE}, "INVALID_PRICE"),
    (
        "block.propose",
        {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": HUGE, "quantity": 100_000, "counterparty_account": "B-001"},
        "INVALID_PRICE",
    ),
    ("auction.bid", {"auction_id": "987654321", "account": "A-001", "price": HUGE, "quantity": 1}, "INVALID_PRICE"),
    ("order.amend", {"account": "A-001", "order_id": "9" * 24}, "UNKNOWN_ORDER"),  # an id beyond ranges.ID: unknown
]
OPERATOR_ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    ("admin.account.deposit", {"account": "A-001", "cash": HUGE}, "INVALID_AMOUNT"),
    ("admin.account.withdraw", {"account": "A-001", "cash": HUGE}, "INVALID_AMOUNT"),
    ("admin.instrument.set_reference", {"instrument": "SHEA", "price": HUGE}, "INVALID_PRICE"),
    ("admin.auction.create", {"instrument": "SHEA", "quantity": 1000, "vintage": 2025, "reserve_price": HUGE}, "INVALID_PRICE"),
    (
        "admin.auction.create",
        {"instrument": "SHEA", "quantity": 1000, "vintage": 2025, "reserve": {"lookback_days": 5, "cap": HUGE}},
        "INVALID_PRICE",
    ),
    ("admin.auction.create", {"instrument": "SHEA", "quantity": 10**11, "vintage": 2025, "reserve_price": "60.00"}, "INVALID_QUANTITY"),
    ("admin.account.deposit", {"account": "A-001", "instrument": "SHEA", "vintage": 2025, "quantity": 10**12}, "INVALID_AMOUNT"),
]
JSON_ONLY: list[tuple[str, dict[str, Any], str]] = [  # integers MessagePack cannot even carry
    ("order.place", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 10**20}, "INVALID_PARAMS"),
    ("admin.account.deposit", {"account": "A-001", "instrument": "SHEA", "vintage": 2025, "quantity": -(10**20)}, "INVALID_PARAMS"),
]


async def _refused(c: Client, method: str, params: dict[str, Any], reason: str) -> None:
    with pytest.raises(RpcError) as info:
        await c.call(method, **params)
    err = info.value
    assert err.code != -32603, f"{method}: {err}"
    assert err.reason == reason, f"{method}: {err}"


async def _attack_and_trade(server: Server) -> None:
    for subprotocol in (None, MSGPACK_SUBPROTOCOL):
        async with broker(server, "a", subprotocol) as a, operator(server) as ops:
            before = await a.account("A-001")
            for method, params, reason in BROKER_ATTACKS:
                await _refused(a, method, params, reason)
            for method, params, reason in OPERATOR_ATTACKS:
                await _refused(ops, method, params, reason)
            if subprotocol is None:
                for method, params, reason in JSON_ONLY:
                    await _refused(ops if method.startswith("admin.") else a, method, params, reason)
            assert await a.account("A-001") == before, "a refused request changed nothing"
    assert server.proc.poll() is None, f"the server stopped:\n{server.log_tail()}"
    async with broker(server, "a") as a, broker(server, "b") as b:  # and it still trades
        await a.place("A-001", "SHEA", "sell", 3, "60.00")
        report = await b.place("B-001", "SHEA", "buy", 3, "60.00")
        assert report["status"] == "filled"
    assert server.proc.poll() is None


async def test_out_of_range_values_are_refused_and_the_exchange_keeps_trading_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data) as server:
        await _attack_and_trade(server)
        assert server.terminate() == 0, server.log_tail()
        assert "Traceback" not in server.log_tail(400)
    with running_server(data) as server:  # the journal holds nothing it cannot replay
        await _attack_and_trade(server)
        assert server.terminate() == 0, server.log_tail()
        assert "Traceback" not in server.log_tail(400)
