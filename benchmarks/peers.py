"""carbonx against its pure-Python peers on one order flow, results checked identical.

Workload (seeded; issue 13): one instrument, tick 0.01, every price 90.00-110.00 around a
mid of 100.00 (prices are integer fen: 9000..11000). A preload of ``--book`` passive limit
orders builds the resting book; then the measured ``--commands``: ~70% passive limits
(offset from the mid 1 + Exp(mean 50 ticks), capped at 1,000 ticks, quantity 1-100), ~25% cancels of live orders, ~5% aggressive limits
that sweep the opposite side (a few levels through its best price, quantity up to 500; the
remainder rests). Buys come from buy-only accounts and sells from sell-only accounts in
other members, so no order can meet its own account (no self-trade prevention involved).
The flow adds more than it removes: with the defaults (48,000 preloaded, 200,000 measured)
the book grows from 48,000 to ~113,000 orders, ~80,000 on average, over ~2,000 levels.

Each engine runs in its own subprocess on the same command list (written once to a
temporary file); only the measured commands are timed, the preload is applied untimed:

- ``carbonx``: ``Engine.apply`` with every risk check and every event (funded accounts:
  cash and tonnes deposited through commands, fees on);
- ``matching-engine``: the PyPI package ``matching-engine`` 0.1.1 (``MatchingEngine.process``
  with ``SequencedCommand``), when importable by ``--peer-python`` (default: ``--python``,
  default this interpreter). It needs Python >= 3.12; where it is missing the run says so
  and reports ``null`` for it. For the issue's comparison run every engine on the same
  3.12 interpreter: ``--python /path/to/python3.12`` (with carbonx importable there);
- ``baseline``: the bare book below (price-time FIFO, dict of deques, sorted price lists):
  what the matching alone costs in CPython.

Every engine reports its fills (taker id, maker id, price, quantity, in order), traded
volume and final resting book (side, price, order id, open quantity, in priority order);
the run fails (exit 1) unless all of them agree. Last line: one JSON object with
``carbonx_ops_per_s``, ``matching_engine_ops_per_s`` (null when absent),
``baseline_ops_per_s``, the ratios ``carbonx_vs_matching_engine`` and
``carbonx_vs_baseline``, each engine's CPU time per measured command
(``carbonx_cpu_us_per_command``, ... and ``carbonx_vs_matching_engine_cpu``: steadier than
the rates when the machine is shared), the agreed ``fills``/``volume``/``resting_orders``, and the
machine load (``os.getloadavg``) at the start and the end.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

MID = 10_000  # 100.00 in fen (tick 0.01 = 1 fen)
MAX_OFFSET = 1_000  # ticks: prices stay within 90.00-110.00
N_ACCOUNTS = 100  # per side
T0 = 1_764_043_200_000_000_000  # carbonx.engine.testkit.T0 (a Tuesday noon, local time)

# A command of the workload: ("p", order_id, is_buy, price, qty, account_no) or ("c", order_id, 0, 0, 0, account_no).
# Order ids are 1, 2, ... in placement order (what carbonx assigns); account_no 0..99 buy, 100..199 sell.
Cmd = tuple[str, int, int, int, int, int]


# ---------------------------------------------------------------------- the bare book


class BareBook:
    """Price-time priority limit order book, nothing else. Per side: a dict price -> level
    ``[deque of entries, live count]`` and a sorted key list (ask price / negated bid price,
    so ``keys[0]`` is the best). An entry is ``[order_id, open qty]``; a cancel sets its qty
    to 0 and leaves it in the deque (skipped when it reaches the front), so a cancel is O(1)
    like carbonx's own book; a level goes when its last live order does."""

    def __init__(self) -> None:
        self.levels: tuple[dict[int, list[Any]], dict[int, list[Any]]] = ({}, {})  # (asks, bids)
        self.keys: tuple[list[int], list[int]] = ([], [])
        self.orders: dict[int, tuple[int, int, list[int]]] = {}  # live order id -> (is_buy, price, entry)
        self.fills: list[tuple[int, int, int, int]] = []

    def place(self, order_id: int, is_buy: int, price: int, qty: int) -> None:
        opp_levels, opp_keys = self.levels[1 - is_buy], self.keys[1 - is_buy]
        orders, fills = self.orders, self.fills
        while qty and opp_keys:
            level_price = -opp_keys[0] if not is_buy else opp_keys[0]
            if (level_price > price) if is_buy else (level_price < price):
                break
            level = opp_levels[level_price]
            queue = level[0]
            while qty and level[1]:
                entry = queue[0]
                if not entry[1]:  # cancelled
                    queue.popleft()
                    continue
                n = min(qty, entry[1])
                fills.append((order_id, entry[0], level_price, n))
                qty -= n
                entry[1] -= n
                if not entry[1]:
                    queue.popleft()
                    del orders[entry[0]]
                    level[1] -= 1
            if not level[1]:
                del opp_levels[level_price]
                opp_keys.pop(0)
        if qty:
            own_levels = self.levels[is_buy]
            entry = [order_id, qty]
            level = own_levels.get(price)
            if level is None:
                level = own_levels[price] = [deque(), 0]
                bisect.insort(self.keys[is_buy], -price if is_buy else price)
            level[0].append(entry)
            level[1] += 1
            orders[order_id] = (is_buy, price, entry)

    def cancel(self, order_id: int) -> bool:
        found = self.orders.pop(order_id, None)
        if found is None:
            return False
        is_buy, price, entry = found
        entry[1] = 0
        levels = self.levels[is_buy]
        level = levels[price]
        level[1] -= 1
        if not level[1]:
            del levels[price]
            keys = self.keys[is_buy]
            del keys[bisect.bisect_left(keys, -price if is_buy else price)]
        return True

    def best(self, is_buy: int) -> int | None:
        keys = self.keys[is_buy]
        if not keys:
            return None
        return -keys[0] if is_buy else keys[0]

    def resting(self) -> list[tuple[str, int, int, int]]:
        out = []
        for is_buy, side in ((1, "buy"), (0, "sell")):
            for key in self.keys[is_buy]:
                price = -key if is_buy else key
                out.extend((side, price, oid, qty) for oid, qty in self.levels[is_buy][price][0] if qty)
        return out


# ---------------------------------------------------------------------- workload


def workload(book_orders: int, commands: int, seed: int) -> tuple[list[Cmd], list[Cmd]]:
    """(preload, measured) commands, generated by driving a scratch bare book so cancels
    name live orders and aggressive orders see the real opposite best price."""
    rng = random.Random(seed)
    book = BareBook()
    live: list[int] = []
    live_at: dict[int, int] = {}  # order id -> index in live
    next_id = 1

    def passive() -> Cmd:
        is_buy = rng.random() < 0.5
        offset = min(1 + int(rng.expovariate(1 / 50)), MAX_OFFSET)
        return ("p", 0, int(is_buy), MID - offset if is_buy else MID + offset, rng.randint(1, 100), 0)

    def aggressive() -> Cmd:
        is_buy = rng.random() < 0.5
        best = book.best(0 if is_buy else 1)
        if best is None:
            return passive()
        sweep = rng.randrange(0, 4)
        price = min(best + sweep, MID + MAX_OFFSET) if is_buy else max(best - sweep, MID - MAX_OFFSET)
        return ("p", 0, int(is_buy), price, rng.randint(1, 500), 0)

    def emit(cmd: Cmd) -> Cmd:
        nonlocal next_id
        kind, _, is_buy, price, qty, _ = cmd
        if kind == "c":
            return cmd
        oid = next_id
        next_id += 1
        account = rng.randrange(N_ACCOUNTS) + (0 if is_buy else N_ACCOUNTS)
        n_fills = len(book.fills)
        book.place(oid, is_buy, price, qty)
        for _, maker, _, _ in book.fills[n_fills:]:
            if maker not in book.orders:
                drop(maker)
        if oid in book.orders:
            live_at[oid] = len(live)
            live.append(oid)
        return ("p", oid, is_buy, price, qty, account)

    def drop(oid: int) -> None:
        i = live_at.pop(oid)
        last = live.pop()
        if last != oid:
            live[i] = last
            live_at[last] = i

    owner: dict[int, int] = {}
    preload = []
    for _ in range(book_orders):
        cmd = emit(passive())
        owner[cmd[1]] = cmd[5]
        preload.append(cmd)
    measured = []
    for _ in range(commands):
        r = rng.random()
        if r < 0.25 and live:
            oid = live[rng.randrange(len(live))]
            drop(oid)
            book.cancel(oid)
            cmd = ("c", oid, 0, 0, 0, owner[oid])
        else:
            cmd = emit(aggressive() if r < 0.30 else passive())
            owner[cmd[1]] = cmd[5]
        measured.append(cmd)
    return preload, measured


# ---------------------------------------------------------------------- engines (each runs in its own process)


def summary(fills: list[tuple[int, int, int, int]], resting: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    """What the engines must agree on: fills in order, volume, the final book in priority order."""
    return {
        "fills": len(fills),
        "volume": sum(f[3] for f in fills),
        "fills_digest": hashlib.blake2b(repr(fills).encode(), digest_size=16).hexdigest(),
        "resting_orders": len(resting),
        "levels": len({(r[0], r[1]) for r in resting}),
        "book_digest": hashlib.blake2b(repr(resting).encode(), digest_size=16).hexdigest(),
    }


def timed(step: Callable[[Cmd], Any], preload: list[Cmd], measured: list[Cmd]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``step`` over ``measured`` after an untimed ``preload``."""
    for c in preload:
        step(c)
    cpu = time.process_time()
    start = time.perf_counter()
    for c in measured:
        step(c)
    return time.perf_counter() - start, time.process_time() - cpu


def run_baseline(preload: list[Cmd], measured: list[Cmd]) -> dict[str, Any]:
    book = BareBook()
    place, cancel = book.place, book.cancel

    def step(c: Cmd) -> None:
        if c[0] == "p":
            place(c[1], c[2], c[3], c[4])
        elif not cancel(c[1]):
            raise AssertionError(f"baseline: cancel of order {c[1]} found no live order")

    secs, cpu = timed(step, preload, measured)
    return {"secs": secs, "cpu": cpu, **summary(book.fills, book.resting())}


def carbonx_market() -> Any:
    from carbonx.engine.testkit import instrument, make_config

    return make_config(
        instrument("PEER", reference_price="100.00", tick="0.01", band_pct="10", max_qty=100_000, fee_buy="0.0005", fee_sell="0.0005")
    )


def carbonx_setup() -> list[Any]:
    """Funded accounts B0.. (buyers, members MB*) and S0.. (sellers, members MS*), the day opened."""
    from carbonx.engine.schema import CreateAccount, CreateMember, DayOpen, Deposit

    cmds: list[Any] = []
    for prefix in ("B", "S"):
        for m in range(N_ACCOUNTS // 10):
            cmds.append(CreateMember(ts=T0, member=f"M{prefix}{m}", key_id=f"k{prefix}{m}", secret_hash="x"))
        for a in range(N_ACCOUNTS):
            acct = f"{prefix}{a}"
            cmds.append(CreateAccount(ts=T0, account=acct, member=f"M{prefix}{a // 10}", type="institution"))
            cmds.append(Deposit(ts=T0, account=acct, cash=10**13))
            cmds.append(Deposit(ts=T0, account=acct, instrument="PEER", quantity=10**8))
    cmds.append(DayOpen(ts=T0))
    return cmds


def carbonx_commands(cmds: list[Cmd]) -> list[Any]:
    from carbonx.engine.schema import CancelOrder, PlaceOrder

    out: list[Any] = []
    for i, (kind, oid, is_buy, price, qty, acct_no) in enumerate(cmds):
        ts = T0 + 1000 * (i + 1)
        prefix = "B" if acct_no < N_ACCOUNTS else "S"
        n = acct_no % N_ACCOUNTS
        account, member = f"{prefix}{n}", f"M{prefix}{n // 10}"
        if kind == "p":
            side = "buy" if is_buy else "sell"
            out.append(PlaceOrder(ts=ts, member=member, account=account, instrument="PEER", side=side, price=price, quantity=qty))
        else:
            out.append(CancelOrder(ts=ts, member=member, account=account, order_id=oid))
    return out


def run_carbonx(preload: list[Cmd], measured: list[Cmd]) -> dict[str, Any]:
    from carbonx.engine.engine import Engine
    from carbonx.engine.schema import ExecReport, Reject, Trade

    eng = Engine(carbonx_market())
    for c in carbonx_setup():
        eng.apply(c)
    pre, meas = carbonx_commands(preload), carbonx_commands(measured)
    fills: list[tuple[int, int, int, int]] = []
    events = 0
    apply = eng.apply

    def check(out: list[Any], cmd: Any) -> None:
        # Only between runs: every command must be accepted and every fill collected.
        for ev in out:
            t = type(ev)
            if t is Trade:
                taker, maker = (ev.buy_order_id, ev.sell_order_id) if ev.aggressor == "buy" else (ev.sell_order_id, ev.buy_order_id)
                fills.append((taker, maker, ev.price, ev.quantity))
            elif t is Reject:
                raise AssertionError(f"carbonx rejected {cmd}: {ev.reason} {ev.message}")
            elif t is ExecReport and ev.exec_type == "new" and getattr(cmd, "price", None) is not None and ev.order_id != expect[0]:
                raise AssertionError(f"carbonx gave order id {ev.order_id}, the workload expects {expect[0]}")

    expect = [0]
    for c, w in zip(pre, preload, strict=True):
        expect[0] = w[1]
        check(apply(c), c)
    outs = []
    cpu = time.process_time()
    start = time.perf_counter()
    for c in meas:
        outs.append(apply(c))
    secs = time.perf_counter() - start
    cpu = time.process_time() - cpu
    for out, c, w in zip(outs, meas, measured, strict=True):
        events += len(out)
        expect[0] = w[1]
        check(out, c)
    book = eng.books["PEER"]
    resting = [
        (side, level.price, o.order_id, o.leaves_qty)
        for side, book_side in (("buy", book.bids), ("sell", book.asks))
        for level in book_side.iter_levels()
        for o in level.orders()
    ]
    return {"secs": secs, "cpu": cpu, "events": events, **summary(fills, resting)}


def run_matching_engine(preload: list[Cmd], measured: list[Cmd]) -> dict[str, Any]:
    try:
        from matching_engine import CancelOrder, NewOrder, SequencedCommand, Side  # type: ignore[import-not-found]
        from matching_engine.engine import MatchingEngine  # type: ignore[import-not-found]
        from matching_engine.events import Trade  # type: ignore[import-not-found]
    except (ImportError, SyntaxError) as e:  # absent, or a Python < 3.12 cannot even parse it
        return {"skipped": f"matching-engine not importable by {sys.executable} (Python {platform.python_version()}): {e}"}
    me = MatchingEngine()

    def commands(cmds: list[Cmd], first_seq: int) -> list[Any]:
        out = []
        for i, (kind, oid, is_buy, price, qty, acct_no) in enumerate(cmds):
            if kind == "p":
                cmd: Any = NewOrder(order_id=oid, account=acct_no + 1, side=Side.BUY if is_buy else Side.SELL, price=price, qty=qty)
            else:
                cmd = CancelOrder(order_id=oid, account=acct_no + 1)
            out.append(SequencedCommand(seq=first_seq + i, ts=T0 + i, command=cmd))
        return out

    pre = commands(preload, 1)
    meas = commands(measured, 1 + len(pre))
    process = me.process
    for c in pre:
        process(c)  # preload: no fills (all passive, non-crossing)... checked with the measured part below
    outs = []
    cpu = time.process_time()
    start = time.perf_counter()
    for c in meas:
        outs.append(process(c))
    secs = time.perf_counter() - start
    cpu = time.process_time() - cpu
    fills = [(ev.taker_order_id, ev.maker_order_id, ev.price, ev.qty) for out in outs for ev in out if type(ev) is Trade]
    resting = [("buy" if e.side == Side.BUY else "sell", e.price, e.order_id, e.qty) for e in me.book.entries()]
    resting.sort(key=lambda r: r[0] != "buy")  # bids first, as the others list them (stable: priority kept)
    return {"secs": secs, "cpu": cpu, "events": sum(len(o) for o in outs), **summary(fills, resting)}


RUNNERS = {"carbonx": run_carbonx, "matching_engine": run_matching_engine, "baseline": run_baseline}


# ---------------------------------------------------------------------- harness

AGREED = ("fills", "volume", "fills_digest", "resting_orders", "book_digest")


def check_agreement(results: dict[str, dict[str, Any]]) -> None:
    """Raise ``AssertionError`` naming the first engine whose fills, volume or final book
    differ from the baseline's (every engine in ``results`` ran; skipped ones are left out)."""
    reference = results["baseline"]
    for name, r in results.items():
        differ = [k for k in AGREED if r[k] != reference[k]]
        if differ:
            raise AssertionError(f"{name} disagrees with the baseline on {differ}: {r} vs {reference}")


def run_all(
    book: int, commands: int, seed: int, python: str = sys.executable, peer_python: str | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Generate the workload, run every engine in its own subprocess of ``python``
    (matching-engine: of ``peer_python`` when given), check they agree. Returns the result
    dict (the JSON line); raises ``AssertionError`` on disagreement."""
    load_start = os.getloadavg()
    preload, measured = workload(book, commands, seed)
    n = len(measured)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workload.json"
        path.write_text(json.dumps({"preload": preload, "measured": measured}))
        for name in RUNNERS:
            interpreter = peer_python if name == "matching_engine" and peer_python else python
            proc = subprocess.run(
                [interpreter, __file__, "--engine", name, "--workload", str(path)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise AssertionError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            if not quiet:
                r = results[name]
                if "skipped" in r:
                    print(f"{name}: skipped: {r['skipped']}", flush=True)
                else:
                    print(
                        f"{name}: {n / r['secs']:,.0f} commands/s, {r['cpu'] / n * 1e6:.2f} us CPU/command, "
                        f"{r['fills']} fills, {r['volume']} t, {r['resting_orders']} resting",
                        flush=True,
                    )
    ran = {k: v for k, v in results.items() if "skipped" not in v}
    check_agreement(ran)
    reference = ran["baseline"]

    def rate(name: str) -> int | None:
        return round(n / ran[name]["secs"]) if name in ran else None

    def cpu_us(name: str) -> float | None:
        return round(ran[name]["cpu"] / n * 1e6, 3) if name in ran else None

    cx, me, base = rate("carbonx"), rate("matching_engine"), rate("baseline")
    cx_cpu, me_cpu, base_cpu = cpu_us("carbonx"), cpu_us("matching_engine"), cpu_us("baseline")
    return {
        "carbonx_ops_per_s": cx,
        "matching_engine_ops_per_s": me,
        "baseline_ops_per_s": base,
        "carbonx_vs_matching_engine": round(cx / me, 3) if cx and me else None,
        "carbonx_vs_baseline": round(cx / base, 3) if cx and base else None,
        # CPU time of each engine's measured loop (its own process): steadier than the rates
        # on a shared machine; the ratio is matching-engine's CPU per command over carbonx's
        "carbonx_cpu_us_per_command": cx_cpu,
        "matching_engine_cpu_us_per_command": me_cpu,
        "baseline_cpu_us_per_command": base_cpu,
        "carbonx_vs_matching_engine_cpu": round(me_cpu / cx_cpu, 3) if cx_cpu and me_cpu else None,
        "matching_engine_skipped": results["matching_engine"].get("skipped"),
        "commands": n,
        "preload": len(preload),
        **{k: reference[k] for k in ("fills", "volume", "resting_orders", "levels")},
        "carbonx_events": ran["carbonx"]["events"],
        "seed": seed,
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "python": subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=200_000, help="measured commands")
    ap.add_argument(
        "--book", type=int, default=48_000, help="preloaded passive orders (untimed; the book grows to ~113,000 over 200,000 commands)"
    )
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--python", default=sys.executable, help="interpreter of every engine's process (it must import carbonx)")
    ap.add_argument("--peer-python", help="interpreter for matching-engine only (default: --python)")
    ap.add_argument("--engine", choices=sorted(RUNNERS), help=argparse.SUPPRESS)  # child process
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        data = json.loads(Path(args.workload).read_text())
        preload = [tuple(c) for c in data["preload"]]
        measured = [tuple(c) for c in data["measured"]]
        print(json.dumps(RUNNERS[args.engine](preload, measured)))  # type: ignore[arg-type]
        return
    try:
        result = run_all(args.book, args.commands, args.seed, args.python, args.peer_python)
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
