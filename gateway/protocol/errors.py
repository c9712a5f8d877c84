"""Error replies: JSON-RPC codes, business reasons and their numeric codes, ``RpcError``.

Business rejects carry a stable ``reason``; ``reason_code`` gives the JSON-RPC error code of
each reason (1000-1999) from the engine's one reason table (``carbonx.engine.reasons``), fixed
once and for all: new reasons get new codes at the end.
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

# Gateway-level reasons (never produced by the engine); their codes are in the one reason
# table, ``carbonx.engine.reasons.TABLE`` (marked level "gateway").
INVALID_PARAMS_REASON = "INVALID_PARAMS"  # the data.reason of a -32602 (a JSON-RPC code, not a business reason)
TOO_MANY_CONNECTIONS = R.TOO_MANY_CONNECTIONS
TOO_MANY_SUBSCRIPTIONS = R.TOO_MANY_SUBSCRIPTIONS
UNKNOWN_CHANNEL = R.UNKNOWN_CHANNEL
SHUTTING_DOWN = R.SHUTTING_DOWN
UNKNOWN_CERTIFICATE = R.UNKNOWN_CERTIFICATE
LOGIN_THROTTLED = R.LOGIN_THROTTLED  # failed logins for this key id / address: data.retry_after_ms
STORAGE_FULL = R.STORAGE_FULL  # the data directory is (nearly) full: see gateway/storage.py


def reason_code(reason: str) -> int:
    """The JSON-RPC error code of a business ``reason`` (1000-1999): ``carbonx.engine.reasons.code``,
    the one table of names, codes and meanings."""
    return R.code(reason)


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
