"""A sell order's frozen tonnes (``Order.alloc``) are immutable ((vintage, tonnes), ...)
tuples: the snapshot encodes them exactly as the list-of-lists form older versions wrote
(so digests and old snapshots are unchanged), and the cyclic GC does not track them (a
resting book of sells adds nothing for it to rescan: docs/performance.md)."""

from __future__ import annotations

import gc

import msgspec

from carbonx.engine.book import Order
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AmendOrder, Deposit, ExecReport, PlaceOrder
from carbonx.engine.testkit import T0, funded_engine


def sell(eng: Engine, qty: int, price: int = 6100) -> Order:
    out = eng.apply(PlaceOrder(ts=T0, member="M1", account="A1", instrument="SHEA", side="sell", price=price, quantity=qty))
    report = out[0]
    assert isinstance(report, ExecReport) and report.exec_type == "new", out
    return eng.orders[report.order_id]


def buy(eng: Engine, qty: int, price: int = 6100) -> None:
    out = eng.apply(PlaceOrder(ts=T0, member="M2", account="B1", instrument="SHEA", side="buy", price=price, quantity=qty))
    assert any(isinstance(e, ExecReport) and e.exec_type == "trade" for e in out), out


def test_lots_encode_as_the_list_form_and_are_not_gc_tracked(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    o = sell(eng, 40)
    assert o.alloc == ((2025, 40),)
    assert msgspec.msgpack.encode(o.alloc) == msgspec.msgpack.encode([[2025, 40]])
    # A tuple holding only untracked objects is untracked by the collector's pass over it:
    # the inner (vintage, tonnes) pairs on the first, the outer tuple on the next (it is
    # checked before its pairs in the first). So a resting sell's lots never reach the old
    # generation that full collections rescan.
    gc.collect()
    gc.collect()
    assert o.alloc is not None and not gc.is_tracked(o.alloc)
    assert all(not gc.is_tracked(lot) for lot in o.alloc)


def test_lots_follow_fills_amends_and_several_vintages(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    eng.apply(Deposit(ts=T0, account="A1", instrument="SHEA", quantity=30, vintage=2024))
    o = sell(eng, 50)  # two vintages held: oldest first
    assert o.alloc == ((2024, 30), (2025, 20))
    buy(eng, 10)  # partial fill takes from the oldest lot
    o = eng.orders[o.order_id]
    assert o.alloc == ((2024, 20), (2025, 20))
    buy(eng, 25)  # empties the first lot and takes from the next
    o = eng.orders[o.order_id]
    assert o.alloc == ((2025, 15),)
    eng.apply(AmendOrder(ts=T0, member="M1", account="A1", order_id=o.order_id, quantity=40))  # 35 filled: leaves 5
    o = eng.orders[o.order_id]
    assert o.alloc == ((2025, 5),)
    eng.apply(AmendOrder(ts=T0, member="M1", account="A1", order_id=o.order_id, quantity=60))  # leaves 25: re-queued
    o = eng.orders[o.order_id]
    assert o.alloc == ((2025, 5), (2025, 20))  # the extra tonnes are a lot of their own (as the list form had)
    pos = eng.accounts["A1"].holdings["SHEA"]
    assert (pos[2024].frozen, pos[2025].frozen) == (0, 25)
    restored = Engine.restore(demo_config, eng.snapshot())
    assert restored.orders[o.order_id].alloc == ((2025, 5), (2025, 20))  # decoded as tuples again
    assert restored.digest() == eng.digest()
