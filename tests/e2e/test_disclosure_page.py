"""The daily market report page (gateway/web/disclosure.html) in a real headless Chromium.

Served by the metrics port of a ``carbonx serve`` process, it connects to the trading
listener, shows the latest report (the one ``disclosure.get`` returns), draws its charts,
switches to a new report pushed on the ``disclosure`` channel at the next day close, and
shows ``UNKNOWN_REPORT`` for a date without a report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from carbonx.gateway.testkit import ROOT
from tests.e2e import cdp
from tests.e2e.conftest import broker, operator, running_server

pytestmark = pytest.mark.skipif(not cdp.available(), reason=f"no Chromium at {cdp.CHROMIUM} (.ci/run installs Debian's chromium)")

ARTIFACTS = ROOT / "test-artifacts"
ROW = "[...document.querySelectorAll('#instruments tbody tr[data-instrument=\"SHEA\"] td')].map(td => td.textContent)"
# Some pixels of each canvas were drawn (not just the axes' colour): the charts are not blank.
INKED = (
    "['range-chart', 'volume-chart'].map(id => {"
    " const c = document.getElementById(id); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
    " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i + 1] > d[i] + 30 || d[i] > d[i + 1] + 30)) n++; return n; })"
)


async def test_the_page_shows_the_report_charts_and_the_next_close(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        async with broker(server, "a") as a, broker(server, "b") as b, operator(server) as ops:
            await b.place("B-001", "SHEA", "sell", 30, "61.00")
            await a.place("A-001", "SHEA", "buy", 30, "61.00")
            first = await ops.call("admin.day.close")
            report = await b.call("disclosure.get", date=first["trading_date"])

            async with cdp.chromium(tmp_path / "profile", tmp_path / "chromium.log") as page:
                await page.goto(server.metrics + "/disclosure.html")
                await page.wait_for("document.body.dataset.connection === 'open'")
                await page.wait_for(f"document.body.dataset.report === '{report['trading_date']}'")
                shea = next(r for r in report["instruments"] if r["instrument"] == "SHEA")
                cells = await page.evaluate(ROW)
                assert cells[:6] == ["SHEA", shea["open"], shea["high"], shea["low"], shea["close"], shea["previous_close"]]
                assert (cells[4], cells[7], cells[11]) == ("61.00", "30", "1")
                assert await page.evaluate("document.getElementById('threshold').textContent") == "500000"
                range_ink, volume_ink = await page.evaluate(INKED)
                assert range_ink > 50 and volume_ink > 50, (range_ink, volume_ink)
                await page.screenshot(ARTIFACTS / "disclosure-page.png")

                # the next close arrives on the disclosure channel and replaces the page's report
                await ops.call("admin.day.open")
                await b.place("B-001", "SHEA", "sell", 10, "61.50")
                await a.place("A-001", "SHEA", "buy", 10, "61.50")
                second = await ops.call("admin.day.close")
                if second["trading_date"] != first["trading_date"]:  # a date closes once; re-opened the same date: same key
                    await page.wait_for(f"document.body.dataset.report === '{second['trading_date']}'")
                await page.wait_for(f'JSON.stringify({ROW}.slice(4, 6)) === \'["61.50","61.00"]\'')

                # a date without a report says so
                await page.goto(server.metrics + "/disclosure.html?date=1999-01-01")
                await page.wait_for("document.body.dataset.report === 'none'")
                assert "UNKNOWN_REPORT" in await page.evaluate("document.getElementById('error').textContent")
