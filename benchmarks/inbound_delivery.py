"""CPU per WebSocket message delivered to the gateway: websockets' queue + ``recv()`` task (the read
loop before ``gateway/inbound.py``) against ``InboundConnection`` (messages handed over from
``data_received``).

Both run in this process on the same uvloop loop, alternately, on a connection with an in-memory
transport (no socket: the syscalls are the same either way and are left out); each message is
one masked text frame of an ``order.place`` request fed to ``data_received`` alone, followed by
one loop iteration, as when requests arrive one per wake-up under load. Measured: process CPU
time per message (``time.process_time``), median of ``--runs`` alternating runs, so the
machine's load moves both sides alike. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from carbonx.gateway.inbound import InboundConnection

REQUEST = (
    '{"jsonrpc":"2.0","id":12345,"method":"order.place","params":{"account":"A-001","instrument":"SHEA",'
    '"side":"buy","price":"60.00","quantity":3}}'
)


HANDSHAKE = (
    b"GET /v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _Transport(asyncio.Transport):
    """Accepts writes and flow-control calls, sends nothing."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class _Server:
    """What a connection asks of its server: a handler (here one that does nothing) and a task set."""

    def __init__(self) -> None:
        self.handler_tasks: set[asyncio.Task[None]] = set()

    async def handler(self, connection: ServerConnection) -> None:
        return None


def _open(cls: type[ServerConnection]) -> ServerConnection:
    conn = cls(ServerProtocol(), server=_Server(), ping_interval=None, ping_timeout=None)  # type: ignore[arg-type]
    conn.connection_made(_Transport())
    conn.data_received(HANDSHAKE)  # the opening handshake, done by hand (it is not what is measured)
    assert conn.request is not None
    conn.protocol.send_response(conn.protocol.accept(conn.request))
    assert conn.protocol.state is OPEN
    return conn


async def _queued(n: int, frame: bytes) -> float:
    """websockets' path: ``data_received`` queues the frame, a task awaiting ``recv()`` gets it."""
    conn = _open(ServerConnection)
    got = 0

    async def reader() -> None:
        nonlocal got
        while True:
            await conn.recv()
            got += 1

    task = asyncio.get_running_loop().create_task(reader())
    await asyncio.sleep(0)
    t0 = time.process_time()
    for _ in range(n):
        conn.data_received(frame)
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    cpu = time.process_time() - t0
    task.cancel()
    assert got == n, (got, n)
    return cpu / n


async def _direct(n: int, frame: bytes) -> float:
    """``InboundConnection``: ``data_received`` calls the gateway's handler at once."""
    conn = _open(InboundConnection)
    got = 0

    def on_message(message: str | bytes) -> None:
        nonlocal got
        got += 1

    assert isinstance(conn, InboundConnection) and conn.start_direct(on_message)
    t0 = time.process_time()
    for _ in range(n):
        conn.data_received(frame)
        await asyncio.sleep(0)
    cpu = time.process_time() - t0
    assert got == n, (got, n)
    return cpu / n


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    frame = Frame(Opcode.TEXT, REQUEST.encode()).serialize(mask=True, extensions=[])
    queued: list[float] = []
    direct: list[float] = []
    await _queued(2000, frame)  # warm-up
    await _direct(2000, frame)
    for _ in range(args.runs):
        queued.append(await _queued(args.messages, frame))
        direct.append(await _direct(args.messages, frame))
    q, d = statistics.median(queued), statistics.median(direct)
    return {
        "messages": args.messages,
        "runs": args.runs,
        "queued_recv_us_per_message": round(q * 1e6, 2),
        "inbound_direct_us_per_message": round(d * 1e6, 2),
        "saved_us_per_message": round((q - d) * 1e6, 2),
        "queued_runs_us": [round(x * 1e6, 2) for x in queued],
        "direct_runs_us": [round(x * 1e6, 2) for x in direct],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    print(json.dumps(uvloop.run(_main(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
