"""Cluster load benchmark (issue 11): order entry through 2 gateways on a 3-node NATS cluster,
the same with ``sync_interval: always``, failover time, and the embedded mode beside them.

Phases, each on fresh processes (gateway.cluster.testkit.ClusterKit: 3 NATS nodes, 2
``carbonx engine``, 2 ``carbonx gateway``; gateway.testkit.start_server for embedded):

1. **embedded**: ``carbonx serve --fsync-policy fsync``, the open-loop sustained phase of
   ``benchmarks/gateway_load.py`` (fixed offered ``--rate``, latency from the *intended* send
   time, so a stall is charged for every order it delayed).
2. **cluster**: the same open loop, the connections spread over both gateways.
3. **failover** (on the cluster of phase 2): ``--kills`` times, a prober places an order every
   ``--probe-ms`` through a FailoverClient; the active engine is SIGKILLed; ``failover_s`` is the
   time from the kill to the first acknowledgement of an order *sent after* the kill (so it
   was applied by the new leader). The killed engine restarts as a standby before the next
   kill. Reported: the median and every run.
4. **always**: phase 2 again on a cluster whose NATS nodes fsync every write.

Targets from the issue (2-core machine): >= 2,000 orders/s sustained with p99 < 50 ms in cluster
mode; failover < 10 s. The figures move with the machine's load: ``loadavg_1m_at_start`` says
how busy it was. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import uvloop

from carbonx.gateway.client import Client, ClientError
from carbonx.gateway.cluster.testkit import ClusterKit, roles_available
from carbonx.gateway.failover import FailoverClient
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, cpu_seconds, start_server, write_config

_spec = importlib.util.spec_from_file_location("gateway_load", Path(__file__).with_name("gateway_load.py"))
assert _spec is not None and _spec.loader is not None
gateway_load = importlib.util.module_from_spec(_spec)
sys.modules["gateway_load"] = gateway_load  # its dataclasses look their module up
_spec.loader.exec_module(gateway_load)

LIMITS = {
    "orders_per_s": 1_000_000.0,
    "order_burst": 1_000_000,
    "requests_per_s": 1_000_000.0,
    "request_burst": 1_000_000,
    "max_connections_per_member": 10_000,
    "max_connections": 10_000,
    "login_timeout_s": 3600.0,
}


async def _sessions(urls: list[str], n: int) -> list[tuple[Client, str]]:
    """``n`` broker sessions, alternating demo-a / demo-b and spread round-robin over ``urls``."""
    out = []
    for i in range(n):
        who = "ab"[i % 2]
        c = Client(urls[(i // 2) % len(urls)], timeout=30)
        await c.connect()
        await c.login(*BROKERS[who])
        out.append((c, ACCOUNTS[who][(i // 2) % 2]))
    return out


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def sustained(urls: list[str], args: argparse.Namespace, pids: list[int]) -> dict[str, Any]:
    """The open loop; plus ``cpu_us_per_order``: CPU time of the exchange's processes (``pids``:
    NATS nodes, engines, gateways; or the one embedded server) over the phase per order
    acknowledged, a figure the machine's load moves far less than rates and latencies."""
    sessions = await _sessions(urls, args.connections)
    try:
        before = _cpu(pids)
        result: dict[str, Any] = await gateway_load.open_loop(sessions, args.rate, args.duration, args.seed)
        used = _cpu(pids) - before
        result["cpu_s"] = round(used, 2)
        result["cpu_us_per_order"] = round(1e6 * used / result["acked"], 1) if result["acked"] else None
        return result
    finally:
        for c, _ in sessions:
            await c.close()
        await gateway_load._reset_books(urls[0])


async def failover(kit: ClusterKit, args: argparse.Namespace) -> list[float]:
    """``--kills`` runs of ``one_failover``; the killed engine restarts as a standby between runs."""
    runs = []
    async with FailoverClient(kit.trading_urls, *BROKERS["a"], reconnect_s=60, timeout=60) as fc:
        for k in range(args.kills):
            active = await asyncio.to_thread(kit.wait_active)
            runs.append(await one_failover(kit, fc, active, f"probe-{args.seed}-{k}", args.probe_ms))
            print(f"failover {k + 1}/{args.kills}: {runs[-1]} s", file=sys.stderr)
            kit.start_engine(active)
            await asyncio.sleep(2.0)  # the restarted standby catches up before the next kill
    return runs


async def one_failover(kit: ClusterKit, fc: FailoverClient, active: int, prefix: str, probe_ms: float) -> float:
    """Seconds from SIGKILL of engine ``active`` to the first ack of an order sent after the kill
    (an IOC buy at the bottom of the price band: applied, never rests; trades only if someone sells that low)."""
    killed_at = 0.0
    first_ack: float | None = None
    stop = asyncio.Event()

    async def probe(n: int) -> None:
        nonlocal first_ack
        sent = time.monotonic()
        try:
            await fc.call(
                "order.place",
                account=ACCOUNTS["a"][0],
                instrument="SHEA",
                side="buy",
                quantity=1,
                price="55.00",
                time_in_force="ioc",
                client_order_id=f"{prefix}-{n}",
            )
        except (ClientError, TimeoutError):
            return
        if killed_at and sent > killed_at and first_ack is None:
            first_ack = time.monotonic()
            stop.set()

    async def prober() -> None:
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while not stop.is_set():
            n += 1
            task = asyncio.create_task(probe(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(probe_ms / 1000)
        for task in list(tasks):
            task.cancel()

    runner = asyncio.create_task(prober())
    await asyncio.sleep(1.0)
    killed_at = time.monotonic()
    kit.kill9_engine(active)
    try:
        await asyncio.wait_for(stop.wait(), 60)
    finally:
        stop.set()
        await runner
    assert first_ack is not None
    return round(first_ack - killed_at, 3)


def _pids(kit: ClusterKit) -> list[int]:
    """Every process of the cluster: NATS nodes, engines, gateways."""
    procs = [n.proc for n in kit.nats.nodes] + [e.proc for e in kit.engines]
    return [p.pid for p in procs if p is not None] + [g.pid for g in kit.gateways]


def _cluster(workdir: Path, name: str, config: Path, sync_interval: str | None, linger_ms: float | None) -> ClusterKit:
    extra: dict[str, object] = {"lease_ttl_s": 2.0}
    if linger_ms is not None:
        extra["linger_ms"] = linger_ms
    return ClusterKit(workdir / name, sync_interval=sync_interval, base_config=config, cluster=extra)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    config = write_config(workdir / "bench.toml", limits=LIMITS)
    out: dict[str, Any] = {}
    server = start_server(workdir / "embedded", fsync="fsync", config=config)
    try:
        out["embedded"] = await sustained([server.trading], args, [server.pid])
    finally:
        server.terminate()
    if not roles_available():
        out["cluster_error"] = "carbonx engine/gateway roles not available in this build"
        return out
    try:
        with _cluster(workdir, "default", config, None, args.linger_ms) as kit:
            out["cluster"] = await sustained(kit.trading_urls, args, _pids(kit))
            if args.kills:
                out["failover_runs"] = await failover(kit, args)
        if args.always:
            with _cluster(workdir, "always", config, "always", args.linger_ms) as kit:
                out["always"] = await sustained(kit.trading_urls, args, _pids(kit))
    except Exception as exc:  # report what was measured, and why the rest was not
        traceback.print_exc()
        out["cluster_error"] = repr(exc)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rate", type=float, default=2000, help="offered orders per second, all connections together")
    p.add_argument("--duration", type=float, default=10, help="seconds of each sustained phase")
    p.add_argument("--connections", type=int, default=20, help="broker connections (spread over the gateways)")
    p.add_argument("--kills", type=int, default=5, help="active-engine kills for failover_s (0 skips)")
    p.add_argument("--probe-ms", type=float, default=20, help="the failover prober sends an order this often")
    p.add_argument("--no-always", dest="always", action="store_false", help="skip the sync_interval: always phase")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--linger-ms", type=float, help="[cluster] linger_ms for every process (default: the configuration's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="carbonx-cluster-bench-") as tmp:
        detail = uvloop.run(run(args, Path(tmp)))
    for name, part in detail.items():
        print(f"{name}: {json.dumps(part)}", file=sys.stderr)
    cluster, always, embedded = detail.get("cluster") or {}, detail.get("always") or {}, detail.get("embedded") or {}
    runs = detail.get("failover_runs") or []
    summary = {
        "loadavg_1m_at_start": load_at_start,
        "cpus": os.cpu_count(),
        "offered_per_s": args.rate,
        "connections": args.connections,
        "orders_per_s": cluster.get("orders_per_s"),
        "p50_ms": cluster.get("p50_ms"),
        "p99_ms": cluster.get("p99_ms"),
        "always_orders_per_s": always.get("orders_per_s"),
        "always_p50_ms": always.get("p50_ms"),
        "always_p99_ms": always.get("p99_ms"),
        "cpu_us_per_order": cluster.get("cpu_us_per_order"),
        "always_cpu_us_per_order": always.get("cpu_us_per_order"),
        "embedded_cpu_us_per_order": embedded.get("cpu_us_per_order"),
        "failover_s": statistics.median(runs) if runs else None,
        "failover_runs_s": runs,
        "embedded_orders_per_s": embedded.get("orders_per_s"),
        "embedded_p50_ms": embedded.get("p50_ms"),
        "embedded_p99_ms": embedded.get("p99_ms"),
        "errors": {
            **{f"cluster_{k}": v for k, v in cluster.get("errors", {}).items()},
            **{f"always_{k}": v for k, v in always.get("errors", {}).items()},
            **{f"embedded_{k}": v for k, v in embedded.get("errors", {}).items()},
        },
        "cluster_error": detail.get("cluster_error"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
