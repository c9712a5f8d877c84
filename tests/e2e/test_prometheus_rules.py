"""The alert rules in deploy/prometheus/alerts.yml only name metrics the exchange exports.

A rule on a misspelled or removed metric never fires and never errors, so a running exchange is
scraped (with an open auction and a reject, so the series that exist only then are there too) and
every ``carbonx_*`` name in the rules' expressions must have a sample. promtool itself checks the
syntax and unit-tests the rules (deploy/prometheus/tests.yml, run by .ci/run).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from carbonx.gateway.client import RpcError
from carbonx.gateway.testkit import ROOT, Server, scrape
from tests.e2e.conftest import broker, operator

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Exported by the cluster engine role, not by serve (tests/cluster/test_engine_process.py checks them).
CLUSTER_ONLY = {"carbonx_cluster_standby_lag_commands", "carbonx_cluster_engine_active"}


def rule_metric_names(path: Path) -> set[str]:
    """Every ``carbonx_*`` name in the ``expr:`` of the rules (multi-line expressions included)."""
    text = path.read_text()
    exprs = re.findall(r"^\s+expr:(.*?)(?=^\s+for:)", text, flags=re.MULTILINE | re.DOTALL)
    assert len(exprs) == text.count("- alert:"), "every rule has an expr followed by for:"
    return {name for expr in exprs for name in re.findall(r"\bcarbonx_[a-z0-9_]+", expr)}


def test_rule_names_are_parsed() -> None:
    names = rule_metric_names(ALERTS)
    assert {"carbonx_ready", "carbonx_rejects_total", "carbonx_auction_bids"} <= names
    assert names >= CLUSTER_ONLY, "the cluster rules are there (and exempt below)"


async def test_every_metric_the_alerts_use_is_exported(fresh_server: Server) -> None:
    async with operator(fresh_server) as op:
        created = await op.call("admin.auction.create", instrument="SHEA", vintage=2025, quantity=100, reserve_price="55.00", seed=1)
        await op.call("admin.auction.open", auction_id=created["auction_id"])
    async with broker(fresh_server, "a") as c:
        with pytest.raises(RpcError):
            await c.call("order.place", account="A-001", instrument="SHEA", side="buy", price="99.00", quantity=1)
    samples = await asyncio.to_thread(scrape, fresh_server)
    exported = {key.split("{", 1)[0] for key in samples}
    missing = rule_metric_names(ALERTS) - CLUSTER_ONLY - exported
    assert not missing, f"alert rules reference metrics the exchange does not export: {sorted(missing)}"
    assert samples[f'carbonx_auction_bids{{auction="{created["auction_id"]}",instrument="SHEA"}}'] == 0
    assert samples["carbonx_ready"] == 1
    assert samples["carbonx_calendar_trading_day"] == 1, "the demo calendar trades every day"


async def test_market_gauges_follow_the_day(fresh_server: Server) -> None:
    """Last price, VWAP, high/low, day volume and frozen cash, read from the engine at scrape time."""
    before = await asyncio.to_thread(scrape, fresh_server)
    assert 'carbonx_last_price{instrument="SHEA"}' not in before, "no price before the day's first trade"
    assert before["carbonx_day_open"] == 1
    async with broker(fresh_server, "a") as a, broker(fresh_server, "b") as b:
        await b.place("B-001", "SHEA", "sell", 30, "60.50", time_in_force="gtc")
        await a.place("A-001", "SHEA", "buy", 10, "60.50")
        await b.place("B-001", "SHEA", "sell", 10, "60.00")
        await a.place("A-001", "SHEA", "buy", 30, "60.00")  # fills 10 at 60.00
        await a.place("A-001", "SHEA", "buy", 5, "59.00", time_in_force="gtc")
    after = await asyncio.to_thread(scrape, fresh_server)
    shea = '{instrument="SHEA"}'
    assert after["carbonx_last_price" + shea] == 60.0
    assert after["carbonx_day_high" + shea] == 60.5
    assert after["carbonx_day_low" + shea] == 60.0
    assert after["carbonx_day_volume_tonnes" + shea] == 20
    assert after["carbonx_vwap" + shea] == pytest.approx(60.25)
    assert after["carbonx_frozen_cash"] > before["carbonx_frozen_cash"], "the resting buys froze cash"
