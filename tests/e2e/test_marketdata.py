"""Market data over the wire: rebuilt books equal the exchange's, slow consumers are cut off
without hurting anyone else, and the MessagePack subprotocol carries the same messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from carbonx.engine.units import parse_fen
from carbonx.gateway.client import MSGPACK, Book, Client, RpcError, default_checksum
from carbonx.gateway.testkit import ACCOUNTS, Server, write_config
from tests.e2e.conftest import broker, running_server

SYMBOL = "SHCER"  # reference 20.00, band 18.00 .. 22.00


async def _random_flow(server: Server, seed: int, n: int) -> None:
    """Seeded random limit orders, amends and cancels from both brokers; they cross often."""
    rng = random.Random(seed)
    async with broker(server, "a") as a, broker(server, "b") as b:
        live: list[tuple[Client, str, str]] = []
        for _ in range(n):
            c, who = (a, "a") if rng.random() < 0.5 else (b, "b")
            account = ACCOUNTS[who][rng.randrange(2)]
            action = rng.random()
            try:
                if action < 0.7 or not live:
                    side = rng.choice(("buy", "sell"))
                    if account == "B-002" and side == "buy":  # an individual already at its SHCER limit
                        account = "B-001"
                    centre = 1990 if side == "buy" else 2010
                    price = f"{(centre + rng.randint(-15, 15)) / 100:.2f}"
                    report = await c.place(account, SYMBOL, side, rng.randint(1, 50), price, time_in_force="gtc")
                    _check_report(report)
                    if report["leaves_qty"]:
                        live.append((c, account, report["order_id"]))
                elif action < 0.85:
                    c, account, oid = live.pop(rng.randrange(len(live)))
                    _check_report(await c.cancel(account, oid))
                else:
                    c, account, oid = live[rng.randrange(len(live))]
                    if rng.random() < 0.5:
                        _check_report(await c.amend(account, oid, quantity=rng.randint(1, 60)))
                    else:
                        _check_report(await c.amend(account, oid, price=f"{rng.randint(1975, 2025) / 100:.2f}"))
            except RpcError as err:
                assert err.reason in ("UNKNOWN_ORDER", "ORDER_NOT_AMENDABLE", "INVALID_QUANTITY"), err


def _check_report(r: dict[str, Any]) -> None:
    """FIX invariants of every execution report the flow receives."""
    if r["status"] in ("new", "partially_filled"):
        assert r["quantity"] == r["cum_qty"] + r["leaves_qty"] and r["leaves_qty"] > 0, r
    else:
        assert r["leaves_qty"] == 0, r
    assert (r["avg_price"] is None) == (r["cum_qty"] == 0) or (r["cum_qty"] == 0 and "avg_price" not in r), r


async def _engine_book(server: Server) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The book as the sum of every open order's ``leaves_qty`` per price (both members)."""
    levels: dict[str, defaultdict[int, int]] = {"buy": defaultdict(int), "sell": defaultdict(int)}
    for who in ("a", "b"):
        async with broker(server, who) as c:
            for account in ACCOUNTS[who]:
                for order in await c.list_orders(account, SYMBOL, open_only=True):
                    levels[order["side"]][parse_fen(order["price"])] += order["leaves_qty"]
    view = Book(symbol=SYMBOL, channel="")
    view.bid_levels, view.ask_levels = dict(levels["buy"]), dict(levels["sell"])
    return view.bids, view.asks


async def _fresh_snapshot(server: Server, channel: str) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    async with Client(server.trading) as c:
        await c.subscribe([channel])
        note = await c.wait_for(lambda n: n.channel == channel and n.params.get("type") == "snapshot", 5)
        p = note.params
        bids = [(str(x), int(q)) for x, q in p["bids"]]
        asks = [(str(x), int(q)) for x, q in p["asks"]]
        levels = Book(symbol=SYMBOL, channel=channel)
        levels.load(p)
        assert default_checksum(*levels.levels()) == p["checksum"], "snapshot checksum"
        return int(p["seq"]), bids, asks


async def _caught_up(c: Client, symbol: str, seq: int) -> Book:
    for _ in range(1500):  # 15 s: generous for a loaded machine; normally milliseconds
        book = c.books[symbol]
        if book.synced and book.seq >= seq:
            return book
        await asyncio.sleep(0.01)
    raise AssertionError(f"{symbol} book stuck at seq {c.books[symbol].seq}, want {seq}")


async def test_rebuilt_book_equals_the_exchange_book_after_random_flow(clean_books: Server) -> None:
    async with Client(clean_books.trading) as watcher, Client(clean_books.trading) as top5:
        await watcher.subscribe([f"book.{SYMBOL}"])
        await top5.subscribe([f"book.{SYMBOL}.5"])
        await watcher.wait_synced(SYMBOL)
        await _random_flow(clean_books, seed=7, n=150)

        seq, bids, asks = await _fresh_snapshot(clean_books, f"book.{SYMBOL}")
        book = await _caught_up(watcher, SYMBOL, seq)
        assert (book.bids, book.asks) == (bids, asks)
        assert (bids, asks) == await _engine_book(clean_books)
        assert bids and asks, "the flow should leave both sides populated"
        assert watcher.gaps == 0 and watcher.checksum_failures == 0 and watcher.resubscribes == 0

        seq5, bids5, asks5 = await _fresh_snapshot(clean_books, f"book.{SYMBOL}.5")
        book5 = await _caught_up(top5, SYMBOL, seq5)
        assert (book5.bids, book5.asks) == (bids5, asks5) == (bids[:5], asks[:5])
        assert top5.gaps == 0 and top5.checksum_failures == 0


async def test_checksum_mismatch_triggers_resubscribe_and_recovery(clean_books: Server) -> None:
    """A client whose copy goes wrong (simulated by a checksum function that lies once)
    drops the book, resubscribes, and ends up exact again."""
    calls = 0

    def flaky(bids: Any, asks: Any) -> int:
        nonlocal calls
        calls += 1
        value = default_checksum(bids, asks)
        return value ^ 1 if calls == 3 else value

    async with Client(clean_books.trading, checksum=flaky) as c:
        await c.subscribe([f"book.{SYMBOL}"])
        await c.wait_synced(SYMBOL)
        await _random_flow(clean_books, seed=11, n=40)
        seq, bids, asks = await _fresh_snapshot(clean_books, f"book.{SYMBOL}")
        book = await _caught_up(c, SYMBOL, seq)
        assert c.checksum_failures == 1 and c.resubscribes == 1
        assert (book.bids, book.asks) == (bids, asks)


async def test_trades_ticker_and_status_channels(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b, Client(clean_books.trading) as md:
        await md.subscribe([f"trades.{SYMBOL}", f"ticker.{SYMBOL}", f"status.{SYMBOL}"])
        status = await md.wait_for(lambda n: n.channel == f"status.{SYMBOL}", 5)
        assert status.params["phase"] == "open"
        await b.place("B-001", SYMBOL, "sell", 7, "20.20")
        report = await a.place("A-001", SYMBOL, "buy", 7, "20.20")
        assert report["status"] == "filled"
        trade = await md.wait_for(lambda n: n.channel == f"trades.{SYMBOL}", 5)
        assert (trade.params["price"], trade.params["quantity"], trade.params["aggressor"]) == ("20.20", 7, "buy")
        ticker = await md.wait_for(lambda n: n.channel == f"ticker.{SYMBOL}" and n.params.get("last") == "20.20", 5)
        assert ticker.params["volume"] >= 7 and ticker.params["reference"] == "20.00"


async def test_bad_channels_are_rejected_clearly(shared_server: Server) -> None:
    async with Client(shared_server.trading) as c:
        for bad in ("book.NOPE", "nonsense", "book.SHEA.0", "book.SHEA.x"):
            try:
                await c.subscribe([bad])
            except RpcError as err:
                assert err.message and (err.code == -32602 or 1000 <= err.code <= 1999), err
            else:
                raise AssertionError(f"subscribing to {bad!r} succeeded")
        assert await c.subscribe(["trades.SHEA"])


async def test_messagepack_subprotocol(clean_books: Server) -> None:
    async with Client(clean_books.trading, MSGPACK) as mp, Client(clean_books.trading) as js:
        await mp.login("demo-a", "demo-a-secret")
        await js.login("demo-a", "demo-a-secret")
        await mp.subscribe([f"book.{SYMBOL}", "orders"])
        await js.subscribe([f"book.{SYMBOL}"])
        report = await mp.place("A-001", SYMBOL, "buy", 3, "19.10", client_order_id="mp-1")
        assert (report["status"], report["price"], report["client_order_id"]) == ("new", "19.10", "mp-1")
        assert report == await js.get_order("A-001", report["order_id"]) | {"exec_type": report["exec_type"]}
        await mp.wait_for(lambda n: n.method == "orders" and n.params.get("order_id") == report["order_id"], 5)
        seq, bids, _ = await _fresh_snapshot(clean_books, f"book.{SYMBOL}")
        assert (await _caught_up(mp, SYMBOL, seq)).bids == bids == (await _caught_up(js, SYMBOL, seq)).bids
        try:
            await mp.call("order.place", account="A-001", instrument=SYMBOL, side="buy", price=19.1, quantity=3)
        except RpcError as err:
            assert err.code == -32602, err
        else:
            raise AssertionError("a float price must be refused in MessagePack too")


async def test_slow_consumer_is_cut_off_while_a_fast_one_keeps_receiving(tmp_path: Path) -> None:
    """A subscriber that stops reading is cut off with 1008 "slow consumer" once the server's
    write buffer for it passes the limit; a subscriber that reads sees every update, in order.

    The kernel's socket send buffer (autotuned up to ~4 MB on loopback) absorbs a lot before
    the gateway's own buffer grows, so the slow client first asks for a few hundred snapshots
    of a deep book (~17 KB each) without reading them; the order flow then pushes it over."""
    config = write_config(
        tmp_path / "slow.toml",
        limits={
            "write_buffer_bytes": 64 * 1024,
            "orders_per_s": 5000.0,
            "order_burst": 5000,
            "requests_per_s": 5000.0,
            "request_burst": 5000,
        },
        server={"heartbeat_s": 0.3},
    )
    with running_server(tmp_path / "data", config=config) as server:
        channels = ["book.SHEA", "trades.SHEA", "ticker.SHEA"]
        async with Client(server.trading) as fast:
            await fast.subscribe(channels)
            heartbeat = await fast.wait_for(lambda n: n.method == "heartbeat", 5)
            assert isinstance(heartbeat.params.get("seq"), int)
            await fast.wait_synced("SHEA")
            await _deep_book(server)
            slow = await _slow_subscriber(server, channels)
            cut_at = await _flood_until_cut(server)
            print(f"slow consumer cut after {cut_at:.2f}s of order flow")
            await _drain(slow)
            assert slow.close_code == 1008 and "slow consumer" in (slow.close_reason or ""), (slow.close_code, slow.close_reason)
            # the fast subscriber saw every update, in order, and still does after the cut
            before = fast.books["SHEA"].seq
            async with broker(server, "a") as a:
                await a.place("A-001", "SHEA", "buy", 1, "55.55")
            seq, bids, asks = await _fresh_snapshot(server, "book.SHEA")
            book = await _caught_up(fast, "SHEA", seq)
            assert book.seq > before and (book.bids, book.asks) == (bids, asks)
            assert fast.gaps == 0 and fast.checksum_failures == 0 and not fast.closed
            assert cut_at < 20


async def _deep_book(server: Server) -> None:
    """~600 price levels a side on SHEA (54.00 .. 59.99 bids, 60.01 .. 66.00 asks)."""
    async with broker(server, "a") as a, broker(server, "b") as b:
        for lo in range(5400, 6000, 100):
            await asyncio.gather(*(a.place("A-001", "SHEA", "buy", 1, f"{p / 100:.2f}", time_in_force="gtc") for p in range(lo, lo + 100)))
            await asyncio.gather(
                *(b.place("B-001", "SHEA", "sell", 1, f"{(p + 601) / 100:.2f}", time_in_force="gtc") for p in range(lo, lo + 100))
            )


async def _slow_subscriber(server: Server, channels: list[str]) -> Any:
    """A raw connection with a tiny receive buffer that subscribes, asks for 300 book
    snapshots, and never reads anything."""
    host, port = server.trading.split("//")[1].split("/")[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    slow = await connect(server.trading, sock=sock, max_queue=1, proxy=None, compression=None, ping_interval=None)
    await slow.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "subscribe", "params": {"channels": channels}}))
    for i in range(300):
        await slow.send(json.dumps({"jsonrpc": "2.0", "id": 2 * i + 1, "method": "unsubscribe", "params": {"channels": ["book.SHEA"]}}))
        await slow.send(json.dumps({"jsonrpc": "2.0", "id": 2 * i + 2, "method": "subscribe", "params": {"channels": ["book.SHEA"]}}))
    return slow


def _slow_disconnects(server: Server) -> float:
    """Sum of the metrics endpoint's slow-consumer disconnect samples."""
    with urllib.request.urlopen(server.metrics + "/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if "slow" in line and not line.startswith("#") and "_created" not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _flood_until_cut(server: Server, limit_s: float = 20) -> float:
    """Many small orders at spread-out prices from two sessions until the gateway reports
    a slow-consumer disconnect; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with broker(server, "a") as a, broker(server, "b") as b:
        i = 0
        while loop.time() - start < limit_s:
            batch = []
            for c, account, side, base in ((a, "A-001", "buy", 5400), (b, "B-001", "sell", 6001)):
                for _ in range(50):
                    i += 1
                    price = f"{(base + (i * 7) % 599) / 100:.2f}"
                    batch.append(c.place(account, "SHEA", side, 1 + i % 5, price, time_in_force="gtc"))
            await asyncio.gather(*batch)
            if i % 2000 < 100:
                await a.cancel_all(account="A-001")
                await b.cancel_all(account="B-001")
            if await asyncio.to_thread(_slow_disconnects, server) >= 1:
                return loop.time() - start
    raise AssertionError(f"no slow-consumer disconnect within {limit_s}s")


async def _drain(slow: Any) -> None:
    """Read what the server queued before its close frame, then the close frame."""

    async def read_all() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in slow:
                pass

    await asyncio.wait_for(read_all(), 15)


async def test_sequence_gap_triggers_resubscribe_and_recovery(clean_books: Server) -> None:
    """A lost update (simulated: an update with a skipped ``seq`` injected into the client's
    dispatcher) makes the client drop its copy, resubscribe and rebuild from a snapshot."""
    async with Client(clean_books.trading) as c, broker(clean_books, "a") as a:
        await c.subscribe([f"book.{SYMBOL}"])
        book = await c.wait_synced(SYMBOL)
        c._dispatch(
            {
                "jsonrpc": "2.0",
                "method": "book",
                "params": {
                    "channel": f"book.{SYMBOL}",
                    "type": "update",
                    "seq": book.seq + 5,
                    "bids": [["19.99", 7]],
                    "asks": [],
                    "checksum": 0,
                    "ts": 0,
                },
            }
        )
        assert c.gaps == 1 and c.resubscribes == 1 and not c.books[SYMBOL].synced
        await a.place("A-001", SYMBOL, "buy", 2, "19.55")
        seq, bids, asks = await _fresh_snapshot(clean_books, f"book.{SYMBOL}")
        rebuilt = await _caught_up(c, SYMBOL, seq)
        assert (rebuilt.bids, rebuilt.asks) == (bids, asks)
        assert ("19.55", 2) in rebuilt.bids and ("19.99", 7) not in rebuilt.bids
