"""Fixtures for block-trade and retirement tests: an engine rich enough for blocks."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine.accounts import total_held
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Event, Reject
from tests.conftest import funded_engine

CASH = 10_000_000_000  # fen: 100 million CNY per account
TONNES = 300_000  # of every instrument per account (SHEA vintage 2025)


@pytest.fixture
def eng(demo_config: MarketConfig) -> Engine:
    """Demo market (block session around the clock), day open at T0, accounts A1/A2
    (member M1) and B1/B2 (member M2) each with CASH fen and TONNES of everything."""
    return funded_engine(demo_config, cash=CASH, tonnes=TONNES)


def with_spec(config: MarketConfig, symbol: str, **changes: object) -> MarketConfig:
    """The configuration with some settings of one instrument changed."""
    spec = msgspec.structs.replace(config.instruments[symbol], **changes)
    return msgspec.structs.replace(config, instruments={**config.instruments, symbol: spec})


def only(events: list[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def rejected(events: list[Event]) -> Reject:
    """The single Reject of a refused command (and nothing else was emitted)."""
    assert len(events) == 1 and isinstance(events[0], Reject), events
    return events[0]


def ledger(eng: Engine) -> bytes:
    """Every balance, holding, block and certificate: unchanged by a rejected command."""
    return msgspec.msgpack.encode((list(eng.accounts.values()), eng.blocks, eng.registry, eng.fees_collected, list(eng.trades)))


def cash_total(eng: Engine) -> int:
    """All money in the system: account cash plus fees the exchange collected."""
    return sum(a.available + a.frozen for a in eng.accounts.values()) + eng.fees_collected


def tonnes_total(eng: Engine, symbol: str) -> int:
    """All tonnes of an instrument: held in accounts plus retired for good."""
    return sum(total_held(a, symbol) for a in eng.accounts.values()) + eng.registry.retired_total.get(symbol, 0)
