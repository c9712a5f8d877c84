"""Error replies: JSON-RPC codes, business reasons and their numeric codes, ``RpcError``.

Business rejects carry a stable ``reason``; ``reason_code`` gives the JSON-RPC error code of
each reason (1000-1999), fixed once and for all: new reasons get new codes at the end.
"""

from __future__ import annotations

import re
from typing import Any

from carbonx.engine import reasons as R

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Gateway-level reasons (never produced by the engine).
INVALID_PARAMS_REASON = "INVALID_PARAMS"
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
SHUTTING_DOWN = "SHUTTING_DOWN"
UNKNOWN_CERTIFICATE = "UNKNOWN_CERTIFICATE"
LOGIN_THROTTLED = "LOGIN_THROTTLED"  # failed logins for this key id / address: data.retry_after_ms
STORAGE_FULL = "STORAGE_FULL"  # the data directory is (nearly) full: see gateway/storage.py

# Order matters: the code of a reason is 1000 + its index. Append only.
_REASON_ORDER = (
    R.PRICE_OUT_OF_BAND, R.INVALID_TICK, R.INVALID_PRICE, R.INVALID_QUANTITY, R.INSUFFICIENT_FUNDS,
    R.INSUFFICIENT_HOLDINGS, R.MARKET_CLOSED, R.INSTRUMENT_HALTED, R.NOT_ELIGIBLE, R.HOLDING_LIMIT,
    R.ACCOUNT_BLOCKED, R.UNKNOWN_ORDER, R.DUPLICATE_CLIENT_ORDER_ID, R.RATE_LIMITED, R.UNKNOWN_INSTRUMENT,
    R.NOT_AUTHORIZED, R.NOT_AUTHENTICATED, R.POST_ONLY_WOULD_CROSS, R.INVALID_ORDER, R.ORDER_NOT_AMENDABLE,
    R.NO_LIQUIDITY, R.T1_RESALE, R.BLOCK_SIZE_REQUIRED, R.UNKNOWN_ACCOUNT, R.UNKNOWN_MEMBER,
    R.ALREADY_EXISTS, R.INVALID_AMOUNT, R.INVALID_STATE, R.DAY_NOT_OPEN, R.UNKNOWN_AUCTION,
    R.AUCTION_NOT_OPEN, R.BELOW_RESERVE, R.BIDDER_CAP, R.INVALID_LOT, R.BIDS_IRREVOCABLE,
    R.UNKNOWN_BID, R.NO_REFERENCE_DATA, R.UNKNOWN_BLOCK, R.BLOCK_TOO_SMALL, R.UNKNOWN_EVENT,
    R.INVALID_PURPOSE, TOO_MANY_CONNECTIONS, TOO_MANY_SUBSCRIPTIONS, UNKNOWN_CHANNEL, SHUTTING_DOWN,
    UNKNOWN_CERTIFICATE, LOGIN_THROTTLED, STORAGE_FULL,
)  # fmt: skip
REASON_CODES: dict[str, int] = {reason: 1000 + i for i, reason in enumerate(_REASON_ORDER)}
OTHER_REASON_CODE = 1999  # a reason added to the engine but not yet given a code here


def reason_code(reason: str) -> int:
    return REASON_CODES.get(reason, OTHER_REASON_CODE)


class RpcError(Exception):
    """An error reply: JSON-RPC ``code``, human ``message`` and structured ``data``."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def business(cls, reason: str, message: str, field: str | None = None, **extra: Any) -> RpcError:
        data: dict[str, Any] = {"reason": reason}
        if field is not None:
            data["field"] = field
        data.update(extra)
        return cls(reason_code(reason), message, data)

    def to_wire(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


_FIELD_RE = re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_.\[\]]*)`")  # nested: "reserve.factor", "channels[0]"
_UNKNOWN_RE = re.compile(r"(?:unknown|missing required) field `([A-Za-z_]+)`")


def params_error(exc: Exception) -> RpcError:
    """-32602 naming the offending field, from a msgspec validation message."""
    text = str(exc)
    path, name = _FIELD_RE.search(text), _UNKNOWN_RE.search(text)
    data: dict[str, Any] = {"reason": INVALID_PARAMS_REASON}
    if path and name:  # an unknown/missing field inside a nested object
        data["field"] = f"{path.group(1)}.{name.group(1)}"
    elif (found := path or name) is not None:
        data["field"] = found.group(1)
    return RpcError(INVALID_PARAMS, f"invalid params: {text}", data)


class InvalidRequest(RpcError):
    """-32600 (or -32602 for params) that still knows the id to answer with."""

    def __init__(self, code: int, message: str, req_id: Any = None, data: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, data)
        self.req_id = req_id


# Colons in a JSON text: one per member of every object, plus those inside strings. msgspec keeps the
