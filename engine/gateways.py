"""Cluster mode's gateway loss: cancel-on-disconnect for every session of a gateway that is gone.

A gateway process holds the connections; when it dies nobody is left to send the sessions'
``CancelAll``. The active engine notices (docs/cluster.md, "Gateway loss") and journals one
``GatewayLost`` naming the gateway's life (``<gateway id>.<boot nonce>``, the prefix of every
session id that life issued); applying it cancels the open orders of exactly those
cancel-on-disconnect sessions, like their own ``CancelAll`` would have.
"""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine.matching import cancel
from carbonx.engine.schema import GatewayLost
from carbonx.engine.state import ExchangeState, Handler, is_live


def gateway_lost(eng: ExchangeState, cmd: GatewayLost) -> None:
    """Cancel the orders of every cancel-on-disconnect session of the lost gateway life."""
    if not cmd.gateway or len(cmd.gateway) > 64 or "." not in cmd.gateway:
        eng.reject(cmd, R.INVALID_ORDER, "gateway must be '<gateway id>.<boot nonce>', at most 64 characters", "gateway")
        return
    prefix = cmd.gateway + "."
    sessions = {s for s in eng.cod_sessions if s.startswith(prefix)}
    if not sessions:
        return  # already cleaned up (a duplicate, or its sessions ended normally): nothing to do
    for s in sessions:
        del eng.cod_sessions[s]
    for o in [o for o in eng.orders.values() if is_live(o) and o.session in sessions]:
        cancel(eng, o, reason=R.GATEWAY_LOST)


HANDLERS: dict[type, Handler] = {GatewayLost: gateway_lost}
