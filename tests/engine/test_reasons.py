"""The reason table: one entry per reason with its code and meaning; codes never move."""

from __future__ import annotations

import re
from pathlib import Path

from carbonx.engine import reasons as R
from carbonx.engine.units import UnitError, parse_decimal_scaled, parse_fen

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
CONSTANTS = {name: value for name, value in vars(R).items() if name.isupper() and isinstance(value, str) and name != "OTHER_CODE"}


def test_codes_are_1000_plus_position_and_unique() -> None:
    # Areas get code ranges assigned ahead of merging (docs/protocol.md): an area merged
    # before the ones below it leaves a gap, so positions count only up to the first gap.
    codes = [r.code for r in R.TABLE]
    assert codes == sorted(set(codes)) and codes[0] == 1000 and codes[-1] < R.OTHER_CODE
    first = next((i for i, c in enumerate(codes) if c != 1000 + i), len(codes))
    assert codes[:first] == [1000 + i for i in range(first)]
    assert len({r.name for r in R.TABLE}) == len(R.TABLE)
    assert all(r.meaning and r.level in ("engine", "gateway", "exec") for r in R.TABLE)


def test_every_reason_constant_is_in_the_table_under_its_own_name() -> None:
    assert {name for name, value in CONSTANTS.items() if name == value} == set(CONSTANTS)
    # RESERVED_*: placeholders for codes another change of the release fills (engine/reasons.py)
    assert set(CONSTANTS.values()) == {name for name in R.BY_NAME if not name.startswith("RESERVED_")}


def test_codes_are_the_documented_ones() -> None:
    """docs/protocol.md's code table (the wire contract) matches entry for entry."""
    documented = {name: int(code) for code, name in re.findall(r"^\| (1\d\d\d) \| `([A-Z_]+)` \|", PROTOCOL_MD.read_text(), re.M)}
    assert documented, "the code table in docs/protocol.md was not found"
    assert {name: R.code(name) for name in documented} == documented
    assert (R.code(R.PRICE_OUT_OF_BAND), R.code(R.RATE_LIMITED), R.code(R.NOT_AUTHORIZED), R.code(R.STORAGE_FULL)) == (
        1000,
        1013,
        1015,
        1047,
    )


def test_gateway_and_exec_reasons_are_marked() -> None:
    gateway = {r.name for r in R.TABLE if r.level == "gateway"}
    assert gateway == {
        R.TOO_MANY_CONNECTIONS,
        R.TOO_MANY_SUBSCRIPTIONS,
        R.UNKNOWN_CHANNEL,
        R.SHUTTING_DOWN,
        R.UNKNOWN_CERTIFICATE,
        R.LOGIN_THROTTLED,
        R.STORAGE_FULL,
        R.UNKNOWN_ALERT,
        R.UNKNOWN_REPORT,
        R.ADDRESS_NOT_ALLOWED,
        R.AUDIT_UNAVAILABLE,
    }
    assert {r.name for r in R.TABLE if r.level == "exec"} == {R.SELF_TRADE_PREVENTION, R.UNFILLED_REMAINDER, R.GATEWAY_LOST}


def test_unknown_reason_gets_the_catch_all_code() -> None:
    assert R.code("NOT_A_REASON") == R.OTHER_CODE == 1999
    assert R.meaning("NOT_A_REASON") == ""
    assert "band" in R.meaning(R.PRICE_OUT_OF_BAND)


def test_unit_errors_carry_their_reason() -> None:
    cases = {"60.001": R.INVALID_TICK, "abc": R.INVALID_PRICE, "-1": R.INVALID_PRICE, "": R.INVALID_PRICE, "1e3": R.INVALID_PRICE}
    for text, reason in cases.items():
        try:
            parse_fen(text)
        except UnitError as exc:
            assert exc.reason == reason, text
        else:
            raise AssertionError(f"{text!r} parsed")
    try:
        parse_decimal_scaled("0.123", 2)
    except UnitError as exc:
        assert exc.reason == R.INVALID_TICK
    else:
        raise AssertionError("parsed")
