"""Gateway load benchmark: order entry latency/throughput and market-data fan-out.

Starts its own ``carbonx serve`` (``--fsync-policy fsync`` by default: every reply waits for
the group-committed fsync) on loopback and runs three phases:

1. **Sustained, open loop**: ``--connections`` broker sessions send orders at a fixed total
   ``--rate``. Each order has an *intended* send time on a fixed schedule and its latency is
   measured from that time, not from when the generator got round to sending it, so a
   stalled server is charged for every order it delayed (no coordinated omission). Reported:
   ``orders_per_s`` (acknowledgements received within the scheduled window per second) and
   ``p50_ms``/``p99_ms``/``p999_ms`` from an HDR histogram.
2. **Peak, closed loop**: the same connections each keep ``--window`` orders in flight for
   ``--peak-duration`` seconds: the most the server (and this generator) can acknowledge.
3. **Fan-out**: on a deep SHEA book, ``--subscribers`` connections (in ``--sub-procs``
   worker processes) subscribe to ``book.SHEA`` and read everything; a driver places
   orders at ``--fanout-rate``. Halfway through, one extra subscriber subscribes, asks for
   ``--slow-prefill`` snapshots and stops reading. Reported: deliveries per second to the
   readers, their delivery latency (server event ``ts`` to receipt) before and while the
   slow one is stalled, how long until it was cut off (``slow_consumer_cut_s``, from the
   ``/metrics`` counter) and whether any reader was cut or saw a ``seq`` gap.

The generator shares the machine's cores with the server, so every phase also reports the
CPU seconds each side used: a side near 100 % of a core is what limits that figure. The
order-entry phases also report ``server_cpu_us_per_order``: the server process's CPU time
over the phase divided by the orders it acknowledged (top level: the sustained phase;
``peak_server_cpu_us_per_order``: the closed loop), which the machine's load does not
move the way it moves latencies and rates. ``--batch N`` sends the order-entry phases' orders
N to a frame as JSON-RPC batches (``Client.submit_batch``), at the same orders per second.
Runs the generator on uvloop. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from hdrh.histogram import HdrHistogram
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, Server, cpu_seconds, machine_busy_seconds, scrape, start_server, write_config

HIST_MAX_US = 120_000_000


def _hist() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


def _ms(hist: HdrHistogram, percentile: float) -> float:
    return round(hist.get_value_at_percentile(percentile) / 1000, 3) if hist.get_total_count() else 0.0


@dataclass
class CpuMeter:
    """CPU used over a phase, as % of one core: by the server, by this generator, and by
    everything else on the machine (other people's jobs on a shared box steal cores too)."""

    server_pid: int
    helper_pids: list[int] = field(default_factory=list)  # this benchmark's worker processes
    t0: float = field(default_factory=time.monotonic)
    server0: float = 0.0
    helpers0: float = 0.0
    self0: float = field(default_factory=time.process_time)
    machine0: float = field(default_factory=machine_busy_seconds)

    def __post_init__(self) -> None:
        self.server0 = cpu_seconds(self.server_pid)
        self.helpers0 = sum(cpu_seconds(p) for p in self.helper_pids)

    def read(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        server = cpu_seconds(self.server_pid) - self.server0
        generator = time.process_time() - self.self0 + sum(cpu_seconds(p) for p in self.helper_pids) - self.helpers0
        machine = machine_busy_seconds() - self.machine0
        return {
            "server_cpu_pct": round(100 * server / wall, 1),
            "generator_cpu_pct": round(100 * generator / wall, 1),
            "other_cpu_pct": round(100 * max(machine - server - generator, 0.0) / wall, 1),
            "server_cpu_s": round(server, 3),
        }


def _bucket_percentile(before: dict[str, float], after: dict[str, float], family: str, pct: float) -> float | None:
    """Upper bound (ms) of the histogram bucket holding ``pct`` of the phase's samples."""
    buckets = []
    for key, value in after.items():
        if key.startswith(family + "_bucket{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    for upper, count in buckets:
        if total and count >= total * pct / 100:
            return round(upper * 1000, 3)
    return None


class ServerStats:
    """What the server itself saw over a phase: its own reply latency (receive -> reply
    written), journal batching and fsync time, and the worst event-loop stall.

    The journal only exports the *last* fsync's duration, so a background task samples it
    every 200 ms: ``journal_fsync_max_sampled_ms`` is a lower bound of the worst fsync. The
    loop-lag maximum resets at every scrape, so the sampler keeps the maximum of its samples."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.t0 = time.perf_counter()
        self.before = scrape(server)
        self.fsync_max = 0.0
        self.lag_max = 0.0  # the server resets its lag maximum at every scrape: keep ours
        self.sampler = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            sample = await asyncio.to_thread(scrape, self.server)
            self.fsync_max = max(self.fsync_max, sample.get("carbonx_journal_last_fsync_seconds", 0.0))
            self.lag_max = max(self.lag_max, sample.get("carbonx_event_loop_lag_max_seconds", 0.0))

    def read(self) -> dict[str, Any]:
        self.sampler.cancel()
        after = scrape(self.server)
        wall = time.perf_counter() - self.t0

        def delta(key: str) -> float:
            return after.get(key, 0.0) - self.before.get(key, 0.0)

        batches = delta("carbonx_journal_batches_total")
        writes = delta("carbonx_socket_writes_total")
        return {
            "messages_per_socket_write": round(delta("carbonx_notifications_sent_total") / writes, 2) if writes else None,
            "server_reply_p50_ms": _bucket_percentile(self.before, after, "carbonx_command_reply_latency_seconds", 50),
            "server_reply_p99_ms": _bucket_percentile(self.before, after, "carbonx_command_reply_latency_seconds", 99),
            "journal_avg_batch": round(delta("carbonx_journal_records_total") / batches, 1) if batches else None,
            "journal_fsync_busy_pct": round(100 * delta("carbonx_journal_fsync_seconds_total") / wall, 1),
            "journal_fsync_mean_ms": round(1000 * delta("carbonx_journal_fsync_seconds_total") / batches, 2) if batches else None,
            "journal_fsync_max_sampled_ms": round(1000 * self.fsync_max, 1),
            "server_loop_lag_max_ms": round(max(self.lag_max, after.get("carbonx_event_loop_lag_max_seconds", 0.0)) * 1000, 1),
        }


# ------------------------------------------------------------------ order entry


def _order(rng: random.Random, account: str) -> dict[str, Any]:
    """A small SHEA limit order around 60.00: buys and sells cross often, so the book
    stays shallow and trades, cash and holdings move on both sides."""
    side = "buy" if rng.random() < 0.5 else "sell"
    price = 6000 + rng.randint(-5, 5)
    return {
        "account": account,
        "instrument": "SHEA",
        "side": side,
        "price": f"{price // 100}.{price % 100:02d}",
        "quantity": rng.randint(1, 5),
    }


async def _sessions(url: str, n: int) -> list[tuple[Client, str]]:
    out = []
    for i in range(n):
        who = "ab"[i % 2]
        c = Client(url, timeout=30)
        await c.connect()
        await c.login(*BROKERS[who])
        out.append((c, ACCOUNTS[who][(i // 2) % 2]))
    return out


@dataclass
class Tally:
    """Replies of one phase: latency histogram, acknowledgements (in total and within the
    scheduled window), errors by reason."""

    hist: HdrHistogram = field(default_factory=_hist)
    acked: int = 0
    acked_in_window: int = 0
    window: tuple[float, float] = (0.0, float("inf"))
    errors: dict[str, int] = field(default_factory=dict)
    last_reply: float = 0.0

    def done(self, intended: float, fut: asyncio.Future[Any]) -> None:
        now = time.perf_counter()
        exc = fut.exception()
        if exc is not None:
            reason = exc.reason if isinstance(exc, RpcError) and exc.reason else type(exc).__name__
            self.errors[reason] = self.errors.get(reason, 0) + 1
            return
        self.acked += 1
        self.acked_in_window += self.window[0] <= now <= self.window[1]
        self.last_reply = now
        self.hist.record_value(min(max(1, int((now - intended) * 1e6)), HIST_MAX_US))


async def _send_orders(c: Client, rng: random.Random, account: str, batch: int) -> list[asyncio.Future[Any]]:
    """One order in a frame of its own (``batch`` 1), or ``batch`` orders in one JSON-RPC batch frame."""
    if batch == 1:
        return [await c.submit("order.place", _order(rng, account))]
    return await c.submit_batch([("order.place", _order(rng, account)) for _ in range(batch)])


async def open_loop(sessions: list[tuple[Client, str]], rate: float, duration: float, seed: int, batch: int = 1) -> dict[str, Any]:
    """Fixed-rate schedule; latency from the intended send time.

    Times come from ``time.perf_counter`` (uvloop's ``loop.time()`` has millisecond
    resolution). ``send_lag`` is how late the generator itself sent (its own share of
    the latency: when it is high, the generator, not the server, limits the figure).
    ``orders_per_s`` counts acknowledgements received *within* the scheduled window, so a
    server that falls behind scores below the offered rate; ``drain_s`` is how long after
    the window the last reply arrived. With ``batch`` > 1 each connection sends ``batch``
    orders per frame at 1/``batch`` of the frame rate (the same orders per second), each
    order's latency counted from its batch's intended send time."""
    tally = Tally()
    lag = _hist()
    interval = len(sessions) * batch / rate
    start = time.perf_counter() + 0.2
    end = start + duration
    tally.window = (start, end)
    pending: list[asyncio.Future[Any]] = []

    async def sender(i: int, c: Client, account: str) -> None:
        rng = random.Random(seed * 1000 + i)
        intended = start + interval * i / len(sessions)
        while intended < end:
            delay = intended - time.perf_counter()
            await asyncio.sleep(max(delay, 0))  # behind schedule: still yield, or replies wait
            lag.record_value(min(max(1, int((time.perf_counter() - intended) * 1e6)), HIST_MAX_US))
            for fut in await _send_orders(c, rng, account, batch):
                fut.add_done_callback(functools.partial(tally.done, intended))
                pending.append(fut)
            intended += interval

    await asyncio.gather(*(sender(i, c, a) for i, (c, a) in enumerate(sessions)))
    await asyncio.wait(pending, timeout=30)
    return {
        "offered_per_s": rate,
        "orders_per_s": round(tally.acked_in_window / duration, 1),
        "acked": tally.acked,
        "sent": len(pending),
        "drain_s": round(max(tally.last_reply - end, 0.0), 3),
        "errors": tally.errors,
        "p50_ms": _ms(tally.hist, 50),
        "p99_ms": _ms(tally.hist, 99),
        "p999_ms": _ms(tally.hist, 99.9),
        "max_ms": round(tally.hist.get_max_value() / 1000, 3),
        "send_lag_p99_ms": _ms(lag, 99),
    }


async def closed_loop(sessions: list[tuple[Client, str]], duration: float, window: int, seed: int, batch: int = 1) -> dict[str, Any]:
    """Every connection keeps ``window`` frames (of ``batch`` orders each) in flight: the
    acknowledged rate is capacity."""
    tally = Tally()
    start = time.perf_counter()
    end = start + duration

    async def worker(i: int, c: Client, account: str) -> None:
        rng = random.Random(seed * 7919 + i)
        while time.perf_counter() < end:
            sent = time.perf_counter()
            futures = await _send_orders(c, rng, account, batch)
            await asyncio.wait(futures)
            for fut in futures:
                tally.done(sent, fut)

    await asyncio.gather(*(worker(i * window + w, c, a) for i, (c, a) in enumerate(sessions) for w in range(window)))
    elapsed = time.perf_counter() - start
    return {"orders_per_s": round(tally.acked / elapsed, 1), "acked": tally.acked, "errors": tally.errors, "p99_ms": _ms(tally.hist, 99)}


async def _reset_books(url: str) -> None:
    for who in ("a", "b"):
        async with Client(url) as c:
            await c.login(*BROKERS[who])
            for account in ACCOUNTS[who]:
                await c.cancel_all(account=account)


def _cpu_per_order(phase: dict[str, Any]) -> float | None:
    """Server CPU time over the phase (from its start until the last reply) per order it
    acknowledged, in µs: the server's cost of one order, whatever the machine's load."""
    return round(1e6 * phase["server_cpu_s"] / phase["acked"], 1) if phase["acked"] else None


async def order_entry(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    sessions = await _sessions(server.trading, args.connections)
    try:
        cpu, stats = CpuMeter(server.pid), ServerStats(server)
        sustained = await open_loop(sessions, args.rate, args.duration, args.seed, args.batch)
        sustained.update(cpu.read(), **stats.read())
        sustained["server_cpu_us_per_order"] = _cpu_per_order(sustained)
        await _reset_books(server.trading)
        peak = None
        if args.peak_duration > 0:
            cpu, stats = CpuMeter(server.pid), ServerStats(server)
            peak = await closed_loop(sessions, args.peak_duration, args.window, args.seed, args.batch)
            peak.update(cpu.read(), **stats.read())
            peak["server_cpu_us_per_order"] = _cpu_per_order(peak)
            await _reset_books(server.trading)
    finally:
        for c, _ in sessions:
            await c.close()
    return {"sustained": sustained, "peak": peak}


# ------------------------------------------------------------------ fan-out


class _Params(msgspec.Struct):
    channel: str = ""
    seq: int = 0
    ts: int = 0
    type: str = ""


class _Note(msgspec.Struct):
    method: str = ""
    params: _Params | None = None


def subscriber_worker(url: str, n: int, channel: str, pipe: Connection) -> None:
    """A worker process holding ``n`` subscribers that read everything promptly."""
    uvloop.run(_subscribers(url, n, channel, pipe))


async def _subscribers(url: str, n: int, channel: str, pipe: Connection) -> None:
    decode = msgspec.json.Decoder(_Note).decode
    hists = [_hist(), _hist()]  # before / while the slow subscriber is stalled
    phase = 0
    counts = [0] * n
    gaps = [0] * n
    closes: list[int | None] = []
    measuring = False
    conns = []
    for _ in range(n):
        ws = await connect(url, proxy=None, compression=None, max_size=1 << 22, open_timeout=60)
        await ws.send('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channels":["' + channel + '"]}}')
        conns.append(ws)

    async def read(i: int, ws: Any) -> None:
        last = -1
        try:
            async for frame in ws:
                note = decode(frame)
                p = note.params
                if p is None or p.channel != channel:
                    continue
                if last >= 0 and p.type == "update" and p.seq != last + 1:
                    gaps[i] += 1
                last = p.seq
                if measuring and p.type == "update":
                    counts[i] += 1
                    hists[phase].record_value(min(max(1, (time.time_ns() - p.ts) // 1000), HIST_MAX_US))
        except ConnectionClosed:
            pass
        if not stopping:
            closes.append(ws.close_code)

    stopping = False
    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
    loop = asyncio.get_running_loop()
    pipe.send("ready")
    await loop.run_in_executor(None, pipe.recv)  # "go"
    measuring = True
    await loop.run_in_executor(None, pipe.recv)  # "slow": the slow subscriber stalls now
    phase = 1
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    measuring = False
    stopping = True
    for ws in conns:
        await ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    pipe.send({"counts": counts, "gaps": sum(gaps), "closed": closes, "hists": [h.encode() for h in hists]})


def _metric_sum(server: Server, needle: str) -> float:
    with urllib.request.urlopen(server.metrics + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if needle in line and not line.startswith("#") and "_created" not in line
    )


async def _deep_book(url: str) -> None:
    """600 one-tonne price levels a side on SHEA (bids 54.00-59.99, asks 60.01-66.00)."""
    (a, a_acct), (b, b_acct) = await _sessions(url, 2)
    for lo in range(5400, 6000, 100):
        futures = [await a.submit("order.place", _limit(a_acct, "buy", p, 1)) for p in range(lo, lo + 100)]
        futures += [await b.submit("order.place", _limit(b_acct, "sell", p + 601, 1)) for p in range(lo, lo + 100)]
        await asyncio.gather(*futures)
    await a.close()
    await b.close()


def _limit(account: str, side: str, fen: int, quantity: int) -> dict[str, Any]:
    return {
        "account": account,
        "instrument": "SHEA",
        "side": side,
        "price": f"{fen // 100}.{fen % 100:02d}",
        "quantity": quantity,
        "time_in_force": "gtc",
    }


async def _slow_subscriber(server: Server, prefill: int) -> Any:
    """Subscribes to the SHEA channels, asks for ``prefill`` more book snapshots, and never
    reads anything (tiny receive buffer).

    The kernel autotunes a loopback socket's send buffer up to ~4 MB, and the gateway only
    sees its own write buffer grow once that is full; at a few tens of KB/s of book updates
    that takes minutes. The snapshots (~17 KB each of the deep book) fill the kernel buffer
    first, so ``slow_consumer_cut_s`` measures how fast the gateway reacts once *its* buffer
    passes the limit, which is what the guard controls."""
    host, port = server.trading.split("//")[1].split("/")[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    ws = await connect(server.trading, sock=sock, max_queue=1, proxy=None, compression=None, ping_interval=None)
    await ws.send('{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channels":["book.SHEA","trades.SHEA","ticker.SHEA"]}}')
    for i in range(prefill):
        await ws.send(f'{{"jsonrpc":"2.0","id":{2 * i + 2},"method":"unsubscribe","params":{{"channels":["book.SHEA"]}}}}')
        await ws.send(f'{{"jsonrpc":"2.0","id":{2 * i + 3},"method":"subscribe","params":{{"channels":["book.SHEA"]}}}}')
    return ws


async def _drive(url: str, rate: float, duration: float, seed: int) -> int:
    """Non-crossing orders at a fixed rate at spread-out prices: every one changes a level."""
    sessions = await _sessions(url, 2)
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    interval, t, end, sent = 1 / rate, loop.time(), loop.time() + duration, 0
    futures = []
    while t < end:
        delay = t - loop.time()
        await asyncio.sleep(max(delay, 0))
        c, account = sessions[sent % 2]
        side = "buy" if sent % 2 == 0 else "sell"
        price = rng.randint(5400, 5999) if side == "buy" else rng.randint(6001, 6600)
        futures.append(await c.submit("order.place", _limit(account, side, price, rng.randint(1, 9))))
        sent += 1
        t += interval
    await asyncio.wait(futures, timeout=30)
    for f in futures:
        if not f.cancelled():
            f.exception()
    for c, _ in sessions:
        await c.close()
    return sent


async def _workers(server: Server, args: argparse.Namespace) -> tuple[list[Any], list[Connection]]:
    """Start the subscriber processes and wait until every subscriber has its snapshot."""
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    per = [args.subscribers // args.sub_procs + (1 if i < args.subscribers % args.sub_procs else 0) for i in range(args.sub_procs)]
    for n in per:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=subscriber_worker, args=(server.trading, n, "book.SHEA", child), daemon=True)
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    loop = asyncio.get_running_loop()
    for p in pipes:
        if await loop.run_in_executor(None, p.recv) != "ready":
            raise RuntimeError("subscriber worker failed")
    return procs, pipes


async def fanout(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Book fan-out to many readers; halfway through, one extra subscriber stalls.

    Delivery latency of the readers is kept separately for the two halves, so "nobody else
    was delayed" is a comparison of ``fanout_p99_ms_baseline`` with ``fanout_p99_ms_with_slow``.
    ``slow_consumer_cut_s`` counts from the moment the slow subscriber stalls."""
    await _deep_book(server.trading)
    procs, pipes = await _workers(server, args)
    loop = asyncio.get_running_loop()
    cut0 = await asyncio.to_thread(_metric_sum, server, "slow_consumer")
    for p in pipes:
        p.send("go")
    cpu = CpuMeter(server.pid, [p.pid for p in procs if p.pid is not None])
    start = loop.time()
    driver = asyncio.create_task(_drive(server.trading, args.fanout_rate, args.fanout_duration, args.seed))
    await asyncio.sleep(args.fanout_duration / 2)
    for p in pipes:
        p.send("slow")
    stalled = loop.time()
    slow = await _slow_subscriber(server, args.slow_prefill)
    cut_at: float | None = None
    while cut_at is None and loop.time() - stalled < max(args.fanout_duration / 2, 10):
        if await asyncio.to_thread(_metric_sum, server, "slow_consumer") > cut0:
            cut_at = loop.time() - stalled
        await asyncio.sleep(0.02)
    sent = await driver
    elapsed = loop.time() - start
    usage = cpu.read()
    for p in pipes:
        p.send("stop")
    results = [await loop.run_in_executor(None, p.recv) for p in pipes]
    with contextlib.suppress(Exception):
        slow.transport.abort()
    for proc in procs:
        proc.join(10)
    base, loaded = _hist(), _hist()
    counts: list[int] = []
    for r in results:
        base.decode_and_add(r["hists"][0])
        loaded.decode_and_add(r["hists"][1])
        counts += r["counts"]
    return {
        "fanout_subscribers": args.subscribers,
        "fanout_orders_sent": sent,
        "fanout_deliveries_per_s": round(sum(counts) / elapsed, 1),
        "fanout_updates_per_subscriber_min": min(counts),
        "fanout_updates_per_subscriber_max": max(counts),
        "fanout_gaps": sum(r["gaps"] for r in results),
        "fanout_others_cut": sum(len(r["closed"]) for r in results),
        "fanout_p50_ms": _ms(base, 50),
        "fanout_p99_ms_baseline": _ms(base, 99),
        "fanout_p99_ms_with_slow": _ms(loaded, 99),
        "fanout_max_ms": round(max(base.get_max_value(), loaded.get_max_value()) / 1000, 3),
        "slow_consumer_cut_s": round(cut_at, 3) if cut_at is not None else None,
        "slow_consumer_prefill_snapshots": args.slow_prefill,
        "slow_consumer_limit_kib": args.slow_limit_kib,
        **{f"fanout_{k}": v for k, v in usage.items()},
    }


# ------------------------------------------------------------------ main


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "system": f"{platform.system()} {platform.release()}"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rate", type=float, default=5000, help="sustained phase: offered orders per second, all connections together")
    p.add_argument("--duration", type=float, default=10, help="sustained phase seconds")
    p.add_argument("--connections", type=int, default=20, help="broker connections (alternating demo-a / demo-b)")
    p.add_argument("--peak-duration", type=float, default=5, help="closed-loop phase seconds (0 skips it)")
    p.add_argument("--window", type=int, default=16, help="frames in flight per connection in the closed-loop phase")
    p.add_argument(
        "--batch", type=int, default=1, help="orders per frame in the order-entry phases (> 1: JSON-RPC batches, at most max_batch)"
    )
    p.add_argument("--subscribers", type=int, default=500, help="fan-out phase: book subscribers that read (0 skips the phase)")
    p.add_argument("--sub-procs", type=int, default=2, help="worker processes holding the subscribers")
    p.add_argument("--fanout-rate", type=float, default=500, help="orders per second during the fan-out phase")
    p.add_argument("--fanout-duration", type=float, default=10)
    p.add_argument("--slow-limit-kib", type=int, default=64, help="server write-buffer limit per connection (slow consumer cut-off)")
    p.add_argument(
        "--slow-prefill", type=int, default=300, help="book snapshots the slow subscriber requests and never reads (0: market data only)"
    )
    p.add_argument("--fsync-policy", choices=("fsync", "os", "none"), default="fsync")
    p.add_argument("--journal-linger-ms", type=float, default=None, help="the server's [server] journal_linger_ms (default: the config's)")
    p.add_argument("--seed", type=int, default=1)
    return p


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    limits = {
        "orders_per_s": 1_000_000.0,
        "order_burst": 1_000_000,
        "requests_per_s": 1_000_000.0,
        "request_burst": 1_000_000,
        "max_connections_per_member": 10_000,
        "max_connections": 10_000,
        "max_anonymous_connections": 9_000,  # the fan-out subscribers are anonymous, all from loopback
        "max_anonymous_per_address": 9_000,
        "login_timeout_s": 3600.0,
        "write_buffer_bytes": args.slow_limit_kib * 1024,
    }
    server_table = {} if args.journal_linger_ms is None else {"journal_linger_ms": args.journal_linger_ms}
    config = write_config(workdir / "bench.toml", limits=limits, server=server_table)
    server = start_server(workdir / "data", fsync=args.fsync_policy, config=config)
    try:
        result: dict[str, Any] = {}
        if args.rate > 0 and args.duration > 0:
            result.update(await order_entry(server, args))
        if args.subscribers > 0:
            result["fanout"] = await fanout(server, args)
        return result
    finally:
        server.terminate()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="carbonx-bench-") as tmp:
        detail = uvloop.run(run(args, Path(tmp)))
    for name, part in detail.items():
        print(f"{name}: {json.dumps(part)}", file=sys.stderr)
    sustained, peak, fan = detail.get("sustained") or {}, detail.get("peak") or {}, detail.get("fanout") or {}
    summary = {
        "machine": _machine(),
        "python": platform.python_version(),
        "loadavg_1m_at_start": load_at_start,
        "fsync_policy": args.fsync_policy,
        "journal_linger_ms": args.journal_linger_ms,
        "connections": args.connections,
        "batch": args.batch,
        "offered_per_s": args.rate,
        "orders_per_s": sustained.get("orders_per_s"),
        "p50_ms": sustained.get("p50_ms"),
        "p99_ms": sustained.get("p99_ms"),
        "p999_ms": sustained.get("p999_ms"),
        "sustained_server_cpu_pct": sustained.get("server_cpu_pct"),
        "server_cpu_us_per_order": sustained.get("server_cpu_us_per_order"),
        "sustained_generator_cpu_pct": sustained.get("generator_cpu_pct"),
        "sustained_other_cpu_pct": sustained.get("other_cpu_pct"),
        "sustained_server_reply_p99_ms": sustained.get("server_reply_p99_ms"),
        "sustained_server_loop_lag_max_ms": sustained.get("server_loop_lag_max_ms"),
        "sustained_journal_avg_batch": sustained.get("journal_avg_batch"),
        "peak_orders_per_s": peak.get("orders_per_s"),
        "peak_p99_ms": peak.get("p99_ms"),
        "peak_server_cpu_pct": peak.get("server_cpu_pct"),
        "peak_server_cpu_us_per_order": peak.get("server_cpu_us_per_order"),
        "peak_generator_cpu_pct": peak.get("generator_cpu_pct"),
        "peak_other_cpu_pct": peak.get("other_cpu_pct"),
        **fan,
        "errors": {**sustained.get("errors", {}), **{f"peak_{k}": v for k, v in peak.get("errors", {}).items()}},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
