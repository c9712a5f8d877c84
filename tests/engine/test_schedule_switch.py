"""The operator's switch for the scheduled trading day (``SetSchedule``): while it is off
``admin.day_due`` makes nothing due (no open, no close), the switch is journaled state
(snapshot, restore, replay) and a repeated switch is refused without changing anything."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonx.engine import reasons as R
from carbonx.engine.admin import calendar_due, day_due
from carbonx.engine.engine import STATE_FORMAT, Engine
from carbonx.engine.schema import Command, DayClose, DayOpen, Reject, ScheduleChanged, SetSchedule, command_decoder, command_encoder
from carbonx.engine.testkit import instrument, local_ts, make_config
from tests.engine.test_schedule import SHANGHAI, kinds, run, shanghai


def switch(eng: Engine, enabled: bool, ts: int) -> list[object]:
    return list(eng.apply(SetSchedule(ts=ts, enabled=enabled)))


def test_off_nothing_opens_on_the_due_open_appears() -> None:
    eng = shanghai()
    assert eng.schedule_enabled
    events = switch(eng, False, local_ts("2025-11-25", "09:00"))
    assert events == [ScheduleChanged(seq=eng.seq, ts=local_ts("2025-11-25", "09:00"), enabled=False)]
    assert not eng.schedule_enabled
    assert day_due(eng, local_ts("2025-11-25", "10:30")) == []
    assert day_due(eng, local_ts("2025-11-25", "14:00")) == []
    assert kinds(calendar_due(eng, local_ts("2025-11-25", "14:00"))) == [DayOpen]  # due, held back by the switch
    switch(eng, True, local_ts("2025-11-25", "14:00"))
    assert kinds(day_due(eng, local_ts("2025-11-25", "14:00:01"))) == [DayOpen]


def test_off_an_open_day_is_not_closed_until_the_operator_does() -> None:
    eng = shanghai()
    journal: list[Command] = []
    run(eng, local_ts("2025-11-25", "10:30"), journal)
    assert eng.day_open
    switch(eng, False, local_ts("2025-11-25", "11:00"))
    for date, t in (("2025-11-25", "15:00"), ("2025-11-25", "23:00"), ("2025-11-26", "10:30")):
        assert day_due(eng, local_ts(date, t)) == []
    assert eng.day_open and eng.trading_date == "2025-11-25"
    eng.apply(DayClose(ts=local_ts("2025-11-26", "10:31")))  # the operator runs the day by hand
    assert not eng.day_open
    assert day_due(eng, local_ts("2025-11-27", "10:30")) == []
    switch(eng, True, local_ts("2025-11-27", "10:40"))
    assert kinds(day_due(eng, local_ts("2025-11-27", "10:41"))) == [DayOpen]


def test_switching_to_the_state_in_force_is_refused_and_changes_nothing() -> None:
    eng = shanghai()
    before = msgspec.msgpack.decode(eng.snapshot())
    (ev,) = switch(eng, True, local_ts("2025-11-25", "09:00"))
    assert isinstance(ev, Reject) and ev.reason == R.INVALID_STATE and ev.field == "enabled"
    assert ev.message == "the day schedule is already on"
    after = msgspec.msgpack.decode(eng.snapshot())
    assert {k: v for k, v in after.items() if k not in ("seq", "ts")} == {k: v for k, v in before.items() if k not in ("seq", "ts")}
    switch(eng, False, local_ts("2025-11-25", "09:01"))
    (ev,) = switch(eng, False, local_ts("2025-11-25", "09:02"))
    assert isinstance(ev, Reject) and ev.message == "the day schedule is already off" and not eng.schedule_enabled


def test_the_switch_survives_snapshot_and_restore() -> None:
    eng = shanghai()
    switch(eng, False, local_ts("2025-11-25", "09:00"))
    restored = Engine.restore(eng.config, eng.snapshot())
    assert not restored.schedule_enabled and restored.digest() == eng.digest()
    assert restored.restored_format == STATE_FORMAT == 3
    assert day_due(restored, local_ts("2025-11-25", "10:30")) == []


def test_a_snapshot_from_before_the_switch_existed_restores_with_the_schedule_on() -> None:
    eng = shanghai()
    switch(eng, False, local_ts("2025-11-25", "09:00"))
    raw = msgspec.msgpack.decode(eng.snapshot())
    del raw["schedule"]
    raw["format"] = 2
    old = Engine.restore(eng.config, msgspec.msgpack.encode(raw))
    assert old.restored_format == 2 and old.schedule_enabled
    assert kinds(day_due(old, local_ts("2025-11-25", "10:30"))) == [DayOpen]


def test_the_command_round_trips_through_the_journal_encoding() -> None:
    cmd = SetSchedule(ts=local_ts("2025-11-25", "09:00"), enabled=False)
    assert command_decoder.decode(command_encoder.encode(cmd)) == cmd


# What the gateway's clock and an operator do, in any order: tick the clock at a time, or flip the switch.
steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=8 * 24 * 60 - 1), st.sampled_from(["tick", "on", "off"])), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_replay_of_clock_and_switch_is_exact_and_off_means_nothing_due(plan: list[tuple[int, str]]) -> None:
    eng = shanghai()
    journal: list[Command] = []
    start = local_ts("2025-11-24", "00:00")
    for minute, what in sorted(plan):
        ts = start + minute * 60 * 1_000_000_000
        if what == "tick":
            due = day_due(eng, ts)
            assert due == (calendar_due(eng, ts) if eng.schedule_enabled else [])
            for cmd in due:
                assert not any(isinstance(e, Reject) for e in eng.apply(cmd))
                journal.append(cmd)
        else:
            cmd = SetSchedule(ts=ts, enabled=what == "on")
            eng.apply(cmd)
            journal.append(cmd)
    replica = Engine(make_config(instrument(), calendar_table=SHANGHAI))
    for cmd in journal:
        replica.apply(command_decoder.decode(command_encoder.encode(cmd)))
    assert replica.digest() == eng.digest()
    assert replica.schedule_enabled == eng.schedule_enabled
