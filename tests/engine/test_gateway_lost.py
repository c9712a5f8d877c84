"""GatewayLost (cluster mode): the loss of one gateway life cancels exactly its cancel-on-disconnect sessions' orders."""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine.engine import Engine
from carbonx.engine.schema import ExecReport, GatewayLost, PlaceOrder, Reject, SetCancelOnDisconnect
from carbonx.engine.testkit import T0


def _order(engine: Engine, session: str, price: int) -> int:
    engine.apply(SetCancelOnDisconnect(ts=T0, member="M1", session=session, enabled=True))
    events = engine.apply(
        PlaceOrder(ts=T0, member="M1", account="A1", instrument="SHEA", side="buy", price=price, quantity=5, session=session)
    )
    (report,) = [e for e in events if isinstance(e, ExecReport)]
    return report.order_id


def test_cancels_only_the_sessions_of_that_gateway_life(engine: Engine) -> None:
    lost = _order(engine, "gw-1.aaaa.s1", 5900)
    lost2 = _order(engine, "gw-1.aaaa.s2", 5901)
    other_life = _order(engine, "gw-1.bbbb.s1", 5902)  # the same gateway id, restarted: a new nonce
    other_gw = _order(engine, "gw-10.aaaa.s1", 5903)  # a prefix of its id must not match
    events = engine.apply(GatewayLost(ts=T0, gateway="gw-1.aaaa"))
    cancelled = {e.order_id for e in events if isinstance(e, ExecReport) and e.exec_type == "cancelled"}
    assert cancelled == {lost, lost2}
    assert all(e.reason == R.GATEWAY_LOST for e in events if isinstance(e, ExecReport))
    assert set(engine.cod_sessions) == {"gw-1.bbbb.s1", "gw-10.aaaa.s1"}
    assert engine.orders[other_life].leaves_qty == 5 and engine.orders[other_gw].leaves_qty == 5


def test_a_duplicate_changes_nothing_and_a_malformed_one_is_rejected(engine: Engine) -> None:
    _order(engine, "gw-1.aaaa.s1", 5900)
    engine.apply(GatewayLost(ts=T0, gateway="gw-1.aaaa"))
    orders, sessions = [(o.order_id, o.leaves_qty, o.status) for o in engine.orders.values()], dict(engine.cod_sessions)
    assert engine.apply(GatewayLost(ts=T0, gateway="gw-1.aaaa")) == []  # a deposed leader's duplicate
    for bad in ("", "no-nonce", "x" * 65):
        (ev,) = engine.apply(GatewayLost(ts=T0, gateway=bad))
        assert isinstance(ev, Reject) and ev.field == "gateway"
    assert [(o.order_id, o.leaves_qty, o.status) for o in engine.orders.values()] == orders
    assert engine.cod_sessions == sessions
