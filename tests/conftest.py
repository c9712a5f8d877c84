"""Shared fixtures: the demo market configuration and a fresh engine with funded accounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CreateAccount, CreateMember, DayOpen, Deposit

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"
T0 = 1_764_043_200_000_000_000  # 2025-11-25 12:00 local (UTC+8), a Tuesday


@pytest.fixture
def demo_config() -> MarketConfig:
    return load_market_text(DEMO.read_text())


def funded_engine(config: MarketConfig, cash: int = 100_000_000, tonnes: int = 10_000) -> Engine:
    """Members M1 (accounts A1 institution, A2 covered_entity), M2 (B1 covered_entity,
    B2 individual); every account has ``cash`` fen and ``tonnes`` of every instrument
    (SHEA vintage 2025); the trading day is open."""
    eng = Engine(config)
    for m in ("M1", "M2"):
        eng.apply(CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x"))
    for acct, member, kind in (
        ("A1", "M1", "institution"),
        ("A2", "M1", "covered_entity"),
        ("B1", "M2", "covered_entity"),
        ("B2", "M2", "individual"),
    ):
        eng.apply(CreateAccount(ts=T0, account=acct, member=member, type=kind))  # type: ignore[arg-type]
        eng.apply(Deposit(ts=T0, account=acct, cash=cash))
        for sym, spec in config.instruments.items():
            eng.apply(Deposit(ts=T0, account=acct, instrument=sym, quantity=tonnes, vintage=2025 if spec.vintages else None))
    eng.apply(DayOpen(ts=T0))
    return eng


@pytest.fixture
def engine(demo_config: MarketConfig) -> Engine:
    return funded_engine(demo_config)
