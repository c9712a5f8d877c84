"""Outbound coalesces writes: everything sent to one connection in one event-loop iteration goes out
in one socket write, in the order it was sent, in the connection's own format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from carbonx.gateway.outbound import Outbound
from carbonx.gateway.protocol.names import MSGPACK_SUBPROTOCOL
from carbonx.gateway.sessions import Session
from carbonx.gateway.settings import Limits


@pytest.fixture
async def server_sessions() -> AsyncIterator[tuple[str, asyncio.Queue[Session]]]:
    sessions: asyncio.Queue[Session] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await sessions.put(Session(Limits(), binary=ws.subprotocol == MSGPACK_SUBPROTOCOL, connection=ws))
        await ws.wait_closed()

    def select(ws: ServerConnection, offered: object) -> Subprotocol | None:
        return Subprotocol(MSGPACK_SUBPROTOCOL) if MSGPACK_SUBPROTOCOL in offered else None  # type: ignore[operator]

    async with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol(MSGPACK_SUBPROTOCOL)], select_subprotocol=select) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}", sessions


async def test_one_write_per_connection_per_iteration_in_order(server_sessions: tuple[str, asyncio.Queue[Session]]) -> None:
    url, sessions = server_sessions
    out = Outbound(write_buffer_bytes=1 << 20)
    async with connect(url) as text_client, connect(url, subprotocols=[MSGPACK_SUBPROTOCOL]) as binary_client:  # type: ignore[list-item]
        a, b = await sessions.get(), await sessions.get()
        for i in range(5):
            out.send([a, b], {"n": i})
        out.send_one(a, [{"batch": 1}])
        assert out.writes == 0 and out.messages == 11  # queued, not written yet
        got_text = [json.loads(await text_client.recv()) for _ in range(6)]
        got_binary = [msgspec.msgpack.decode(await binary_client.recv()) for _ in range(5)]
        assert out.writes == 2  # one per connection
        assert got_text == [{"n": i} for i in range(5)] + [[{"batch": 1}]]
        assert got_binary == [{"n": i} for i in range(5)]
        out.send_one(a, {"later": True})  # a later iteration: a write of its own
        assert json.loads(await text_client.recv()) == {"later": True}
        assert out.writes == 3


async def test_frames_queued_before_a_close_still_arrive_first(server_sessions: tuple[str, asyncio.Queue[Session]]) -> None:
    url, sessions = server_sessions
    out = Outbound(write_buffer_bytes=1 << 20)
    async with connect(url) as client:
        a = await sessions.get()
        out.send_one(a, {"last": 1})
        assert a.connection is not None
        await a.connection.close(1000, "bye")  # websockets flushes what is queued before its close frame
        assert json.loads(await client.recv()) == {"last": 1}
        await asyncio.sleep(0)
        assert out.writes == 0  # nothing left for flush to write
