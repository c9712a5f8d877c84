"""Bounded fuzz against the real server: 10,000+ hostile frames (JSON and MessagePack, trading and
admin listener, logged in as a broker or an operator), each of which must be refused.

Asserts that the server stays up, answers every frame with the specific error its defect deserves
(never -32603; the id echoed when it was readable) or closes the connection with a policy code
(1007 invalid UTF-8 text, 1008 abuse, 1009 too big), writes no traceback or warning to its log, and
that no account, book or resting order changed. Seeded and deterministic: the seed is printed, and
``CARBONX_FUZZ_SEED`` / ``CARBONX_FUZZ_FRAMES`` replay or enlarge a run.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from carbonx.gateway.client import Client
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, OPERATOR, Server, write_config
from tests.e2e.conftest import broker, operator, running_server
from tests.e2e.hostile import Frame, Hostile

MSGPACK = "carbonx.v1.msgpack"
SEED = int(os.environ.get("CARBONX_FUZZ_SEED", "20261125"))
FRAMES = int(os.environ.get("CARBONX_FUZZ_FRAMES", "10400"))
POLICY_CLOSES = {1007, 1008, 1009}
INSTRUMENTS = ("SHEA", "CCER", "SHCER")


class Raw:
    """One raw WebSocket connection that logs in and sends frames one at a time."""

    def __init__(self, url: str, binary: bool, creds: tuple[str, str]) -> None:
        self.url, self.binary, self.creds = url, binary, creds
        self.ws: ClientConnection | None = None
        self.reconnects = 0

    def _encode(self, obj: Any) -> str | bytes:
        return msgspec.msgpack.encode(obj) if self.binary else json.dumps(obj)

    def _decode(self, data: str | bytes) -> Any:
        return msgspec.msgpack.decode(data) if self.binary else json.loads(data)

    async def open(self) -> None:
        self.ws = await connect(self.url, subprotocols=[MSGPACK] if self.binary else None, max_size=None)  # type: ignore[list-item]
        self.reconnects += 1
        reply = await self.call(
            {"jsonrpc": "2.0", "id": 0, "method": "session.login", "params": {"key_id": self.creds[0], "secret": self.creds[1]}}
        )
        assert "result" in reply, reply

    async def call(self, request: Any) -> dict[str, Any]:
        assert self.ws is not None
        await self.ws.send(self._encode(request))
        return await self.reply()

    async def reply(self) -> Any:
        """The next answer: a reply object, or an array (a batch's), skipping notifications."""
        assert self.ws is not None
        while True:
            message = self._decode(await self.ws.recv())
            if isinstance(message, list):
                return message
            if "id" in message:  # skip notifications (heartbeats)
                return dict(message)

    async def send(self, frame: Frame) -> Any:
        """The error reply to ``frame``, or the close code if the server closed instead."""
        if self.ws is None:
            await self.open()
        assert self.ws is not None
        try:
            if frame.raw_text:
                await self.ws.send(frame.data, text=True)
            else:
                await self.ws.send(frame.data)
            return await self.reply()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else 1006
            self.ws = None
            return code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def _state(server: Server) -> tuple[Any, ...]:
    """Every demo account (as the operator sees it), every book, the resting orders."""
    async with operator(server) as ops:
        accounts = [await ops.account(a) for who in ("a", "b") for a in ACCOUNTS[who]]
    async with Client(server.trading) as watcher:
        await watcher.subscribe([f"book.{s}" for s in INSTRUMENTS])
        books = []
        for s in INSTRUMENTS:
            book = await watcher.wait_synced(s)
            books.append((s, book.bids, book.asks))
    async with broker(server, "a") as c:
        orders = [{k: v for k, v in o.items() if k not in ("seq",)} for o in await c.list_orders("A-001")]
    return accounts, books, orders


def _check(frame: Frame, answer: Any) -> str | None:
    """What is wrong with ``answer`` to ``frame`` (None if it is right). A batch is answered
    with an array holding each member's answer in order (or refused whole, by ``frame.codes``)."""
    if isinstance(answer, int):
        if answer == frame.close or answer == 1008:  # 1008: the previous frames made the connection abusive
            return None
        return f"closed with {answer}"
    if isinstance(answer, list):
        if frame.members is None:
            return f"an array answer to a single request: {answer}"
        if len(answer) != len(frame.members):
            return f"{len(answer)} answers to a batch of {len(frame.members)}: {answer}"
        for i, (member, part) in enumerate(zip(frame.members, answer, strict=True)):
            problem = _check(member, part)
            if problem is not None:
                return f"member {i} ({member.what or 'frame'}): {problem}"
        return None
    error = answer.get("error")
    if error is None:
        return f"not refused: {answer}"
    if error["code"] == -32603:
        return f"internal error: {error}"
    if error["code"] not in frame.codes:
        return f"code {error['code']} not in {sorted(frame.codes)}: {error}"
    if answer["id"] != frame.echo and not (frame.echo_optional and answer["id"] is None):
        return f"id {answer['id']!r}, want {frame.echo!r}"
    if not error.get("message"):
        return "no message"
    return None


async def _fuzz(url: str, binary: bool, creds: tuple[str, str], seed: int, n: int, admin: bool) -> tuple[int, int]:
    gen = Hostile(seed, binary=binary, admin=admin)
    conn = Raw(url, binary, creds)
    failures: list[str] = []
    try:
        for i in range(n):
            frame = gen.frame()
            answer = await conn.send(frame)
            if answer == 1008 and frame.close != 1008:  # closed for earlier frames: this one is owed an answer
                answer = await conn.send(frame)
            problem = _check(frame, answer)
            if problem is not None:
                failures.append(f"#{i} {frame.what or 'frame'} {frame.data[:120]!r}: {problem}")
    finally:
        await conn.close()
    assert not failures, f"seed {seed}: {len(failures)} wrong answers, first ones:\n" + "\n".join(failures[:15])
    return n, conn.reconnects


async def _abuse_is_closed(url: str, binary: bool) -> None:
    """Garbage frames in a row on one connection: errors, then close 1008 (the abuse counter)."""
    conn = Raw(url, binary, BROKERS["a"])
    await conn.open()
    frame = Frame(b"\xc1" if binary else "{", frozenset({-32700}))
    codes = [await conn.send(frame) for _ in range(12)]
    assert all(isinstance(c, dict) and c["error"]["code"] == -32700 for c in codes[:9]), codes
    assert 1008 in codes, codes
    await conn.close()


async def test_hostile_frames_are_all_refused_and_change_nothing(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "fuzz.toml",
        limits={"requests_per_s": 1_000_000.0, "request_burst": 1_000_000, "orders_per_s": 1_000_000.0, "order_burst": 1_000_000,
                "max_violations": 10},
    )  # fmt: skip
    print(f"fuzz seed {SEED} ({FRAMES} frames); replay with CARBONX_FUZZ_SEED={SEED}")
    with running_server(tmp_path / "data", config=config) as server:
        async with broker(server, "b") as b:  # something resting on the book, for a wrongful cancel to show
            await b.place("B-001", "SHEA", "sell", 3, "63.00")
        async with broker(server, "a") as a:
            await a.place("A-001", "SHEA", "buy", 2, "57.00")
        before = await _state(server)
        started = time.monotonic()
        share = FRAMES // 10
        runs = [
            (server.trading, False, BROKERS["a"], SEED, 4 * share, False),
            (server.trading, True, BROKERS["a"], SEED + 1, 4 * share, False),
            (server.admin, False, OPERATOR, SEED + 2, share, True),
            (server.admin, True, OPERATOR, SEED + 3, FRAMES - 9 * share, True),
        ]
        sent = reconnects = 0
        for url, binary, creds, seed, n, admin in runs:
            done, again = await _fuzz(url, binary, creds, seed, n, admin)
            sent, reconnects = sent + done, reconnects + again
        await _abuse_is_closed(server.trading, binary=False)
        await _abuse_is_closed(server.trading, binary=True)
        print(f"{sent} hostile frames, {reconnects} connections, {time.monotonic() - started:.1f} s")
        assert server.proc.poll() is None, "the server died"
        assert await _state(server) == before
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        loud = [line for line in log.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
        assert not loud, "\n".join(loud[:20])
    assert sent == FRAMES
