"""The console script and the in-process ``run`` (start, ready line, stop, restart)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from carbonx.gateway.app import ServeOptions, run
from carbonx.gateway.cli import main
from carbonx.gateway.passwords import verify_secret
from tests.gateway.support import Client, demo_settings

READY = re.compile(r"^carbonx ready trading=(ws://\S+/v1) admin=(ws://\S+/v1) metrics=(http://\S+)$")


def test_hash_secret_prints_a_verifiable_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-secret", "correct horse"]) == 0
    stored = capsys.readouterr().out.strip()
    assert verify_secret("correct horse", stored) and not verify_secret("wrong", stored)


def test_bad_configuration_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nport = "x"\n')
    assert main(["serve", "--config", str(cfg)]) == 2
    assert "configuration error" in capsys.readouterr().err


async def _wait_ready(capsys: pytest.CaptureFixture[str]) -> re.Match[str]:
    for _ in range(200):
        out = capsys.readouterr().out
        for line in out.splitlines():
            m = READY.match(line)
            if m:
                return m
        await asyncio.sleep(0.02)
    raise AssertionError("no ready line")


async def test_run_serves_until_stopped_and_restarts_without_refunding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = demo_settings()
    opts = ServeOptions(data_dir=str(tmp_path), port=0, admin_port=0, metrics_port=0, fsync_policy="os")
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, opts, stop))
    ready = await _wait_ready(capsys)
    c = Client(await connect(ready.group(1)), binary=False)
    await c.ok("session.login", key_id="demo-a", secret="demo-a-secret")
    order = await c.ok("order.place", account="A-001", instrument="SHEA", side="sell", price="61.00", quantity=3, time_in_force="gtc")
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert c.ws.close_code is None or c.ws.close_code == 1001
    stop2 = asyncio.Event()
    task2 = asyncio.create_task(run(settings, opts, stop2))
    ready2 = await _wait_ready(capsys)
    c2 = Client(await connect(ready2.group(1)), binary=False)
    await c2.ok("session.login", key_id="demo-a", secret="demo-a-secret")
    got = await c2.ok("order.get", account="A-001", order_id=order["order_id"])
    assert (got["status"], got["leaves_qty"]) == ("new", 3), "the acknowledged order survived the restart"
    acct = await c2.ok("account.get", account="A-001")
    assert acct["cash"]["available"] == "10000000.00", "restart did not fund the account twice"
    stop2.set()
    assert await asyncio.wait_for(task2, 10) == 0


@pytest.mark.parametrize("flag", ["--port", "--admin-port", "--metrics-port"])
@pytest.mark.parametrize("value", ["70000", "-1", "http"])
def test_ports_on_the_command_line_are_range_checked(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--config", "deploy/demo.toml", flag, value])
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err
