"""Market configuration: the demo file parses to the rules' defaults, and every
invalid setting raises ConfigError whose message names the offending key."""

from __future__ import annotations

from typing import Any

import pytest

from carbonx.engine.config import ConfigError, load_market_text, parse_market
from carbonx.engine.engine import band
from tests.conftest import DEMO

BASE = """
[[instrument]]
symbol = "X"
reference_price = "60.00"
"""


def test_demo_configuration() -> None:
    cfg = load_market_text(DEMO.read_text())
    assert list(cfg.instruments) == ["SHEA", "CCER", "SHCER"]
    shea, ccer, shcer = cfg.instruments.values()
    assert (shea.tick, shea.lot, shea.band_bp, shea.min_qty, shea.max_qty, shea.reference_price) == (1, 1, 1000, 1, 99_999, 6000)
    assert (shea.fee_buy_e8, shea.fee_sell_e8, shea.vintages) == (50_000, 50_000, (2024, 2025, 2026))
    assert "individual" not in ccer.eligible and ccer.t1_resale
    assert shcer.holding_limits == {"individual": 50_000}
    assert cfg.calendar.utc_offset_s == 8 * 3600 and cfg.calendar.sessions == ((0, 86_400),)
    assert cfg.bidder_caps == {"covered_entity": 100_000, "institution": 50_000}


def test_defaults_are_the_market_rules() -> None:
    cfg = load_market_text(BASE)
    spec = cfg.instruments["X"]
    assert (spec.tick, spec.lot, spec.band_bp, spec.min_qty, spec.max_qty) == (1, 1, 1000, 1, 99_999)
    assert spec.eligible == ("covered_entity", "institution", "individual")
    assert (spec.fee_buy_e8, spec.fee_sell_e8, spec.t1_resale, spec.holding_limits) == (0, 0, False, {})
    assert (spec.block_min_qty, spec.block_band_bp, spec.block_sessions) == (100_000, 3000, ((13 * 3600, 15 * 3600),))
    cal = cfg.calendar
    assert cal.weekdays == frozenset(range(5))
    assert cal.sessions == ((10 * 3600 + 1800, 11 * 3600 + 1800), (13 * 3600, 15 * 3600))


def test_sessions_holidays_and_fractional_settings() -> None:
    cfg = load_market_text(
        BASE
        + """
tick = "0.05"
band_pct = "7.5"
fee_buy = "0.00015"
sessions = [["13:00", "15:00"], ["09:30", "11:30"]]
[calendar]
utc_offset_minutes = 0
holidays = ["2026-01-01"]
weekdays = ["sat"]
"""
    )
    spec = cfg.instruments["X"]
    assert (spec.tick, spec.band_bp, spec.fee_buy_e8) == (5, 750, 15_000)
    assert spec.sessions == ((9 * 3600 + 1800, 11 * 3600 + 1800), (13 * 3600, 15 * 3600))  # sorted
    assert (cfg.calendar.utc_offset_s, cfg.calendar.holidays, cfg.calendar.weekdays) == (0, frozenset({"2026-01-01"}), frozenset({5}))


def instrument_error(**settings: Any) -> str:
    table = {"symbol": "X", "reference_price": "60.00", **settings}
    with pytest.raises(ConfigError) as info:
        parse_market({"instrument": [table]})
    return str(info.value)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"tick": "0.001"}, "instrument X.tick"),
        ({"tick": "0"}, "instrument X"),
        ({"reference_price": "60.001"}, "instrument X.reference_price"),
        ({"reference_price": "60.03", "tick": "0.05"}, "reference_price"),
        ({"band_pct": "0"}, "band"),
        ({"band_pct": "100"}, "band"),
        ({"band_pct": "ten"}, "instrument X.band_pct"),
        ({"fee_buy": "1"}, "fee"),
        ({"fee_sell": "0.000000001"}, "instrument X.fee_sell"),
        ({"lot": 0}, "lot"),
        ({"min_qty": 10, "max_qty": 5}, "min_qty"),
        ({"eligible": ["robot"]}, "instrument X.eligible"),
        ({"holding_limits": {"robot": 5}}, "instrument X.holding_limits"),
        ({"vintages": [0]}, "instrument X.vintages"),
        ({"sessions": [["10:30"]]}, "instrument X.sessions[0]"),
        ({"sessions": [["11:30", "10:30"]]}, "instrument X.sessions[0]"),
        ({"sessions": [["25:00", "26:00"]]}, "instrument X.sessions[0]"),
        ({"sessions": [["10:75", "11:00"]]}, "instrument X.sessions[0]"),
        ({"sessions": "10:30-11:30"}, "instrument X.sessions"),
        ({"block_sessions": [["ab", "cd"]]}, "instrument X.block_sessions[0]"),
        ({"colour": "green"}, "colour"),
        ({"lot": "ten"}, "instrument X.lot"),
        ({"lot": 2.5}, "instrument X.lot"),
        ({"min_qty": True}, "instrument X.min_qty"),
        ({"max_qty": "99999"}, "instrument X.max_qty"),
        ({"block_min_qty": 1e5}, "instrument X.block_min_qty"),
        ({"holding_limits": {"individual": "many"}}, "instrument X.holding_limits.individual"),
        ({"vintages": ["2025"]}, "instrument X.vintages"),
    ],
)
def test_instrument_errors_name_the_key(settings: dict[str, Any], names: str) -> None:
    assert names in instrument_error(**settings)


def test_missing_reference_price() -> None:
    with pytest.raises(ConfigError, match="reference_price is required"):
        parse_market({"instrument": [{"symbol": "X"}]})


@pytest.mark.parametrize("symbol", ["", "BAD-SYM", "X" * 17, 5])
def test_bad_symbol(symbol: object) -> None:
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.symbol"):
        parse_market({"instrument": [{"symbol": symbol, "reference_price": "60.00"}]})


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({}, "[[instrument]]"),
        ({"instrument": []}, "[[instrument]]"),
        ({"instrument": [{"symbol": "X", "reference_price": "1"}] * 2}, "instrument X is defined twice"),
        ({"calendar": {"weekdays": ["monday"]}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar.weekdays"),
        ({"calendar": {"sessions": [["09:00", "08:00"]]}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar.sessions[0]"),
        ({"auction": {"bidder_caps": {"robot": 1}}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "auction.bidder_caps"),
        (
            {"auction": {"bidder_caps": {"individual": 1.5}}, "instrument": [{"symbol": "X", "reference_price": "1"}]},
            "auction.bidder_caps.individual",
        ),
        (
            {"calendar": {"utc_offset_minutes": "480"}, "instrument": [{"symbol": "X", "reference_price": "1"}]},
            "calendar.utc_offset_minutes",
        ),
        ({"calendar": {"holidays": "2026-01-01"}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar.holidays"),
        ({"calendar": {"holidays": ["2026-1-1"]}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar.holidays"),
        ({"calendar": {"holidays": ["2026-02-30"]}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar.holidays"),
    ],
)
def test_market_errors_name_the_key(data: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_market(data)
    assert names in str(info.value)


def test_invalid_toml() -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_market_text("[[instrument]\nsymbol = ")


@pytest.mark.parametrize(
    ("reference", "band_bp", "tick", "expected"),
    [
        (6000, 1000, 1, (5400, 6600)),
        (6003, 1000, 1, (5403, 6603)),  # 54.027 up, 66.033 down
        (6015, 1000, 5, (5415, 6615)),  # 54.135 -> 54.15, 66.165 -> 66.15
        (1, 1000, 1, (1, 1)),  # 0.009 rounds up to a tick, 0.011 down
        (2000, 750, 5, (1850, 2150)),
    ],
)
def test_band_rounding(reference: int, band_bp: int, tick: int, expected: tuple[int, int]) -> None:
    assert band(reference, band_bp, tick) == expected


@pytest.mark.parametrize("key", ["reference_price", "tick"])
def test_amounts_must_be_decimal_strings_not_floats(key: str) -> None:
    """TOML ``60.5`` is a binary float: amounts are written as "60.50" or refused."""
    message = instrument_error(**{key: 60.5})
    assert f"instrument X.{key}" in message and "quoted decimal" in message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # every unknown key of a table is listed, in every market table
        ({"instrument": [{"symbol": "X", "reference_price": "1", "zz": 1, "colour": 2}]}, "instrument X: unknown keys ['colour', 'zz']"),
        ({"calendar": {"timezone": "CST"}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar: unknown keys ['timezone']"),
        ({"auction": {"bidder_cap": {}}, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "auction: unknown keys ['bidder_cap']"),
        # an instrument is named by its index until it has a valid symbol
        (
            {"instrument": [{"symbol": "X-1", "reference_price": "1", "lot": 0}]},
            "instrument[0].symbol: expected 1-16 letters/digits, got 'X-1'",
        ),
        ({"instrument": [{"reference_price": "1"}]}, "instrument[0]: symbol is required"),
        # types are checked, never coerced
        (
            {"instrument": [{"symbol": "X", "reference_price": "1", "t1_resale": "yes"}]},
            "instrument X.t1_resale: expected true or false, got 'yes'",
        ),
        (
            {"instrument": [{"symbol": "X", "reference_price": "1", "lot": 1e12}]},
            "instrument X.lot: expected a whole number, got 1000000000000.0",
        ),
        ({"instrument": [{"symbol": "X", "reference_price": "1", "name": 5}]}, "instrument X.name: expected a string, got 5"),
        (
            {"instrument": [{"symbol": "X", "reference_price": "1", "sessions": [["10:30"]]}]},
            'instrument X.sessions[0]: expected a ["HH:MM", "HH:MM"] pair',
        ),
        ({"calendar": 5, "instrument": [{"symbol": "X", "reference_price": "1"}]}, "calendar: expected a table, got 5"),
        (
            {"calendar": {"holidays": ["2026-01-01", "2026-1-2"]}, "instrument": [{"symbol": "X", "reference_price": "1"}]},
            'calendar.holidays[1]: expected a "YYYY-MM-DD" date',
        ),
        (
            {"instrument": [{"symbol": "X", "reference_price": "60.03", "tick": "0.05"}]},
            "instrument X: reference_price 60.03 is not on the tick 0.05",
        ),
    ],
)
def test_messages_name_the_path_and_what_was_expected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_market(data)
    assert str(info.value).startswith(message)


def test_holidays_may_be_toml_dates() -> None:
    """An unquoted TOML date is a date too (and stored as the same "YYYY-MM-DD" text)."""
    cfg = load_market_text(BASE + '[calendar]\nholidays = [2026-01-01, "2026-10-01"]\n')
    assert cfg.calendar.holidays == frozenset({"2026-01-01", "2026-10-01"})
    with pytest.raises(ConfigError, match=r"calendar.holidays\[0\]"):
        load_market_text(BASE + "[calendar]\nholidays = [2026-01-01T00:00:00]\n")
