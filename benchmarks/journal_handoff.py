"""Journal hand-off: CPU per group commit at the gateway's sustained rate (policy fsync).

A uvloop event loop appends ``--per-batch`` records every ~0.8 ms (about what 5,000
orders/s over 20 connections gives: ~4 orders per fsync), ``--batches`` times, and waits
until all are durable. Reported per batch: the process's CPU time (both threads: the loop
and the journal's writer) and the loop thread's alone. What is measured is the journal's
own cost per batch: encoding the appends, handing the batch to the writer thread, the
write and ``fdatasync`` system calls, and reporting durability back to the loop. The
machine's load moves it far less than wall-clock figures. ``--journal FILE`` loads another
version of ``gateway/journal.py`` (e.g. from ``git show REV:gateway/journal.py``) for an
A/B in one sitting. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import uvloop

from carbonx.engine.schema import Tick

T0 = 1_700_000_000_000_000_000


def load(path: str | None) -> ModuleType:
    if path is None:
        from carbonx.gateway import journal

        return journal
    spec = importlib.util.spec_from_file_location("journal_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def one_run(jm: ModuleType, batches: int, per: int, interval: float) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="journal-handoff-"))
    journal = jm.LocalJournal(directory, "fsync")
    await journal.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    seq = 0

    def burst(i: int) -> None:
        nonlocal seq
        for _ in range(per):
            seq += 1
            journal.append(seq, Tick(ts=T0 + seq))
        if i + 1 < batches:
            loop.call_at(loop.time() + interval, burst, i + 1)
        else:
            done.set()

    c0, m0 = time.process_time(), time.thread_time()
    loop.call_soon(burst, 0)
    await done.wait()
    await journal.wait_durable(seq)
    c1, m1 = time.process_time(), time.thread_time()
    await journal.close()
    for path in directory.glob("journal/*"):
        path.unlink()
    return {
        "records_per_batch": journal.records / journal.batches,
        "process_cpu_us_per_batch": (c1 - c0) / journal.batches * 1e6,
        "loop_cpu_us_per_batch": (m1 - m0) / journal.batches * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=4000)
    p.add_argument("--per-batch", type=int, default=4)
    p.add_argument("--interval-ms", type=float, default=0.8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--journal", help="path of another gateway/journal.py to measure")
    args = p.parse_args()
    jm = load(args.journal)
    runs = []
    for i in range(args.runs):
        r = uvloop.run(one_run(jm, args.batches, args.per_batch, args.interval_ms / 1000))
        print(f"run {i}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()))
        runs.append(r)
    out: dict[str, Any] = {"journal": args.journal or "installed", "batches": args.batches, "per_batch": args.per_batch}
    for key in runs[0]:
        out[key] = round(statistics.median(r[key] for r in runs), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
