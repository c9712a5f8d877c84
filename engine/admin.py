"""Operator commands: members, accounts, cash and holdings, kill switch, halts,
reference prices and the trading day (open, close: closing prices, DAY-order expiry,
reference roll, T+1 release)."""

from __future__ import annotations

from carbonx.engine import blocks
from carbonx.engine import reasons as R
from carbonx.engine.accounts import Account, Member, cash_event, holding_event, position
from carbonx.engine.calendar import is_trading_day, local_day_and_second
from carbonx.engine.checks import tick_failure, valid_id, vintage_failure
from carbonx.engine.keys import initial_key
from carbonx.engine.matching import cancel
from carbonx.engine.ranges import CASH, QUANTITY
from carbonx.engine.schema import (
    AccountCreated,
    AckAlert,
    AlertAcked,
    BlockedChanged,
    CreateAccount,
    CreateMember,
    DailyStats,
    DayClose,
    DayClosed,
    DayOpen,
    DayOpened,
    Deposit,
    MemberCreated,
    RelatedGroup,
    ScheduleChanged,
    SetBlocked,
    SetHalt,
    SetReference,
    SetRelated,
    SetSchedule,
    SnapshotMark,
    SnapshotMarked,
    Tick,
    Withdraw,
)
from carbonx.engine.state import ExchangeState, Handler, is_live


def create_member(eng: ExchangeState, cmd: CreateMember) -> None:
    if not valid_id(cmd.member) or not valid_id(cmd.key_id):
        eng.reject(cmd, R.INVALID_ORDER, "member and key_id must be 1-64 printable ASCII, no spaces", "member")
    elif cmd.member in eng.members:
        eng.reject(cmd, R.ALREADY_EXISTS, f"member {cmd.member!r} exists", "member")
    elif cmd.key_id in eng.keys:
        eng.reject(cmd, R.ALREADY_EXISTS, f"key id {cmd.key_id!r} is in use", "key_id")
    else:
        eng.members[cmd.member] = Member(member=cmd.member, key_id=cmd.key_id, secret_hash=cmd.secret_hash)
        eng.keys[cmd.key_id] = initial_key(cmd.member, cmd.key_id, cmd.secret_hash)
        eng.out.append(MemberCreated(seq=eng.seq, ts=eng.ts, member=cmd.member, key_id=cmd.key_id, secret_hash=cmd.secret_hash))


def create_account(eng: ExchangeState, cmd: CreateAccount) -> None:
    if not valid_id(cmd.account):
        eng.reject(cmd, R.INVALID_ORDER, "account must be 1-64 printable ASCII, no spaces", "account")
    elif cmd.account in eng.accounts:
        eng.reject(cmd, R.ALREADY_EXISTS, f"account {cmd.account!r} exists", "account")
    elif cmd.member not in eng.members:
        eng.reject(cmd, R.UNKNOWN_MEMBER, f"unknown member {cmd.member!r}", "member")
    else:
        eng.accounts[cmd.account] = Account(account=cmd.account, member=cmd.member, type=cmd.type)
        eng.out.append(AccountCreated(seq=eng.seq, ts=eng.ts, account=cmd.account, member=cmd.member, type=cmd.type))


def _money_move_failure(eng: ExchangeState, cmd: Deposit | Withdraw) -> tuple[Account | None, int | None]:
    acct = eng.accounts.get(cmd.account)
    if acct is None:
        eng.reject(cmd, R.UNKNOWN_ACCOUNT, f"unknown account {cmd.account!r}", "account")
        return None, None
    if cmd.cash < 0 or cmd.quantity < 0:
        eng.reject(cmd, R.INVALID_AMOUNT, "amounts must not be negative", "cash" if cmd.cash < 0 else "quantity", account=cmd.account)
        return None, None
    if cmd.instrument is None:
        if cmd.quantity or not cmd.cash:
            eng.reject(cmd, R.INVALID_AMOUNT, "give cash, or instrument and quantity", "cash", account=cmd.account)
            return None, None
        return acct, None
    if not eng.known_instrument(cmd, cmd.instrument):
        return None, None
    if not cmd.quantity:
        eng.reject(cmd, R.INVALID_AMOUNT, "quantity must be positive", "quantity", account=cmd.account)
        return None, None
    failure = vintage_failure(eng.specs[cmd.instrument], cmd.vintage, required=True, reason=R.INVALID_AMOUNT)
    if failure is not None:
        eng.reject(cmd, *failure, account=cmd.account)
        return None, None
    return acct, cmd.vintage or 0  # the holding's vintage key: 0 for instruments without vintages


def deposit(eng: ExchangeState, cmd: Deposit) -> None:
    acct, vintage = _money_move_failure(eng, cmd)
    if acct is None:
        return
    if acct.available + acct.frozen + cmd.cash > CASH.hi:  # balances stay in range too (engine.ranges)
        eng.reject(cmd, R.INVALID_AMOUNT, f"the account's cash would exceed {CASH.show(CASH.hi)} CNY", "cash", account=cmd.account)
        return
    if vintage is not None and cmd.instrument is not None:
        held = acct.holdings.get(cmd.instrument, {}).get(vintage)
        if held is not None and held.tradable + held.frozen + held.compliance_only + held.locked + cmd.quantity > QUANTITY.hi:
            eng.reject(
                cmd, R.INVALID_AMOUNT, f"the account would hold more than {QUANTITY.show(QUANTITY.hi)}", "quantity", account=cmd.account
            )
            return
    if cmd.cash:
        acct.available += cmd.cash
        eng.out.append(cash_event(acct, eng.seq, eng.ts))
    if vintage is not None and cmd.instrument is not None:
        pos = position(acct, cmd.instrument, vintage)
        if cmd.compliance_only:
            pos.compliance_only += cmd.quantity
        else:
            pos.tradable += cmd.quantity
        eng.out.append(holding_event(acct, cmd.instrument, vintage, eng.seq, eng.ts))


def withdraw(eng: ExchangeState, cmd: Withdraw) -> None:
    acct, vintage = _money_move_failure(eng, cmd)
    if acct is None:
        return
    if cmd.cash > acct.available:
        eng.reject(cmd, R.INSUFFICIENT_FUNDS, f"only {acct.available / 100:.2f} CNY available", "cash", account=cmd.account)
        return
    if vintage is not None and cmd.instrument is not None:
        held = acct.holdings.get(cmd.instrument, {}).get(vintage)
        if held is None or held.tradable < cmd.quantity:
            eng.reject(cmd, R.INSUFFICIENT_HOLDINGS, "not enough tradable tonnes", "quantity", account=cmd.account)
            return
    if cmd.cash:
        acct.available -= cmd.cash
        eng.out.append(cash_event(acct, eng.seq, eng.ts))
    if vintage is not None and cmd.instrument is not None:
        position(acct, cmd.instrument, vintage).tradable -= cmd.quantity
        eng.out.append(holding_event(acct, cmd.instrument, vintage, eng.seq, eng.ts))


def set_blocked(eng: ExchangeState, cmd: SetBlocked) -> None:
    """Kill switch: blocking cancels every open order of the member/account."""
    if (cmd.member is None) == (cmd.account is None):
        eng.reject(cmd, R.INVALID_ORDER, "give exactly one of member or account", "member")
        return
    if cmd.member is not None:
        member = eng.members.get(cmd.member)
        if member is None:
            eng.reject(cmd, R.UNKNOWN_MEMBER, f"unknown member {cmd.member!r}", "member")
            return
        member.blocked = cmd.blocked
    else:
        acct = eng.accounts.get(cmd.account or "")
        if acct is None:
            eng.reject(cmd, R.UNKNOWN_ACCOUNT, f"unknown account {cmd.account!r}", "account")
            return
        acct.blocked = cmd.blocked
    eng.out.append(BlockedChanged(seq=eng.seq, ts=eng.ts, member=cmd.member, account=cmd.account, blocked=cmd.blocked))
    if cmd.blocked:
        for o in [o for o in eng.orders.values() if is_live(o)]:
            if o.member == cmd.member or o.account == cmd.account:
                cancel(eng, o, "cancelled", R.ACCOUNT_BLOCKED)
        blocks.on_blocked(eng, cmd.member, cmd.account)


def set_halt(eng: ExchangeState, cmd: SetHalt) -> None:
    if not eng.known_instrument(cmd, cmd.instrument):
        return
    st = eng.instruments[cmd.instrument]
    if st.halted == cmd.halted:
        eng.reject(cmd, R.INVALID_STATE, f"{cmd.instrument} is already {'halted' if cmd.halted else 'trading'}", "instrument")
        return
    st.halted = cmd.halted
    eng.publish_phases()


def set_reference(eng: ExchangeState, cmd: SetReference) -> None:
    if not eng.known_instrument(cmd, cmd.instrument):
        return
    failure = tick_failure(cmd.price, eng.specs[cmd.instrument].tick, "reference price")
    if failure is not None:  # one reason for both halves of the rule, as always (INVALID_TICK)
        eng.reject(cmd, R.INVALID_TICK, failure[1], failure[2])
        return
    eng.set_reference(cmd.instrument, cmd.price)


def day_open(eng: ExchangeState, cmd: DayOpen) -> None:
    if eng.day_open:
        eng.reject(cmd, R.INVALID_STATE, f"trading day {eng.trading_date} is already open", None)
        return
    eng.day_open = True
    eng.trading_date = eng.local_date(cmd.ts)
    for st in eng.instruments.values():
        st.open = st.high = st.low = st.last = st.volume = st.notional = st.trades = 0
    eng.out.append(DayOpened(seq=eng.seq, ts=eng.ts, trading_date=eng.trading_date))
    for sym, st in eng.instruments.items():
        eng.set_reference(sym, st.reference)
    eng.publish_phases()


def close_price(notional: int, volume: int, tick: int) -> int:
    """VWAP rounded half-up to the tick."""
    return (2 * notional + volume * tick) // (2 * volume * tick) * tick


def day_close(eng: ExchangeState, cmd: DayClose) -> None:
    """Expire DAY orders, fix the closing prices, roll references, release T+1 tonnes."""
    if not eng.day_open:
        eng.reject(cmd, R.DAY_NOT_OPEN, "no trading day is open", None)
        return
    for o in [o for o in eng.orders.values() if is_live(o) and o.tif == "day"]:
        cancel(eng, o, "expired")
    blocks.on_day_close(eng)
    closes: dict[str, DailyStats] = {}
    for sym, st in eng.instruments.items():
        spec = eng.specs[sym]
        close = close_price(st.notional, st.volume, spec.tick) if st.volume else st.reference
        closes[sym] = DailyStats(
            open=st.open or close, close=close, high=st.high or close, low=st.low or close, volume=st.volume, notional=st.notional
        )
        st.history.append((eng.trading_date, st.notional, st.volume))
    for acct in eng.accounts.values():  # T+1: today's purchases become sellable
        for sym, by_vintage in acct.holdings.items():
            for vintage, pos in by_vintage.items():
                if pos.locked:
                    pos.tradable += pos.locked
                    pos.locked = 0
                    eng.out.append(holding_event(acct, sym, vintage, eng.seq, eng.ts))
    eng.out.append(DayClosed(seq=eng.seq, ts=eng.ts, trading_date=eng.trading_date, closes=closes))
    for sym, stats in closes.items():
        eng.set_reference(sym, stats.close)
    eng.orders = {oid: o for oid, o in eng.orders.items() if is_live(o)}  # finished orders leave
    eng.finished.clear()
    eng.done_coid.clear()
    eng.day_open = False
    eng.publish_phases()


def set_schedule(eng: ExchangeState, cmd: SetSchedule) -> None:
    """Switch the scheduled trading day on or off (``day_due`` gives nothing while it is off).
    Switching to the state already in force is refused (INVALID_STATE), as a halt is."""
    if eng.schedule_enabled == cmd.enabled:
        eng.reject(cmd, R.INVALID_STATE, f"the day schedule is already {'on' if cmd.enabled else 'off'}", "enabled")
        return
    eng.schedule_enabled = cmd.enabled
    eng.out.append(ScheduleChanged(seq=eng.seq, ts=eng.ts, enabled=cmd.enabled))


def day_due(eng: ExchangeState, ts: int) -> list[DayOpen | DayClose]:
    """What the gateway's clock submits at ``ts``: ``calendar_due``, or nothing while the
    operator has switched the schedule off (``SetSchedule``). The day then stays as it is
    (open or closed) until the operator opens or closes it, or switches the schedule on
    again (the next call then catches up as ``calendar_due`` describes)."""
    return calendar_due(eng, ts) if eng.schedule_enabled else []


def calendar_due(eng: ExchangeState, ts: int) -> list[DayOpen | DayClose]:
    """The day lifecycle commands the calendar makes due at ``ts`` (a query, not journaled),
    whatever the operator's switch says (``admin.schedule.get`` shows them as held back).

    Close an open day once the end of the calendar's last session has come or the local
    date has moved on; open a day on a trading day (weekday, not a holiday) from the start
    of its first session until the end of its last one, unless that date's day has already
    run (an operator's early close is not undone). A 24-hour calendar therefore rolls its
    day at local midnight: close, then open. The caller (the gateway's clock) submits the
    returned commands as ordinary journaled commands, in order, so replay is exact."""
    cal = eng.config.calendar
    if not cal.sessions:
        return []
    first = min(start for start, _ in cal.sessions)
    last = max(end for _, end in cal.sessions)
    day, second = local_day_and_second(cal, ts)
    today = eng.local_date(ts)
    out: list[DayOpen | DayClose] = []
    is_open = eng.day_open
    if is_open and (eng.trading_date != today or second >= last):
        out.append(DayClose(ts=ts))
        is_open = False
    ran_today = eng.trading_date == today
    if not is_open and not ran_today and is_trading_day(cal, day) and first <= second < last:
        out.append(DayOpen(ts=ts))
    return out


def tick(eng: ExchangeState, cmd: Tick) -> None:
    eng.publish_phases()


def snapshot_mark(eng: ExchangeState, cmd: SnapshotMark) -> None:
    eng.out.append(SnapshotMarked(seq=eng.seq, ts=eng.ts))


MAX_GROUP_ACCOUNTS = 1_000
MAX_NOTE = 500


def set_related(eng: ExchangeState, cmd: SetRelated) -> None:
    """Declare, replace or (empty ``accounts``) dissolve a related-party group."""
    accounts = cmd.accounts
    if not valid_id(cmd.group):
        eng.reject(cmd, R.INVALID_GROUP, "group must be 1-64 printable ASCII, no spaces", "group")
    elif not accounts and cmd.group not in eng.related:
        eng.reject(cmd, R.INVALID_GROUP, f"no group {cmd.group!r} to dissolve", "group")
    elif len(accounts) == 1 or len(accounts) > MAX_GROUP_ACCOUNTS:
        eng.reject(cmd, R.INVALID_GROUP, f"a group has 2 to {MAX_GROUP_ACCOUNTS} accounts, not {len(accounts)}", "accounts")
    elif len(set(accounts)) != len(accounts):
        eng.reject(cmd, R.INVALID_GROUP, "an account is listed twice", "accounts")
    elif unknown := [a for a in accounts if a not in eng.accounts]:
        eng.reject(cmd, R.INVALID_GROUP, f"unknown account {unknown[0]!r}", "accounts")
    else:
        if accounts:
            eng.related[cmd.group] = sorted(accounts)
        else:
            del eng.related[cmd.group]
        eng.out.append(RelatedGroup(seq=eng.seq, ts=eng.ts, group=cmd.group, accounts=sorted(accounts)))


def ack_alert(eng: ExchangeState, cmd: AckAlert) -> None:
    """Echo an operator's acknowledgement (the supervision consumer owns alerts)."""
    if len(cmd.note) > MAX_NOTE or len(cmd.operator) > MAX_NOTE:
        eng.reject(cmd, R.INVALID_ORDER, f"note and operator are at most {MAX_NOTE} characters", "note")
    else:
        eng.out.append(AlertAcked(seq=eng.seq, ts=eng.ts, alert_id=cmd.alert_id, operator=cmd.operator, note=cmd.note))


HANDLERS: dict[type, Handler] = {
    CreateMember: create_member,
    CreateAccount: create_account,
    Deposit: deposit,
    Withdraw: withdraw,
    SetBlocked: set_blocked,
    SetHalt: set_halt,
    SetReference: set_reference,
    DayOpen: day_open,
    DayClose: day_close,
    Tick: tick,
    SnapshotMark: snapshot_mark,
    SetRelated: set_related,
    AckAlert: ack_alert,
    SetSchedule: set_schedule,
}
