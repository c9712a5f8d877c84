"""``carbonx report day DATE --cluster``: the day report rebuilt from the cluster's command stream
(a real cluster: NATS, an engine and a gateway as processes) is the one the gateway published at
the day close; usage and a missing stream are refused with exit 2, an unknown day with exit 1."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
from pathlib import Path

import msgspec
import pytest

from carbonx.engine.supervision.disclosure import DayReport, report_csv
from carbonx.gateway.client import Client
from carbonx.gateway.cluster.testkit import ClusterKit, roles_available
from carbonx.gateway.testkit import BROKERS, OPERATOR, carbonx_argv, write_config


@functools.cache
def _roles() -> bool:
    return roles_available()


pytestmark = [pytest.mark.cluster, pytest.mark.skipif(not _roles(), reason="carbonx engine/gateway roles not available")]


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(carbonx_argv("report", "day", *args), capture_output=True, text=True, timeout=120)


async def test_the_day_report_rebuilt_from_the_stream_is_the_published_one(tmp_path: Path) -> None:
    with ClusterKit(tmp_path / "kit", engines_count=1, gateways_count=1, nats_nodes=1) as kit:
        await asyncio.to_thread(kit.wait_active)
        gw = kit.gateways[0]
        async with Client(gw.trading) as a, Client(gw.trading) as b, Client(gw.admin) as ops:
            await a.login(*BROKERS["a"])
            await b.login(*BROKERS["b"])
            await ops.login(*OPERATOR)
            await b.subscribe(["disclosure"])
            await a.place("A-001", "SHEA", "sell", 10, "60.50")
            assert (await b.place("B-001", "SHEA", "buy", 10, "60.50"))["status"] == "filled"
            date = (await ops.call("admin.day.close"))["trading_date"]
            published = await b.wait_for(lambda n: n.channel == "disclosure")
            assert published.params["trading_date"] == date
        out = tmp_path / "out"
        run = await asyncio.to_thread(report, date, "--cluster", "--config", str(kit.config_path), "--out", str(out))
        assert run.returncode == 0, run.stderr
        rebuilt = json.loads((out / f"{date}.json").read_text())
        assert rebuilt == {k: v for k, v in published.params.items() if k != "channel"}
        as_report = msgspec.json.decode((out / f"{date}.json").read_bytes(), type=DayReport)
        assert (out / f"{date}.csv").read_bytes() == report_csv(as_report)  # the CSV of the same report
        unknown = await asyncio.to_thread(report, "1999-01-01", "--cluster", "--config", str(kit.config_path), "--out", str(out))
        assert unknown.returncode == 1 and "no trading day 1999-01-01 closed in the command stream" in unknown.stderr
        no_out = await asyncio.to_thread(report, date, "--cluster", "--config", str(kit.config_path))
        assert no_out.returncode == 2 and "--cluster needs --out" in no_out.stderr
        other = write_config(tmp_path / "other.toml", cluster={"nats_urls": kit.nats.urls, "command_stream": "NO_SUCH_STREAM"})
        missing = await asyncio.to_thread(report, date, "--cluster", "--config", str(other), "--out", str(out))
        assert missing.returncode == 2 and "there is no stream NO_SUCH_STREAM" in missing.stderr, missing.stderr
