"""Retirement of credits: certificates, conservation, no double retirement, event
neutrality coverage, and certificates that survive restart and replay identically."""

from __future__ import annotations

import pytest

from carbonx.engine import reasons as R
from carbonx.engine.accounts import position
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.retirement import certificate, event_view
from carbonx.engine.schema import (
    BlockAccept,
    BlockPropose,
    Certificate,
    Command,
    CreateAccount,
    CreateMember,
    DayOpen,
    Deposit,
    EventCreate,
    Holding,
    NeutralityEvent,
    PlaceOrder,
    Retire,
    SetBlocked,
    Trade,
    Withdraw,
)
from carbonx.engine.testkit import T0
from tests.blocks.conftest import TONNES, ledger, only, rejected, tonnes_total

T = T0 + 60_000_000_000


def retire(eng: Engine, **kw: object) -> list:  # type: ignore[type-arg]
    """A1 (member M1) retires 1,000 t of SHEA for public welfare unless told otherwise."""
    args: dict[str, object] = dict(
        ts=T, member="M1", account="A1", instrument="SHEA", quantity=1_000, purpose="public_welfare", beneficiary="Shanghai Zoo"
    )
    args.update(kw)
    return eng.apply(Retire(**args))  # type: ignore[arg-type]


def issued(events: list) -> Certificate:  # type: ignore[type-arg]
    """The retirement certificate (the one naming an account) among the events."""
    (cert,) = [c for c in only(events, Certificate) if c.account]
    return cert  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- certificates


def test_retirement_removes_tradable_tonnes_and_issues_a_public_certificate(eng: Engine) -> None:
    events = retire(eng, beneficiary="上海动物园 (Shanghai Zoo)")
    cert = issued(events)
    assert (cert.certificate_id, cert.account, cert.member, cert.instrument) == (1, "A1", "M1", "SHEA")
    assert (cert.vintage, cert.vintages, cert.quantity, cert.purpose) == (2025, [(2025, 1_000)], 1_000, "public_welfare")
    assert (cert.beneficiary, cert.event_id, cert.seq, cert.ts) == ("上海动物园 (Shanghai Zoo)", None, eng.seq, T)
    (hold,) = only(events, Holding)
    assert (hold.account, hold.vintage, hold.tradable, hold.frozen) == ("A1", 2025, TONNES - 1_000, 0)
    assert eng.registry.retired_total == {"SHEA": 1_000}
    assert certificate(eng, 1) == cert
    assert certificate(eng, 2) is None


def test_instrument_without_vintages_has_no_vintage_on_its_certificate(eng: Engine) -> None:
    cert = issued(retire(eng, instrument="SHCER", quantity=5))
    assert (cert.vintage, cert.vintages, cert.quantity) == (None, None, 5)
    assert position(eng.accounts["A1"], "SHCER", 0).tradable == TONNES - 5


def test_oldest_vintage_first_unless_a_vintage_is_named(eng: Engine) -> None:
    eng.apply(Deposit(ts=T, account="A1", instrument="SHEA", quantity=100, vintage=2024))
    eng.apply(Deposit(ts=T, account="A1", instrument="SHEA", quantity=100, vintage=2026))
    cert = issued(retire(eng, quantity=150))
    assert (cert.vintage, cert.vintages) == (None, [(2024, 100), (2025, 50)])
    cert = issued(retire(eng, quantity=60, vintage=2026))
    assert (cert.vintage, cert.vintages) == (2026, [(2026, 60)])
    holdings = {v: p.tradable for v, p in eng.accounts["A1"].holdings["SHEA"].items()}
    assert holdings == {2024: 0, 2025: TONNES - 50, 2026: 40}
    assert rejected(retire(eng, quantity=41, vintage=2026)).reason == R.INSUFFICIENT_HOLDINGS


def test_retired_tonnes_can_never_be_sold_or_retired_again(eng: Engine) -> None:
    retire(eng, quantity=TONNES)
    r = rejected(retire(eng, quantity=1))
    assert (r.reason, r.field) == (R.INSUFFICIENT_HOLDINGS, "quantity")
    r = rejected(eng.apply(PlaceOrder(ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=1)))
    assert r.reason == R.INSUFFICIENT_HOLDINGS
    r = rejected(
        eng.apply(
            BlockPropose(
                ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=100_000, counterparty_account="B1"
            )
        )
    )
    assert r.reason == R.INSUFFICIENT_HOLDINGS
    r = rejected(eng.apply(Withdraw(ts=T, account="A1", instrument="SHEA", quantity=1, vintage=2025)))
    assert r.reason == R.INSUFFICIENT_HOLDINGS
    assert eng.registry.retired_total["SHEA"] == TONNES
    assert len(eng.registry.certificates) == 1


def test_only_tradable_tonnes_are_retirable(eng: Engine) -> None:
    """Compliance-only (auction), frozen (open sell orders) and T+1-locked tonnes stay."""
    eng.apply(Deposit(ts=T, account="B1", instrument="SHEA", quantity=500, vintage=2024, compliance_only=True))
    r = rejected(retire(eng, member="M2", account="B1", vintage=2024, quantity=1))
    assert r.reason == R.INSUFFICIENT_HOLDINGS and "500 t compliance-only" in r.message
    eng.apply(PlaceOrder(ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=99_999))
    r = rejected(retire(eng, quantity=TONNES - 99_999 + 1))
    assert "99999 t frozen" in r.message
    issued(retire(eng, quantity=TONNES - 99_999))
    eng.apply(
        BlockPropose(
            ts=T, member="M2", account="B1", instrument="CCER", side="sell", price=8_000, quantity=100_000, counterparty_account="A2"
        )
    )
    assert only(eng.apply(BlockAccept(ts=T, member="M1", account="A2", block_id=1)), Trade)
    r = rejected(retire(eng, account="A2", instrument="CCER", quantity=TONNES + 1))
    assert "100000 t locked" in r.message  # CCER is T+1: bought today, not retirable today


def test_conservation_through_trading_blocks_and_retirement(eng: Engine) -> None:
    start = {s: tonnes_total(eng, s) for s in eng.specs}
    deposited = 4 * TONNES
    assert start == dict.fromkeys(eng.specs, deposited)
    eng.apply(PlaceOrder(ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=5_000))
    eng.apply(PlaceOrder(ts=T, member="M2", account="B1", instrument="SHEA", side="buy", price=6_000, quantity=3_000))
    eng.apply(
        BlockPropose(
            ts=T, member="M2", account="B1", instrument="SHEA", side="sell", price=6_000, quantity=200_000, counterparty_account="A2"
        )
    )
    eng.apply(BlockAccept(ts=T, member="M1", account="A2", block_id=1))
    retire(eng, quantity=7_000)
    retire(eng, member="M1", account="A2", quantity=250_000, purpose="compliance_offset", beneficiary="A2 2025 obligation")
    retire(eng, member="M2", account="B1", instrument="CCER", quantity=1)
    assert eng.registry.retired_total == {"SHEA": 257_000, "CCER": 1}
    held = {s: sum(sum(p.total() for p in a.holdings.get(s, {}).values()) for a in eng.accounts.values()) for s in eng.specs}
    assert held == {"SHEA": deposited - 257_000, "CCER": deposited - 1, "SHCER": deposited}
    assert {s: tonnes_total(eng, s) for s in eng.specs} == start
    assert sum(c.quantity for c in eng.registry.certificates.values()) == 257_001


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"member": "M2"}, R.NOT_AUTHORIZED, "account"),
        ({"account": "NOPE"}, R.NOT_AUTHORIZED, "account"),
        ({"instrument": "XXX"}, R.UNKNOWN_INSTRUMENT, "instrument"),
        ({"purpose": "greenwashing"}, R.INVALID_PURPOSE, "purpose"),
        ({"beneficiary": ""}, R.INVALID_ORDER, "beneficiary"),
        ({"beneficiary": "   "}, R.INVALID_ORDER, "beneficiary"),
        ({"beneficiary": "x" * 201}, R.INVALID_ORDER, "beneficiary"),
        ({"beneficiary": "line\nbreak"}, R.INVALID_ORDER, "beneficiary"),
        ({"event_id": "expo"}, R.INVALID_PURPOSE, "event_id"),
        ({"purpose": "event_neutrality"}, R.INVALID_PURPOSE, "event_id"),
        ({"purpose": "event_neutrality", "event_id": "nope"}, R.UNKNOWN_EVENT, "event_id"),
        ({"quantity": 0}, R.INVALID_QUANTITY, "quantity"),
        ({"quantity": -5}, R.INVALID_QUANTITY, "quantity"),
        ({"vintage": 2023}, R.INVALID_ORDER, "vintage"),
        ({"instrument": "CCER", "vintage": 2025}, R.INVALID_ORDER, "vintage"),
        ({"quantity": TONNES + 1}, R.INSUFFICIENT_HOLDINGS, "quantity"),
        ({"vintage": 2024}, R.INSUFFICIENT_HOLDINGS, "quantity"),
    ],
)
def test_bad_retirements_are_rejected_and_change_nothing(eng: Engine, changes: dict[str, object], reason: str, field: str) -> None:
    eng.apply(EventCreate(ts=T, event_id="expo", name="Expo", footprint=10))
    start = ledger(eng)
    r = rejected(retire(eng, **changes))
    assert (r.reason, r.field) == (reason, field), r.message
    assert ledger(eng) == start
    assert eng.registry.next_certificate_id == 1


def test_beneficiary_of_exactly_200_characters_is_accepted(eng: Engine) -> None:
    assert issued(retire(eng, beneficiary="é" * 200)).beneficiary == "é" * 200


def test_blocked_account_cannot_retire(eng: Engine) -> None:
    eng.apply(SetBlocked(ts=T, member="M1"))
    assert rejected(retire(eng)).reason == R.ACCOUNT_BLOCKED


def test_retirement_needs_no_open_trading_day(demo_config: MarketConfig) -> None:
    eng = Engine(demo_config)
    eng.apply(CreateMember(ts=T0, member="M1", key_id="k", secret_hash="x"))
    eng.apply(CreateAccount(ts=T0, account="A1", member="M1", type="individual"))
    eng.apply(Deposit(ts=T0, account="A1", instrument="SHCER", quantity=10))
    assert issued(retire(eng, instrument="SHCER", quantity=10)).quantity == 10


# ---------------------------------------------------------------------- events and neutrality


@pytest.mark.parametrize(
    ("event_id", "name", "footprint", "reason", "field"),
    [
        ("", "Expo", 10, R.INVALID_ORDER, "event_id"),
        ("has space", "Expo", 10, R.INVALID_ORDER, "event_id"),
        ("e" * 65, "Expo", 10, R.INVALID_ORDER, "event_id"),
        ("expo", "", 10, R.INVALID_ORDER, "name"),
        ("expo", "Expo", 0, R.INVALID_QUANTITY, "footprint"),
        ("expo", "Expo", -1, R.INVALID_QUANTITY, "footprint"),
        ("marathon", "Again", 10, R.ALREADY_EXISTS, "event_id"),
    ],
)
def test_bad_event_registrations(eng: Engine, event_id: str, name: str, footprint: int, reason: str, field: str) -> None:
    eng.apply(EventCreate(ts=T, event_id="marathon", name="Marathon", footprint=5))
    start = ledger(eng)
    r = rejected(eng.apply(EventCreate(ts=T, event_id=event_id, name=name, footprint=footprint)))
    assert (r.reason, r.field) == (reason, field)
    assert ledger(eng) == start


def test_partial_coverage_does_not_certify_full_coverage_does_once(eng: Engine) -> None:
    (created,) = only(eng.apply(EventCreate(ts=T, event_id="expo2026", name="Shanghai Expo 2026", footprint=12_000)), NeutralityEvent)
    assert (created.retired, created.certificate_id) == (0, None)
    assert event_view(eng, "expo2026") == created
    neutral = {"purpose": "event_neutrality", "event_id": "expo2026", "beneficiary": "Expo organisers"}
    events = retire(eng, quantity=5_000, **neutral)
    first = issued(events)
    assert first.event_id == "expo2026"
    (ev,) = only(events, NeutralityEvent)
    assert (ev.retired, ev.certificate_id, ev.seq) == (5_000, None, eng.seq)
    events = retire(eng, member="M2", account="B1", instrument="CCER", quantity=6_999, **neutral)
    assert len(only(events, Certificate)) == 1  # 11,999 of 12,000 t: still not neutral
    assert event_view(eng, "expo2026") == only(events, NeutralityEvent)[0]
    assert event_view(eng, "expo2026").certificate_id is None  # type: ignore[union-attr]
    events = retire(eng, member="M2", account="B2", instrument="SHCER", quantity=1, **neutral)
    last = issued(events)
    (summary,) = [c for c in only(events, Certificate) if not c.account]
    assert (summary.purpose, summary.event_id, summary.beneficiary, summary.quantity) == (
        "event_neutrality",
        "expo2026",
        "Shanghai Expo 2026",
        12_000,
    )
    assert summary.covers == [first.certificate_id, first.certificate_id + 1, last.certificate_id]
    assert (summary.seq, summary.instrument, summary.member) == (eng.seq, "", "")
    (ev,) = only(events, NeutralityEvent)
    assert (ev.retired, ev.certificate_id) == (12_000, summary.certificate_id)
    assert certificate(eng, summary.certificate_id) == summary
    # more retirements still count, but the neutrality certificate is issued once
    events = retire(eng, quantity=10, **neutral)
    assert len(only(events, Certificate)) == 1
    assert event_view(eng, "expo2026") == only(events, NeutralityEvent)[0]
    assert (only(events, NeutralityEvent)[0].retired, only(events, NeutralityEvent)[0].certificate_id) == (12_010, summary.certificate_id)
    assert event_view(eng, "nope") is None


def test_one_retirement_covering_the_whole_footprint_certifies_at_once(eng: Engine) -> None:
    eng.apply(EventCreate(ts=T, event_id="gala", name="Gala", footprint=100))
    events = retire(eng, quantity=150, purpose="event_neutrality", event_id="gala")
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Holding", "Certificate", "Certificate", "NeutralityEvent"]
    assert only(events, NeutralityEvent)[0].certificate_id == 2


# ---------------------------------------------------------------------- restart and replay


def _history() -> list[Command]:
    """A day with trading, a block, an event and retirements of every purpose."""
    cmds: list[Command] = []
    for m in ("M1", "M2"):
        cmds.append(CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x"))
    for acct, member in (("A1", "M1"), ("B1", "M2")):
        cmds.append(CreateAccount(ts=T0, account=acct, member=member, type="covered_entity"))
        cmds.append(Deposit(ts=T0, account=acct, cash=10**10))
        cmds.append(Deposit(ts=T0, account=acct, instrument="SHEA", quantity=TONNES, vintage=2025))
        cmds.append(Deposit(ts=T0, account=acct, instrument="SHEA", quantity=1_000, vintage=2024))
        cmds.append(Deposit(ts=T0, account=acct, instrument="CCER", quantity=TONNES))
    cmds += [
        DayOpen(ts=T0),
        EventCreate(ts=T, event_id="f1", name="Formula 1 Shanghai", footprint=3_000),
        PlaceOrder(ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6_000, quantity=1_500),
        PlaceOrder(ts=T, member="M2", account="B1", instrument="SHEA", side="buy", price=6_000, quantity=1_500),
        BlockPropose(
            ts=T, member="M1", account="A1", instrument="CCER", side="buy", price=8_500, quantity=100_000, counterparty_account="B1"
        ),
        BlockAccept(ts=T, member="M2", account="B1", block_id=1),
        Retire(
            ts=T + 1,
            member="M1",
            account="A1",
            instrument="SHEA",
            quantity=2_000,
            purpose="event_neutrality",
            beneficiary="F1",
            event_id="f1",
        ),
        Retire(ts=T + 2, member="M2", account="B1", instrument="SHEA", quantity=500, purpose="compliance_offset", beneficiary="B1"),
        Retire(ts=T + 3, member="M2", account="B1", instrument="CCER", quantity=999, purpose="public_welfare", beneficiary="Trees"),
    ]
    return cmds


def _finish(eng: Engine) -> list[object]:
    """Commands after the restart point: completes the event's coverage."""
    return [
        *eng.apply(
            Retire(
                ts=T + 4,
                member="M2",
                account="B1",
                instrument="SHEA",
                quantity=1_000,
                purpose="event_neutrality",
                beneficiary="F1",
                event_id="f1",
            )
        ),
        *eng.apply(Retire(ts=T + 5, member="M1", account="A1", instrument="SHEA", quantity=1, purpose="public_welfare", beneficiary="x")),
    ]


def test_certificates_survive_restart_and_replay_identically(demo_config: MarketConfig) -> None:
    original = Engine(demo_config)
    events = [e for cmd in _history() for e in original.apply(cmd)]
    assert not [e for e in events if type(e).__name__ == "Reject"]
    assert len(original.registry.certificates) == 3
    restored = Engine.restore(demo_config, original.snapshot())
    replayed = Engine(demo_config)
    replayed_events = [e for cmd in _history() for e in replayed.apply(cmd)]
    assert replayed_events == events
    assert restored.digest() == replayed.digest() == original.digest()
    for eng in (restored, replayed):
        assert eng.registry == original.registry
        assert [certificate(eng, i) for i in (1, 2, 3)] == [certificate(original, i) for i in (1, 2, 3)]
        assert event_view(eng, "f1") == event_view(original, "f1")
    # and they keep going identically: the same next certificate ids and neutrality certificate
    tails = [_finish(eng) for eng in (original, restored, replayed)]
    assert tails[0] == tails[1] == tails[2]
    assert original.digest() == restored.digest() == replayed.digest()
    ev = event_view(restored, "f1")
    assert ev is not None and (ev.retired, ev.certificate_id) == (3_000, 5)
    summary = certificate(restored, 5)
    assert summary is not None and summary.covers == [1, 4]
    assert restored.registry.retired_total == {"SHEA": 3_501, "CCER": 999}
