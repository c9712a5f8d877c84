"""Start-up time of ``carbonx serve`` on a long journal: with the supervision checkpoint
beside the newest snapshot, and without it (the full second replay start-up did before).

A data directory is built once (deterministic): the engine_throughput workload (``--commands``
orders and cancels, ~70/25/5 passive/cancel/aggressive, 200 funded accounts) journaled (policy
``none``: only the start-up is timed), a snapshot at ``--commands - --tail`` and, beside it, a
checkpoint of the surveillance and disclosure consumers as the gateway writes one after every
snapshot. Each run copies it, starts ``carbonx serve`` (the demo configuration: surveillance
and disclosure on) and times the process from spawn to its ``carbonx ready`` line; then kills
it (-9: a graceful stop would write another snapshot). Runs alternate between the two layouts:
``with_checkpoint`` (recovery replays the tail, the consumers replay from the snapshot) and
``full_derive`` (the checkpoint folder removed: the consumers replay the whole journal).

Last line: one JSON object with ``startup_s`` and ``startup_full_derive_s`` (medians),
``speedup``, ``records``, ``tail``, ``runs``, ``load`` (``os.getloadavg`` at the start),
``python`` and ``machine``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from carbonx.engine.config import load_market_text
from carbonx.engine.engine import Engine
from carbonx.engine.testkit import throughput_workload
from carbonx.gateway import supervision_checkpoint as checkpoints
from carbonx.gateway.journal import LocalJournal
from carbonx.gateway.settings import load_settings
from carbonx.gateway.snapshots import SnapshotStore
from carbonx.gateway.supervision import Supervision
from carbonx.gateway.testkit import DEMO, start_server


def build(directory: Path, commands: int, tail: int, seed: int) -> int:
    """Journal the workload in ``directory``, snapshot and checkpoint at ``len - tail``;
    returns the records journaled."""
    settings = load_settings(DEMO)
    config = load_market_text(DEMO.read_text())
    setup, cmds = throughput_workload(config, commands, seed)
    everything = [*setup, *cmds]
    at = len(everything) - tail
    engine = Engine(config)
    sup = Supervision(settings.surveillance, settings.disclosure, market=None, outbound=None)  # type: ignore[arg-type]

    async def go() -> None:
        journal = LocalJournal(directory, "none")
        await journal.start()
        for seq, cmd in enumerate(everything, 1):
            events = engine.apply(cmd)
            journal.append(seq, cmd)
            if seq <= at:
                sup.feed(events)
                sup.fed_seq = seq
            if seq == at:
                data = engine.snapshot()
                SnapshotStore(directory).save_bytes(seq, data, hashlib.sha256(data).hexdigest())
                found = sup.checkpoint()
                assert found is not None
                checkpoints.save(directory, *found)
            if seq % 10_000 == 0:
                await asyncio.sleep(0)
        await journal.close()

    asyncio.run(go())
    return len(everything)


def time_start(source: Path, work: Path, keep_checkpoint: bool) -> float:
    """Seconds from spawning ``carbonx serve`` on a copy of ``source`` to its ready line."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work)
    if not keep_checkpoint:
        shutil.rmtree(checkpoints.folder_of(work))
    t0 = time.perf_counter()
    server = start_server(work, timeout=600)
    took = time.perf_counter() - t0
    server.kill9()
    log = server.log_tail(400)
    assert ("supervision: checkpoint at seq" in log) == keep_checkpoint, log
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=500_000)
    ap.add_argument("--tail", type=int, default=10_000, help="records after the snapshot")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        records = build(source, args.commands, args.tail, args.seed)
        print(f"built: {records} records, snapshot and checkpoint at {records - args.tail}", flush=True)
        with_ck: list[float] = []
        full: list[float] = []
        for i in range(args.runs):
            with_ck.append(time_start(source, Path(tmp) / "run", keep_checkpoint=True))
            full.append(time_start(source, Path(tmp) / "run", keep_checkpoint=False))
            print(f"run {i + 1}: with checkpoint {with_ck[-1]:.2f} s, full derive {full[-1]:.2f} s", flush=True)
    a, b = statistics.median(with_ck), statistics.median(full)
    print(
        json.dumps(
            {
                "startup_s": round(a, 3),
                "startup_full_derive_s": round(b, 3),
                "speedup": round(b / a, 2),
                "records": records,
                "tail": args.tail,
                "runs": args.runs,
                "load": [round(x, 2) for x in load],
                "python": platform.python_version(),
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
            }
        )
    )


if __name__ == "__main__":
    main()
