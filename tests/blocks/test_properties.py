"""Property test: random mixes of listing orders, block trades and retirements.

After every command: money (with fees) and tonnes (with retired tonnes) are conserved,
no bucket goes negative, the retirement certificates add up to the retired totals and
each event's coverage to its certificates. At the end, a snapshot restore and a replay
into a fresh engine give the same digest and the same certificates.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    BlockAccept,
    BlockCancel,
    BlockDecline,
    BlockPropose,
    Command,
    CreateAccount,
    CreateMember,
    DayClose,
    DayOpen,
    Deposit,
    EventCreate,
    PlaceOrder,
    Retire,
)
from carbonx.engine.testkit import T0
from tests.blocks.conftest import cash_total, tonnes_total

OWNERS = {"A1": "M1", "A2": "M1", "B1": "M2", "B2": "M2"}
ACCOUNTS = sorted(OWNERS)
SYMBOLS = ["SHEA", "CCER", "SHCER"]
REFERENCE = {"SHEA": 6_000, "CCER": 8_000, "SHCER": 2_000}

account = st.sampled_from(ACCOUNTS)
symbol = st.sampled_from(SYMBOLS)
pick = st.integers(0, 7)  # which open proposal a reply targets

order = st.tuples(st.just("order"), account, symbol, st.sampled_from(["buy", "sell"]), st.integers(-3, 3), st.integers(1, 20_000))
propose = st.tuples(
    st.just("propose"),
    account,
    st.sampled_from([1, 2, 3, 1, 2, 3, 0]),  # counterparty: the account this many places on (0 = itself)
    symbol,
    st.sampled_from(["buy", "sell"]),
    st.integers(-35, 35),
    st.integers(90_000, 160_000),
    st.sampled_from([None, 2024, 2025]),  # used for SHEA only
    st.sampled_from(["accept", "accept", "accept", "decline", "cancel", None]),  # the reply, at once
)
reply = st.tuples(st.sampled_from(["accept", "accept", "decline", "cancel"]), pick, st.integers(0, 9))
retire = st.tuples(st.just("retire"), account, symbol, st.integers(-1, 60_000), st.sampled_from([None, 2024, 2025]), st.booleans())
close = st.tuples(st.just("close"))
# weights by repetition: blocks and retirements are the subject, closes are rare
step = st.one_of(order, order, propose, propose, propose, reply, reply, reply, retire, retire, close)


def setup() -> list[Command]:
    cmds: list[Command] = [CreateMember(ts=T0, member=m, key_id=f"k{m}", secret_hash="x") for m in ("M1", "M2")]
    types = {"A1": "institution", "A2": "covered_entity", "B1": "covered_entity", "B2": "individual"}
    for acct in ACCOUNTS:
        cmds.append(CreateAccount(ts=T0, account=acct, member=OWNERS[acct], type=types[acct]))  # type: ignore[arg-type]
        cmds.append(Deposit(ts=T0, account=acct, cash=5_000_000_000))
        cmds.append(Deposit(ts=T0, account=acct, instrument="SHEA", quantity=150_000, vintage=2025))
        cmds.append(Deposit(ts=T0, account=acct, instrument="SHEA", quantity=50_000, vintage=2024))
        cmds.append(Deposit(ts=T0, account=acct, instrument="CCER", quantity=200_000))
        cmds.append(Deposit(ts=T0, account=acct, instrument="SHCER", quantity=200_000))
    cmds += [DayOpen(ts=T0), EventCreate(ts=T0, event_id="expo", name="Expo", footprint=100_000)]
    return cmds


def to_command(eng: Engine, s: tuple[Any, ...], ts: int) -> list[Command]:
    kind = s[0]
    if kind == "order":
        _, a, sym, side, pct, qty = s
        return [
            PlaceOrder(
                ts=ts, member=OWNERS[a], account=a, instrument=sym, side=side, price=REFERENCE[sym] * (100 + pct) // 100, quantity=qty
            )
        ]
    if kind == "propose":
        _, a, offset, sym, side, pct, qty, vintage, then = s
        b = ACCOUNTS[(ACCOUNTS.index(a) + offset) % len(ACCOUNTS)]
        price = REFERENCE[sym] * (100 + pct) // 100
        vintage = vintage if sym == "SHEA" else None
        cmds: list[Command] = [
            BlockPropose(
                ts=ts,
                member=OWNERS[a],
                account=a,
                instrument=sym,
                side=side,
                price=price,
                quantity=qty,
                counterparty_account=b,
                vintage=vintage,
            )
        ]
        if then is not None:  # reply at once, to the id this proposal gets if accepted
            cls = {"accept": BlockAccept, "decline": BlockDecline, "cancel": BlockCancel}[then]
            replier = a if then == "cancel" else b
            cmds.append(cls(ts=ts, member=OWNERS[replier], account=replier, block_id=eng.blocks.next_block_id))
        return cmds
    if kind in ("accept", "decline", "cancel"):
        # the right party of the k-th open proposal, or (one time in ten) a wrong account
        _, k, wrong = s
        live = [p for p in eng.blocks.proposals.values() if p.state == "proposed"] or list(eng.blocks.proposals.values())
        if not live:
            return []
        p = live[k % len(live)]
        a = p.proposer_account if kind == "cancel" else p.counterparty_account
        if not wrong:
            a = ACCOUNTS[(ACCOUNTS.index(a) + 1 + k) % len(ACCOUNTS)]
        cls = {"accept": BlockAccept, "decline": BlockDecline, "cancel": BlockCancel}[kind]
        return [cls(ts=ts, member=OWNERS[a], account=a, block_id=p.block_id)]
    if kind == "retire":
        _, a, sym, qty, vintage, for_event = s
        vintage = vintage if sym == "SHEA" else None
        return [
            Retire(
                ts=ts,
                member=OWNERS[a],
                account=a,
                instrument=sym,
                quantity=qty,
                vintage=vintage,
                purpose="event_neutrality" if for_event else "public_welfare",
                beneficiary="someone",
                event_id="expo" if for_event else None,
            )
        ]
    return [DayClose(ts=ts), DayOpen(ts=ts + 1)]


def check_invariants(eng: Engine, money: int, tonnes: dict[str, int]) -> None:
    assert cash_total(eng) == money
    assert {s: tonnes_total(eng, s) for s in SYMBOLS} == tonnes
    for acct in eng.accounts.values():
        assert acct.available >= 0 and acct.frozen >= 0
        for by_vintage in acct.holdings.values():
            for pos in by_vintage.values():
                assert min(pos.tradable, pos.frozen, pos.compliance_only, pos.locked) >= 0
    reg = eng.registry
    retirements = [c for c in reg.certificates.values() if c.account]
    for sym in SYMBOLS:
        assert sum(c.quantity for c in retirements if c.instrument == sym) == reg.retired_total.get(sym, 0)
    ev = reg.events["expo"]
    assert ev.retired == sum(c.quantity for c in retirements if c.event_id == "expo")
    assert (ev.certificate_id is not None) == (ev.retired >= ev.footprint)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=5, max_size=60))
def test_random_trading_blocks_and_retirements(demo_config: MarketConfig, steps: list[tuple[Any, ...]]) -> None:
    eng = Engine(demo_config)
    history = setup()
    for cmd in history:
        eng.apply(cmd)
    money, tonnes = cash_total(eng), {s: tonnes_total(eng, s) for s in SYMBOLS}
    ts = T0
    for s in steps:
        ts += 86_400_000_000_000 if s[0] == "close" else 1_000
        for cmd in to_command(eng, s, ts):
            history.append(cmd)
            eng.apply(cmd)
            check_invariants(eng, money, tonnes)
    replayed = Engine(demo_config)
    for cmd in history:
        replayed.apply(cmd)
    restored = Engine.restore(demo_config, eng.snapshot())
    assert replayed.digest() == restored.digest() == eng.digest()
    assert replayed.registry.certificates == restored.registry.certificates == eng.registry.certificates
