"""Engine throughput: commands/s through ``Engine.apply`` with full risk checks and events.

Workload (seeded, one instrument, SHEA): ~70% passive limit orders near the touch,
~25% cancels of resting orders, ~5% aggressive limit orders that cross; 200 funded
accounts in 20 members, fees on, every order risk-checked and every event built.

The command stream is generated once by driving a scratch engine (so cancels name
real resting orders); each timed run replays the same commands into a fresh engine
(deterministic: same ids, same events). Only ``apply`` is timed.

Replay: the same setup and commands are written to a journal (``LocalJournal``, policy
``none``) in a temporary directory and recovered (``gateway.recovery.recover``: read, CRC,
decode, ``Engine.apply``) ``--runs`` times; ``replay_apply_per_s`` is the median of
records replayed per second of recovery (what start-up and a standby catching up do).

Last line of output: one JSON object with ``ops_per_s`` (median of the runs),
``cpu_us_per_command`` (median process CPU time per command), ``events_per_s``,
``replay_apply_per_s``, ``replay_cpu_us_per_record``, ``runs``, ``commands``, ``load`` (``os.getloadavg`` at the start),
``python`` and ``machine``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CancelOrder, Command, PlaceOrder
from carbonx.engine.testkit import throughput_workload as workload
from carbonx.gateway.journal import LocalJournal
from carbonx.gateway.recovery import recover

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"


def run_once(config: MarketConfig, setup: list[Command], cmds: list[Command]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, events) of applying ``cmds`` to a fresh engine after ``setup``."""
    eng = Engine(config)
    for c in setup:
        eng.apply(c)
    apply = eng.apply
    events = 0
    cpu = time.process_time()
    start = time.perf_counter()
    for c in cmds:
        events += len(apply(c))
    return time.perf_counter() - start, time.process_time() - cpu, events


def write_journal(directory: Path, cmds: list[Command]) -> None:
    """Journal ``cmds`` (seq 1, 2, ...) in ``directory`` without fsync (only replay is timed)."""

    async def go() -> None:
        journal = LocalJournal(directory, "none")
        await journal.start()
        for seq, cmd in enumerate(cmds, 1):
            journal.append(seq, cmd)
            if seq % 10_000 == 0:
                await asyncio.sleep(0)
        await journal.close()

    asyncio.run(go())


def replay_rate(config: MarketConfig, directory: Path) -> tuple[float, float]:
    """(records per second, CPU us per record) of one recovery of ``directory`` (no
    snapshot: every record replayed)."""
    cpu = time.process_time()
    rec = recover(directory, config)
    return rec.replayed / rec.seconds, (time.process_time() - cpu) / rec.replayed * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--commands", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    config = load_market_text(CONFIG.read_text())
    setup, cmds = workload(config, args.commands, args.seed)
    kinds = {"place": sum(isinstance(c, PlaceOrder) for c in cmds), "cancel": sum(isinstance(c, CancelOrder) for c in cmds)}
    load = os.getloadavg()
    rates, ev_rates, cpu_us = [], [], []
    for i in range(args.runs):
        secs, cpu, events = run_once(config, setup, cmds)
        rates.append(len(cmds) / secs)
        ev_rates.append(events / secs)
        cpu_us.append(cpu / len(cmds) * 1e6)
        print(
            f"run {i + 1}: {len(cmds) / secs:,.0f} commands/s, {cpu_us[-1]:.2f} us CPU/command, {events / secs:,.0f} events/s ({events} events)",
            flush=True,
        )
    replays, replay_cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        write_journal(Path(tmp), [*setup, *cmds])
        for i in range(args.runs):
            rate, cpu_per = replay_rate(config, Path(tmp))
            replays.append(rate)
            replay_cpu.append(cpu_per)
            print(f"replay {i + 1}: {rate:,.0f} records/s, {cpu_per:.2f} us CPU/record (read + CRC + decode + apply)", flush=True)
    result = {
        "ops_per_s": round(statistics.median(rates)),
        "cpu_us_per_command": round(statistics.median(cpu_us), 3),
        "events_per_s": round(statistics.median(ev_rates)),
        "replay_apply_per_s": round(statistics.median(replays)),
        "replay_cpu_us_per_record": round(statistics.median(replay_cpu), 3),
        "runs": args.runs,
        "commands": len(cmds),
        "mix": kinds,
        "load": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
