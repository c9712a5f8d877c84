"""Loopback harness for gateway tests: an in-process Gateway on free ports and a tiny client."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import replace
from websockets.asyncio.client import ClientConnection, connect

from carbonx.engine.engine import Engine
from carbonx.gateway.app import Gateway
from carbonx.gateway.journal import Journal, LocalJournal
from carbonx.gateway.protocol import MSGPACK_SUBPROTOCOL
from carbonx.gateway.settings import Settings, parse_settings
from carbonx.gateway.snapshots import SnapshotStore

ROOT = Path(__file__).resolve().parents[2]
DEMO_TEXT = (ROOT / "deploy" / "demo.toml").read_text()


def demo_settings(**limits: Any) -> Settings:
    """The demo configuration with test-friendly server settings and ``limits`` overrides."""
    s = parse_settings(DEMO_TEXT)
    server = replace(s.server, heartbeat_s=0.0, keepalive_s=0.0, tick_s=0.2, snapshot_every=0)
    return replace(s, server=server, limits=replace(s.limits, **limits))


class ManualJournal(Journal):
    """A journal whose durability the test controls (``hold`` / ``release``)."""

    def __init__(self) -> None:
        self.durable_seq = 0
        self.appended: list[tuple[int, Any]] = []
        self.listeners: list[Callable[[int], None]] = []
        self.hold = False
        self.batches = self.records = self.last_batch_size = self.bytes_written = 0
        self.fsync_seconds_total = self.last_fsync_seconds = 0.0

    def append(self, seq: int, cmd: Any) -> None:
        self.appended.append((seq, cmd))
        if not self.hold:
            asyncio.get_running_loop().call_soon(self.release)

    def release(self) -> None:
        if self.appended and self.appended[-1][0] > self.durable_seq:
            self.durable_seq = self.appended[-1][0]
            for fn in self.listeners:
                fn(self.durable_seq)

    async def wait_durable(self, seq: int) -> None:
        while self.durable_seq < seq:
            await asyncio.sleep(0.001)

    def add_listener(self, fn: Callable[[int], None]) -> None:
        self.listeners.append(fn)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self.release()


class Harness:
    """A running Gateway (trading + admin listeners) for one test."""

    def __init__(self, gw: Gateway, trading: str, admin: str) -> None:
        self.gw, self.trading, self.admin = gw, trading, admin

    async def client(self, admin: bool = False, binary: bool = False, **kw: Any) -> Client:
        url = self.admin if admin else self.trading
        ws = await connect(url, subprotocols=[MSGPACK_SUBPROTOCOL] if binary else None, **kw)  # type: ignore[list-item]
        return Client(ws, binary)

    async def broker(self, which: str = "a", **kw: Any) -> Client:
        c = await self.client(**kw)
        await c.ok("session.login", key_id=f"demo-{which}", secret=f"demo-{which}-secret")
        return c

    async def operator(self) -> Client:
        c = await self.client(admin=True)
        await c.ok("session.login", key_id="ops", secret="ops-secret")
        return c


async def start(tmp_path: Path, settings: Settings | None = None, journal: Any = None) -> Harness:
    settings = settings or demo_settings()
    engine = Engine(settings.market)
    if journal is None:
        journal = LocalJournal(tmp_path, policy="none")
        await journal.start()
    gw = Gateway(settings, engine, journal, SnapshotStore(tmp_path))
    await gw.bootstrap()
    trading = await gw.listen("127.0.0.1", 0, admin=False)
    admin = await gw.listen("127.0.0.1", 0, admin=True)
    gw.start_background()
    gw.ready = True
    return Harness(gw, trading, admin)


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.error = error
        self.code = error["code"]
        self.reason = (error.get("data") or {}).get("reason")
        self.field = (error.get("data") or {}).get("field")


class Client:
    """Minimal JSON-RPC client: replies by id, notifications kept in order."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.ids = itertools.count(1)
        self.notes: list[dict[str, Any]] = []

    def encode(self, msg: Any) -> str | bytes:
        return msgspec.msgpack.encode(msg) if self.binary else json.dumps(msg)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        if self.binary:
            assert isinstance(frame, bytes)
            return msgspec.msgpack.decode(frame)  # type: ignore[no-any-return]
        assert isinstance(frame, str), "JSON must come in text frames"
        return json.loads(frame)  # type: ignore[no-any-return]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """The whole reply envelope (result or error)."""
        req_id = next(self.ids)
        await self.ws.send(self.encode({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}))
        return await self.reply(req_id)

    async def reply(self, req_id: Any) -> dict[str, Any]:
        while True:
            msg = await self.recv()
            if "id" in msg and msg["id"] == req_id:
                return msg
            self.notes.append(msg)

    async def ok(self, method: str, **params: Any) -> Any:
        msg = await self.call(method, **params)
        if "error" in msg:
            raise RpcFailed(msg["error"])
        return msg["result"]

    async def fail(self, method: str, **params: Any) -> RpcFailed:
        msg = await self.call(method, **params)
        assert "error" in msg, f"{method} should have failed: {msg}"
        return RpcFailed(msg["error"])

    async def note(
        self, method: str | None = None, timeout: float = 5.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The next notification (of ``method``), waiting for it if needed."""
        while True:
            for i, msg in enumerate(self.notes):
                if (method is None or msg.get("method") == method) and (where is None or where(msg["params"])):
                    return self.notes.pop(i)
            self.notes.append(await self.recv(timeout))

    async def close(self) -> None:
        await self.ws.close()
