"""Operator commands: members, accounts, deposits and withdrawals, the kill switch and
reference prices. Each rejects bad input with a specific reason and changes nothing."""

from __future__ import annotations

import pytest

from carbonx.engine import reasons as R
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AccountCreated,
    BlockedChanged,
    Command,
    CreateAccount,
    CreateMember,
    Deposit,
    SetBlocked,
    SetReference,
    SnapshotMark,
    SnapshotMarked,
    Withdraw,
)
from carbonx.engine.testkit import (
    T0,
    accepted,
    amend,
    cash,
    check_events,
    funded_engine,
    oid,
    place,
    reason,
    rejects,
    reports,
    state_bytes,
    tonnes,
)

CASH = 100_000_000


def rejected(eng: Engine, cmd: Command, expected: str) -> str | None:
    before = state_bytes(eng)
    events = eng.apply(cmd)
    assert reason(events) == expected, events
    assert state_bytes(eng) == before
    return rejects(events)[0].field


# ---------------------------------------------------------------------- members and accounts


def test_create_member_and_account(demo_config: MarketConfig) -> None:
    eng = Engine(demo_config)
    accepted(eng.apply(CreateMember(ts=T0, member="M9", key_id="key9", secret_hash="h")))
    events = accepted(eng.apply(CreateAccount(ts=T0, account="Z1", member="M9", type="individual")))
    assert events == [AccountCreated(seq=2, ts=T0, account="Z1", member="M9", type="individual")]
    assert eng.member_of_key("key9").member == "M9"  # type: ignore[union-attr]
    assert eng.accounts_of("M9") == ["Z1"]


def test_member_and_account_ids_are_unique_and_valid(engine: Engine) -> None:
    assert rejected(engine, CreateMember(ts=T0, member="M1", key_id="new", secret_hash="h"), R.ALREADY_EXISTS) == "member"
    assert rejected(engine, CreateMember(ts=T0, member="M3", key_id="key-M1", secret_hash="h"), R.ALREADY_EXISTS) == "key_id"
    rejected(engine, CreateMember(ts=T0, member="has space", key_id="k", secret_hash="h"), R.INVALID_ORDER)
    rejected(engine, CreateMember(ts=T0, member="", key_id="k", secret_hash="h"), R.INVALID_ORDER)
    rejected(engine, CreateAccount(ts=T0, account="A1", member="M1", type="individual"), R.ALREADY_EXISTS)
    rejected(engine, CreateAccount(ts=T0, account="Z1", member="M404", type="individual"), R.UNKNOWN_MEMBER)
    rejected(engine, CreateAccount(ts=T0, account="x" * 65, member="M1", type="individual"), R.INVALID_ORDER)


# ---------------------------------------------------------------------- deposits and withdrawals


def test_deposit_and_withdraw_cash_and_tonnes(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config, cash=0, tonnes=0)
    accepted(eng.apply(Deposit(ts=T0, account="A1", cash=500)))
    accepted(eng.apply(Deposit(ts=T0, account="A1", instrument="SHEA", quantity=7, vintage=2024)))
    accepted(eng.apply(Deposit(ts=T0, account="A1", instrument="CCER", quantity=3)))
    accepted(eng.apply(Withdraw(ts=T0, account="A1", cash=200)))
    accepted(eng.apply(Withdraw(ts=T0, account="A1", instrument="SHEA", quantity=2, vintage=2024)))
    assert cash(eng, "A1") == (300, 0)
    assert tonnes(eng, "A1", "SHEA") == (5, 0, 0, 0)
    assert tonnes(eng, "A1", "CCER") == (3, 0, 0, 0)


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (Deposit(ts=T0, account="ZZ", cash=1), R.UNKNOWN_ACCOUNT),
        (Deposit(ts=T0, account="A1", cash=-1), R.INVALID_AMOUNT),
        (Deposit(ts=T0, account="A1"), R.INVALID_AMOUNT),
        (Deposit(ts=T0, account="A1", quantity=5), R.INVALID_AMOUNT),
        (Deposit(ts=T0, account="A1", instrument="NOPE", quantity=5), R.UNKNOWN_INSTRUMENT),
        (Deposit(ts=T0, account="A1", instrument="CCER", quantity=0), R.INVALID_AMOUNT),
        (Deposit(ts=T0, account="A1", instrument="CCER", quantity=-5), R.INVALID_AMOUNT),
        (Deposit(ts=T0, account="A1", instrument="SHEA", quantity=5), R.INVALID_AMOUNT),  # needs a vintage
        (Deposit(ts=T0, account="A1", instrument="SHEA", quantity=5, vintage=2019), R.INVALID_AMOUNT),
        (Deposit(ts=T0, account="A1", instrument="CCER", quantity=5, vintage=2025), R.INVALID_AMOUNT),
        (Withdraw(ts=T0, account="A1", cash=CASH + 1), R.INSUFFICIENT_FUNDS),
        (Withdraw(ts=T0, account="A1", instrument="CCER", quantity=10_001), R.INSUFFICIENT_HOLDINGS),
        (Withdraw(ts=T0, account="A1", instrument="SHEA", quantity=1, vintage=2024), R.INSUFFICIENT_HOLDINGS),
    ],
)
def test_bad_deposits_and_withdrawals(engine: Engine, cmd: Command, expected: str) -> None:
    rejected(engine, cmd, expected)


def test_withdraw_cannot_take_frozen_cash_or_tonnes(engine: Engine) -> None:
    place(engine, "A1", "buy", 6000, 10_000)  # freezes 600,300.00 of the 1,000,000.00
    accepted(place(engine, "A1", "sell", 8100, 9_000, "CCER"))
    rejected(engine, Withdraw(ts=T0, account="A1", cash=CASH - 60_030_000 + 1), R.INSUFFICIENT_FUNDS)
    accepted(engine.apply(Withdraw(ts=T0, account="A1", cash=CASH - 60_030_000)))
    rejected(engine, Withdraw(ts=T0, account="A1", instrument="CCER", quantity=1_001), R.INSUFFICIENT_HOLDINGS)
    accepted(engine.apply(Withdraw(ts=T0, account="A1", instrument="CCER", quantity=1_000)))


# ---------------------------------------------------------------------- kill switch


def test_blocking_an_account_cancels_its_open_orders(engine: Engine) -> None:
    mine = [oid(place(engine, "A1", "buy", 6000, 10)), oid(place(engine, "A1", "sell", 8100, 10, "CCER"))]
    other = oid(place(engine, "A2", "buy", 6000, 10))
    events = accepted(engine.apply(SetBlocked(ts=engine.ts + 1, account="A1")))
    check_events(engine, events)
    assert events[0] == BlockedChanged(seq=engine.seq, ts=engine.ts, member=None, account="A1", blocked=True)
    done = [(r.order_id, r.exec_type, r.reason) for r in reports(events)]
    assert done == [(o, "cancelled", R.ACCOUNT_BLOCKED) for o in mine]
    assert engine.orders[other].leaves_qty == 10
    assert cash(engine, "A1") == (CASH, 0)
    assert tonnes(engine, "A1", "CCER") == (10_000, 0, 0, 0)


def test_blocked_account_cannot_place_or_amend_but_unblock_restores(engine: Engine) -> None:
    survivor = oid(place(engine, "A2", "buy", 6000, 10))
    engine.apply(SetBlocked(ts=engine.ts + 1, account="A2"))
    assert reason(place(engine, "A2", "buy", 6000, 1)) == R.ACCOUNT_BLOCKED
    assert reason(amend(engine, "A2", survivor, quantity=5)) == R.UNKNOWN_ORDER  # it was cancelled
    accepted(engine.apply(SetBlocked(ts=engine.ts + 1, account="A2", blocked=False)))
    accepted(place(engine, "A2", "buy", 6000, 1))


def test_blocking_a_member_blocks_all_its_accounts(engine: Engine) -> None:
    orders = [oid(place(engine, a, "buy", 6000, 1)) for a in ("A1", "A2", "B1")]
    events = accepted(engine.apply(SetBlocked(ts=engine.ts + 1, member="M1")))
    assert {r.order_id for r in reports(events)} == set(orders[:2])
    for account in ("A1", "A2"):
        assert reason(place(engine, account, "buy", 6000, 1)) == R.ACCOUNT_BLOCKED
    accepted(place(engine, "B1", "buy", 6000, 1))
    engine.apply(SetBlocked(ts=engine.ts + 1, member="M1", blocked=False))
    accepted(place(engine, "A1", "buy", 6000, 1))


def test_unblocking_the_member_keeps_an_account_block(engine: Engine) -> None:
    engine.apply(SetBlocked(ts=engine.ts + 1, account="A1"))
    engine.apply(SetBlocked(ts=engine.ts + 1, member="M1"))
    engine.apply(SetBlocked(ts=engine.ts + 1, member="M1", blocked=False))
    assert reason(place(engine, "A1", "buy", 6000, 1)) == R.ACCOUNT_BLOCKED
    accepted(place(engine, "A2", "buy", 6000, 1))


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (SetBlocked(ts=T0), R.INVALID_ORDER),
        (SetBlocked(ts=T0, member="M1", account="A1"), R.INVALID_ORDER),
        (SetBlocked(ts=T0, member="M404"), R.UNKNOWN_MEMBER),
        (SetBlocked(ts=T0, account="ZZ"), R.UNKNOWN_ACCOUNT),
    ],
)
def test_kill_switch_needs_exactly_one_known_target(engine: Engine, cmd: Command, expected: str) -> None:
    rejected(engine, cmd, expected)


# ---------------------------------------------------------------------- reference, snapshot mark


def test_set_reference_moves_the_band(engine: Engine) -> None:
    events = accepted(engine.apply(SetReference(ts=T0 + 1, instrument="SHEA", price=5000)))
    assert [(e.lower, e.upper) for e in events] == [(4500, 5500)]  # type: ignore[attr-defined]
    assert reason(place(engine, "A1", "buy", 6000, 1)) == R.PRICE_OUT_OF_BAND
    accepted(place(engine, "A1", "buy", 5500, 1))


@pytest.mark.parametrize(
    ("symbol", "price", "expected"), [("SHEA", 0, R.INVALID_TICK), ("SHEA", -1, R.INVALID_TICK), ("NOPE", 6000, R.UNKNOWN_INSTRUMENT)]
)
def test_set_reference_rejects(engine: Engine, symbol: str, price: int, expected: str) -> None:
    rejected(engine, SetReference(ts=T0 + 1, instrument=symbol, price=price), expected)


def test_set_reference_off_the_tick() -> None:
    from carbonx.engine.testkit import instrument, make_config

    eng = funded_engine(make_config(instrument("X", tick="0.05")))
    rejected(eng, SetReference(ts=T0 + 1, instrument="X", price=6001), R.INVALID_TICK)


def test_snapshot_mark_is_journaled(engine: Engine) -> None:
    assert engine.apply(SnapshotMark(ts=T0 + 1)) == [SnapshotMarked(seq=engine.seq, ts=T0 + 1)]
