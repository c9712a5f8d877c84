"""The metrics port's HTTP (gateway/http.py) on a real socket: routes, static pages, and
requests a scanner or an attacker sends (garbage, oversized headers, slow-loris, wrong methods)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from msgspec.structs import replace
from prometheus_client import CollectorRegistry, Counter

from carbonx.engine.schema import DayClose, DayOpen
from carbonx.engine.testkit import funded_engine, instrument, local_ts, make_config, place, trades
from carbonx.gateway.http import WEB_DIR, HttpServer, day_trades, load_static, page_config
from carbonx.gateway.settings import SettingsError, parse_settings
from tests.gateway.support import DEMO_TEXT, ManualJournal, demo_settings, start

TIMEOUT = 0.5  # the server's whole-request budget in these tests


class State:
    ready: bool | str = True
    registry: CollectorRegistry | None = None
    config: dict[str, object] | None = None


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, int, State]]:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>market</title>")
    (web / "disclosure.html").write_text("<!doctype html><title>disclosure</title>")
    (web / "market.js").write_text("'use strict';")
    (web / "market.css").write_text("body{}")
    (web / "notes.txt").write_text("not served")
    (web / ".hidden.html").write_text("not served")
    state = State()
    registry = CollectorRegistry()
    Counter("carbonx_test_things", "things", registry=registry).inc(3)
    state.registry = registry
    server = HttpServer(lambda: state.registry, lambda: state.ready, lambda: state.config, timeout=TIMEOUT, static=load_static(web))
    port = await server.start("127.0.0.1", 0)
    yield server, port, state
    await server.close()


async def exchange(port: int, raw: bytes, wait: float = 5.0) -> bytes:
    """Send ``raw`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def get(port: int, target: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return parse(await exchange(port, "\r\n".join(lines).encode()))


async def test_health_readiness_and_metrics(served: tuple[HttpServer, int, State]) -> None:
    _, port, state = served
    assert (await get(port, "/healthz"))[::2] == (200, b"ok\n")
    assert (await get(port, "/readyz"))[::2] == (200, b"ready\n")
    state.ready = "not ready: data directory below min_free_bytes"
    assert (await get(port, "/readyz"))[::2] == (503, b"not ready: data directory below min_free_bytes\n")
    state.ready = False
    assert (await get(port, "/readyz"))[::2] == (503, b"recovering\n")
    status, headers, body = await get(port, "/metrics?name[]=x")  # a query string is ignored
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"carbonx_test_things_total 3.0" in body and int(headers["content-length"]) == len(body)
    state.registry = None
    assert (await get(port, "/metrics"))[0] == 503


async def test_static_pages_types_and_revalidation(served: tuple[HttpServer, int, State]) -> None:
    _, port, _ = served
    status, headers, body = await get(port, "/")
    assert (status, body) == (200, b"<!doctype html><title>market</title>")
    assert headers["content-type"] == "text/html; charset=utf-8" and headers["cache-control"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff" and "script-src 'self'" in headers["content-security-policy"]
    assert (await get(port, "/index.html"))[1]["etag"] == headers["etag"]
    assert (await get(port, "/disclosure.html"))[2] == b"<!doctype html><title>disclosure</title>", "any page in the folder"
    assert (await get(port, "/market.js"))[1]["content-type"] == "text/javascript; charset=utf-8"
    assert (await get(port, "/market.css"))[1]["content-type"] == "text/css; charset=utf-8"
    status, again, body = await get(port, "/", f"If-None-Match: {headers['etag']}")
    assert (status, body, again["etag"]) == (304, b"", headers["etag"])
    assert (await get(port, "/", 'If-None-Match: "other"'))[0] == 200
    for path in ("/notes.txt", "/.hidden.html", "/nope.html", "/web/index.html", "/%2e%2e/http.py", "/index.html/"):
        assert (await get(port, path))[0] == 404, path


async def test_bad_targets_are_400(served: tuple[HttpServer, int, State]) -> None:
    _, port, _ = served
    for target in ("/../gateway/http.py", "/./index.html", "//index.html", "index.html", "*", "/a\\b", "http://x/index.html"):
        status, _, body = await get(port, target)
        assert status == 400 and b"bad request target" in body, target


async def test_config_json(served: tuple[HttpServer, int, State]) -> None:
    _, port, state = served
    assert (await get(port, "/config.json"))[0] == 503, "recovering"
    state.config = page_config("ws://127.0.0.1:8700/v1", "", ["SHEA", "CCER"])
    status, headers, body = await get(port, "/config.json")
    assert status == 200 and headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
    assert json.loads(body) == {
        "trading_url": None,
        "trading_scheme": "ws",
        "trading_port": 8700,
        "trading_path": "/v1",
        "instruments": ["SHEA", "CCER"],
    }
    assert page_config("wss://[::1]:9000/v1", "wss://market.example.cn/v1", [])["trading_url"] == "wss://market.example.cn/v1"
    assert page_config("wss://[::1]:9000/v1", "", [])["trading_port"] == 9000


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE"])
async def test_methods_other_than_get_are_405(served: tuple[HttpServer, int, State], method: str) -> None:
    _, port, _ = served
    raw = f"{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    status, headers, body = parse(await exchange(port, raw))
    assert (status, headers["allow"]) == (405, "GET") and b"GET only" in body


async def test_a_request_body_is_refused_without_an_answer(served: tuple[HttpServer, int, State]) -> None:
    _, port, _ = served
    assert await exchange(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello") == b""


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello
        b"hello there\r\n\r\n",
        b"GET /metrics\r\n\r\n",  # HTTP/0.9
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"",
    ],
)
async def test_garbage_is_closed_without_an_answer(served: tuple[HttpServer, int, State], raw: bytes) -> None:
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    if not raw:
        writer.write_eof()
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert time.monotonic() - t0 < TIMEOUT + 2, "closed at once or within the request budget"
    assert (await get(port, "/healthz"))[0] == 200, "the server lives on"


async def test_oversized_request_line_and_headers(served: tuple[HttpServer, int, State]) -> None:
    _, port, _ = served
    status, _, _ = parse(await exchange(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"))
    assert status == 414
    status, _, _ = parse(await exchange(port, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"))
    assert status == 431
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    status, _, _ = parse(await exchange(port, b"GET / HTTP/1.1\r\n" + many + b"\r\n"))
    assert status == 431


async def test_slow_loris_is_cut_off_within_the_budget(served: tuple[HttpServer, int, State]) -> None:
    """A client that sends its request a byte at a time, and one that sends half a request and
    waits, lose their connection once the whole-request budget (``timeout``) is spent."""
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: the request never ends
    got = await asyncio.wait_for(reader.read(), TIMEOUT + 5)
    assert got == b"" and TIMEOUT * 0.8 <= time.monotonic() - t0 < TIMEOUT + 2
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    closed = False
    for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"z" * 200:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof() or time.monotonic() - t0 > TIMEOUT + 2:
            break
        await asyncio.sleep(0.02)
    closed = closed or await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert closed and time.monotonic() - t0 < TIMEOUT + 2, "trickling bytes does not extend the budget"


async def test_websocket_upgrade_is_not_accepted_on_the_metrics_port(served: tuple[HttpServer, int, State]) -> None:
    _, port, _ = served
    raw = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert parse(await exchange(port, raw))[0] == 200, "answered as plain HTTP, never 101"


def test_the_shipped_pages_are_served() -> None:
    pages = load_static(WEB_DIR)
    assert pages["/"] is pages["/index.html"]
    assert {"/index.html", "/market.js", "/market.css"} <= set(pages)


def test_the_page_writes_data_as_text_only() -> None:
    """Everything from the wire reaches the document through textContent: no API that parses
    HTML from a string (the Content-Security-Policy forbids inline scripts besides)."""
    source = (WEB_DIR / "market.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style"):
        assert sink not in source, sink
    html = (WEB_DIR / "index.html").read_text()
    assert "<script>" not in html and " style=" not in html and "http://" not in html and "https://" not in html, "no inline code, no CDN"


async def test_day_trades_are_durable_listing_trades_of_the_instrument(tmp_path: Path) -> None:
    """``/trades.json``: only what is durable, only listing trades (no block trades), only the
    instrument asked for; ``complete`` says whether the engine's window still holds the day."""
    settings = demo_settings()
    settings = replace(settings, market=replace(settings.market, retention=replace(settings.market.retention, trades=5)))
    journal = ManualJournal()
    h = await start(tmp_path, settings, journal=journal)
    a, b = await h.broker("a"), await h.broker("b")
    server = HttpServer(lambda: None, lambda: True, trades_fn=lambda sym: day_trades(h.gw.engine, sym, h.gw.journal.durable_seq))

    def trades(sym: str = "SHEA") -> dict[str, object]:
        reply = server.answer("GET", f"/trades.json?instrument={sym}")
        assert reply.status == 200 and reply.content_type == "application/json", reply
        return json.loads(reply.body)  # type: ignore[no-any-return]

    assert trades() == {
        "instrument": "SHEA",
        "trading_date": h.gw.engine.trading_date,
        "durable_seq": journal.durable_seq,
        "complete": True,
        "trades": [],
    }
    await b.ok("order.place", account="B-001", instrument="SHEA", side="sell", price="60.10", quantity=10)
    first = await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price="60.10", quantity=3)
    await b.ok("order.place", account="B-001", instrument="CCER", side="sell", price="80.00", quantity=5)
    await a.ok("order.place", account="A-001", instrument="CCER", side="buy", price="80.00", quantity=5)
    prop = await a.ok(
        "block.propose",
        account="A-001",
        instrument="SHEA",
        side="sell",
        price="60.00",
        quantity=h.gw.engine.specs["SHEA"].block_min_qty,
        counterparty_account="B-001",
        vintage=2025,
    )
    await b.ok("block.accept", account="B-001", block_id=prop["block_id"])
    day = trades()
    assert [row[2:] for row in day["trades"]] == [["60.10", 3, "buy"]]  # type: ignore[index]
    assert day["trades"][0][1] == first["ts"] and day["complete"] is True  # type: ignore[index]
    assert [row[2:] for row in trades("CCER")["trades"]] == [["80.00", 5, "buy"]]  # type: ignore[index]

    journal.hold = True  # applied but not durable: not shown (a crash could take it back)
    fut = asyncio.ensure_future(a.call("order.place", account="A-001", instrument="SHEA", side="buy", price="60.10", quantity=2))
    for _ in range(200):
        if len(h.gw.engine.trades) == 4:
            break
        await asyncio.sleep(0.005)
    assert len(h.gw.engine.trades) == 4 and len(trades()["trades"]) == 1  # type: ignore[arg-type]
    journal.hold = False
    journal.release()
    await fut
    assert [row[2:] for row in trades()["trades"]] == [["60.10", 3, "buy"], ["60.10", 2, "buy"]]  # type: ignore[index]
    assert trades()["complete"] is True, "nothing left the window yet"
    await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price="60.10", quantity=1)  # the window is full
    day = trades()
    assert [row[3] for row in day["trades"]] == [3, 2, 1] and day["complete"] is False, "full: older trades may have left it"  # type: ignore[index]
    await a.ok("order.place", account="A-001", instrument="SHEA", side="buy", price="60.10", quantity=1)  # the 1st trade leaves
    day = trades()
    assert [row[3] for row in day["trades"]] == [2, 1, 1] and day["complete"] is False  # type: ignore[index]

    assert server.answer("GET", "/trades.json?instrument=NOPE").status == 404
    for query in ("", "?", "?instrument=SHEA&instrument=CCER", "?symbol=SHEA", "?instrument=SHEA&x=1", "?a&b&c&d&e"):
        assert server.answer("GET", f"/trades.json{query}").status == 400, query
    recovering = HttpServer(lambda: None, lambda: False)
    assert recovering.answer("GET", "/trades.json?instrument=SHEA").status == 503
    await h.gw.shutdown()


def test_day_trades_start_at_the_trading_days_local_midnight() -> None:
    """Yesterday's trades (exchange-local date, UTC+8) are not today's, even when the engine
    still holds them; the first trade after local midnight is."""
    eng = funded_engine(make_config(instrument("SHEA"), instrument("CCER")))
    place(eng, "B1", "sell", 6000, 100, ts=local_ts("2025-11-25", "23:59:59"))
    assert trades(place(eng, "A1", "buy", 6000, 1, ts=local_ts("2025-11-25", "23:59:59") + 1))
    eng.apply(DayClose(ts=local_ts("2025-11-25", "23:59:59") + 2))
    eng.apply(DayOpen(ts=local_ts("2025-11-26", "00:00:00")))
    assert eng.trading_date == "2025-11-26" and len(eng.trades) == 1
    assert day_trades(eng, "SHEA", eng.seq) == {
        "instrument": "SHEA", "trading_date": "2025-11-26", "durable_seq": eng.seq, "complete": True, "trades": []
    }  # fmt: skip
    place(eng, "B1", "sell", 6010, 5, ts=local_ts("2025-11-26", "00:00:00"))
    t = trades(place(eng, "A1", "buy", 6010, 5, ts=local_ts("2025-11-26", "00:00:00") + 1))[0]
    assert day_trades(eng, "SHEA", eng.seq)["trades"] == [[str(t.trade_id), t.ts, "60.10", 5, "buy"]]
    assert day_trades(eng, "CCER", eng.seq)["trades"] == []
    with pytest.raises(KeyError):
        day_trades(eng, "NOPE", eng.seq)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("wss://market.example.cn/v1", True),
        ("ws://10.0.0.5:8700/v1", True),
        ("http://x/v1", False),
        ("wss://a b/v1", False),
        ('wss://x/"', False),
    ],
)
def test_public_url_is_a_websocket_url(value: str, ok: bool) -> None:
    text = DEMO_TEXT.replace("[server]\n", f"[server]\npublic_url = {json.dumps(value)}\n", 1)
    if ok:
        assert parse_settings(text).server.public_url == value
    else:
        with pytest.raises(SettingsError, match=r"server\.public_url"):
            parse_settings(text)
