"""Shared fixtures: the demo market configuration and a fresh engine with funded accounts
(thin wrappers over ``carbonx.engine.testkit``, which the benchmarks use too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.testkit import T0, funded_engine

__all__ = ["DEMO", "ROOT", "T0", "funded_engine"]  # T0 and funded_engine re-exported for older imports

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"


@pytest.fixture
def demo_config() -> MarketConfig:
    return load_market_text(DEMO.read_text())


@pytest.fixture
def engine(demo_config: MarketConfig) -> Engine:
    return funded_engine(demo_config)
