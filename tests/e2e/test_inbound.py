"""Messages handed to the gateway straight from the socket (gateway/inbound.py) keep the read
loop's guarantees: arrival order also behind an async method (login runs scrypt in a thread),
with the socket paused past the backlog bound and resumed; fragmented messages are reassembled;
a text frame that is not UTF-8 still closes the connection with 1007."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from carbonx.gateway.inbound import BACKLOG_HIGH
from carbonx.gateway.testkit import BROKERS, Server


async def _answers(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        message = json.loads(await ws.recv())
        if "id" in message:
            out.append(message)
    return out


async def test_messages_behind_a_login_wait_for_it_in_order(clean_books: Server) -> None:
    key_id, secret = BROKERS["a"]
    behind = 3 * BACKLOG_HIGH  # past the backlog bound: reading pauses, then resumes
    async with connect(clean_books.trading) as ws:
        frames = [json.dumps({"jsonrpc": "2.0", "id": 0, "method": "session.login", "params": {"key_id": key_id, "secret": secret}})]
        frames += [
            json.dumps({"jsonrpc": "2.0", "id": i, "method": "account.get", "params": {"account": "A-001"}}) for i in range(1, behind + 1)
        ]
        for frame in frames:  # all sent before the login (scrypt, ~50 ms) can have finished
            await ws.send(frame)
        answers = await _answers(ws, behind + 1)
    assert [a["id"] for a in answers] == list(range(behind + 1))
    assert all("result" in a for a in answers), [a for a in answers if "error" in a][:2]  # every read ran after the login


async def test_a_fragmented_message_is_reassembled(clean_books: Server) -> None:
    async with connect(clean_books.trading) as ws:
        text = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping"})
        await ws.send([text[:5], text[5:20], text[20:]])  # three frames: text, continuation, continuation
        await ws.send(
            [
                json.dumps([{"jsonrpc": "2.0", "id": 8, "method": "ping"}])[:3],
                json.dumps([{"jsonrpc": "2.0", "id": 8, "method": "ping"}])[3:],
            ]
        )
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
        first = json.loads(await ws.recv())
        second = json.loads(await ws.recv())
        third = json.loads(await ws.recv())
    assert first["id"] == 7 and "result" in first
    assert isinstance(second, list) and second[0]["id"] == 8
    assert third["id"] == 9


@pytest.mark.parametrize("fragmented", [False, True])
async def test_text_that_is_not_utf8_still_closes_with_1007(clean_books: Server, fragmented: bool) -> None:
    async with connect(clean_books.trading) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        assert json.loads(await ws.recv())["id"] == 1
        bad = b'{"jsonrpc":"2.0","id":2,"method":"p\xffing"}'
        # websockets' client sends what it is given: bytes with text=True go out as a text frame
        if fragmented:
            await ws.send([bad[:10], bad[10:]], text=True)
        else:
            await ws.send(bad, text=True)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
