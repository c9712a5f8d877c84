"""The scheduled trading day on the gateway's clock: with ``day_schedule`` on and no
``auto_open_day``, the clock opens the day by itself (journaled, like any command);
with it off, nothing opens it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from msgspec.structs import replace

from tests.gateway.support import demo_settings, start


async def opened_within(tmp_path: Path, schedule: bool, seconds: float) -> bool:
    s = demo_settings()
    s = replace(s, server=replace(s.server, auto_open_day=False, day_schedule=schedule))
    h = await start(tmp_path, s)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not h.gw.engine.day_open and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return h.gw.engine.day_open
    finally:
        await h.gw.shutdown()


async def test_the_clock_opens_the_day_when_scheduled(tmp_path: Path) -> None:
    opened = await opened_within(tmp_path, schedule=True, seconds=5.0)
    assert opened  # the demo calendar is 24/7: a start at any time is in mid-day


async def test_no_schedule_no_day(tmp_path: Path) -> None:
    opened = await opened_within(tmp_path, schedule=False, seconds=1.0)  # five ticks of 0.2 s
    assert not opened


def test_shipped_configs_schedule_the_day() -> None:
    from carbonx.gateway.settings import load_settings

    shanghai = load_settings(Path(__file__).resolve().parents[2] / "deploy" / "shanghai.toml")
    assert demo_settings().server.day_schedule and shanghai.server.day_schedule
