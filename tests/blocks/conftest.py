"""Fixtures for block-trade and retirement tests: an engine rich enough for blocks."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Event, Reject
from carbonx.engine.testkit import funded_engine, only, tonnes_total, with_spec
from carbonx.engine.testkit import money_total as cash_total

__all__ = ["cash_total", "only", "tonnes_total", "with_spec"]  # re-exported for the block tests

CASH = 10_000_000_000  # fen: 100 million CNY per account
TONNES = 300_000  # of every instrument per account (SHEA vintage 2025)


@pytest.fixture
def eng(demo_config: MarketConfig) -> Engine:
    """Demo market (block session around the clock), day open at T0, accounts A1/A2
    (member M1) and B1/B2 (member M2) each with CASH fen and TONNES of everything."""
    return funded_engine(demo_config, cash=CASH, tonnes=TONNES)


def rejected(events: list[Event]) -> Reject:
    """The single Reject of a refused command (and nothing else was emitted)."""
    assert len(events) == 1 and isinstance(events[0], Reject), events
    return events[0]


def ledger(eng: Engine) -> bytes:
    """Every balance, holding, block and certificate: unchanged by a rejected command."""
    return msgspec.msgpack.encode((list(eng.accounts.values()), eng.blocks, eng.registry, eng.fees_collected, list(eng.trades)))
