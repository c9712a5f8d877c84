"""Surveillance and disclosure cost per event, and false positives on normal trading.

Two measurements, both seeded and deterministic:

1. **Cost.** ``engine_throughput.py``'s workload (``testkit.throughput_workload``) is applied
   once to an engine, keeping each command's events; then, per run, a fresh ``Surveillance``
   and ``DayReports`` consume those events (exactly what the gateway's sink does per
   command). CPU time (``process_time``) of the consumers against the engine's own
   ``apply`` time on the same commands gives ``overhead_pct``; ``events_per_s`` is events
   consumed per CPU second (median of the runs).
2. **False positives.** The same order flow re-stamped at a human pace (one command every
   20 ms across the market: ~0.25 commands/s per account) on accounts funded with 400,000 t
   each (below the 500,000 t reporting threshold), default thresholds. Every alert it raises
   is a false positive of the "normal" market, except that the generator's 200 accounts sit
   in 20 members of 10, so ``wash_trade`` (same member, low severity) alerts are the
   documented cost of ``wash_same_member = true`` (``alerts_wash_same_member_off`` shows
   the count without it).

Last line: one JSON object with ``events_per_s``, ``overhead_pct``, ``alerts`` (and the
breakdown by detector).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import msgspec

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command, Deposit, Event
from carbonx.engine.supervision.disclosure import DayReports
from carbonx.engine.supervision.surveillance import Surveillance
from carbonx.engine.supervision.thresholds import DisclosureSpec, SurveillanceSpec
from carbonx.engine.testkit import BENCH_T0, throughput_workload

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"
PACE_NS = 20_000_000  # 20 ms between commands in the false-positive run
NORMAL_TONNES = 400_000


def engine_events(config: MarketConfig, setup: list[Command], cmds: list[Command]) -> tuple[float, list[list[Event]]]:
    """(CPU seconds of apply over ``cmds``, every command's events including the setup's)."""
    eng = Engine(config)
    out = [eng.apply(c) for c in setup]
    apply = eng.apply
    start = time.process_time()
    timed = [apply(c) for c in cmds]
    return time.process_time() - start, out + timed


def consume(batches: list[list[Event]], spec: SurveillanceSpec) -> tuple[float, Surveillance]:
    surv, reports = Surveillance(spec), DayReports(DisclosureSpec())
    observe, day = surv.observe, reports.observe
    start = time.process_time()
    for events in batches:
        observe(events)
        day(events)
    return time.process_time() - start, surv


def normal_flow(config: MarketConfig, n: int, seed: int) -> tuple[list[Command], list[Command]]:
    setup, cmds = throughput_workload(config, n, seed)
    paced_setup = [msgspec.structs.replace(c, quantity=NORMAL_TONNES) if isinstance(c, Deposit) and c.quantity else c for c in setup]
    paced = [msgspec.structs.replace(c, ts=BENCH_T0 + (i + 1) * PACE_NS) for i, c in enumerate(cmds)]
    return paced_setup, paced


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--commands", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    config = load_market_text(CONFIG.read_text())
    setup, cmds = throughput_workload(config, args.commands, args.seed)
    engine_secs, batches = [], []
    for _ in range(args.runs):
        secs, batches = engine_events(config, setup, cmds)
        engine_secs.append(secs)
    timed = batches[len(setup) :]
    n_events = sum(len(b) for b in timed)
    consumer_secs = []
    for i in range(args.runs):
        # the setup's events prime the consumers (accounts, references) but are not timed
        surv, reports = Surveillance(SurveillanceSpec()), DayReports(DisclosureSpec())
        for events in batches[: len(setup)]:
            surv.observe(events)
            reports.observe(events)
        start = time.process_time()
        for events in timed:
            surv.observe(events)
            reports.observe(events)
        secs = time.process_time() - start
        consumer_secs.append(secs)
        print(f"run {i + 1}: engine {engine_secs[i]:.3f} s, consumers {secs:.3f} s for {n_events} events", flush=True)
    engine_s, consumer_s = statistics.median(engine_secs), statistics.median(consumer_secs)

    normal_setup, normal = normal_flow(config, args.commands, args.seed)
    _, normal_batches = engine_events(config, normal_setup, normal)
    _, surv = consume(normal_batches, SurveillanceSpec())
    _, strict = consume(normal_batches, SurveillanceSpec(wash_same_member=False))
    by_detector: dict[str, int] = {}
    for alert in surv.alerts.values():
        by_detector[alert.detector] = by_detector.get(alert.detector, 0) + 1
    trades = sum(1 for b in normal_batches for e in b if type(e).__name__ == "Trade")
    result = {
        "events_per_s": round(n_events / consumer_s),
        "overhead_pct": round(100 * consumer_s / engine_s, 1),
        "alerts": len(surv.alerts),
        "alerts_by_detector": dict(sorted(by_detector.items())),
        "alerts_wash_same_member_off": len(strict.alerts),
        "normal_trades": trades,
        "commands": len(cmds),
        "events": n_events,
        "runs": args.runs,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
