"""Access checks in the method table: scopes for member keys, roles for operators, and a session
whose key stopped being usable."""

from __future__ import annotations

from carbonx.gateway.sessions import Session
from carbonx.gateway.settings import Limits


def test_access_checks_scopes_roles_and_a_session_being_cut_off() -> None:
    """The registry's per-method metadata: order entry needs the trade scope, reads the read
    scope; operator methods the role they declare; a session whose key stopped being usable
    (rights emptied by ``rpc.access.close_unusable``) may do nothing private any more."""
    from carbonx.gateway.protocol.errors import RpcError
    from carbonx.gateway.rpc import ADMIN_METHODS, TRADING_METHODS, check_access

    place, account, halt, status = (
        TRADING_METHODS["order.place"],
        TRADING_METHODS["account.get"],
        ADMIN_METHODS["admin.instrument.halt"],
        ADMIN_METHODS["admin.status"],
    )
    assert (place.scope, account.scope, halt.role, status.role) == ("trade", "read", "operator", "viewer")
    assert ADMIN_METHODS["admin.key.create"].role == ADMIN_METHODS["admin.member.create"].role == "admin"

    def allowed(session: Session, m: object) -> bool:
        try:
            check_access(session, m, False)  # type: ignore[arg-type]
        except RpcError:
            return False
        return True

    reader = Session(Limits(), member="m", scopes=frozenset({"read"}))
    trader = Session(Limits(), member="m", scopes=frozenset({"trade"}))
    assert (allowed(reader, place), allowed(reader, account), allowed(trader, place), allowed(trader, account)) == (
        False,
        True,
        True,
        False,
    )
    viewer = Session(Limits(), admin=True, operator=True, role="viewer")
    ops = Session(Limits(), admin=True, operator=True, role="operator")
    assert (allowed(viewer, status), allowed(viewer, halt), allowed(ops, halt)) == (True, False, True)
    assert allowed(viewer, ADMIN_METHODS["order.get"])  # reads on the admin listener: any role
    cut_off = Session(Limits(), admin=True, operator=True, role="")
    assert not allowed(cut_off, status) and not allowed(cut_off, ADMIN_METHODS["order.get"])
    assert allowed(cut_off, ADMIN_METHODS["ping"])  # public
