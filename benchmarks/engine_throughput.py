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
import random
import statistics
import time
from pathlib import Path

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    CancelOrder,
    Command,
    CreateAccount,
    CreateMember,
    DayOpen,
    Deposit,
    ExecReport,
    PlaceOrder,
)

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"
SYM = "SHEA"
T0 = 1_764_043_200_000_000_000


def setup_commands(n_accounts: int) -> list[Command]:
    cmds: list[Command] = []
    for m in range(n_accounts // 10):
        cmds.append(CreateMember(ts=T0, member=f"M{m}", key_id=f"k{m}", secret_hash="x"))
    for a in range(n_accounts):
        acct = f"A{a}"
        cmds.append(CreateAccount(ts=T0, account=acct, member=f"M{a // 10}", type="institution"))
        cmds.append(Deposit(ts=T0, account=acct, cash=10**13))
        cmds.append(Deposit(ts=T0, account=acct, instrument=SYM, quantity=10**8, vintage=2025))
    cmds.append(DayOpen(ts=T0))
    return cmds


def workload(config: MarketConfig, n: int, seed: int, n_accounts: int = 200) -> tuple[list[Command], list[Command]]:
    """(setup commands, timed commands). Drives a scratch engine to know resting ids."""
    rng = random.Random(seed)
    setup = setup_commands(n_accounts)
    eng = Engine(config)
    for c in setup:
        eng.apply(c)
    live: dict[int, str] = {}  # resting order id -> account
    live_ids: list[int] = []
    cmds: list[Command] = []
    mid = 6000
    ts = T0
    for _ in range(n):
        ts += 1000
        r = rng.random()
        acct = f"A{rng.randrange(n_accounts)}"
        member = f"M{int(acct[1:]) // 10}"
        cmd: Command
        if r < 0.25 and live_ids:
            i = rng.randrange(len(live_ids))
            oid = live_ids[i]
            live_ids[i] = live_ids[-1]
            live_ids.pop()
            owner = live.pop(oid)
            cmd = CancelOrder(ts=ts, member=f"M{int(owner[1:]) // 10}", account=owner, order_id=oid)
        elif r < 0.30:
            side = "buy" if rng.random() < 0.5 else "sell"
            best_ask = eng.books[SYM].asks.best_price() or mid
            best_bid = eng.books[SYM].bids.best_price() or mid
            price = best_ask + rng.randrange(0, 3) if side == "buy" else best_bid - rng.randrange(0, 3)
            cmd = PlaceOrder(ts=ts, member=member, account=acct, instrument=SYM, side=side, price=price, quantity=rng.randrange(1, 200))
        else:
            side = "buy" if rng.random() < 0.5 else "sell"
            offset = 1 + int(rng.expovariate(0.25))
            price = mid - offset if side == "buy" else mid + offset
            cmd = PlaceOrder(ts=ts, member=member, account=acct, instrument=SYM, side=side, price=price, quantity=rng.randrange(1, 200))
        cmds.append(cmd)
        for ev in eng.apply(cmd):
            if type(ev) is ExecReport:
                if ev.leaves_qty == 0:
                    if live.pop(ev.order_id, None) is not None:
                        live_ids.remove(ev.order_id)
                elif ev.exec_type == "new" and ev.order_id not in live:
                    live[ev.order_id] = ev.account
                    live_ids.append(ev.order_id)
    return setup, cmds


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
