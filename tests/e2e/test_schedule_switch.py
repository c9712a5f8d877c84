"""The operator's day-schedule switch end to end: ``carbonx admin schedule off|on|status``
against the real ``carbonx serve`` on the 24/7 demo calendar (a day open is always due when no
day has run today). Off: the clock holds the due open back, across restarts (journal replay,
then a snapshot); on: the clock opens the day at its next tick."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from carbonx.gateway import admin_cli
from carbonx.gateway.testkit import Server, scrape, write_config
from tests.e2e.conftest import running_server
from tests.e2e.test_admin_cli import cli, ok_json, refused

TICK_S = 0.1


def config(tmp_path: Path, scheduled: bool) -> Path:
    """The demo with the day left closed at start unless the schedule opens it."""
    server = {"auto_open_day": scheduled, "day_schedule": scheduled, "tick_s": TICK_S}
    return write_config(tmp_path / f"scheduled-{scheduled}.toml", server=server)


async def status(server: Server) -> dict[str, Any]:
    result: dict[str, Any] = await ok_json(server, "status")
    return result


async def day_open_within(server: Server, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if (await status(server))["day_open"]:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(TICK_S)


HELD = {"configured": True, "enabled": False, "active": False, "due": ["day_open"]}


async def test_schedule_off_holds_the_due_open_back_across_restarts_and_on_opens_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # 1. No schedule configured yet: no day has run, so the calendar makes an open due; the
    #    switch can be set before the schedule is configured (the reply says it is not active).
    with running_server(data, config=config(tmp_path, scheduled=False)) as srv:
        view = await ok_json(srv, "schedule", "status")
        assert view == {"configured": False, "enabled": True, "active": False, "due": ["day_open"], "day_open": False, "trading_date": None}
        off = await ok_json(srv, "schedule", "off")
        assert off["enabled"] is False and off["active"] is False and off["seq"] > 0
        error = await refused(srv, "schedule", "off", reason="INVALID_STATE")
        assert error["message"] == "the day schedule is already off"
        assert scrape(srv)["carbonx_day_schedule_enabled"] == 0

    # 2. Restart with the schedule configured and auto_open_day on: the switch (replayed from the
    #    journal) holds the due open back, at start and tick after tick.
    with running_server(data, config=config(tmp_path, scheduled=True)) as srv:
        assert (await status(srv))["schedule"] == HELD
        assert not await day_open_within(srv, 10 * TICK_S)
        assert (await status(srv))["schedule"] == HELD
        await ok_json(srv, "snapshot")

    # 3. Restart from the snapshot: still off and held; the text output shows the switch;
    #    switched on, the clock opens the day at its next tick.
    with running_server(data, config=config(tmp_path, scheduled=True)) as srv:
        assert (await status(srv))["schedule"] == HELD and not (await status(srv))["day_open"]
        run = await cli(srv, "schedule", "status")
        assert run.rc == admin_cli.EXIT_OK and "enabled" in run.out and "day_open" in run.out, run.out
        on = await ok_json(srv, "schedule", "on")
        assert on["enabled"] is True and on["active"] is True
        assert await day_open_within(srv, 50 * TICK_S)
        view = await ok_json(srv, "schedule", "status")
        assert view["due"] == [] and view["day_open"] is True and view["trading_date"]
        assert scrape(srv)["carbonx_day_schedule_enabled"] == 1
