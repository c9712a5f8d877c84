"""Bounded history (``[retention]``): the engine keeps live orders, a FIFO window of
finished orders, a window of recent trades (global and per account together) and of
finished block proposals; replay and snapshots drop exactly the same things."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine.book import DEAD_SLACK
from carbonx.engine.config import ConfigError, MarketConfig, RetentionSpec, parse_market, parse_retention
from carbonx.engine.engine import Engine, EngineSnapshot
from carbonx.engine.schema import BlockCancel, BlockPropose
from carbonx.engine.testkit import amend, book_ids, cancel, funded_engine, oid, place, trades


def small(config: MarketConfig, **caps: int) -> MarketConfig:
    return msgspec.structs.replace(config, retention=RetentionSpec(**caps))


def cross(eng: Engine, n: int, coid: str = "") -> list[int]:
    """``n`` one-tonne trades A1 buys from B1; returns the buy order ids."""
    out = []
    for i in range(n):
        out.append(oid(place(eng, "A1", "buy", 6000, 1, client_order_id=f"{coid}{i}" if coid else "")))
        place(eng, "B1", "sell", 6000, 1)
    return out


def test_finished_orders_beyond_the_cap_are_forgotten_oldest_first(demo_config: MarketConfig) -> None:
    eng = funded_engine(small(demo_config, finished_orders=3))
    live = oid(place(eng, "A1", "buy", 5500, 1, client_order_id="live"))
    ids = [oid(place(eng, "A1", "buy", 5900, 1, client_order_id=f"c{i}")) for i in range(5)]
    for i in ids:
        cancel(eng, "A1", i)
    assert list(eng.finished) == ids[-3:]
    assert [o.order_id for o in eng.orders_of("M1", "A1")] == [live, *ids[-3:]]
    assert eng.order_of("M1", "A1", order_id=ids[0]) is None  # order.get -> UNKNOWN_ORDER
    assert eng.order_of("M1", "A1", client_order_id="c0") is None
    assert eng.order_of("M1", "A1", client_order_id="c4").order_id == ids[4]  # type: ignore[union-attr]
    assert eng.order_of("M1", "A1", client_order_id="live").order_id == live  # type: ignore[union-attr]  # live never evicted
    assert set(eng.done_coid) == {("A1", "c2"), ("A1", "c3"), ("A1", "c4")}


def test_client_order_id_index_keeps_the_newest_finished_when_an_older_one_leaves(demo_config: MarketConfig) -> None:
    eng = funded_engine(small(demo_config, finished_orders=2))
    first = oid(place(eng, "A1", "buy", 5900, 1, client_order_id="same"))
    cancel(eng, "A1", first)
    second = oid(place(eng, "A1", "buy", 5900, 1, client_order_id="same"))
    cancel(eng, "A1", second)
    third = oid(place(eng, "A1", "buy", 5900, 1))
    cancel(eng, "A1", third)  # evicts `first`, whose key now points at `second`
    assert eng.order_of("M1", "A1", client_order_id="same").order_id == second  # type: ignore[union-attr]


def test_trade_window_is_global_and_per_account_and_evicts_both_together(demo_config: MarketConfig) -> None:
    eng = funded_engine(small(demo_config, trades=3))
    cross(eng, 2)
    oid(place(eng, "A2", "buy", 6000, 1))
    place(eng, "B2", "sell", 6000, 1)
    cross(eng, 2)
    assert [t.trade_id for t in eng.trades] == [3, 4, 5]
    assert [t.trade_id for t in eng.trades_of("M1", "A1")] == [4, 5]
    assert [t.trade_id for t in eng.trades_of("M2", "B2")] == [3]
    cross(eng, 1)
    assert "B2" not in eng.account_trades and "A2" not in eng.account_trades  # emptied lists leave
    assert sum(len(v) for v in eng.account_trades.values()) == 2 * len(eng.trades)


def test_zero_caps_keep_no_history_and_trading_still_works(demo_config: MarketConfig) -> None:
    eng = funded_engine(small(demo_config, finished_orders=0, trades=0, finished_blocks=0))
    ids = cross(eng, 3, "z")
    assert not eng.trades and not eng.account_trades and not eng.finished and not eng.done_coid
    assert all(eng.order_of("M1", "A1", order_id=i) is None for i in ids)
    assert eng.accounts["A1"].holdings["SHEA"][2025].tradable > 0


def test_finished_block_proposals_are_bounded(demo_config: MarketConfig) -> None:
    eng = funded_engine(small(demo_config, finished_blocks=2), tonnes=1_000_000)
    ids = []
    for _ in range(4):
        eng.apply(
            BlockPropose(
                ts=eng.ts + 1,
                member="M1",
                account="A1",
                counterparty_account="B1",
                instrument="CCER",
                side="sell",
                price=8000,
                quantity=100_000,
            )
        )
        ids.append(eng.blocks.next_block_id - 1)
        eng.apply(BlockCancel(ts=eng.ts + 1, member="M1", account="A1", block_id=ids[-1]))
    assert sorted(eng.blocks.proposals) == ids[-2:]


def test_a_level_that_never_empties_keeps_no_dead_queue_entries(demo_config: MarketConfig) -> None:
    """Cancels, fills and amends behind a live order that never leaves its level: the
    queue keeps at most live + DEAD_SLACK dead entries (each one would keep a finished
    order alive past the window), and time priority is unchanged."""
    eng = funded_engine(small(demo_config, finished_orders=10, trades=10), tonnes=1_000_000)
    anchor = oid(place(eng, "A1", "buy", 5900, 1))  # never leaves
    kept = []
    level = eng.books["SHEA"].bids.levels[5900]
    for i in range(3000):
        churn = oid(place(eng, "A2", "buy", 5900, 1))
        if i % 3 == 0:
            cancel(eng, "A2", churn)
        elif i % 3 == 1:
            amend(eng, "A2", churn, price=5800)  # leaves this level as a re-queued copy
            cancel(eng, "A2", churn)
        elif i % 300 == 2:
            kept.append(churn)  # a few stay live, spread through the queue
        else:
            cancel(eng, "A2", churn)
        assert len(level.queue) <= 2 * level.live + DEAD_SLACK
    assert level.live == 1 + len(kept)
    assert book_ids(eng, "SHEA")[0] == [anchor, *kept]
    assert len(eng.orders) <= 1 + len(kept) + 10  # live + the finished window: nothing else holds the rest
    sold = trades(place(eng, "B1", "sell", 5900, 2 + len(kept)))
    assert [t.buy_order_id for t in sold] == [anchor, *kept]  # time priority survives compaction


def test_replay_and_snapshot_drop_the_same_history(demo_config: MarketConfig) -> None:
    cfg = small(demo_config, finished_orders=4, trades=3)
    eng = funded_engine(cfg)
    cross(eng, 3, "r")
    restored = Engine.restore(cfg, eng.snapshot())
    assert restored.digest() == eng.digest()
    for e in (eng, restored):
        cross(e, 3, "s")
        place(e, "A1", "buy", 5900, 1, client_order_id="s0")  # reuse of an evicted id goes live
    assert restored.digest() == eng.digest()
    assert list(restored.finished) == list(eng.finished) and restored.done_coid == eng.done_coid
    assert [t.trade_id for t in restored.trades_of("M1", "A1")] == [t.trade_id for t in eng.trades_of("M1", "A1")]


def test_snapshot_from_before_retention_still_loads(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    ids = cross(eng, 3, "old")
    snap = msgspec.msgpack.decode(eng.snapshot(), type=EngineSnapshot)
    old = msgspec.structs.replace(snap, retention=None, finished=None, finished_blocks=None)
    data = msgspec.msgpack.encode(old)
    assert b"finished" in data  # encoded as nil; older files lack the key: decode both
    as_dict = msgspec.msgpack.decode(data)
    for key in ("retention", "finished", "finished_blocks"):
        del as_dict[key]
    restored = Engine.restore(demo_config, msgspec.msgpack.encode(as_dict))
    assert list(restored.finished) == sorted(restored.finished)
    assert restored.order_of("M1", "A1", client_order_id="old2").order_id == ids[2]  # type: ignore[union-attr]
    assert len(restored.trades) == 3


def test_lowering_a_cap_trims_at_restore(demo_config: MarketConfig) -> None:
    eng = funded_engine(demo_config)
    cross(eng, 5)
    restored = Engine.restore(small(demo_config, finished_orders=2, trades=1), eng.snapshot())
    assert len(restored.finished) == 2 and len(restored.orders) == 2
    assert [t.trade_id for t in restored.trades] == [5]


def test_retention_table_is_validated() -> None:
    assert parse_retention({}) == RetentionSpec()
    assert parse_retention({"trades": 5}).trades == 5
    for bad, msg in (
        ({"trades": -1}, "outside"),
        ({"trades": 1.5}, "whole number"),
        ({"orders": 1}, "unknown keys"),
        ({"trades": 10**12}, "outside"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_retention(bad)
    cfg = parse_market({"instrument": [{"symbol": "X", "reference_price": "1.00"}], "retention": {"finished_orders": 7}})
    assert cfg.retention.finished_orders == 7
