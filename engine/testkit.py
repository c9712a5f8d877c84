"""Test kit: engines, configurations, command shortcuts and workloads that the tests and
the benchmarks share (shipped in the package so neither reaches into the other).

- ``funded_engine``: the standard small exchange (members M1/M2, accounts A1, A2, B1, B2
  funded with cash and tonnes of every instrument, the day open);
- ``make_config``/``instrument``/``with_spec``: small market configurations;
- ``place``/``amend``/``cancel``: broker commands on behalf of an account's own member;
- event pickers (``reason``, ``rejects``, ``reports``, ``trades``, ``oid``, ...) and
  state probes (``cash``, ``tonnes``, ``book_ids``, ``state_bytes``, totals);
- ``check_report``/``check_events``: the FIX invariants every execution report keeps;
- ``throughput_workload``: the seeded order flow of ``benchmarks/engine_throughput.py``.

The helpers that check use ``assert``: they are meant for tests and benchmarks, not for
production code paths.
"""

from __future__ import annotations

import calendar
import datetime
import random
from typing import Any

import msgspec

from carbonx.engine.accounts import total_held
from carbonx.engine.config import MarketConfig, parse_market
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AmendOrder,
    Balance,
    CancelOrder,
    Command,
    CreateAccount,
    CreateMember,
    DayOpen,
    Deposit,
    Event,
    ExecReport,
    PlaceOrder,
    Reject,
    Side,
    Trade,
)

T0 = 1_764_043_200_000_000_000  # 2025-11-25 12:00 local (UTC+8), a Tuesday


def funded_engine(config: MarketConfig, cash: int = 100_000_000, tonnes: int = 10_000) -> Engine:
    """Members M1 (accounts A1 institution, A2 covered_entity), M2 (B1 covered_entity,
    B2 individual); every account has ``cash`` fen and ``tonnes`` of every instrument
    (vintage 2025 where the instrument has vintages); the trading day is open."""
    eng = Engine(config)
    for m in ("M1", "M2"):
        eng.apply(CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x"))
    for acct, member, kind in (
        ("A1", "M1", "institution"),
        ("A2", "M1", "covered_entity"),
        ("B1", "M2", "covered_entity"),
        ("B2", "M2", "individual"),
    ):
        eng.apply(CreateAccount(ts=T0, account=acct, member=member, type=kind))  # type: ignore[arg-type]
        eng.apply(Deposit(ts=T0, account=acct, cash=cash))
        for sym, spec in config.instruments.items():
            eng.apply(Deposit(ts=T0, account=acct, instrument=sym, quantity=tonnes, vintage=2025 if spec.vintages else None))
    eng.apply(DayOpen(ts=T0))
    return eng


def add_bidders(eng: Engine, member: str, n: int, kind: str = "covered_entity", cash: int = 10**10) -> list[str]:
    """Create ``member`` with ``n`` accounts ``<member>-1`` ... of type ``kind``, each with ``cash`` fen."""
    eng.apply(CreateMember(ts=T0, member=member, key_id=f"key-{member}", secret_hash="x"))
    accounts = [f"{member}-{i}" for i in range(1, n + 1)]
    for acct in accounts:
        eng.apply(CreateAccount(ts=T0, account=acct, member=member, type=kind))  # type: ignore[arg-type]
        eng.apply(Deposit(ts=T0, account=acct, cash=cash))
    return accounts


def with_spec(config: MarketConfig, symbol: str, **changes: object) -> MarketConfig:
    """The configuration with some settings of one instrument changed."""
    spec = msgspec.structs.replace(config.instruments[symbol], **changes)
    return msgspec.structs.replace(config, instruments={**config.instruments, symbol: spec})


def only(events: list[Event], kind: type) -> list[Any]:
    """The events of one type, in order."""
    return [e for e in events if isinstance(e, kind)]


def money_total(eng: Engine) -> int:
    """All money in the system: account cash plus fees the exchange collected."""
    return sum(a.available + a.frozen for a in eng.accounts.values()) + eng.fees_collected


def tonnes_total(eng: Engine, symbol: str) -> int:
    """All tonnes of an instrument: held in accounts plus retired for good."""
    return sum(total_held(a, symbol) for a in eng.accounts.values()) + eng.registry.retired_total.get(symbol, 0)


MEMBER_OF = {"A1": "M1", "A2": "M1", "B1": "M2", "B2": "M2"}
ALL_WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAY: dict[str, Any] = {"weekdays": ALL_WEEK, "sessions": [["00:00", "24:00"]]}


def instrument(symbol: str = "X", **settings: Any) -> dict[str, Any]:
    """One ``[[instrument]]`` table: reference 60.00, tick 0.01, no fees unless given."""
    return {"symbol": symbol, "reference_price": "60.00", **settings}


def make_config(*instruments: dict[str, Any], calendar_table: dict[str, Any] | None = None) -> MarketConfig:
    """A MarketConfig from plain tables (the dict ``tomllib`` would produce)."""
    return parse_market({"calendar": calendar_table or ALL_DAY, "instrument": list(instruments)})


def local_ts(date: str, hhmmss: str, utc_offset_h: int = 8) -> int:
    """ns timestamp of an exchange-local wall-clock time (fixed UTC offset)."""
    d = datetime.date.fromisoformat(date)
    h, m, *rest = (int(p) for p in hhmmss.split(":"))
    s = rest[0] if rest else 0
    secs = calendar.timegm((d.year, d.month, d.day, h, m, s)) - utc_offset_h * 3600
    return secs * 1_000_000_000


class Clock:
    """Strictly increasing command timestamps so time priority is visible in ``ts``."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def next_ts(eng: Engine) -> int:
    """1 µs after the engine's last command (so time priority shows in ``ts``)."""
    return (eng.ts or T0) + 1_000


def place(
    eng: Engine,
    account: str = "A1",
    side: str = "buy",
    price: int | None = 6000,
    quantity: int = 10,
    instrument: str = "SHEA",
    *,
    member: str | None = None,
    ts: int | None = None,
    **fields: Any,
) -> list[Event]:
    """Place an order for ``account`` on behalf of its own member (unless ``member``)."""
    cmd = PlaceOrder(
        ts=next_ts(eng) if ts is None else ts,
        member=member or MEMBER_OF.get(account, "M1"),
        account=account,
        instrument=instrument,
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        **fields,
    )
    return eng.apply(cmd)


def amend(eng: Engine, account: str, order_id: int = 0, *, member: str | None = None, ts: int | None = None, **fields: Any) -> list[Event]:
    cmd = AmendOrder(ts=ts or next_ts(eng), member=member or MEMBER_OF.get(account, "M1"), account=account, order_id=order_id, **fields)
    return eng.apply(cmd)


def cancel(eng: Engine, account: str, order_id: int = 0, *, member: str | None = None, ts: int | None = None, **fields: Any) -> list[Event]:
    cmd = CancelOrder(ts=ts or next_ts(eng), member=member or MEMBER_OF.get(account, "M1"), account=account, order_id=order_id, **fields)
    return eng.apply(cmd)


def rejects(events: list[Event]) -> list[Reject]:
    return [e for e in events if isinstance(e, Reject)]


def reason(events: list[Event]) -> str | None:
    """The reject reason of a command's events, None if it was accepted."""
    found = rejects(events)
    assert len(found) <= 1, found
    if found:
        assert len(events) == 1, "a rejected command emits nothing but its Reject"
        return found[0].reason
    return None


def accepted(events: list[Event]) -> list[Event]:
    assert reason(events) is None, rejects(events)
    return events


def reports(events: list[Event], order_id: int | None = None) -> list[ExecReport]:
    return [e for e in events if isinstance(e, ExecReport) and (order_id is None or e.order_id == order_id)]


def trades(events: list[Event]) -> list[Trade]:
    return [e for e in events if isinstance(e, Trade)]


def balances(events: list[Event], account: str) -> list[Balance]:
    return [e for e in events if isinstance(e, Balance) and e.account == account]


def oid(events: list[Event]) -> int:
    """The order id of the order a place command created."""
    news = [e for e in events if isinstance(e, ExecReport) and e.exec_type == "new"]
    assert news, f"no new order in {events}"
    return news[0].order_id


def exec_types(events: list[Event], order_id: int) -> list[str]:
    return [r.exec_type for r in reports(events, order_id)]


def cash(eng: Engine, account: str) -> tuple[int, int]:
    """(available, frozen) fen."""
    acct = eng.accounts[account]
    return acct.available, acct.frozen


def tonnes(eng: Engine, account: str, symbol: str) -> tuple[int, int, int, int]:
    """(tradable, frozen, compliance_only, locked) summed over vintages."""
    by_vintage = eng.accounts[account].holdings.get(symbol, {})
    return (
        sum(p.tradable for p in by_vintage.values()),
        sum(p.frozen for p in by_vintage.values()),
        sum(p.compliance_only for p in by_vintage.values()),
        sum(p.locked for p in by_vintage.values()),
    )


def book_ids(eng: Engine, symbol: str) -> tuple[list[int], list[int]]:
    """Live order ids per side in priority order: (bids, asks)."""
    book = eng.books[symbol]
    bids = [o.order_id for level in book.bids.iter_levels() for o in level.orders()]
    asks = [o.order_id for level in book.asks.iter_levels() for o in level.orders()]
    return bids, asks


_STATUS_FOR = {
    "new": {"new"},
    "trade": {"partially_filled", "filled"},
    "cancelled": {"cancelled"},
    "expired": {"expired"},
    "replaced": {"new", "partially_filled"},
}


def check_report(r: ExecReport) -> None:
    """FIX semantics of one execution report (PROTOCOL.md, Execution report)."""
    assert r.status in _STATUS_FOR[r.exec_type], (r.exec_type, r.status)
    if r.status in ("new", "partially_filled"):
        assert r.leaves_qty > 0, r
        assert r.quantity == r.cum_qty + r.leaves_qty, r
    else:
        assert r.leaves_qty == 0, r
    if r.status == "filled":
        assert r.cum_qty == r.quantity, r
    assert (r.status == "partially_filled") == (r.cum_qty > 0 and r.leaves_qty > 0), r
    if r.exec_type == "trade":
        assert r.last_qty > 0 and r.last_price > 0 and r.trade_id > 0, r
    assert r.cum_qty >= 0 and r.cum_notional >= 0


def check_events(eng: Engine, events: list[Event]) -> None:
    """Every event carries the command's seq and ts; every report is FIX-consistent."""
    for e in events:
        assert e.seq == eng.seq and e.ts == eng.ts, e
        if isinstance(e, ExecReport):
            check_report(e)


def state_bytes(eng: Engine) -> bytes:
    """The engine state without the sequence number and time (which every command
    advances, accepted or not): equal bytes = a command changed nothing else."""
    snap = msgspec.structs.replace(eng._snapshot_struct(), seq=0, ts=0)
    return msgspec.msgpack.encode(snap)


# ---------------------------------------------------------------------- benchmark workload

BENCH_SYMBOL = "SHEA"
BENCH_T0 = T0


def throughput_setup(n_accounts: int) -> list[Command]:
    """Members M0.., accounts A0.. (10 per member), each with 10^13 fen and 10^8 t of SHEA 2025; the day opened."""
    cmds: list[Command] = []
    for m in range(n_accounts // 10):
        cmds.append(CreateMember(ts=BENCH_T0, member=f"M{m}", key_id=f"k{m}", secret_hash="x"))
    for a in range(n_accounts):
        acct = f"A{a}"
        cmds.append(CreateAccount(ts=BENCH_T0, account=acct, member=f"M{a // 10}", type="institution"))
        cmds.append(Deposit(ts=BENCH_T0, account=acct, cash=10**13))
        cmds.append(Deposit(ts=BENCH_T0, account=acct, instrument=BENCH_SYMBOL, quantity=10**8, vintage=2025))
    cmds.append(DayOpen(ts=BENCH_T0))
    return cmds


def throughput_workload(config: MarketConfig, n: int, seed: int, n_accounts: int = 200) -> tuple[list[Command], list[Command]]:
    """(setup commands, measured commands) of the engine throughput benchmark: ~70%
    passive limit orders near the touch, ~25% cancels of resting orders, ~5% aggressive
    limit orders, from ``n_accounts`` funded accounts in ``n_accounts // 10`` members,
    on ``SHEA``. Seeded; drives a scratch engine so that cancels name real resting orders."""
    rng = random.Random(seed)
    setup = throughput_setup(n_accounts)
    eng = Engine(config)
    for c in setup:
        eng.apply(c)
    live: dict[int, str] = {}  # resting order id -> account
    live_ids: list[int] = []
    cmds: list[Command] = []
    mid = 6000
    ts = BENCH_T0
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
            side: Side = "buy" if rng.random() < 0.5 else "sell"
            best_ask = eng.books[BENCH_SYMBOL].asks.best_price() or mid
            best_bid = eng.books[BENCH_SYMBOL].bids.best_price() or mid
            price = best_ask + rng.randrange(0, 3) if side == "buy" else best_bid - rng.randrange(0, 3)
            cmd = PlaceOrder(
                ts=ts, member=member, account=acct, instrument=BENCH_SYMBOL, side=side, price=price, quantity=rng.randrange(1, 200)
            )
        else:
            side = "buy" if rng.random() < 0.5 else "sell"
            offset = 1 + int(rng.expovariate(0.25))
            price = mid - offset if side == "buy" else mid + offset
            cmd = PlaceOrder(
                ts=ts, member=member, account=acct, instrument=BENCH_SYMBOL, side=side, price=price, quantity=rng.randrange(1, 200)
            )
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
