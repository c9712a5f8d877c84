"""The live market page (gateway/web/) in a real headless Chromium against a real exchange.

The page is loaded from the metrics port of a ``carbonx serve`` process, connects to its
trading listener over the public protocol, and must show what the test does with the
shipped client: the day's earlier trades (from ``/trades.json``), a new trade on the tape
and in the ticker, the remaining levels on the ladder, a halt, an auction and its result,
and the same again after the exchange restarted under it (reconnect and resync).
Screenshots are kept in ``test-artifacts/`` at the repository root (gitignored; CI keeps
the folder of its clone).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from carbonx.gateway.testkit import ROOT, Server, start_server
from tests.e2e import cdp
from tests.e2e.conftest import broker, operator, running_server

pytestmark = pytest.mark.skipif(not cdp.available(), reason=f"no Chromium at {cdp.CHROMIUM} (.ci/run installs Debian's chromium)")

ARTIFACTS = ROOT / "test-artifacts"


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


def tape_row(trade_id: str) -> str:
    """JS: [price, qty] of the tape row of ``trade_id``, or null."""
    return (
        f"(() => {{ const r = document.querySelector('#tape tr[data-trade-id=\"{trade_id}\"]');"
        " return r && [r.querySelector('.price').textContent, r.querySelector('.qty').textContent]; })()"
    )


def ladder(side: str) -> str:
    """JS: [[price, qty], ...] of one side of the ladder, best first."""
    order = "" if side == "bid" else ".reverse()"
    return f"[...document.querySelectorAll('#ladder tr.{side}')].map(r => [r.dataset.price, r.querySelector('.qty.{side}').textContent]){order}"


async def test_the_page_shows_live_trades_book_ticker_halts_and_auctions(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        page_url = server.metrics + "/?instrument=SHEA"
        config = json.loads(urllib.request.urlopen(server.metrics + "/config.json", timeout=5).read())
        assert config["trading_port"] == int(_port(server.trading)) and "SHEA" in config["instruments"]
        async with broker(server, "a") as a, broker(server, "b") as b, operator(server) as ops:
            # a trade before the page is opened: the page must get it from the day's history
            await b.place("B-001", "SHEA", "sell", 7, "60.10")
            early = await a.place("A-001", "SHEA", "buy", 7, "60.10")
            assert early["status"] == "filled"
            early_id = (await a.trades("A-001", "SHEA"))[-1]["trade_id"]

            async with cdp.chromium(tmp_path / "profile", tmp_path / "chromium.log") as page:
                await page.goto(page_url)
                await page.wait_for("document.body.dataset.connection === 'open'")
                assert await page.wait_for(tape_row(early_id)) == ["60.10", "7"]
                assert await page.evaluate("document.getElementById('instrument').value") == "SHEA"

                # a live trade: B rests 50 at 61.00, A lifts 20; A also bids 5 at 59.00
                await b.place("B-001", "SHEA", "sell", 50, "61.00")
                await a.place("A-001", "SHEA", "buy", 5, "59.00")
                taker = await a.place("A-001", "SHEA", "buy", 20, "61.00")
                assert taker["status"] == "filled"
                trade_id = (await a.trades("A-001", "SHEA"))[-1]["trade_id"]
                assert await page.wait_for(tape_row(trade_id)) == ["61.00", "20"]
                await page.wait_for("document.getElementById('ticker-last').textContent === '61.00'")
                assert await page.evaluate("document.getElementById('ticker-volume').textContent") == "27"
                assert await page.wait_for(f'JSON.stringify({ladder("ask")}) === \'[["61.00","30"]]\' && {ladder("ask")}')
                assert await page.wait_for(f'JSON.stringify({ladder("bid")}) === \'[["59.00","5"]]\' && {ladder("bid")}')
                assert "book.SHEA.10" not in (await page.evaluate("document.getElementById('book-state').textContent"))
                await page.screenshot(ARTIFACTS / "market-page.png")

                # a halt shows, and goes away on resume
                await ops.call("admin.instrument.halt", instrument="SHEA")
                await page.wait_for("!document.getElementById('halted').hidden")
                assert await page.evaluate("document.getElementById('phase').dataset.phase") == "halted"
                await ops.call("admin.instrument.resume", instrument="SHEA")
                await page.wait_for("document.getElementById('halted').hidden")

                # an auction: created, opened, bid on, cleared: the page shows the published result
                created = await ops.call("admin.auction.create", instrument="SHEA", vintage=2025, quantity=100, reserve_price="50.00")
                aid = created["auction_id"]
                row = f"document.querySelector('#auctions tr[data-auction-id=\"{aid}\"]')"
                await page.wait_for(f"{row} && {row}.dataset.state === 'scheduled'")
                await ops.call("admin.auction.open", auction_id=aid)
                await a.auction_bid(aid, "A-001", "55.00", 100)
                await ops.call("admin.auction.close", auction_id=aid)
                assert await page.wait_for(
                    f"{row} && {row}.dataset.state === 'cleared' && {row}.querySelector('.clearing').textContent"
                ) == ("55.00")

                await page.screenshot(ARTIFACTS / "market-page-auction.png")

                # the selector: another instrument's ticker, book and tape (none of SHEA's rows)
                await page.evaluate(
                    "(s => { s.value = 'CCER'; s.dispatchEvent(new Event('change')); })(document.getElementById('instrument'))"
                )
                await page.wait_for("document.getElementById('ticker-reference').textContent === '80.00'")
                assert await page.evaluate(f"{tape_row(trade_id)} === null && location.search") == "?instrument=CCER"
                await b.place("B-001", "CCER", "sell", 3, "80.50")
                await page.wait_for(f'JSON.stringify({ladder("ask")}) === \'[["80.50","3"]]\'')
                assert page.errors == [], page.errors
        print(f"screenshots: {ARTIFACTS}")


async def test_the_page_reconnects_and_resyncs_after_a_restart(tmp_path: Path) -> None:
    """The exchange stops under an open page and comes back (same metrics port, another
    trading port): the page reconnects by itself, takes a fresh book snapshot and fills in
    the trade it missed."""
    data = tmp_path / "data"
    server = start_server(data)
    ports = (_port(server.trading), _port(server.admin), _port(server.metrics))
    try:
        async with cdp.chromium(tmp_path / "profile", tmp_path / "chromium.log") as page:
            await page.goto(server.metrics + "/")
            await page.wait_for("document.body.dataset.connection === 'open'")
            async with broker(server, "b") as b:
                await b.place("B-001", "SHEA", "sell", 10, "60.50")
            await page.wait_for(f'JSON.stringify({ladder("ask")}) === \'[["60.50","10"]]\'')
            # a book update that skips a seq, then one whose checksum does not match: each time the
            # page drops what it has, resubscribes and shows the exchange's snapshot again
            seq = await page.evaluate("carbonxMarket.bookSeq()")
            for bad_seq, checksum in ((seq + 5, 0), (seq + 1, 12345)):
                update = {
                    "channel": "book.SHEA.10",
                    "type": "update",
                    "seq": bad_seq,
                    "bids": [["1.00", 1]],
                    "asks": [],
                    "checksum": checksum,
                }
                state = await page.evaluate(
                    f"carbonxMarket.handle({json.dumps({'method': 'book', 'params': update})}), document.getElementById('book-state').textContent"
                )
                assert state.startswith("resyncing"), state  # read in the same task as the update: no race with the snapshot
                await page.wait_for("document.getElementById('book-state').textContent.startsWith('seq')")
                assert await page.evaluate(ladder("bid")) == [] and await page.evaluate(ladder("ask")) == [["60.50", "10"]]
            server.terminate()
            await page.wait_for("document.body.dataset.connection === 'closed'")
            server = _restart(data, ports)
            async with broker(server, "a") as a:  # a trade while the page may still be away
                await a.place("A-001", "SHEA", "buy", 4, "60.50")
                missed = (await a.trades("A-001", "SHEA"))[-1]["trade_id"]
            await page.wait_for("document.body.dataset.connection === 'open'", timeout=30)
            assert await page.wait_for(tape_row(missed), timeout=30) == ["60.50", "4"]
            await page.wait_for(f'JSON.stringify({ladder("ask")}) === \'[["60.50","6"]]\'')
            await page.wait_for("document.getElementById('ticker-last').textContent === '60.50'")
            await page.screenshot(ARTIFACTS / "market-page-reconnected.png")
            assert [e for e in page.errors if "WebSocket" not in e and "Failed to load resource" not in e] == [], page.errors
    finally:
        if server.proc.poll() is None:
            server.terminate()


def _restart(data: Path, ports: tuple[str, str, str]) -> Server:
    """The same metrics port (the page's origin), new trading and admin ports: the page must
    re-read /config.json to find the trading listener again."""
    return start_server(data, extra=("--metrics-port", ports[2]))
