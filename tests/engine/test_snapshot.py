"""Determinism: the same commands give the same events and digest; a snapshot restores
to the same digest and the restored engine carries on exactly like the original."""

from __future__ import annotations

import os
import subprocess
import sys

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    CreateMember,
    DayClose,
    DayOpen,
    Deposit,
    PlaceOrder,
    SetBlocked,
    SetHalt,
    command_decoder,
    command_encoder,
)
from carbonx.engine.testkit import T0
from tests.conftest import ROOT

DAY_NS = 86_400 * 10**9


def session(config: MarketConfig) -> list[Command]:
    """A day and a half of varied activity: every order type, fills, an amend, a
    cancel, a halt, a kill switch, T+1 purchases and a day roll with GTC carry-over."""
    t = iter(range(T0, T0 + 10**12, 1_000_000))
    cmds: list[Command] = []
    for m in ("M1", "M2"):
        cmds.append(CreateMember(ts=next(t), member=m, key_id=f"k{m}", secret_hash="h"))
    for a, m, kind in (("A1", "M1", "institution"), ("A2", "M1", "covered_entity"), ("B1", "M2", "covered_entity")):
        cmds.append(CreateAccount(ts=next(t), account=a, member=m, type=kind))  # type: ignore[arg-type]
        cmds.append(Deposit(ts=next(t), account=a, cash=50_000_000))
        cmds.append(Deposit(ts=next(t), account=a, instrument="SHEA", quantity=500, vintage=2024))
        cmds.append(Deposit(ts=next(t), account=a, instrument="SHEA", quantity=500, vintage=2025))
        cmds.append(Deposit(ts=next(t), account=a, instrument="CCER", quantity=300))
    cmds.append(DayOpen(ts=next(t)))

    def order(account: str, side: str, price: int | None, qty: int, sym: str = "SHEA", **kw: object) -> PlaceOrder:
        member = "M2" if account.startswith("B") else "M1"
        return PlaceOrder(ts=next(t), member=member, account=account, instrument=sym, side=side, price=price, quantity=qty, **kw)  # type: ignore[arg-type]

    cmds += [
        order("A1", "sell", 6010, 600, client_order_id="a1-s"),
        order("A2", "sell", 6000, 50, tif="gtc"),
        order("B1", "buy", 6010, 100),
        order("B1", "buy", 5990, 40, tif="gtc", client_order_id="b1-g"),
        order("A1", "buy", None, 10, type="market"),
        order("B1", "buy", 6020, 1_000, tif="fok"),
        order("B1", "buy", 6010, 30, tif="ioc"),
        order("A2", "buy", 8000, 20, "CCER"),
        order("B1", "sell", 8000, 20, "CCER"),
        AmendOrder(ts=next(t), member="M2", account="B1", client_order_id="b1-g", quantity=30),
        AmendOrder(ts=next(t), member="M1", account="A1", client_order_id="a1-s", price=6005),
        order("A2", "buy", 6005, 5, stp="cancel_oldest"),
        SetHalt(ts=next(t), instrument="CCER", halted=True),
        CancelOrder(ts=next(t), member="M2", account="B1", client_order_id="b1-g"),
        order("B1", "buy", 5980, 7, tif="gtc"),
        SetBlocked(ts=next(t), account="A2"),
        DayClose(ts=next(t)),
        DayOpen(ts=next(t) + DAY_NS),
        SetHalt(ts=next(t) + DAY_NS, instrument="CCER", halted=False),
        order("A1", "sell", 5980, 10),
        order("A2", "sell", 8000, 20, "CCER"),
    ]
    return cmds


def run(config: MarketConfig, cmds: list[Command]) -> tuple[Engine, list[list[object]]]:
    eng = Engine(config)
    return eng, [list(eng.apply(c)) for c in cmds]


def test_same_commands_same_events_and_digest(demo_config: MarketConfig) -> None:
    cmds = session(demo_config)
    first, events_a = run(demo_config, cmds)
    second, events_b = run(demo_config, cmds)
    assert events_a == events_b
    assert first.digest() == second.digest()
    assert len(first.trades) >= 4  # the session really traded


def test_commands_survive_the_journal_encoding(demo_config: MarketConfig) -> None:
    cmds = session(demo_config)
    decoded = [command_decoder.decode(command_encoder.encode(c)) for c in cmds]
    assert decoded == cmds
    assert run(demo_config, decoded)[0].digest() == run(demo_config, cmds)[0].digest()


def test_digest_changes_with_state(demo_config: MarketConfig) -> None:
    cmds = session(demo_config)
    full, _ = run(demo_config, cmds)
    shorter, _ = run(demo_config, cmds[:-1])
    assert full.digest() != shorter.digest()


def test_snapshot_restores_at_every_point_and_continues_identically(demo_config: MarketConfig) -> None:
    cmds = session(demo_config)
    for cut in range(0, len(cmds), 3):
        original, _ = run(demo_config, cmds[:cut])
        restored = Engine.restore(demo_config, original.snapshot())
        assert restored.digest() == original.digest(), cut
        for cmd in cmds[cut:]:
            assert restored.apply(cmd) == original.apply(cmd), (cut, cmd)
        assert restored.digest() == original.digest(), cut
        assert restored.depth("SHEA") == original.depth("SHEA")
        assert restored.live_coid == original.live_coid


def test_restored_engine_keeps_queries(demo_config: MarketConfig) -> None:
    original, _ = run(demo_config, session(demo_config))
    restored = Engine.restore(demo_config, original.snapshot())
    assert [t.trade_id for t in restored.trades_of("M2", "B1")] == [t.trade_id for t in original.trades_of("M2", "B1")]
    assert restored.orders_of("M2", "B1", open_only=True) == original.orders_of("M2", "B1", open_only=True)
    assert restored.accounts == original.accounts


DIGEST_SCRIPT = """
from carbonx.engine.config import load_market_text
from carbonx.engine.engine import Engine
from tests.conftest import DEMO
from tests.engine.test_snapshot import session
config = load_market_text(DEMO.read_text())
eng = Engine(config)
events = [eng.apply(c) for c in session(config)]
import hashlib, msgspec
print(eng.digest(), hashlib.sha256(msgspec.msgpack.encode(events)).hexdigest())
"""


def test_digest_and_events_do_not_depend_on_hash_randomisation() -> None:
    """Replay happens in another process: nothing may iterate a set of strings."""
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1, outputs
