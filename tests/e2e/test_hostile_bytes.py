"""Malformed bytes on the wire (issue 9 items 3 and 8): each gets its JSON-RPC error or, for a text
frame that is not UTF-8, the WebSocket close code RFC 6455 prescribes (1007); none logs a traceback,
none changes state, and the HTTP upgrade path refuses junk without a traceback either."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from carbonx.gateway.client import Client
from carbonx.gateway.testkit import BROKERS, Server
from tests.e2e.conftest import broker

MSGPACK = "carbonx.v1.msgpack"


async def _raw(server: Server, binary: bool = False) -> ClientConnection:
    ws = await connect(server.trading, subprotocols=[MSGPACK] if binary else None)  # type: ignore[list-item]
    login = {"jsonrpc": "2.0", "id": 0, "method": "session.login", "params": dict(zip(("key_id", "secret"), BROKERS["a"], strict=True))}
    await ws.send(msgspec.msgpack.encode(login) if binary else json.dumps(login))
    assert "result" in await _answer(ws, binary)
    return ws


async def _answer(ws: ClientConnection, binary: bool = False) -> dict[str, Any]:
    while True:
        data = await asyncio.wait_for(ws.recv(), 10)
        message = msgspec.msgpack.decode(data) if binary else json.loads(data)
        if "id" in message:
            return dict(message)


async def _error(ws: ClientConnection, frame: str | bytes, binary: bool = False) -> dict[str, Any]:
    await ws.send(frame)
    answer = await _answer(ws, binary)
    assert "error" in answer, answer
    return answer


def _no_traceback(server: Server) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    loud = [line for line in log.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    assert not loud, loud


async def test_bad_bytes_get_errors_and_log_nothing(fresh_server: Server) -> None:
    server = fresh_server
    async with broker(server, "a") as watcher:
        before = await watcher.account("A-001")
        ws = await _raw(server)
        for _ in range(3):  # repeated: the connection lives on, nothing is logged per message
            deep = '{"jsonrpc":"2.0","id":5,"method":"order.place","params":{"account":' + "[" * 1000 + "]" * 1000 + "}}"
            assert len(deep) < 6 * 1024
            assert (await _error(ws, deep))["error"]["code"] == -32602
            dup = '{"jsonrpc":"2.0","id":6,"method":"order.place","params":{"quantity":0,"account":"A-001","instrument":"SHEA",'
            dup += '"side":"buy","price":"60.00","quantity":10}}'
            answer = await _error(ws, dup)
            assert (answer["id"], answer["error"]["code"], answer["error"]["data"]["field"]) == (6, -32602, "quantity")
            answer = await _error(ws, '{"jsonrpc":"1.0","id":7,"method":"ping"}')
            assert (answer["id"], answer["error"]["code"]) == (7, -32600)
            answer = await _error(ws, b'{"jsonrpc":"2.0","id":8,"method":"order.place","params":{}}')  # JSON in a binary frame
            assert answer["error"]["code"] == -32600 and "text frames" in answer["error"]["message"]
            assert (await _error(ws, "[]"))["error"]["code"] == -32600
            assert (await _error(ws, "   "))["error"]["code"] == -32700
        await ws.close()

        mp = await _raw(server, binary=True)
        head = msgspec.msgpack.encode({"jsonrpc": "2.0", "id": 9, "method": "order.place"})
        bad_utf8 = bytes([head[0] + 1]) + head[1:] + msgspec.msgpack.encode("params") + b"\x81\xa7account\xa2\xc3\x28"
        assert (await _error(mp, bad_utf8, binary=True))["error"]["code"] == -32700
        deep = bytes([head[0] + 1]) + head[1:] + msgspec.msgpack.encode("params") + b"\x91" * 1000 + b"\x90"
        assert (await _error(mp, deep, binary=True))["error"]["code"] == -32602
        answer = await _error(mp, '{"jsonrpc":"2.0","id":10,"method":"ping"}', binary=True)  # a text frame
        assert answer["error"]["code"] == -32600 and "binary frames" in answer["error"]["message"]
        await mp.close()

        ws = await _raw(server)  # a text frame that is not UTF-8: the WebSocket layer fails the connection
        await ws.send(b'{"jsonrpc":"2.0","id":11,"method":"p\xffing"}', text=True)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            raise AssertionError("no close")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1007

        assert await watcher.account("A-001") == before
        assert (await watcher.ping())["ts"] > 0
    _no_traceback(server)


async def test_http_upgrade_junk_is_refused_quietly(fresh_server: Server) -> None:
    server = fresh_server
    base = server.trading.rsplit("/", 1)[0]
    for path in ("/", "/v2", "/v1/../admin", "/%00", "/v1x"):
        try:
            async with connect(base + path):
                raise AssertionError(f"{path} was accepted")
        except InvalidStatus as refused:
            assert refused.response.status_code == 404
    host, port = base.removeprefix("ws://").split(":")
    for request in (
        b"GET /v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",  # no key, no version
        b"GET /v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: junk\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(64),  # a TLS hello on the plain port
        b"GET /v1 HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(200), 10)
        assert response == b"" or response.startswith(b"HTTP/1.1 4"), response
        writer.close()
    async with Client(server.trading) as c:  # still serving
        assert (await c.ping())["ts"] > 0
    ws = await connect(server.trading, subprotocols=["carbonx.v2", "chat"])  # type: ignore[list-item]
    assert ws.subprotocol is None  # unknown subprotocols: plain JSON
    await ws.send('{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert "result" in await _answer(ws)
    await ws.close()
    _no_traceback(server)


async def test_a_connection_flood_does_not_flood_the_log(fresh_server: Server) -> None:
    """Per-connection open/close lines (websockets logs them at INFO) stay out of the log."""
    server = fresh_server
    before = len(server.log_path.read_text(errors="replace").splitlines())
    for _ in range(30):
        async with connect(server.trading) as ws:
            await ws.send('{"jsonrpc":"2.0","id":1,"method":"ping"}')
            assert "result" in await _answer(ws)
    base = server.trading.rsplit("/", 1)[0]
    for _ in range(10):
        try:
            async with connect(base + "/nope"):
                raise AssertionError("accepted")
        except InvalidStatus:
            pass
    after = len(server.log_path.read_text(errors="replace").splitlines())
    assert after - before < 5, server.log_tail(after - before)
