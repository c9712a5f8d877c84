"""Journal throughput: command rate with journaling at each policy next to in-memory.

Model ("commands arrive in bursts"): bursts of ``--burst`` commands are submitted
back-to-back, as a gateway would read them off its sockets. Each command is applied to
the engine and (when journaling) appended; after each burst the loop yields (the
gateway would go back to its sockets) and the burst counts as acknowledged once the
journal reports it durable. The rate is commands / time until the last burst is
acknowledged. The in-memory run is the same loop without a journal.

A paced run (a steady 5,000 commands/s, the gateway's target load) gives the latency
from a command's arrival to durable under policy fsync. Figures are wall-clock rates, so load from other processes on the machine moves them;
the event-loop thread's CPU time per command is printed as well (the journal's own cost,
independent of that noise). Also measured: replay (reading + CRC + decoding records, and the same plus applying
them to an engine), the engine stall while a snapshot is taken (``fork=False`` vs
``fork=True``) and start-up = ``recovery.recover`` on a 1,000,000-command journal
without a snapshot. Every figure is the median of several runs.

Run: ``python benchmarks/journal_throughput.py`` (about two minutes on 2 cores).
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AnyCommand
from carbonx.gateway.journal import LocalJournal, Policy, read_records
from carbonx.gateway.recovery import recover
from carbonx.gateway.snapshots import SnapshotStore
from carbonx.gateway.testkit import demo_config, setup_commands, trading_commands


async def run_bursts(
    config: MarketConfig, cmds: Sequence[AnyCommand], burst: int, policy: Policy | None, directory: Path
) -> dict[str, float]:
    """One run; returns ops/s, burst acknowledgement latencies and journal metrics."""
    eng = Engine(config)
    journal = LocalJournal(directory, policy) if policy is not None else None
    acks: list[float] = []
    pending: list[tuple[int, float]] = []  # (last seq of burst, time submitted)

    def on_durable(seq: int) -> None:
        now = time.perf_counter()
        while pending and pending[0][0] <= seq:
            acks.append(now - pending.pop(0)[1])

    if journal is not None:
        journal.add_listener(on_durable)
        await journal.start()
    apply = eng.apply
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for i in range(0, len(cmds), burst):
        for cmd in cmds[i : i + burst]:
            apply(cmd)
            if journal is not None:
                journal.append(eng.seq, cmd)
        pending.append((eng.seq, time.perf_counter()))
        if journal is None:
            on_durable(eng.seq)
        await asyncio.sleep(0)
    if journal is not None:
        await journal.wait_durable(eng.seq)
        on_durable(journal.durable_seq)
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    out = {
        "ops_per_s": len(cmds) / elapsed,
        "loop_cpu_us": cpu / len(cmds) * 1e6,
        "ack_p50_ms": pct(acks, 0.5) * 1e3,
        "ack_p99_ms": pct(acks, 0.99) * 1e3,
    }
    if journal is not None:
        await journal.close()
        out.update(
            batches=journal.batches,
            avg_batch=journal.records / max(journal.batches, 1),
            fsync_ms=journal.fsync_seconds_total / max(journal.batches, 1) * 1e3,
        )
    return out


async def run_paced(config: MarketConfig, cmds: Sequence[AnyCommand], rate: int, burst: int, directory: Path) -> tuple[float, float]:
    """Commands at a steady ``rate`` (``burst`` at a time) under policy fsync: (p50, p99)
    ms from each burst's *intended* arrival to durable - what a client waits at a load
    the server is not saturated by."""
    eng = Engine(config)
    journal = LocalJournal(directory, "fsync")
    lat: list[float] = []
    pending: list[tuple[int, float]] = []

    def on_durable(seq: int) -> None:
        now = time.perf_counter()
        while pending and pending[0][0] <= seq:
            lat.append(now - pending.pop(0)[1])

    journal.add_listener(on_durable)
    await journal.start()
    interval = burst / rate
    due = time.perf_counter()
    for i in range(0, len(cmds), burst):
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for cmd in cmds[i : i + burst]:
            eng.apply(cmd)
            journal.append(eng.seq, cmd)
        pending.append((eng.seq, due))
        due += interval
    await journal.wait_durable(eng.seq)
    await journal.close()
    return pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def throughput(
    config: MarketConfig, cmds: list[AnyCommand], burst: int, runs: int, base: Path, use_uvloop: bool
) -> dict[str, list[dict[str, float]]]:
    """Interleave the modes run by run so machine noise hits them alike."""
    results: dict[str, list[dict[str, float]]] = {"memory": [], "fsync": [], "os": []}
    for r in range(runs):
        for mode in results:
            directory = base / f"{mode}-{r}"
            directory.mkdir()
            policy: Policy | None = None if mode == "memory" else mode  # type: ignore[assignment]
            gc.collect()
            coro = run_bursts(config, cmds, burst, policy, directory)
            res = run_loop(coro, use_uvloop)
            results[mode].append(res)
            if mode != "fsync" or r:
                shutil.rmtree(directory)  # keep one journal for the replay figures
    return results


def run_loop(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def replay_rates(config: MarketConfig, directory: Path, runs: int) -> tuple[float, float]:
    """(records/s read + CRC-checked + decoded, records/s recovered = that + applied)."""
    read, full = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        n = sum(1 for _ in read_records(directory))
        read.append(n / (time.perf_counter() - t0))
        rec = recover(directory, config)
        full.append(rec.replayed / rec.seconds)
    return statistics.median(read), statistics.median(full)


def write_big_journal(config: MarketConfig, directory: Path, n: int) -> int:
    """A journal of setup + ``n`` trading commands (written with policy none: fast)."""

    async def go() -> int:
        journal = LocalJournal(directory, "none")
        await journal.start()
        seq = 0
        for cmd in [*setup_commands(config), *trading_commands(n, seed=7)]:
            seq += 1
            journal.append(seq, cmd)
            if seq % 10_000 == 0:
                await asyncio.sleep(0)
        await journal.close()
        return seq

    return asyncio.run(go())


_STARTUP_PROBE = """
import sys
from pathlib import Path
from carbonx.gateway.recovery import recover
from carbonx.gateway.testkit import demo_config
import time
cpu = time.process_time()
seconds = recover(Path(sys.argv[1]), demo_config()).seconds
print(seconds, time.process_time() - cpu)
"""


def startup_seconds(directory: Path, runs: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``recover()``, each run in a fresh process: start-up happens
    in a new process (a second recovery in the same process runs slower on the used heap).
    CPU time is the figure that other load on the machine does not inflate."""
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", _STARTUP_PROBE, str(directory)], capture_output=True, text=True, check=True)
        wall, cpu = proc.stdout.split()[-2:]
        out.append((float(wall), float(cpu)))
    return out


async def snapshot_pause(engine: Engine, directory: Path, fork: bool) -> tuple[float, float]:
    """(longest event-loop stall in ms while ``SnapshotStore.save`` runs, total seconds):
    the stall is how long the engine stops taking commands."""
    store = SnapshotStore(directory, fork=fork)
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    path = await store.save(engine)
    total = time.perf_counter() - t0
    done = True
    await tick
    path.unlink()
    return worst * 1e3, total


def snapshot_pauses(config: MarketConfig, directory: Path, n: int, runs: int) -> dict[str, float]:
    gc.disable()
    eng = Engine(config)
    for cmd in [*setup_commands(config), *trading_commands(n, seed=3)]:
        eng.apply(cmd)
    gc.enable()
    size = len(eng.snapshot())
    out: dict[str, float] = {"snapshot_state_mb": round(size / 1e6, 1), "snapshot_commands": n}
    for fork in (False, True):
        name = "fork" if fork else "thread"
        res = [asyncio.run(snapshot_pause(eng, directory, fork)) for _ in range(runs)]
        out[f"snapshot_pause_{name}_ms"] = round(statistics.median(r[0] for r in res), 1)
        out[f"snapshot_total_{name}_s"] = round(statistics.median(r[1] for r in res), 2)
    return out


def fsync_latency_ms(directory: Path, n: int = 50) -> float:
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3


def median_of(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commands", type=int, default=100_000, help="trading commands per throughput run")
    p.add_argument("--burst", type=int, default=1_000)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--startup-commands", type=int, default=1_000_000)
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--paced-rate", type=int, default=5_000, help="commands/s for the paced fsync latency figure")
    p.add_argument("--snapshot-commands", type=int, default=300_000, help="state size for the snapshot stall figure")
    p.add_argument("--dir", type=Path, default=None, help="where to write journals (default: a temp dir; use a real disk, not tmpfs)")
    p.add_argument("--no-uvloop", action="store_true")
    args = p.parse_args()

    config = demo_config()
    cmds = [*setup_commands(config), *trading_commands(args.commands, seed=1)]
    base = Path(tempfile.mkdtemp(prefix="carbonx-journal-bench-", dir=args.dir))
    try:
        fsync_ms = fsync_latency_ms(base)
        print(f"fsync of 4 KiB on {base}: {fsync_ms:.2f} ms (median)", flush=True)
        res = throughput(config, cmds, args.burst, args.runs, base, not args.no_uvloop)
        for mode, runs in res.items():
            rates = ", ".join(f"{r['ops_per_s']:,.0f}" for r in runs)
            print(
                f"{mode:>6}: ops/s [{rates}]  loop thread CPU {median_of(runs, 'loop_cpu_us'):.2f} us/cmd  ack p50 {median_of(runs, 'ack_p50_ms'):.2f} ms p99 {median_of(runs, 'ack_p99_ms'):.2f} ms",
                flush=True,
            )
        paced_dir = base / "paced"
        paced_dir.mkdir()
        paced = run_loop(run_paced(config, cmds[: args.paced_rate * 4], args.paced_rate, 10, paced_dir), not args.no_uvloop)
        print(f"paced {args.paced_rate}/s, fsync: ack p50 {paced[0]:.2f} ms p99 {paced[1]:.2f} ms", flush=True)
        read_rate, replay_apply_rate = replay_rates(config, base / "fsync-0", args.runs)
        print(f"replay: read+decode {read_rate:,.0f} records/s; read+decode+apply {replay_apply_rate:,.0f} records/s", flush=True)
        big = base / "startup"
        big.mkdir()
        total = write_big_journal(config, big, args.startup_commands)
        startups = startup_seconds(big, args.startup_runs)
        print(
            f"start-up, {total:,} records, no snapshot: {', '.join(f'{w:.2f}' for w, _ in startups)} s (CPU {', '.join(f'{c:.2f}' for _, c in startups)} s)",
            flush=True,
        )
        snaps = snapshot_pauses(config, base, args.snapshot_commands, 3)
        print(
            f"snapshot of {snaps['snapshot_state_mb']} MB state: engine stall {snaps['snapshot_pause_thread_ms']} ms (thread) vs {snaps['snapshot_pause_fork_ms']} ms (fork)",
            flush=True,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)

    memory = median_of(res["memory"], "ops_per_s")
    fsync = median_of(res["fsync"], "ops_per_s")
    os_rate = median_of(res["os"], "ops_per_s")
    summary = {
        "in_memory_ops_per_s": round(memory),
        "fsync_ops_per_s": round(fsync),
        "os_ops_per_s": round(os_rate),
        "replay_per_s": round(read_rate),
        "startup_1m_s": round(statistics.median(w for w, _ in startups), 2),
        "fsync_vs_memory": round(fsync / memory, 3),
        "os_vs_memory": round(os_rate / memory, 3),
        "replay_apply_per_s": round(replay_apply_rate),
        # CPU time of the event-loop thread per command: insensitive to other load on the machine.
        "memory_loop_cpu_us": round(median_of(res["memory"], "loop_cpu_us"), 2),
        "fsync_loop_cpu_us": round(median_of(res["fsync"], "loop_cpu_us"), 2),
        "os_loop_cpu_us": round(median_of(res["os"], "loop_cpu_us"), 2),
        "fsync_ack_p50_ms": round(median_of(res["fsync"], "ack_p50_ms"), 2),
        "fsync_ack_p99_ms": round(median_of(res["fsync"], "ack_p99_ms"), 2),
        "fsync_paced_rate": args.paced_rate,
        "fsync_paced_ack_p50_ms": round(paced[0], 2),
        "fsync_paced_ack_p99_ms": round(paced[1], 2),
        "fsync_avg_batch": round(median_of(res["fsync"], "avg_batch"), 1),
        "fsync_ms_per_batch": round(median_of(res["fsync"], "fsync_ms"), 2),
        "fsync_probe_ms": round(fsync_ms, 2),
        "startup_1m_cpu_s": round(statistics.median(c for _, c in startups), 2),
        "startup_records": total,
        **snaps,
        "commands_per_run": len(cmds),
        "burst": args.burst,
        "runs": args.runs,
        "uvloop": not args.no_uvloop,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "python": platform.python_version(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
