"""Operator methods on the admin listener: members, accounts, money, halts, references, snapshots, the trading day."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from carbonx.engine import reasons as R
from carbonx.engine.admin import calendar_due
from carbonx.engine.schema import (
    AccountCreated,
    Balance,
    BlockedChanged,
    CancelAll,
    CreateAccount,
    CreateMember,
    DayClose,
    DayClosed,
    DayOpen,
    DayOpened,
    Deposit,
    Event,
    Holding,
    InstrumentStatus,
    MemberCreated,
    ReferencePrice,
    ScheduleChanged,
    SetBlocked,
    SetHalt,
    SetReference,
    SetSchedule,
    SnapshotMark,
    Withdraw,
)
from carbonx.gateway.logins import Busy
from carbonx.gateway.passwords import hash_secret
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import (
    AccountCreateParams,
    AdminCancelAllParams,
    BlockedParams,
    DepositParams,
    InstrumentParams,
    MemberCreateParams,
    MoneyMoveParams,
    NoParams,
    ScheduleParams,
    SetReferenceParams,
    parse_money,
    parse_price,
)
from carbonx.gateway.protocol.views import daily_stats, format_fen
from carbonx.gateway.rpc.call import Call, cancel_all, first, pick
from carbonx.gateway.rpc.registry import method


@method("admin.member.create", MemberCreateParams, "operator", role="admin")
async def member_create(call: Call, p: MemberCreateParams) -> None:
    secret = p.secret
    try:
        secret_hash = await call.gw.logins[True].run(lambda: hash_secret(secret))
    except Busy as busy:
        raise RpcError.business(R.RATE_LIMITED, str(busy), retry_after_ms=1000) from None
    cmd = CreateMember(ts=time.time_ns(), member=p.member, key_id=p.key_id, secret_hash=secret_hash)
    call.command(cmd, lambda events: pick(first(events, MemberCreated), "member", "key_id") | {"seq": events[0].seq})


@method("admin.account.create", AccountCreateParams, "operator", role="admin")
def account_create(call: Call, p: AccountCreateParams) -> None:
    cmd = CreateAccount(ts=call.recv_ns, account=p.account, member=p.member, type=p.type)
    call.command(cmd, lambda events: pick(first(events, AccountCreated), "account", "member", "type") | {"seq": events[0].seq})


@method("admin.account.deposit", DepositParams, "operator", role="operator")
def deposit(call: Call, p: DepositParams) -> None:
    cash = 0 if p.cash is None else parse_money(p.cash, "cash")
    cmd = Deposit(
        ts=call.recv_ns,
        account=p.account,
        cash=cash,
        instrument=p.instrument,
        quantity=p.quantity,
        vintage=p.vintage,
        compliance_only=p.compliance_only,
    )
    call.command(cmd, lambda events: {"account": p.account, **money_events(events)})


@method("admin.account.withdraw", MoneyMoveParams, "operator", role="operator")
def withdraw(call: Call, p: MoneyMoveParams) -> None:
    cash = 0 if p.cash is None else parse_money(p.cash, "cash")
    cmd = Withdraw(ts=call.recv_ns, account=p.account, cash=cash, instrument=p.instrument, quantity=p.quantity, vintage=p.vintage)
    call.command(cmd, lambda events: {"account": p.account, **money_events(events)})


def _set_halt(call: Call, instrument: str, halted: bool) -> None:
    def build(events: list[Event]) -> dict[str, Any]:
        st = next((e for e in events if type(e) is InstrumentStatus), None)
        return {"instrument": instrument, "halted": halted, "phase": st.phase if st else None, "seq": events[0].seq if events else None}

    call.command(SetHalt(ts=call.recv_ns, instrument=instrument, halted=halted), build)


@method("admin.instrument.halt", InstrumentParams, "operator", role="operator")
def halt(call: Call, p: InstrumentParams) -> None:
    _set_halt(call, p.instrument, True)


@method("admin.instrument.resume", InstrumentParams, "operator", role="operator")
def resume(call: Call, p: InstrumentParams) -> None:
    _set_halt(call, p.instrument, False)


@method("admin.instrument.set_reference", SetReferenceParams, "operator", role="operator")
def set_reference(call: Call, p: SetReferenceParams) -> None:
    def build(events: list[Event]) -> dict[str, Any]:
        ev = first(events, ReferencePrice)
        return {
            "instrument": ev.instrument,
            "price": format_fen(ev.price),
            "lower": format_fen(ev.lower),
            "upper": format_fen(ev.upper),
            "seq": ev.seq,
        }

    call.command(SetReference(ts=call.recv_ns, instrument=p.instrument, price=parse_price(p.price)), build)


def _set_blocked(call: Call, p: BlockedParams, blocked: bool) -> None:
    cmd = SetBlocked(ts=call.recv_ns, member=p.member, account=p.account, blocked=blocked)
    call.command(cmd, lambda events: pick(first(events, BlockedChanged), "member", "account", "blocked") | {"seq": events[0].seq})


@method("admin.block", BlockedParams, "operator", role="operator")
def block(call: Call, p: BlockedParams) -> None:
    _set_blocked(call, p, True)


@method("admin.unblock", BlockedParams, "operator", role="operator")
def unblock(call: Call, p: BlockedParams) -> None:
    _set_blocked(call, p, False)


@method("admin.order.cancel_all", AdminCancelAllParams, "operator", role="operator")
def cancel_all_of(call: Call, p: AdminCancelAllParams) -> None:
    cmd = CancelAll(ts=call.recv_ns, member=p.member or "", account=p.account, instrument=p.instrument, side=p.side)
    cancel_all(call, cmd)


@method("admin.snapshot", NoParams, "operator", role="operator")
async def snapshot(call: Call, p: NoParams) -> None:
    if call.gw.snapshots is None:
        raise RpcError.business(R.INVALID_STATE, "snapshots are not configured")
    done: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
    call.gw.seq.submit(SnapshotMark(ts=call.recv_ns), done.set_result, call.recv_ns)
    await done
    call.reply(await call.gw.snapshot())


@method("admin.day.open", NoParams, "operator", role="operator")
def day_open(call: Call, p: NoParams) -> None:
    call.command(DayOpen(ts=call.recv_ns), lambda events: {"trading_date": first(events, DayOpened).trading_date, "seq": events[0].seq})


@method("admin.day.close", NoParams, "operator", role="operator")
def day_close(call: Call, p: NoParams) -> None:
    def build(events: list[Event]) -> dict[str, Any]:
        ev = first(events, DayClosed)
        return {"trading_date": ev.trading_date, "closes": {k: daily_stats(v) for k, v in ev.closes.items()}, "seq": ev.seq}

    call.command(DayClose(ts=call.recv_ns), build)


def schedule_view(call: Call) -> dict[str, Any]:
    """The scheduled day as ``admin.status`` and ``admin.schedule.*`` show it: ``configured``
    (``[server] day_schedule``), ``enabled`` (the operator's switch, journaled), ``active``
    (both: the clock opens and closes the day) and ``due``: the day commands the calendar
    makes due now (the clock submits them at its next tick when active; held back otherwise)."""
    gw = call.gw
    configured, enabled = gw.settings.server.day_schedule, gw.engine.schedule_enabled
    return {
        "configured": configured,
        "enabled": enabled,
        "active": configured and enabled,
        "due": [type(cmd).__struct_config__.tag for cmd in calendar_due(gw.engine, time.time_ns())],
    }


@method("admin.schedule.set", ScheduleParams, "operator", role="operator")
def schedule_set(call: Call, p: ScheduleParams) -> None:
    """Switch the scheduled trading day on or off (journaled: replay and restarts keep it).
    Allowed while ``[server] day_schedule`` is false, so the switch can be set before the
    schedule is configured; the reply's ``active`` says whether the clock acts on it."""

    def build(events: list[Event]) -> dict[str, Any]:
        ev = first(events, ScheduleChanged)  # the switch as this command left it (later commands may have moved it)
        view = schedule_view(call)
        return view | {"enabled": ev.enabled, "active": view["configured"] and ev.enabled, "seq": ev.seq}

    call.command(SetSchedule(ts=call.recv_ns, enabled=p.enabled), build)


@method("admin.schedule.get", NoParams, "operator", role="viewer")
def schedule_get(call: Call, p: NoParams) -> None:
    eng = call.gw.engine
    call.read(schedule_view(call) | {"day_open": eng.day_open, "trading_date": eng.trading_date or None})


@method("admin.status", NoParams, "operator", role="viewer")
def status(call: Call, p: NoParams) -> None:
    eng = call.gw.engine
    call.read(
        {
            "seq": eng.seq,
            "durable_seq": call.gw.journal.durable_seq,
            "day_open": eng.day_open,
            "trading_date": eng.trading_date or None,
            "phases": {sym: eng.phase(sym, time.time_ns()) for sym in eng.specs},
            "sessions": len(call.gw.registry.sessions),
            "schedule": schedule_view(call),
        }
    )


def money_events(events: list[Event], seq_hint: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": events[0].seq if events else seq_hint}
    for ev in events:
        if type(ev) is Balance:
            out["cash"] = {"available": format_fen(ev.available), "frozen": format_fen(ev.frozen)}
        elif type(ev) is Holding:
            out.setdefault("holdings", []).append(
                {"instrument": ev.instrument, "vintage": ev.vintage or None, "tradable": ev.tradable, "frozen": ev.frozen,
                 "compliance_only": ev.compliance_only, "locked": ev.locked}
            )  # fmt: skip
    return out
