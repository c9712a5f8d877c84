"""A realistic, seeded command stream for journal tests and benchmarks.

Everything from an empty engine on is a command (members, accounts, deposits, the day
opening, then limit orders and cancels by client order id), so the stream can be
journaled and replayed from empty. Orders straddle the reference price: some rest,
some trade, some cancels miss (already filled) and are rejected - like real flow.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.schema import AnyCommand, CancelOrder, CreateAccount, CreateMember, DayOpen, Deposit, PlaceOrder, Side

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "demo.toml"
T0 = 1_764_043_200_000_000_000  # 2025-11-25 12:00 local (UTC+8), a Tuesday

ACCOUNTS = (("A1", "M1", "institution"), ("A2", "M1", "covered_entity"), ("B1", "M2", "covered_entity"), ("B2", "M2", "individual"))


def demo_config() -> MarketConfig:
    return load_market_text(DEMO.read_text())


def setup_commands(config: MarketConfig, cash: int = 10**13, tonnes: int = 10**8) -> list[AnyCommand]:
    """Two members, four accounts funded with ``cash`` fen and ``tonnes`` of every
    instrument, and the trading day opened (the ``funded_engine`` pattern, as commands)."""
    cmds: list[AnyCommand] = [CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x") for m in ("M1", "M2")]
    for acct, member, kind in ACCOUNTS:
        cmds.append(CreateAccount(ts=T0, account=acct, member=member, type=kind))  # type: ignore[arg-type]
        cmds.append(Deposit(ts=T0, account=acct, cash=cash))
        for sym, spec in config.instruments.items():
            cmds.append(Deposit(ts=T0, account=acct, instrument=sym, quantity=tonnes, vintage=2025 if spec.vintages else None))
    cmds.append(DayOpen(ts=T0))
    return cmds


def trading_commands(n: int, seed: int = 1, start_ts: int = T0 + 1) -> Iterator[AnyCommand]:
    """``n`` limit orders (about 55 %) and cancels of earlier orders (about 45 %, some of them already filled) on SHEA."""
    rng = random.Random(seed)
    recent: list[tuple[str, str, str]] = []  # (member, account, client_order_id), live or not
    for i in range(n):
        ts = start_ts + i * 1_000
        if recent and rng.random() < 0.45:
            j = rng.randrange(len(recent))
            recent[j], recent[-1] = recent[-1], recent[j]
            member, account, coid = recent.pop()
            yield CancelOrder(ts=ts, member=member, account=account, client_order_id=coid)
            continue
        account, member, _ = ACCOUNTS[rng.randrange(len(ACCOUNTS))]
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        skew = -10 if side == "buy" else 10  # most orders rest; the overlap trades
        price = 6000 + skew + rng.randint(-30, 30)
        coid = f"o{i}"
        yield PlaceOrder(
            ts=ts,
            member=member,
            account=account,
            instrument="SHEA",
            side=side,
            price=price,
            quantity=rng.randint(1, 50),
            client_order_id=coid,
        )
        recent.append((member, account, coid))


def workload(config: MarketConfig, n: int, seed: int = 1) -> list[AnyCommand]:
    """Setup commands followed by ``n`` trading commands."""
    return setup_commands(config) + list(trading_commands(n, seed))
