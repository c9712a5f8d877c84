"""The method table: every RPC handler registered, as a function object, with its params type,
access level and listener (stage 2 of the data path: dispatch).

Handlers register themselves with a decorator, like aiohttp's ``RouteTableDef``::

    @method("order.place", PlaceParams, "private", order=True)
    def place(call: Call, p: PlaceParams) -> None: ...

The decorator is generic in the params type, so mypy checks each handler's signature against
the Struct it is registered with; the table holds the function itself (no name looked up
later). ``carbonx.gateway.rpc`` imports every handler module, which fills the two tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from carbonx.engine import reasons as R
from carbonx.engine.keys import ROLE_RANK
from carbonx.engine.schema import Role, Scope
from carbonx.gateway.protocol import errors
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import Params

if TYPE_CHECKING:
    from carbonx.gateway.rpc.call import Call
    from carbonx.gateway.sessions import Session

P = TypeVar("P", bound=Params)
Access = Literal["public", "private", "operator"]
# Which listener offers the method: "both" (public methods, reads, logout), else its own.
Listener = Literal["trading", "admin", "both"]
# A handler answers through ``call`` (at once or once durable); the few that must wait
# (scrypt in a worker thread, snapshots) return an awaitable the connection awaits.
Handler = Callable[["Call", P], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    params: type[Params]
    handler: Handler[Any]
    access: Access  # public | private (logged in) | operator
    order: bool = False  # charged to the order rate limit too
    login: bool = False  # session.login itself: allowed before logging in even when market data needs a login
    scope: Scope = "read"  # private methods: the scope a member's key needs (read | trade)
    role: Role = "admin"  # operator methods: the lowest operator role allowed (viewer < operator < admin)


TRADING_METHODS: dict[str, Method] = {}
ADMIN_METHODS: dict[str, Method] = {}


def method(
    name: str,
    params: type[P],
    access: Access,
    *,
    order: bool = False,
    listener: Listener | None = None,
    login: bool = False,
    scope: Scope | None = None,
    role: Role = "admin",
) -> Callable[[Handler[P]], Handler[P]]:
    """Register the decorated function as the handler of ``name``. ``listener`` defaults to
    "admin" for operator methods and "trading" otherwise. ``scope`` (private methods) defaults
    to "trade" for order-entry methods (``order=True``: orders, amends, cancels, blocks, bids,
    retirements) and "read" otherwise; ``role`` (operator methods) defaults to "admin", so a
    new operator method is admin-only until it says otherwise (reads: "viewer"; running the
    market: "operator")."""
    where = listener or ("admin" if access == "operator" else "trading")

    def register(fn: Handler[P]) -> Handler[P]:
        m = Method(name, params, fn, access, order, login, scope or ("trade" if order else "read"), role)
        for table, wanted in ((TRADING_METHODS, "trading"), (ADMIN_METHODS, "admin")):
            if where in (wanted, "both"):
                if name in table:
                    raise ValueError(f"method {name!r} registered twice")
                table[name] = m
        return fn

    return register


def lookup(session: Session, name: str) -> Method:
    """The method ``name`` on the session's listener, or -32601."""
    table = ADMIN_METHODS if session.admin else TRADING_METHODS
    found = table.get(name)
    if found is None:
        where = "the admin listener" if session.admin else "the trading listener (operator methods live on the admin listener)"
        raise RpcError(errors.METHOD_NOT_FOUND, f"method not found: {name!r} on {where}", {"reason": "METHOD_NOT_FOUND"})
    return found


def check_access(session: Session, m: Method, market_data_requires_login: bool) -> None:
    """NOT_AUTHENTICATED / NOT_AUTHORIZED unless the session may call ``m``."""
    if m.access == "public":
        if market_data_requires_login and not session.authenticated and not m.login:
            raise RpcError.business(R.NOT_AUTHENTICATED, "log in first (session.login)")
        return
    if not session.authenticated:
        raise RpcError.business(R.NOT_AUTHENTICATED, "log in first (session.login)")
    if session.operator:  # any role may read (private methods on the admin listener); operator methods need theirs
        rank = ROLE_RANK.get(session.role, -1)  # -1: the key stopped being usable, the session is being closed
        if rank < 0 or (m.access == "operator" and rank < ROLE_RANK[m.role]):
            raise RpcError.business(R.NOT_AUTHORIZED, f"{m.name} needs the {m.role} role (this operator is {session.role or 'not usable'})")
        return
    if m.access == "operator":
        raise RpcError.business(R.NOT_AUTHORIZED, "operator credentials required")
    if m.scope not in session.scopes:
        raise RpcError.business(R.NOT_AUTHORIZED, f"{m.name} needs a key with the {m.scope} scope")
