"""The Grafana dashboards (deploy/grafana/) only query metrics the exchange exports, in valid PromQL.

A panel on a misspelled or removed metric just shows "No data", so: every dashboard JSON is
parsed, every query (panel targets and query variables) is tokenised (tests/e2e/promql.py) into
the metric names it reads, a real exchange is started and made to trade, rest orders on both
sides, reject a command, clear one auction and hold another open with a bid (so the series that
exist only then are there), its ``/metrics`` is scraped, and each name must have a sample.
Each query is also given to ``promtool check rules`` (as a recording rule, Grafana variables
replaced by values) so PromQL syntax errors are caught without a Prometheus server. The
provisioning files must point at the dashboards' datasource and folder.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbonx.gateway.client import RpcError
from carbonx.gateway.testkit import ROOT, Server, scrape
from tests.e2e.conftest import broker, operator
from tests.e2e.promql import PromQLError, metric_names, variable_metric_names

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "carbonx-prometheus"
# Series Prometheus itself adds to every scrape target.
PROMETHEUS_SERIES = {"up"}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target."""
    for panel in panels(doc):
        for target in panel.get("targets", []):
            yield f"{doc['uid']} / {panel['title']} / {target['refId']}", target["expr"]


def variable_queries(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            yield f"{doc['uid']} / ${var['name']}", query


def used_metrics() -> dict[str, set[str]]:
    """metric name -> where it is used, over every dashboard."""
    used: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        doc = load(path)
        for where, expr in queries(doc):
            for name in metric_names(expr):
                used.setdefault(name, set()).add(where)
        for where, query in variable_queries(doc):
            for name in variable_metric_names(query):
                used.setdefault(name, set()).add(where)
    return used


# --------------------------------------------------------------------------- the files themselves


def test_the_four_dashboards_are_there_with_unique_uids() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert sorted(uids) == ["carbonx-auctions", "carbonx-exchange", "carbonx-gateway", "carbonx-market"]
    titles = [load(p)["title"] for p in DASHBOARDS]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_queries_the_provisioned_datasource_and_fits_the_grid(path: Path) -> None:
    doc = load(path)
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["current"]["value"] == DATASOURCE_UID
    ids, cells = set(), set()
    for panel in panels(doc):
        assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}", panel["title"]
    used = {name for var in re.findall(r"\$\{?(\w+)", json.dumps([t for p in panels(doc) for t in p.get("targets", [])]))
            for name in [var] if not name.startswith("__")}  # fmt: skip
    assert used <= set(variables), f"queries use undefined variables {used - set(variables)}"


def test_the_tokenizer_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(carbonx_command_latency_seconds_bucket{stage="durable",'
        ' job=~"$job"}[$__rate_interval]))) > 0.05 and on (instance) carbonx_ready offset 5m == bool 1'
    )
    assert metric_names(expr) == {"carbonx_command_latency_seconds_bucket", "carbonx_ready"}
    assert metric_names('sum(x{a="}{[("}) / ignoring(b) group_left(c) y:rate5m * 1e3') == {"x", "y:rate5m"}
    assert variable_metric_names('label_values(carbonx_reference_price{job=~"$job"}, instrument)') == {"carbonx_reference_price"}
    assert variable_metric_names("label_values(job)") == set()
    with pytest.raises(PromQLError, match="rat"):
        metric_names("rat(carbonx_commands_total[5m])")


def test_the_dashboards_cover_what_operators_watch() -> None:
    used = used_metrics()
    for name in (
        "carbonx_last_price", "carbonx_vwap", "carbonx_traded_tonnes_total", "carbonx_book_depth_tonnes", "carbonx_book_spread",
        "carbonx_commands_total", "carbonx_command_latency_seconds_bucket", "carbonx_rejects_total",
        "carbonx_journal_fsync_seconds_total", "carbonx_sessions", "carbonx_subscriptions", "carbonx_notifications_sent_total",
        "carbonx_slow_consumer_disconnects_total", "carbonx_auction_state", "carbonx_auction_bids", "carbonx_auction_clearing_price",
    ):  # fmt: skip
        assert name in used, name


def promql_for_promtool(expr: str) -> str:
    """Grafana's variables replaced by values Prometheus accepts."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", "x", expr)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian's prometheus package; .ci/run installs it)")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"check:query_{n}", "expr": promql_for_promtool(expr)}
        for n, (_, expr) in enumerate(q for path in DASHBOARDS for q in queries(load(path)))
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules)} rules found" in run.stdout


def test_provisioning_points_at_the_dashboards() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "carbonx.yml").read_text())
    (source,) = sources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "carbonx.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards/carbonx"


# --------------------------------------------------------------------------- against a running exchange


async def make_everything_exist(server: Server) -> int:
    """Trades, resting orders on both sides, a reject, a cleared auction and an open one with a
    bid; returns the open auction's id."""
    async with broker(server, "a") as a, broker(server, "b") as b:
        await b.place("B-001", "SHEA", "sell", 10, "60.00")
        await a.place("A-001", "SHEA", "buy", 10, "60.00")  # a trade
        await a.place("A-001", "SHEA", "buy", 5, "59.00", time_in_force="gtc")  # both sides rest: spread, best bid/ask
        await b.place("B-001", "SHEA", "sell", 5, "61.00", time_in_force="gtc")
        with pytest.raises(RpcError):
            await a.call("order.place", account="A-001", instrument="SHEA", side="buy", price="99.00", quantity=1)
        async with operator(server) as op:
            cleared = await op.call("admin.auction.create", instrument="SHEA", vintage=2025, quantity=100, reserve_price="50.00", seed=1)
            await op.call("admin.auction.open", auction_id=cleared["auction_id"])
            await a.auction_bid(cleared["auction_id"], "A-001", "55.00", 60)
            await b.auction_bid(cleared["auction_id"], "B-001", "56.00", 60)
            await op.call("admin.auction.close", auction_id=cleared["auction_id"])
            live = await op.call("admin.auction.create", instrument="SHEA", vintage=2025, quantity=50, reserve_price="50.00", seed=2)
            await op.call("admin.auction.open", auction_id=live["auction_id"])
            await a.auction_bid(live["auction_id"], "A-001", "52.00", 10)
    return int(live["auction_id"])


async def test_every_metric_the_dashboards_use_is_exported(fresh_server: Server) -> None:
    live = await make_everything_exist(fresh_server)
    async with broker(fresh_server, "b") as watcher:
        await watcher.subscribe(["book.SHEA", "trades.SHEA"])
        samples = await asyncio.to_thread(scrape, fresh_server)
    exported = {key.split("{", 1)[0] for key in samples} | PROMETHEUS_SERIES
    used = used_metrics()
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not missing, f"dashboards query metrics the exchange does not export: {missing}"
    shea = '{instrument="SHEA"}'
    assert samples["carbonx_best_bid" + shea] == 59.0 and samples["carbonx_best_ask" + shea] == 61.0
    assert samples['carbonx_book_depth_tonnes{instrument="SHEA",side="buy"}'] == 5
    assert samples['carbonx_price_limit{bound="upper",instrument="SHEA"}'] == 66.0
    assert samples["carbonx_auction_clearing_price" + shea] == 55.0  # 120 t bid for 100: the lowest accepted price
    assert samples["carbonx_auction_sold_tonnes" + shea] == 100 and samples["carbonx_auction_cover_ratio" + shea] == 1.2
    assert samples[f'carbonx_auction_offered_tonnes{{auction="{live}",instrument="SHEA"}}'] == 50
    assert samples['carbonx_auctions{state="cleared"}'] == 1 and samples['carbonx_auctions{state="open"}'] == 1
    assert samples["carbonx_auction_proceeds_total"] == 5500.0 and samples["carbonx_auction_issued_tonnes_total"] == 100
