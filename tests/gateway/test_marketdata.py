"""Market data over loopback: book seq/checksum, coalescing, depth channels, slow consumers."""

from __future__ import annotations

import asyncio
import random
import socket
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from carbonx.engine.units import format_fen, parse_fen
from carbonx.gateway import protocol
from carbonx.gateway.http import HttpServer
from carbonx.gateway.metrics import make_registry
from carbonx.gateway.outbound import Outbound
from carbonx.gateway.sessions import Session
from carbonx.gateway.settings import Limits
from tests.gateway.support import Client, Harness, demo_settings, start


@pytest.fixture
async def h(tmp_path: Path):  # type: ignore[no-untyped-def]
    harness = await start(tmp_path)
    yield harness
    await harness.gw.shutdown()


def crc(bids: list[list[Any]], asks: list[list[Any]]) -> int:
    """The checksum exactly as docs/protocol.md defines it (independent of the server code)."""
    side = lambda levels: ",".join(f"{p}:{q}" for p, q in levels[:10])  # noqa: E731
    return zlib.crc32(f"{side(bids)}|{side(asks)}".encode())


class BookMirror:
    """A client-side book rebuilt from snapshot + updates, checking seq and checksum."""

    def __init__(self) -> None:
        self.bids: dict[str, int] = {}
        self.asks: dict[str, int] = {}
        self.seq = -1
        self.messages = 0

    def levels(self, depth: int | None = None) -> tuple[list[list[Any]], list[list[Any]]]:
        bids = sorted(([p, q] for p, q in self.bids.items()), key=lambda lv: -parse_fen(lv[0]))
        asks = sorted(([p, q] for p, q in self.asks.items()), key=lambda lv: parse_fen(lv[0]))
        return bids[:depth], asks[:depth]

    def apply(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            self.bids = {p: q for p, q in msg["bids"]}
            self.asks = {p: q for p, q in msg["asks"]}
        else:
            assert msg["seq"] == self.seq + 1, f"gap: {self.seq} -> {msg['seq']}"
            for side, book in (("bids", self.bids), ("asks", self.asks)):
                for p, q in msg[side]:
                    if q:
                        book[p] = q
                    else:
                        assert p in book, f"removal of an unknown level {p}"
                        del book[p]
        self.seq = msg["seq"]
        self.messages += 1
        bids, asks = self.levels()
        assert msg["checksum"] == crc(bids, asks), "checksum mismatch"


async def drain_book(c: Client, mirror: BookMirror, until_seq: int | None = None, quiet: float = 0.3) -> None:
    while True:
        try:
            msg = await c.note("book", timeout=quiet)
        except TimeoutError:
            return
        mirror.apply(msg["params"])
        if until_seq is not None and mirror.seq >= until_seq:
            return


def engine_book(h: Harness, symbol: str = "SHEA") -> tuple[list[list[Any]], list[list[Any]]]:
    bids, asks = h.gw.engine.depth(symbol)
    return [[format_fen(p), q] for p, q in bids], [[format_fen(p), q] for p, q in asks]


async def test_snapshot_then_updates_rebuild_the_engine_book(h: Harness) -> None:
    a, b, watcher = await h.broker("a"), await h.broker("b"), await h.client()
    await watcher.ok("subscribe", channels=["book.SHEA"])
    first = BookMirror()
    rng = random.Random(7)
    live: list[tuple[Client, str, str]] = []
    late: Client | None = None
    late_mirror = BookMirror()
    for i in range(120):
        who, account = (a, "A-001") if rng.random() < 0.5 else (b, "B-001")
        side = rng.choice(["buy", "sell"])
        price = format_fen(6000 + rng.randint(-30, 30) * 5)
        r = await who.call("order.place", account=account, instrument="SHEA", side=side, price=price, quantity=rng.randint(1, 50))
        if "result" in r and r["result"]["leaves_qty"]:
            live.append((who, account, r["result"]["order_id"]))
        if live and rng.random() < 0.25:
            c, acct, oid = live.pop(rng.randrange(len(live)))
            await c.call("order.cancel", account=acct, order_id=oid)
        if i == 60:  # a second subscriber joins mid-stream
            late = await h.client()
            await late.ok("subscribe", channels=["book.SHEA"])
    await drain_book(watcher, first)
    assert late is not None
    await drain_book(late, late_mirror)
    assert first.levels() == engine_book(h)
    assert late_mirror.levels() == engine_book(h)
    assert late_mirror.seq == first.seq, "every subscriber sees the same seq for the same update"
    assert first.messages > 3, "updates were published (coalesced per tick)"


async def test_updates_are_coalesced_per_tick(tmp_path: Path) -> None:
    settings = demo_settings()
    from msgspec.structs import replace

    h = await start(tmp_path, replace(settings, server=replace(settings.server, coalesce_ms=300.0)))
    a, w = await h.broker("a"), await h.client()
    await w.ok("subscribe", channels=["book.SHEA"])
    snap = (await w.note("book"))["params"]
    for i in range(5):
        await a.ok("order.place", account="A-001", instrument="SHEA", side="sell", price=f"61.0{i}", quantity=1 + i)
    update = (await w.note("book"))["params"]
    assert update["type"] == "update" and update["seq"] == snap["seq"] + 1
    assert update["asks"] == [[f"61.0{i}", 1 + i] for i in range(5)], "five orders, one message, best first"
    with pytest.raises(TimeoutError):
        await w.note("book", timeout=0.5)
    await h.gw.shutdown()


async def test_depth_channel_tracks_top_levels_only(h: Harness) -> None:
    a, w = await h.broker("a"), await h.client()
    for price in ("59.00", "58.00", "57.00"):
        await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price=price, quantity=1)
    await w.ok("subscribe", channels=["book.SHEA.2"])
    snap = (await w.note("book"))["params"]
    assert snap["channel"] == "book.SHEA.2" and snap["bids"] == [["59.00", 1], ["58.00", 1]] and snap["asks"] == []
    assert snap["checksum"] == crc(snap["bids"], [])
    await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price="59.50", quantity=3)
    up = (await w.note("book"))["params"]
    assert up["seq"] == snap["seq"] + 1
    assert up["bids"] == [["59.50", 3], ["58.00", 0]], "the new best enters, the third level leaves the view"
    assert up["checksum"] == crc([["59.50", 3], ["59.00", 1]], [])
    await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price="55.00", quantity=1)
    with pytest.raises(TimeoutError):
        await w.note("book", timeout=0.3)


async def test_trades_ticker_and_status_channels(h: Harness) -> None:
    a, b, w = await h.broker("a"), await h.broker("b"), await h.client()
    await w.ok("subscribe", channels=["ticker.SHEA", "trades.SHEA", "status.SHEA"])
    first_ticker = (await w.note("ticker"))["params"]
    assert (first_ticker["reference"], first_ticker["upper"], first_ticker["lower"], first_ticker["phase"]) == (
        "60.00",
        "66.00",
        "54.00",
        "open",
    )
    assert (await w.note("status"))["params"]["phase"] == "open"
    await a.ok("order.place", account="A-001", instrument="SHEA", side="sell", price="60.20", quantity=10)
    await b.ok("order.place", account="B-001", instrument="SHEA", side="buy", price="60.20", quantity=4)
    trade = (await w.note("trades"))["params"]
    assert (trade["price"], trade["quantity"], trade["aggressor"]) == ("60.20", 4, "buy")
    ticker = (await w.note("ticker", where=lambda p: p["volume"] == 4))["params"]
    assert (ticker["last"], ticker["open"], ticker["high"], ticker["low"], ticker["vwap"]) == ("60.20",) * 5
    assert (ticker["ask"], ticker["ask_qty"], ticker["bid"]) == ("60.20", 6, None)


async def test_subscription_errors(tmp_path: Path) -> None:
    h = await start(tmp_path, demo_settings(max_subscriptions=2))
    c = await h.client()
    assert (await c.fail("subscribe", channels=["book.NOPE"])).reason == "UNKNOWN_INSTRUMENT"
    assert (await c.fail("subscribe", channels=["weather"])).reason == protocol.UNKNOWN_CHANNEL
    assert (await c.fail("subscribe", channels=["book.SHEA.0"])).reason == protocol.UNKNOWN_CHANNEL
    assert (await c.fail("subscribe", channels=["orders"])).reason == "NOT_AUTHENTICATED"
    assert (await c.ok("subscribe", channels=["trades.SHEA", "trades.CCER"]))["subscribed"] == ["trades.CCER", "trades.SHEA"]
    assert (await c.fail("subscribe", channels=["trades.SHCER"])).reason == protocol.TOO_MANY_SUBSCRIPTIONS
    assert (await c.ok("unsubscribe", channels=["trades.CCER"]))["subscribed"] == ["trades.SHEA"]
    assert (await c.ok("subscribe", channels=["trades.SHCER"]))["subscribed"] == ["trades.SHCER", "trades.SHEA"]
    await h.gw.shutdown()


class _FakeTransport:
    def __init__(self, size: int) -> None:
        self.size = size

    def get_write_buffer_size(self) -> int:
        return self.size

    def is_closing(self) -> bool:
        return False


class _FakeConnection:
    def __init__(self, size: int) -> None:
        self.transport = _FakeTransport(size)
        self.closed_with: tuple[int, str] | None = None

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


async def test_fanout_cuts_off_a_connection_past_its_buffer_limit() -> None:
    fan = Outbound(write_buffer_bytes=1000)
    slow = Session(Limits(), connection=_FakeConnection(5000))
    fan.send([slow], {"x": 1})
    await asyncio.sleep(0)
    assert slow.connection.closed_with == (1008, "slow consumer")
    assert fan.slow_disconnects == 1 and fan.messages == 0
    fan.send([slow], {"x": 2})
    assert fan.slow_disconnects == 1, "cut once; nothing more is written to it"


async def test_slow_consumer_is_cut_off_while_a_fast_one_keeps_up(tmp_path: Path) -> None:
    h = await start(
        tmp_path, demo_settings(write_buffer_bytes=32 * 1024, orders_per_s=1e6, order_burst=10**6, requests_per_s=1e6, request_burst=10**6)
    )
    a, fast = await h.broker("a"), await h.client()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(h.trading.rsplit(":", 1)[1].split("/")[0])))
    raw.setblocking(False)
    from websockets.asyncio.client import connect

    slow = Client(await connect(h.trading, sock=raw, max_queue=1), binary=False)
    await slow.ok("subscribe", channels=["book.SHEA"])
    await fast.ok("subscribe", channels=["book.SHEA"])
    for s in h.gw.registry.sessions:  # shrink the kernel send buffers so backlog shows up in the transport
        s.connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    mirror = BookMirror()
    mirror.apply((await fast.note("book"))["params"])
    sent = 0
    while h.gw.outbound.slow_disconnects == 0 and sent < 3000:
        price = format_fen(5500 + sent % 1000)
        await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price=price, quantity=1 + sent % 7)
        sent += 1
        if sent % 20 == 0:
            await drain_book(fast, mirror, quiet=0.02)
    assert h.gw.outbound.slow_disconnects == 1, f"slow consumer not detected after {sent} orders"
    print(f"slow consumer cut after {sent} orders")
    await drain_book(fast, mirror)
    assert mirror.levels() == engine_book(h), "the fast subscriber missed nothing"
    with pytest.raises(ConnectionClosed):
        while True:
            await slow.ws.recv()
    assert slow.ws.close_code in (1008, 1006)
    await h.gw.shutdown()


async def test_heartbeats_carry_the_durable_seq(tmp_path: Path) -> None:
    settings = demo_settings()
    from msgspec.structs import replace

    h = await start(tmp_path, replace(settings, server=replace(settings.server, heartbeat_s=0.1)))
    c = await h.client()
    beat = (await c.note("heartbeat", timeout=2))["params"]
    assert beat["seq"] == h.gw.journal.durable_seq and beat["ts"] > 0
    await h.gw.shutdown()


async def test_block_proposal_reaches_the_counterparty_orders_channel(h: Harness) -> None:
    a, b = await h.broker("a"), await h.broker("b")
    await b.ok("subscribe", channels=["orders"])
    qty = h.gw.engine.specs["SHEA"].block_min_qty
    prop = await a.ok(
        "block.propose",
        account="A-001",
        instrument="SHEA",
        side="sell",
        price="60.00",
        quantity=qty,
        counterparty_account="B-001",
        vintage=2025,
    )
    assert (prop["state"], prop["quantity"], prop["counterparty_account"]) == ("proposed", qty, "B-001")
    note = (await b.note("orders", where=lambda p: p["kind"] == "block_proposal"))["params"]
    assert note["block_id"] == prop["block_id"] and note["price"] == "60.00"
    assert (await b.ok("block.get", account="B-001", block_id=prop["block_id"]))["state"] == "proposed"
    assert (await a.fail("block.accept", account="A-001", block_id=prop["block_id"])).reason is not None, "the proposer cannot accept"
    trade = await b.ok("block.accept", account="B-001", block_id=prop["block_id"])
    assert (trade["quantity"], trade["side"], trade["block"], trade["block_id"]) == (qty, "buy", True, prop["block_id"])
    done = (await b.note("orders", where=lambda p: p["kind"] == "block_update"))["params"]
    assert done["state"] == "accepted"


async def test_metrics_health_and_readiness_endpoints(h: Harness) -> None:
    endpoint = HttpServer(lambda: make_registry(h.gw), lambda: h.gw.ready)
    port = await endpoint.start("127.0.0.1", 0)
    a = await h.broker("a")
    await a.ok("order.place", account="A-001", instrument="SHEA", side="sell", price="60.00", quantity=1)
    await a.fail("order.place", account="A-001", instrument="SHEA", side="sell", price="99.00", quantity=1)

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    status, body = await asyncio.to_thread(get, "/metrics")
    assert status == 200
    for needle in (
        'carbonx_orders_total{instrument="SHEA"} 1.0',
        'carbonx_rejects_total{instrument="SHEA",reason="PRICE_OUT_OF_BAND"} 1.0',
        'carbonx_command_latency_seconds_count{stage="durable"}',
        "carbonx_journal_batches_total",
        'carbonx_book_levels{instrument="SHEA",side="sell"} 1.0',
        'carbonx_sessions{listener="trading",state="authenticated"} 1.0',
        "carbonx_event_loop_lag_seconds",
        "carbonx_slow_consumer_disconnects_total 0.0",
    ):
        assert needle in body, needle
    assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
    assert (await asyncio.to_thread(get, "/readyz"))[0] == 200
    h.gw.ready = False
    assert (await asyncio.to_thread(get, "/readyz"))[0] == 503
    h.gw.ready = True
    assert (await asyncio.to_thread(get, "/nope"))[0] == 404
    await endpoint.close()
