"""SetCancelOnDisconnect: the engine remembers which sessions' orders go with their
connection, so a restarted gateway can cancel what a crash disconnected."""

from __future__ import annotations

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CancelAll, PlaceOrder, Reject, SetCancelOnDisconnect
from carbonx.engine.testkit import T0


def test_flag_is_state_that_survives_a_snapshot_and_is_cleared_by_the_session_cancel(engine: Engine, demo_config: MarketConfig) -> None:
    engine.apply(SetCancelOnDisconnect(ts=T0, member="M1", session="s1", enabled=True))
    engine.apply(SetCancelOnDisconnect(ts=T0, member="M1", session="s2", enabled=True))
    engine.apply(SetCancelOnDisconnect(ts=T0, member="M1", session="s2", enabled=False))
    engine.apply(PlaceOrder(ts=T0, member="M1", account="A1", instrument="SHEA", side="buy", price=5900, quantity=5, session="s1"))
    restored = Engine.restore(demo_config, engine.snapshot())
    assert restored.cod_sessions == engine.cod_sessions == {"s1": "M1"}
    assert restored.digest() == engine.digest()
    restored.apply(CancelAll(ts=T0, member="M1", session="s1"))
    assert restored.cod_sessions == {}
    assert not [o for o in restored.orders.values() if o.leaves_qty]


def test_bad_session_id_is_rejected(engine: Engine) -> None:
    (ev,) = engine.apply(SetCancelOnDisconnect(ts=T0, member="M1", session="", enabled=True))
    assert isinstance(ev, Reject) and ev.field == "session"
    assert engine.cod_sessions == {}
