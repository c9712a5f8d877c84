"""Soak benchmark: does the server's memory stay flat under a steady load?

Starts its own ``carbonx serve`` on the demo configuration (which never closes its trading
day, like the 24/7 demo) and drives it at a fixed ``--rate`` of orders per second for
``--seconds`` (default 10 minutes): two broker sessions (members ``a`` and ``b``) place
crossing SHEA limit orders with client order ids, so (nearly) every pair trades; one order in
``--rest-every`` rests a tick away and is cancelled by client order id a moment later, and
every ``--query-every``-th pair also asks ``order.get`` by client order id of a finished
order and ``trade.list``. The directions alternate, so cash and holdings oscillate instead
of running out. Pairs overlap in flight, so a sell can meet its own account's older buy at
the head of the queue: the crossing orders use ``stp="cancel_oldest"`` so that stale own
order leaves instead of the new one (with the default ``cancel_newest`` every such meeting
killed the sell and left a buy resting for good: the live book, and the server's memory
with it, grew without end; ``open_orders`` reports what is left on the book at the end).

Every ``--sample-s`` seconds the server's resident set size (``/proc/PID/status`` VmRSS) is
sampled. Reported: ``rss_start_mb`` (right after start-up), ``rss_warm_mb`` (after
``--warmup-s``), ``rss_end_mb``, ``rss_max_mb``, ``slope_mb_per_min`` (least-squares slope
of RSS over the samples after warm-up) and ``slope_last_half_mb_per_min`` (over the second
half of the run: the engine's history windows, ``[retention]``, fill during the first
minutes at the default rate, after which memory should be flat), ``commands`` (commands the engine applied, from
``/metrics``), ``orders``/``trades`` and the achieved rate. The machine is shared with
other jobs: the CPU the rest of the machine used is reported too. The last line of output
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, Server, cpu_seconds, machine_busy_seconds, rss_mb, scrape, start_server, write_config


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return 60 * sum((t - mx) * (v - my) for t, v in samples) / den if den else 0.0


async def drive(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    a, b = Client(server.trading, timeout=30), Client(server.trading, timeout=30)
    for c, who in ((a, "a"), (b, "b")):
        await c.connect()
        await c.login(*BROKERS[who])
    acct_a, acct_b = ACCOUNTS["a"][0], ACCOUNTS["b"][0]
    errors: dict[str, int] = {}
    sent = 0
    period = 2 / args.rate  # one pair = two orders
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    samples: list[tuple[float, float]] = [(0.0, rss_mb(server.pid))]
    next_sample = t0 + args.sample_s
    pending: set[asyncio.Task[Any]] = set()

    async def pair(i: int) -> None:
        nonlocal sent
        buyer, seller = ((a, acct_a), (b, acct_b)) if i % 2 == 0 else ((b, acct_b), (a, acct_a))
        try:
            await buyer[0].place(buyer[1], "SHEA", "buy", 1, "60.00", stp="cancel_oldest", client_order_id=f"s{i}b")
            await seller[0].place(seller[1], "SHEA", "sell", 1, "60.00", stp="cancel_oldest", client_order_id=f"s{i}s")
            sent += 2
            if args.rest_every and i % args.rest_every == 0:
                await buyer[0].place(buyer[1], "SHEA", "buy", 1, "59.90", client_order_id=f"s{i}r")
                await buyer[0].cancel(buyer[1], client_order_id=f"s{i}r")
                sent += 2
            if args.query_every and i % args.query_every == 0:
                await buyer[0].get_order(buyer[1], client_order_id=f"s{i}b")
                await buyer[0].trades(buyer[1], "SHEA")
        except (RpcError, TimeoutError, ConnectionError) as exc:
            reason = exc.reason if isinstance(exc, RpcError) and exc.reason else type(exc).__name__
            errors[str(reason)] = errors.get(str(reason), 0) + 1

    for i in itertools.count():
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_sample:
            samples.append((now - t0, rss_mb(server.pid)))
            next_sample += args.sample_s
        task = asyncio.create_task(pair(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * period - time.monotonic()))
    if pending:
        await asyncio.wait(pending, timeout=30)
    samples.append((time.monotonic() - t0, rss_mb(server.pid)))
    wall = time.monotonic() - t0
    open_orders = len(await a.list_orders(acct_a, open_only=True)) + len(await b.list_orders(acct_b, open_only=True))
    for c in (a, b):
        await c.close()
    return {"samples": samples, "orders_sent": sent, "errors": errors, "wall_s": wall, "open_orders": open_orders}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="how long to run the load (default 600)")
    ap.add_argument("--rate", type=float, default=100.0, help="orders per second, both members together (default 100)")
    ap.add_argument("--rest-every", type=int, default=5, help="every Nth pair also rests and cancels an order (0: never)")
    ap.add_argument("--query-every", type=int, default=10, help="every Nth pair also queries order.get and trade.list (0: never)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="samples before this are left out of the slope")
    ap.add_argument("--fsync", default="os", choices=["os", "fsync"], help="server fsync policy (default os)")
    ap.add_argument("--data-dir", type=Path, help="server data directory (default: a temporary one)")
    ap.add_argument("--retention", type=int, help="set every [retention] cap to this (default: the demo's defaults)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="carbonx-soak-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        caps = {} if args.retention is None else {k: args.retention for k in ("finished_orders", "trades", "finished_blocks")}
        config = write_config(Path(tmp) / "soak.toml", retention=caps)
        server = start_server(data_dir, fsync=args.fsync, config=config)
        try:
            busy0, server_cpu0 = machine_busy_seconds(), cpu_seconds(server.pid)
            run = asyncio.run(drive(server, args))
            metrics = scrape(server)
            busy = machine_busy_seconds() - busy0
            server_cpu = cpu_seconds(server.pid) - server_cpu0
        finally:
            server.terminate()
    samples: list[tuple[float, float]] = run["samples"]
    warm = [s for s in samples if s[0] >= min(args.warmup_s, samples[-1][0])]
    wall = run["wall_s"]
    result = {
        "seconds": round(wall, 1),
        "retention": args.retention,
        "rate_target": args.rate,
        "orders_sent": run["orders_sent"],
        "orders_per_s": round(run["orders_sent"] / wall, 1),
        "commands": int(metrics.get("carbonx_commands_total", 0)),
        "trades": int(sum(v for k, v in metrics.items() if k.startswith("carbonx_trades_total"))),
        "errors": run["errors"],
        "open_orders": run["open_orders"],
        "rss_start_mb": round(samples[0][1], 1),
        "rss_warm_mb": round(warm[0][1], 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_max_mb": round(max(v for _, v in samples), 1),
        "slope_mb_per_min": round(slope_per_min(warm), 3),
        "slope_last_half_mb_per_min": round(slope_per_min([x for x in samples if x[0] >= samples[-1][0] / 2]), 3),
        "server_cpu_pct": round(100 * server_cpu / wall, 1),
        "other_cpu_pct": round(100 * max(busy - server_cpu, 0.0) / wall, 1),
    }
    for t, v in samples[:: max(1, len(samples) // 12)]:
        print(f"t={t:7.1f}s rss={v:7.1f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
