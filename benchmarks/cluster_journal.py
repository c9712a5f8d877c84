"""Command-log throughput on a real 3-node NATS JetStream cluster (R3): JetStreamJournal alone.

Bursts of ``--burst`` commands (the journal workload of ``gateway.testkit``) are appended
back-to-back, yielding to the loop after each burst as a gateway would; the rate is
commands / time until the last one is acknowledged (stored on a quorum). Run once with the
NATS default ``sync_interval`` (fsync every 2 minutes) and once with ``sync_interval: always``
(fsync every write), each on a fresh cluster on loopback. Also reported: commands per stream
message (the group-commit batch) and a paced run's arrival -> acknowledged latency.

This is the command log alone (no engine, no gateway); ``benchmarks/cluster_load.py`` (issue 11,
not written yet) will measure orders through gateways. The three NATS servers share the machine
with this process. Run: ``python benchmarks/cluster_journal.py`` (about half a minute).
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from msgspec.structs import replace

from carbonx.gateway.cluster.journal import JetStreamJournal
from carbonx.gateway.natskit import NatsCluster
from carbonx.gateway.settings import ClusterSettings
from carbonx.gateway.testkit import demo_config, workload


async def _bursts(settings: ClusterSettings, cmds: list[Any], burst: int) -> dict[str, float]:
    journal = JetStreamJournal(settings)
    await journal.start()
    t0 = time.perf_counter()
    for seq, cmd in enumerate(cmds, 1):
        journal.append(seq, cmd)
        if seq % burst == 0:
            await asyncio.sleep(0)
    await journal.wait_durable(len(cmds))
    dt = time.perf_counter() - t0
    await journal.close()
    return {"commands_per_s": round(len(cmds) / dt), "commands_per_message": round(journal.records / journal.batches, 1)}


async def _paced(settings: ClusterSettings, cmds: list[Any], rate: float) -> dict[str, float]:
    """``rate`` commands/s in ticks of 1 ms; latency = append -> durable, per command."""
    journal = JetStreamJournal(settings)
    await journal.start()
    sent: list[float] = []
    lat: list[float] = []

    def on_durable(durable: int) -> None:
        now = time.perf_counter()
        while len(lat) < durable:
            lat.append(now - sent[len(lat)])

    journal.add_listener(on_durable)
    t0 = time.perf_counter()
    i = 0
    while i < len(cmds):
        due = min(len(cmds), int((time.perf_counter() - t0) * rate) + 1)
        while i < due:
            sent.append(time.perf_counter())
            journal.append(i + 1, cmds[i])
            i += 1
        await asyncio.sleep(0.001)
    await journal.wait_durable(len(cmds))
    await journal.close()
    lat.sort()
    return {
        "paced_rate": rate,
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
    }


def run(sync_interval: str | None, n: int, burst: int, rate: float, runs: int) -> dict[str, Any]:
    cmds = workload(demo_config(), n)
    with tempfile.TemporaryDirectory() as tmp, NatsCluster(Path(tmp), 3, sync_interval=sync_interval) as cluster:
        base = replace(ClusterSettings(), nats_urls=tuple(cluster.urls))
        rates, per_msg = [], []
        for r in range(runs):
            s = replace(base, command_stream=f"B{r}", command_subject=f"bench.b{r}")
            out = asyncio.run(_bursts(s, cmds, burst))
            rates.append(out["commands_per_s"])
            per_msg.append(out["commands_per_message"])
        paced = asyncio.run(_paced(replace(base, command_stream="P", command_subject="bench.p"), cmds[: int(rate * 3)], rate))
    return {
        "sync_interval": sync_interval or "default",
        "commands_per_s": statistics.median(rates),
        "commands_per_message": statistics.median(per_msg),
        **paced,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50_000, help="commands per burst run")
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=5000.0, help="paced run: commands/s")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = {}
    for sync in (None, "always"):
        res = run(sync, args.n, args.burst, args.rate, args.runs)
        print(res, flush=True)
        results[res["sync_interval"]] = res
    print(json.dumps(results))


if __name__ == "__main__":
    main()
