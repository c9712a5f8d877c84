"""Engine throughput: commands/s through ``Engine.apply`` with full risk checks and events.

Workload (seeded, one instrument, SHEA): ~70% passive limit orders near the touch,
~25% cancels of resting orders, ~5% aggressive limit orders that cross; 200 funded
accounts in 20 members, fees on, every order risk-checked and every event built.

The command stream is generated once by driving a scratch engine (so cancels name
real resting orders); each timed run replays the same commands into a fresh engine
(deterministic: same ids, same events). Only ``apply`` is timed.

Last line of output: one JSON object with ``ops_per_s`` (median of the runs),
``events_per_s``, ``runs``, ``commands``, ``python`` and ``machine``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CancelOrder, Command, PlaceOrder
from carbonx.engine.testkit import throughput_workload as workload

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"


def run_once(config: MarketConfig, setup: list[Command], cmds: list[Command]) -> tuple[float, int]:
    eng = Engine(config)
    for c in setup:
        eng.apply(c)
    apply = eng.apply
    events = 0
    start = time.perf_counter()
    for c in cmds:
        events += len(apply(c))
    return time.perf_counter() - start, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--commands", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    config = load_market_text(CONFIG.read_text())
    setup, cmds = workload(config, args.commands, args.seed)
    kinds = {"place": sum(isinstance(c, PlaceOrder) for c in cmds), "cancel": sum(isinstance(c, CancelOrder) for c in cmds)}
    rates, ev_rates = [], []
    for i in range(args.runs):
        secs, events = run_once(config, setup, cmds)
        rates.append(len(cmds) / secs)
        ev_rates.append(events / secs)
        print(f"run {i + 1}: {len(cmds) / secs:,.0f} commands/s, {events / secs:,.0f} events/s ({events} events)", flush=True)
    result = {
        "ops_per_s": round(statistics.median(rates)),
        "events_per_s": round(statistics.median(ev_rates)),
        "runs": args.runs,
        "commands": len(cmds),
        "mix": kinds,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
