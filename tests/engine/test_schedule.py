"""The scheduled trading day (admin.day_due): which DayOpen/DayClose the calendar makes
due at a given time — boundaries, weekends, holidays, a start in mid-day, the 24-hour
roll — and that applying them through the engine and replaying the journal agree."""

from __future__ import annotations

from collections.abc import Sequence

from carbonx.engine.admin import day_due
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command, DayClose, DayClosed, DayOpen, DayOpened
from carbonx.engine.testkit import instrument, local_ts, make_config

SHANGHAI = {
    "utc_offset_minutes": 480,
    "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    "sessions": [["10:30", "11:30"], ["13:00", "15:00"]],
    "holidays": ["2025-10-01"],
}


def shanghai() -> Engine:
    return Engine(make_config(instrument(), calendar_table=SHANGHAI))


def demo() -> Engine:
    return Engine(make_config(instrument()))  # 24/7


def kinds(cmds: Sequence[Command]) -> list[type]:
    return [type(c) for c in cmds]


def run(eng: Engine, ts: int, journal: list[Command]) -> None:
    """What the gateway's clock does: apply every due command, and journal it."""
    for cmd in day_due(eng, ts):
        events = eng.apply(cmd)
        assert not any(getattr(e, "reason", None) for e in events), events
        journal.append(cmd)


def test_opens_at_first_session_start_and_closes_at_end_of_last() -> None:
    eng = shanghai()
    assert day_due(eng, local_ts("2025-11-25", "10:29:59")) == []
    (opened,) = day_due(eng, local_ts("2025-11-25", "10:30"))
    assert isinstance(opened, DayOpen) and opened.ts == local_ts("2025-11-25", "10:30")
    eng.apply(opened)
    assert day_due(eng, local_ts("2025-11-25", "12:00")) == []  # the lunch break keeps the day open
    assert day_due(eng, local_ts("2025-11-25", "14:59:59")) == []
    assert kinds(day_due(eng, local_ts("2025-11-25", "15:00"))) == [DayClose]


def test_a_closed_day_is_not_reopened_the_same_date() -> None:
    eng = shanghai()
    eng.apply(DayOpen(ts=local_ts("2025-11-25", "10:30")))
    eng.apply(DayClose(ts=local_ts("2025-11-25", "11:00")))  # the operator closed early
    assert day_due(eng, local_ts("2025-11-25", "13:00")) == []
    assert kinds(day_due(eng, local_ts("2025-11-26", "10:30"))) == [DayOpen]


def test_no_day_on_weekends_or_holidays() -> None:
    eng = shanghai()
    assert day_due(eng, local_ts("2025-11-29", "10:30")) == []  # Saturday
    assert day_due(eng, local_ts("2025-11-30", "13:00")) == []  # Sunday
    assert day_due(eng, local_ts("2025-10-01", "10:30")) == []  # holiday (a Wednesday)
    assert kinds(day_due(eng, local_ts("2025-10-02", "10:30"))) == [DayOpen]


def test_started_in_mid_day_opens_it_and_after_the_close_does_not() -> None:
    assert kinds(day_due(shanghai(), local_ts("2025-11-25", "14:00"))) == [DayOpen]
    assert day_due(shanghai(), local_ts("2025-11-25", "15:30")) == []


def test_a_day_left_open_overnight_is_closed_and_the_next_opened_in_order() -> None:
    eng = shanghai()
    eng.apply(DayOpen(ts=local_ts("2025-11-25", "10:30")))
    assert kinds(day_due(eng, local_ts("2025-11-26", "09:00"))) == [DayClose]  # not yet the session
    assert kinds(day_due(eng, local_ts("2025-11-26", "10:45"))) == [DayClose, DayOpen]


def test_demo_rolls_its_day_at_local_midnight() -> None:
    eng = demo()
    journal: list[Command] = []
    run(eng, local_ts("2025-11-29", "03:00"), journal)  # a Saturday: 24/7 trades every day
    assert eng.day_open and eng.trading_date == "2025-11-29"
    run(eng, local_ts("2025-11-29", "23:59:59"), journal)
    assert kinds(journal) == [DayOpen]
    run(eng, local_ts("2025-11-30", "00:00"), journal)
    assert kinds(journal) == [DayOpen, DayClose, DayOpen]
    assert eng.day_open and eng.trading_date == "2025-11-30"


def test_replaying_the_journaled_schedule_gives_the_same_days() -> None:
    eng = shanghai()
    journal: list[Command] = []
    events = []
    for date in ("2025-09-30", "2025-10-01", "2025-10-02", "2025-10-03", "2025-10-04", "2025-10-06"):
        for t in ("09:00", "10:30", "12:00", "15:00", "23:00"):
            run(eng, local_ts(date, t), journal)
    replica = Engine(make_config(instrument(), calendar_table=SHANGHAI))
    for cmd in journal:
        events.extend(replica.apply(cmd))
    days = [(type(e).__name__, e.trading_date) for e in events if isinstance(e, (DayOpened, DayClosed))]
    assert days == [
        (kind, date) for date in ("2025-09-30", "2025-10-02", "2025-10-03", "2025-10-06") for kind in ("DayOpened", "DayClosed")
    ]
    assert replica.trading_date == eng.trading_date == "2025-10-06" and not replica.day_open
