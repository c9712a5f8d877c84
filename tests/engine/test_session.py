"""Sessions and trading phases (MARKET_RULES §2): real Shanghai hours, weekends,
holidays, the trading day's open/close, per-instrument sessions and operator halts."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonx.engine import reasons as R
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CreateAccount, CreateMember, DayClose, DayOpen, Deposit, InstrumentStatus, SetHalt, Tick
from carbonx.engine.testkit import (
    accepted,
    amend,
    cancel,
    instrument,
    local_ts,
    make_config,
    oid,
    place,
    reason,
    rejects,
    reports,
)

SHANGHAI = {
    "utc_offset_minutes": 480,
    "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    "sessions": [["10:30", "11:30"], ["13:00", "15:00"]],
    "holidays": ["2025-10-01"],
}
DAY = "2025-11-25"  # a Tuesday


def shanghai_config() -> MarketConfig:
    return make_config(
        instrument("SHEA"),
        instrument("EARLY", sessions=[["09:30", "10:00"]]),
        calendar_table=SHANGHAI,
    )


def shanghai_engine(date: str = DAY) -> Engine:
    """Two members with one funded account each; the day opened at 09:00 local."""
    eng = Engine(shanghai_config())
    t = local_ts(date, "08:00")
    for member, account in (("M1", "A1"), ("M2", "B1")):
        eng.apply(CreateMember(ts=t, member=member, key_id=f"k{member}", secret_hash="x"))
        eng.apply(CreateAccount(ts=t, account=account, member=member, type="institution"))
        eng.apply(Deposit(ts=t, account=account, cash=10**10))
        for sym in ("SHEA", "EARLY"):
            eng.apply(Deposit(ts=t, account=account, instrument=sym, quantity=1000))
    eng.apply(DayOpen(ts=local_ts(date, "09:00")))
    return eng


@pytest.mark.parametrize(
    ("hhmmss", "open_"),
    [
        ("09:00:00", False),
        ("10:29:59", False),
        ("10:30:00", True),
        ("11:29:59", True),
        ("11:30:00", False),
        ("12:00:00", False),
        ("12:59:59", False),
        ("13:00:00", True),
        ("14:59:59", True),
        ("15:00:00", False),
        ("20:00:00", False),
    ],
)
def test_shanghai_session_hours(hhmmss: str, open_: bool) -> None:
    eng = shanghai_engine()
    events = place(eng, "A1", "buy", 6000, 1, ts=local_ts(DAY, hhmmss))
    if open_:
        accepted(events)
    else:
        assert reason(events) == R.MARKET_CLOSED
        assert rejects(events)[0].field == "instrument"
    assert eng.phase("SHEA", local_ts(DAY, hhmmss)) == ("open" if open_ else "closed")


@pytest.mark.parametrize(("date", "why"), [("2025-11-29", "saturday"), ("2025-11-30", "sunday"), ("2025-10-01", "holiday")])
def test_no_trading_on_weekends_and_holidays(date: str, why: str) -> None:
    eng = shanghai_engine(date)
    assert reason(place(eng, "A1", "buy", 6000, 1, ts=local_ts(date, "10:45"))) == R.MARKET_CLOSED, why


def test_instrument_sessions_override_the_calendar() -> None:
    eng = shanghai_engine()
    accepted(place(eng, "A1", "buy", 6000, 1, "EARLY", ts=local_ts(DAY, "09:45")))
    assert reason(place(eng, "A1", "buy", 6000, 1, "EARLY", ts=local_ts(DAY, "10:45"))) == R.MARKET_CLOSED
    assert reason(place(eng, "A1", "buy", 6000, 1, "SHEA", ts=local_ts(DAY, "09:45"))) == R.MARKET_CLOSED


def test_closed_before_day_open_and_after_day_close() -> None:
    eng = Engine(shanghai_config())
    t = local_ts(DAY, "08:00")
    eng.apply(CreateMember(ts=t, member="M1", key_id="k", secret_hash="x"))
    eng.apply(CreateAccount(ts=t, account="A1", member="M1", type="institution"))
    eng.apply(Deposit(ts=t, account="A1", cash=10**9))
    assert reason(place(eng, "A1", "buy", 6000, 1, ts=local_ts(DAY, "10:45"))) == R.MARKET_CLOSED
    eng.apply(DayOpen(ts=local_ts(DAY, "10:50")))
    accepted(place(eng, "A1", "buy", 6000, 1, ts=local_ts(DAY, "10:51")))
    eng.apply(DayClose(ts=local_ts(DAY, "11:00")))
    assert reason(place(eng, "A1", "buy", 6000, 1, ts=local_ts(DAY, "11:01"))) == R.MARKET_CLOSED


def test_cancel_is_accepted_outside_the_session() -> None:
    eng = shanghai_engine()
    order = oid(accepted(place(eng, "A1", "buy", 6000, 5, ts=local_ts(DAY, "11:00"))))
    assert reason(amend(eng, "A1", order, quantity=4)) is None  # still in session (ts after the place)
    assert eng.orders[order].leaves_qty == 4
    events = accepted(cancel(eng, "A1", order, ts=local_ts(DAY, "12:00")))
    assert [(r.exec_type, r.status, r.leaves_qty) for r in reports(events)] == [("cancelled", "cancelled", 0)]


def test_amend_is_rejected_outside_the_session() -> None:
    eng = shanghai_engine()
    order = oid(accepted(place(eng, "A1", "buy", 6000, 5, ts=local_ts(DAY, "11:00"))))
    eng.apply(Tick(ts=local_ts(DAY, "12:00")))
    assert reason(amend(eng, "A1", order, quantity=4)) == R.MARKET_CLOSED


def test_tick_publishes_phase_changes_once() -> None:
    eng = shanghai_engine()
    t = local_ts(DAY, "10:30")
    assert eng.needs_tick(t)
    events = eng.apply(Tick(ts=t))
    assert [(e.instrument, e.phase) for e in events if isinstance(e, InstrumentStatus)] == [("SHEA", "open")]
    assert not eng.needs_tick(t + 1)
    assert eng.apply(Tick(ts=t + 1)) == []
    events = eng.apply(Tick(ts=local_ts(DAY, "11:30")))
    assert [(e.instrument, e.phase) for e in events if isinstance(e, InstrumentStatus)] == [("SHEA", "closed")]


# ---------------------------------------------------------------------- halts


def test_halted_book_accepts_cancels_only(engine: Engine) -> None:
    resting = oid(accepted(place(engine, "A1", "buy", 6000, 5)))
    events = engine.apply(SetHalt(ts=engine.ts + 1, instrument="SHEA", halted=True))
    assert [(e.instrument, e.phase, e.halted) for e in events] == [("SHEA", "halted", True)]  # type: ignore[attr-defined]
    rej = rejects(place(engine, "B1", "sell", 6000, 5))
    assert [r.reason for r in rej] == [R.INSTRUMENT_HALTED]
    assert reason(amend(engine, "A1", resting, quantity=4)) == R.INSTRUMENT_HALTED
    assert reason(place(engine, "A1", "buy", 8000, 1, "CCER")) is None  # other books trade
    accepted(cancel(engine, "A1", resting))
    events = engine.apply(SetHalt(ts=engine.ts + 1, instrument="SHEA", halted=False))
    assert [(e.phase, e.halted) for e in events] == [("open", False)]  # type: ignore[attr-defined]
    accepted(place(engine, "B1", "sell", 6000, 5))


def test_halt_twice_or_resume_a_trading_book_is_invalid(engine: Engine) -> None:
    assert reason(engine.apply(SetHalt(ts=engine.ts + 1, instrument="SHEA", halted=False))) == R.INVALID_STATE
    engine.apply(SetHalt(ts=engine.ts + 1, instrument="SHEA", halted=True))
    assert reason(engine.apply(SetHalt(ts=engine.ts + 1, instrument="SHEA", halted=True))) == R.INVALID_STATE
    assert reason(engine.apply(SetHalt(ts=engine.ts + 1, instrument="NOPE", halted=True))) == R.UNKNOWN_INSTRUMENT


def test_halt_outlasts_the_trading_day(engine: Engine) -> None:
    engine.apply(SetHalt(ts=engine.ts + 1, instrument="SHEA", halted=True))
    engine.apply(DayClose(ts=engine.ts + 2))
    engine.apply(DayOpen(ts=engine.ts + 86_400 * 10**9))
    assert engine.phase("SHEA", engine.ts) == "halted"
    assert reason(place(engine, "A1", "buy", 6000, 1)) == R.INSTRUMENT_HALTED


# ---------------------------------------------------------------------- phase cache


def expected_open(ts: int) -> bool:
    """Shanghai hours computed the slow, obvious way with datetime."""
    local = datetime.datetime.fromtimestamp(ts / 1e9, tz=datetime.UTC) + datetime.timedelta(hours=8)
    if local.weekday() >= 5 or local.date().isoformat() in SHANGHAI["holidays"]:
        return False
    minutes = local.hour * 60 + local.minute
    return 10 * 60 + 30 <= minutes < 11 * 60 + 30 or 13 * 60 <= minutes < 15 * 60


WEEK_START = local_ts("2025-09-29", "00:00")  # Monday; Wednesday 2025-10-01 is a holiday


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 7 * 86_400 - 1), min_size=1, max_size=40))
def test_cached_phase_agrees_with_the_calendar_in_any_order(seconds: list[int]) -> None:
    """The engine caches the current session window per instrument; jumping around in
    time (forwards, backwards, across midnight and the holiday) must never return a
    stale phase."""
    eng = shanghai_engine("2025-09-29")
    for s in seconds:
        ts = WEEK_START + s * 1_000_000_000
        assert eng.phase("SHEA", ts) == ("open" if expected_open(ts) else "closed"), datetime.datetime.fromtimestamp(ts / 1e9)


@pytest.mark.parametrize("edge", ["10:30:00", "11:30:00", "13:00:00", "15:00:00"])
def test_cached_phase_flips_on_the_exact_nanosecond(edge: str) -> None:
    eng = shanghai_engine()
    at = local_ts(DAY, edge)
    before, after = eng.phase("SHEA", at - 1), eng.phase("SHEA", at)
    assert before != after
    assert eng.phase("SHEA", at - 1) == before  # and back again
