"""Trading calendar: is an instrument's continuous session open at a given time?

Time is the command's ``ts`` (ns since the epoch), turned into exchange-local time with
the configured fixed UTC offset (Shanghai has no daylight saving). No clock is read.
"""

from __future__ import annotations

import datetime

from carbonx.engine.config import CalendarSpec, InstrumentSpec

NS = 1_000_000_000
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def local_day_and_second(cal: CalendarSpec, ts: int) -> tuple[int, int]:
    """(days since 1970-01-01 local, second of the local day)."""
    return divmod(ts // NS + cal.utc_offset_s, 86400)


def local_date(cal: CalendarSpec, ts: int) -> str:
    day, _ = local_day_and_second(cal, ts)
    return datetime.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


def is_trading_day(cal: CalendarSpec, day: int) -> bool:
    if (day + 3) % 7 not in cal.weekdays:  # 1970-01-01 was a Thursday (weekday 3)
        return False
    if cal.holidays:
        return datetime.date.fromordinal(_EPOCH_ORDINAL + day).isoformat() not in cal.holidays
    return True


def in_sessions(sessions: tuple[tuple[int, int], ...], second: int) -> bool:
    for start, end in sessions:  # noqa: SIM110 - a plain loop beats any() on the order path
        if start <= second < end:
            return True
    return False


class SessionClock:
    """Answers "is this instrument in session at ts?" with a per-day cache."""

    __slots__ = ("_day", "_trading", "cal")

    def __init__(self, cal: CalendarSpec) -> None:
        self.cal = cal
        self._day = -1
        self._trading = False

    def in_session(self, spec: InstrumentSpec, ts: int, sessions: tuple[tuple[int, int], ...] | None = None) -> bool:
        day, second = divmod(ts // NS + self.cal.utc_offset_s, 86400)
        if day != self._day:
            self._day = day
            self._trading = is_trading_day(self.cal, day)
        if not self._trading:
            return False
        return in_sessions(sessions or spec.sessions or self.cal.sessions, second)

    def window(self, spec: InstrumentSpec, ts: int) -> tuple[int, int, str]:
        """(from_ts, until_ts, phase): the stretch of time around ``ts`` during which the
        calendar phase ("open" or "closed") stays the same, never crossing midnight.
        Lets the engine answer the per-order session check with two comparisons."""
        local = ts // NS + self.cal.utc_offset_s
        day, second = divmod(local, 86400)
        day_start = (local - second - self.cal.utc_offset_s) * NS
        if not is_trading_day(self.cal, day):
            return day_start, day_start + 86400 * NS, "closed"
        lo, hi = 0, 86400
        for start, end in spec.sessions or self.cal.sessions:
            if start <= second < end:
                return day_start + start * NS, day_start + end * NS, "open"
            if end <= second:
                lo = max(lo, end)
            elif start > second:
                hi = min(hi, start)
        return day_start + lo * NS, day_start + hi * NS, "closed"
