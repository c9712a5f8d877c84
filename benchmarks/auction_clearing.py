"""Benchmark: clear and settle a sealed-bid auction of 100,000 bids from 5,000 bidders.

Builds an engine from the demo configuration, 5,000 funded bidder accounts and one
open SHEA auction holding 100,000 bids (20 per bidder, prices on a 5.00 CNY range so
the marginal level has many ties), snapshots it, then for each run restores the
snapshot and times ``Engine.apply(AuctionClose)`` alone: close, clear, settle and
publish, including every BidUpdate/Balance/Holding event. Reports the median.

Usage: python benchmarks/auction_clearing.py [--bids N] [--bidders N] [--runs N]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

from carbonx.engine.auction import PRESETS
from carbonx.engine.config import load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AuctionBid,
    AuctionClose,
    AuctionCreate,
    AuctionOpen,
    AuctionUpdate,
    CreateAccount,
    CreateMember,
    DayOpen,
    Deposit,
    Reject,
)

T0 = 1_764_043_200_000_000_000
DEMO = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"
RESERVE = 5_000  # fen
ACCOUNTS_PER_MEMBER = 100


def build(bids: int, bidders: int, rule_set: str, seed: int) -> tuple[Engine, int, float]:
    """An engine with one open auction holding ``bids`` bids; returns it, the number
    of tonnes bid and the seconds spent submitting the bids."""
    eng = Engine(load_market_text(DEMO.read_text()))
    ts = T0
    accounts = []
    for i in range(bidders):
        member = f"M{i // ACCOUNTS_PER_MEMBER}"
        if i % ACCOUNTS_PER_MEMBER == 0:
            eng.apply(CreateMember(ts=ts, member=member, key_id=f"k-{member}", secret_hash="x"))
        account = f"{member}-{i}"
        kind = "covered_entity" if i % 2 else "institution"
        eng.apply(CreateAccount(ts=ts, account=account, member=member, type=kind))
        eng.apply(Deposit(ts=ts, account=account, cash=10**11))
        accounts.append((member, account))
    eng.apply(DayOpen(ts=ts))
    rng = random.Random(seed)
    specs = [(accounts[k % bidders], RESERVE + 10 * rng.randrange(50), 10 * rng.randrange(1, 21)) for k in range(bids)]
    demand = sum(q for _, _, q in specs)
    offer = demand // 2 // 10 * 10
    eng.apply(
        AuctionCreate(
            ts=ts, instrument="SHEA", vintage=2025, quantity=offer, reserve_price=RESERVE, rule_set=rule_set, min_lot=10, seed=seed
        )
    )  # type: ignore[arg-type]
    eng.apply(AuctionOpen(ts=ts, auction_id=1))
    started = time.perf_counter()
    for (member, account), price, qty in specs:
        ts += 1_000
        out = eng.apply(AuctionBid(ts=ts, member=member, auction_id=1, account=account, price=price, quantity=qty))
        if isinstance(out[0], Reject):
            raise SystemExit(f"bid rejected: {out[0]}")
    return eng, demand, time.perf_counter() - started


def time_close(config_text: str, snapshot: bytes, runs: int) -> tuple[list[float], list[float], int, AuctionUpdate]:
    """(wall seconds, CPU seconds) per run: CPU time shows the cost without the wait
    for a core on a shared, noisy machine; the wall time is the headline."""
    config = load_market_text(config_text)
    wall, cpu = [], []
    for _ in range(runs):
        eng = Engine.restore(config, snapshot)
        close = AuctionClose(ts=eng.ts + 10**9, auction_id=1)
        started, started_cpu = time.perf_counter(), time.process_time()
        events = eng.apply(close)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    update = events[-2] if not isinstance(events[-1], AuctionUpdate) else events[-1]
    assert isinstance(update, AuctionUpdate) and update.results is not None
    return wall, cpu, len(events), update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=int, default=100_000)
    parser.add_argument("--bidders", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rule-sets", default="shanghai,eu,quebec,rggi", help="comma-separated presets; the first is the headline")
    args = parser.parse_args()
    rule_sets = args.rule_sets.split(",")
    for rs in rule_sets:
        if rs not in PRESETS:
            raise SystemExit(f"unknown rule set {rs!r}; choose from {sorted(PRESETS)}")
    config_text = DEMO.read_text()
    by_rule_set = {}
    submit_rate = 0.0
    for rs in rule_sets:
        eng, demand, submit_s = build(args.bids, args.bidders, rs, seed=7)
        submit_rate = submit_rate or args.bids / submit_s
        timings, cpu, n_events, update = time_close(config_text, eng.snapshot(), args.runs)
        results = update.results
        assert results is not None
        by_rule_set[rs] = {
            "clear_settle_s": round(statistics.median(timings), 4),
            "min_s": round(min(timings), 4),
            "max_s": round(max(timings), 4),
            "cpu_s": round(statistics.median(cpu), 4),
            "events": n_events,
            "clearing_price": results.clearing_price,
            "quantity_sold": results.quantity_sold,
            "winners": results.winners,
        }
        print(f"{rs:9s} median {statistics.median(timings):.3f}s (cpu {statistics.median(cpu):.3f}s)  runs {[round(t, 3) for t in timings]}  events {n_events}  "
              f"demand {demand} t, sold {results.quantity_sold} t at {results.clearing_price} fen, winners {results.winners}")  # fmt: skip
    headline = by_rule_set[rule_sets[0]]
    print(
        json.dumps(
            {
                "benchmark": "auction_clearing",
                "bids": args.bids,
                "bidders": args.bidders,
                "runs": args.runs,
                "rule_set": rule_sets[0],
                "clear_settle_s": headline["clear_settle_s"],
                "clear_settle_cpu_s": headline["cpu_s"],
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "target_s": 1.0,
                "bid_submit_per_s": round(submit_rate),
                "by_rule_set": by_rule_set,
                "machine": f"{platform.machine()} {os.cpu_count()} cores {platform.processor() or platform.platform()}",
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
