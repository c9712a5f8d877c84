"""Read-only queries the gateway serves between commands (order.get/list, trade.list,
account.get): they only show a member its own accounts, and they change nothing."""

from __future__ import annotations

from carbonx.engine.engine import Engine
from carbonx.engine.testkit import cancel, oid, place, state_bytes


def test_order_lookup_by_client_order_id_prefers_the_live_order(engine: Engine) -> None:
    first = oid(place(engine, "A1", "buy", 5900, 1, client_order_id="c"))
    cancel(engine, "A1", first)
    second = oid(place(engine, "A1", "buy", 5900, 2, client_order_id="c"))
    assert engine.order_of("M1", "A1", client_order_id="c").order_id == second  # type: ignore[union-attr]
    cancel(engine, "A1", second)
    third = oid(place(engine, "A1", "buy", 5900, 3, client_order_id="c"))
    place(engine, "B1", "sell", 5900, 3)  # fills the third
    assert engine.order_of("M1", "A1", client_order_id="c").order_id == third  # type: ignore[union-attr]  # newest finished
    assert engine.order_of("M1", "A1", order_id=first).status == "cancelled"  # type: ignore[union-attr]


def test_queries_hide_other_members_accounts(engine: Engine) -> None:
    theirs = oid(place(engine, "B1", "buy", 5900, 1))
    place(engine, "A1", "sell", 5900, 1)
    assert engine.order_of("M1", "B1", order_id=theirs) is None
    assert engine.order_of("M1", "A1", order_id=theirs) is None  # not A1's order
    assert engine.orders_of("M1", "B1") == []
    assert engine.trades_of("M1", "B1") == []
    assert engine.account_of("M1", "B1") is None
    assert engine.account_of(None, "B1") is not None  # operators see everything
    assert engine.accounts_of("M2") == ["B1", "B2"]


def test_orders_of_filters_open_orders_and_instrument(engine: Engine) -> None:
    live = oid(place(engine, "A1", "buy", 5900, 1))
    done = oid(place(engine, "A1", "buy", 5900, 1))
    cancel(engine, "A1", done)
    ccer = oid(place(engine, "A1", "buy", 8000, 1, "CCER"))
    assert [o.order_id for o in engine.orders_of("M1", "A1")] == [live, done, ccer]
    assert [o.order_id for o in engine.orders_of("M1", "A1", open_only=True)] == [live, ccer]
    assert [o.order_id for o in engine.orders_of("M1", "A1", instrument="CCER")] == [ccer]


def test_queries_change_nothing(engine: Engine) -> None:
    place(engine, "A1", "buy", 5900, 1)
    before = (state_bytes(engine), engine.seq)
    engine.orders_of("M1", "A1")
    engine.order_of("M1", "A1", client_order_id="nope")
    engine.trades_of("M1", "A1")
    engine.depth("SHEA", 5)
    assert (state_bytes(engine), engine.seq) == before
