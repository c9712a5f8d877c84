"""The calendar gauges behind the CarbonxDayNotOpened alert, on the real Shanghai calendar."""

from __future__ import annotations

from pathlib import Path

from carbonx.engine.config import load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.testkit import local_ts
from carbonx.gateway.metrics import _market

SHANGHAI = Path(__file__).resolve().parents[2] / "deploy" / "shanghai.toml"


def gauges(eng: Engine, now: int) -> dict[str, float]:
    """Every sample as ``{"name{k=v,...}": value}``."""
    out = {}
    for family in _market(eng, now):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def test_calendar_gauges_follow_the_shanghai_calendar() -> None:
    eng = Engine(load_market_text(SHANGHAI.read_text()))
    tuesday_session = gauges(eng, local_ts("2025-11-25", "10:45"))
    assert tuesday_session["carbonx_calendar_trading_day"] == 1
    assert tuesday_session["carbonx_calendar_in_session{instrument=SHEA}"] == 1
    assert tuesday_session["carbonx_day_open"] == 0, "nobody opened the day"
    lunch = gauges(eng, local_ts("2025-11-25", "12:00"))
    assert (lunch["carbonx_calendar_trading_day"], lunch["carbonx_calendar_in_session{instrument=SHEA}"]) == (1, 0)
    saturday = gauges(eng, local_ts("2025-11-29", "10:45"))
    assert (saturday["carbonx_calendar_trading_day"], saturday["carbonx_calendar_in_session{instrument=SHEA}"]) == (0, 0)
    assert "carbonx_last_price{instrument=SHEA}" not in saturday, "no price gauge before the first trade"
    assert saturday["carbonx_reference_price{instrument=SHEA}"] > 0
