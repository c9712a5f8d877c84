"""RPC dispatch (stage 2 of the data path): the handlers, grouped by domain, and their table.

``registry`` holds the tables (``TRADING_METHODS``, ``ADMIN_METHODS``) that the ``@method``
decorator fills; importing this package imports every handler module, so the tables are
complete once ``carbonx.gateway.rpc`` is imported. ``call`` is the request being answered.
"""

from __future__ import annotations

from carbonx.gateway.rpc import access, admin, auctions, blocks, orders, retirement, session, supervision
from carbonx.gateway.rpc.call import Call
from carbonx.gateway.rpc.registry import ADMIN_METHODS, TRADING_METHODS, Method, check_access, lookup

__all__ = [
    "ADMIN_METHODS",
    "TRADING_METHODS",
    "Call",
    "Method",
    "access",
    "admin",
    "auctions",
    "blocks",
    "check_access",
    "lookup",
    "orders",
    "retirement",
    "session",
    "supervision",
]
