"""benchmarks/peers.py's harness: carbonx, the bare baseline book (and matching-engine where
importable) run the same seeded flow in their own processes and must agree on fills, volume
and the final book. A small run here keeps the harness and its agreement check from rotting
(no timing is asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peers_benchmark", PEERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_all_engines_agree_on_a_small_run(peers: ModuleType) -> None:
    result = peers.run_all(book=400, commands=1_500, seed=5, quiet=True)
    assert result["fills"] > 0 and result["volume"] > 0 and result["resting_orders"] > 0
    assert result["carbonx_ops_per_s"] > 0 and result["baseline_ops_per_s"] > 0
    assert result["carbonx_cpu_us_per_command"] > 0 and result["baseline_cpu_us_per_command"] > 0
    assert result["carbonx_events"] > result["commands"]  # reports and balances, not just fills
    if result["matching_engine_ops_per_s"] is None:  # needs Python >= 3.12 and the package
        assert "matching-engine not importable" in result["matching_engine_skipped"]
    else:
        assert result["matching_engine_skipped"] is None
        assert result["carbonx_vs_matching_engine_cpu"] > 0


def test_in_process_runs_agree_and_a_changed_fill_is_caught(peers: ModuleType) -> None:
    preload, measured = peers.workload(300, 1_000, seed=9)
    kinds = {c[0] for c in measured}
    assert kinds == {"p", "c"}
    base = peers.run_baseline(preload, measured)
    carbonx = peers.run_carbonx(preload, measured)
    peers.check_agreement({"baseline": base, "carbonx": carbonx})
    # the check is not vacuous: the last order (nothing cancels it later) one tonne smaller
    i = max(i for i, c in enumerate(measured) if c[0] == "p" and c[4] > 1)
    kind, oid, is_buy, price, qty, acct = measured[i]
    altered = [*measured[:i], (kind, oid, is_buy, price, qty - 1, acct), *measured[i + 1 :]]
    with pytest.raises(AssertionError, match="carbonx disagrees"):
        peers.check_agreement({"baseline": base, "carbonx": peers.run_carbonx(preload, altered)})


def test_workload_shape(peers: ModuleType) -> None:
    preload, measured = peers.workload(2_000, 4_000, seed=1)
    prices = [c[3] for c in preload + measured if c[0] == "p"]
    assert min(prices) >= 9_000 and max(prices) <= 11_000  # 90.00-110.00
    assert all(c[3] < 10_000 for c in preload if c[2]) and all(c[3] > 10_000 for c in preload if not c[2])
    cancels = sum(c[0] == "c" for c in measured) / len(measured)
    assert 0.2 < cancels < 0.3
    assert all((c[5] < peers.N_ACCOUNTS) == bool(c[2]) for c in preload + measured if c[0] == "p")  # buyers and sellers apart
