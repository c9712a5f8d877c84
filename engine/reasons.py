"""The one reason table: every stable reason string, its numeric code and what it means.

A reason names why a command was refused (a ``Reject``, a JSON-RPC error ``data.reason``)
or why the exchange ended an order (``ExecReport.reason``). ``TABLE`` holds each reason
once with its code and meaning; the wire's error code is ``code(reason)``
(MARKET_RULES.md §3, PROTOCOL.md). Rules for changing it:

- never rename a reason nor renumber a code: the code of a reason is 1000 + its position
  in ``TABLE``; new reasons are appended at the end;
- ``level`` says who produces it: ``"engine"`` (a ``Reject`` from ``Engine.apply``),
  ``"gateway"`` (the I/O shell only: connections, subscriptions, storage, login
  throttling), ``"exec"`` (only ever an ``ExecReport.reason``, never a reject).

The names are also module constants (``reasons.PRICE_OUT_OF_BAND``) so callers refer to a
reason by name, never by a string literal.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Level = Literal["engine", "gateway", "exec"]


Failure = tuple[str, str, str | None]  # (reason, message, field): what every rule check returns


class Reason(NamedTuple):
    name: str
    code: int
    meaning: str
    level: Level = "engine"


# orders and pre-trade risk
PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
INVALID_TICK = "INVALID_TICK"
INVALID_PRICE = "INVALID_PRICE"
INVALID_QUANTITY = "INVALID_QUANTITY"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
INSUFFICIENT_HOLDINGS = "INSUFFICIENT_HOLDINGS"
MARKET_CLOSED = "MARKET_CLOSED"
INSTRUMENT_HALTED = "INSTRUMENT_HALTED"
NOT_ELIGIBLE = "NOT_ELIGIBLE"
HOLDING_LIMIT = "HOLDING_LIMIT"
ACCOUNT_BLOCKED = "ACCOUNT_BLOCKED"
UNKNOWN_ORDER = "UNKNOWN_ORDER"
DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
RATE_LIMITED = "RATE_LIMITED"
UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
NOT_AUTHORIZED = "NOT_AUTHORIZED"
NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
INVALID_ORDER = "INVALID_ORDER"
ORDER_NOT_AMENDABLE = "ORDER_NOT_AMENDABLE"
NO_LIQUIDITY = "NO_LIQUIDITY"
T1_RESALE = "T1_RESALE"
BLOCK_SIZE_REQUIRED = "BLOCK_SIZE_REQUIRED"
# administration
UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
UNKNOWN_MEMBER = "UNKNOWN_MEMBER"
ALREADY_EXISTS = "ALREADY_EXISTS"
INVALID_AMOUNT = "INVALID_AMOUNT"
INVALID_STATE = "INVALID_STATE"
DAY_NOT_OPEN = "DAY_NOT_OPEN"
# auctions
UNKNOWN_AUCTION = "UNKNOWN_AUCTION"
AUCTION_NOT_OPEN = "AUCTION_NOT_OPEN"
BELOW_RESERVE = "BELOW_RESERVE"
BIDDER_CAP = "BIDDER_CAP"
INVALID_LOT = "INVALID_LOT"
BIDS_IRREVOCABLE = "BIDS_IRREVOCABLE"
UNKNOWN_BID = "UNKNOWN_BID"
NO_REFERENCE_DATA = "NO_REFERENCE_DATA"
# block trades
UNKNOWN_BLOCK = "UNKNOWN_BLOCK"
BLOCK_TOO_SMALL = "BLOCK_TOO_SMALL"
# retirement
UNKNOWN_EVENT = "UNKNOWN_EVENT"
INVALID_PURPOSE = "INVALID_PURPOSE"
# gateway level (never produced by the engine)
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
SHUTTING_DOWN = "SHUTTING_DOWN"
UNKNOWN_CERTIFICATE = "UNKNOWN_CERTIFICATE"
LOGIN_THROTTLED = "LOGIN_THROTTLED"
STORAGE_FULL = "STORAGE_FULL"
# why the exchange ended an order (ExecReport.reason only)
SELF_TRADE_PREVENTION = "SELF_TRADE_PREVENTION"
UNFILLED_REMAINDER = "UNFILLED_REMAINDER"
# 1050-1054: cluster
GATEWAY_LOST = "GATEWAY_LOST"  # cluster mode: cancel-on-disconnect after the loss of a gateway
# 1060-1069: supervision and disclosure (docs/supervision.md, docs/disclosure.md)
UNKNOWN_ALERT = "UNKNOWN_ALERT"
INVALID_GROUP = "INVALID_GROUP"
UNKNOWN_REPORT = "UNKNOWN_REPORT"
# access: API keys, operator identities, audit (1070-1079)
UNKNOWN_KEY = "UNKNOWN_KEY"
KEY_REVOKED = "KEY_REVOKED"
KEY_EXPIRED = "KEY_EXPIRED"
ADDRESS_NOT_ALLOWED = "ADDRESS_NOT_ALLOWED"
INVALID_KEY = "INVALID_KEY"
UNKNOWN_OPERATOR = "UNKNOWN_OPERATOR"
AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"

# Append only: code = 1000 + position (test_reasons checks it).
TABLE: tuple[Reason, ...] = (
    Reason(PRICE_OUT_OF_BAND, 1000, "limit price outside today's price band"),
    Reason(INVALID_TICK, 1001, "price not a multiple of the tick (or more than two decimals)"),
    Reason(INVALID_PRICE, 1002, "missing or zero price on a limit order, or not a decimal price"),
    Reason(INVALID_QUANTITY, 1003, "quantity zero, not a multiple of the lot, or above the maximum"),
    Reason(INSUFFICIENT_FUNDS, 1004, "available cash does not cover the order, bid or block"),
    Reason(INSUFFICIENT_HOLDINGS, 1005, "not enough available tonnes (of that vintage) to sell or retire"),
    Reason(MARKET_CLOSED, 1006, "the instrument's listing session is not open"),
    Reason(INSTRUMENT_HALTED, 1007, "the instrument is halted"),
    Reason(NOT_ELIGIBLE, 1008, "the account's participant type may not trade or bid in this"),
    Reason(HOLDING_LIMIT, 1009, "the buy would take the account over its holding limit"),
    Reason(ACCOUNT_BLOCKED, 1010, "the account or its member is blocked (also an ExecReport reason)"),
    Reason(UNKNOWN_ORDER, 1011, "no such live order of this account"),
    Reason(DUPLICATE_CLIENT_ORDER_ID, 1012, "client order id already used by a live order of the account"),
    Reason(RATE_LIMITED, 1013, "too many requests: retry after data.retry_after_ms"),
    Reason(UNKNOWN_INSTRUMENT, 1014, "no such instrument"),
    Reason(NOT_AUTHORIZED, 1015, "not your account (same answer as an unknown one), or operator only"),
    Reason(NOT_AUTHENTICATED, 1016, "not logged in, or wrong key id / secret"),
    Reason(POST_ONLY_WOULD_CROSS, 1017, "a post-only order would have traded on entry"),
    Reason(INVALID_ORDER, 1018, "inconsistent order: a market order with a price, post-only market, bad ids"),
    Reason(ORDER_NOT_AMENDABLE, 1019, "the order cannot be amended that way"),
    Reason(NO_LIQUIDITY, 1020, "a market order met an empty book (also an ExecReport reason)"),
    Reason(T1_RESALE, 1021, "tonnes bought today are not sellable until the next trading day"),
    Reason(BLOCK_SIZE_REQUIRED, 1022, "this size must go to block trading"),
    Reason(UNKNOWN_ACCOUNT, 1023, "no such account"),
    Reason(UNKNOWN_MEMBER, 1024, "no such member"),
    Reason(ALREADY_EXISTS, 1025, "a member, account or event with that id exists"),
    Reason(INVALID_AMOUNT, 1026, "cash or tonnes amount not allowed (zero, negative, too large, too much)"),
    Reason(INVALID_STATE, 1027, "not allowed in the current state"),
    Reason(DAY_NOT_OPEN, 1028, "no trading day is open"),
    Reason(UNKNOWN_AUCTION, 1029, "no such auction"),
    Reason(AUCTION_NOT_OPEN, 1030, "the auction is not accepting bids"),
    Reason(BELOW_RESERVE, 1031, "bid price below the reserve price"),
    Reason(BIDDER_CAP, 1032, "bid quantity above the per-bidder cap"),
    Reason(INVALID_LOT, 1033, "quantity not a multiple of the auction lot"),
    Reason(BIDS_IRREVOCABLE, 1034, "bids can no longer be amended or withdrawn"),
    Reason(UNKNOWN_BID, 1035, "no such live bid of this account"),
    Reason(NO_REFERENCE_DATA, 1036, "no trading history to derive an auction reserve from"),
    Reason(UNKNOWN_BLOCK, 1037, "no such block proposal for this account"),
    Reason(BLOCK_TOO_SMALL, 1038, "below the block trading minimum"),
    Reason(UNKNOWN_EVENT, 1039, "no such neutrality event"),
    Reason(INVALID_PURPOSE, 1040, "retirement purpose unknown or missing its event/beneficiary"),
    Reason(TOO_MANY_CONNECTIONS, 1041, "connection limit reached", "gateway"),
    Reason(TOO_MANY_SUBSCRIPTIONS, 1042, "subscription limit reached", "gateway"),
    Reason(UNKNOWN_CHANNEL, 1043, "no such market-data channel", "gateway"),
    Reason(SHUTTING_DOWN, 1044, "the server is stopping (or its journal failed): not applied", "gateway"),
    Reason(UNKNOWN_CERTIFICATE, 1045, "no such retirement certificate", "gateway"),
    Reason(LOGIN_THROTTLED, 1046, "too many failed logins: retry after data.retry_after_ms", "gateway"),
    Reason(STORAGE_FULL, 1047, "the data directory is (nearly) full: new commands refused", "gateway"),
    Reason(SELF_TRADE_PREVENTION, 1048, "cancelled by self-trade prevention", "exec"),
    Reason(UNFILLED_REMAINDER, 1049, "IOC or market remainder cancelled", "exec"),
    # 1050-1054: cluster; 1055-1059: operations (none yet); 1060-1069: supervision; 1070-1079: access
    Reason(GATEWAY_LOST, 1050, "cancel-on-disconnect: the cluster gateway holding the session was lost", "exec"),
    Reason(UNKNOWN_ALERT, 1060, "no such surveillance alert", "gateway"),
    Reason(INVALID_GROUP, 1061, "related-party group invalid (name, unknown or repeated account, fewer than 2 accounts)"),
    Reason(UNKNOWN_REPORT, 1062, "no disclosure report for that trading date", "gateway"),
    Reason(UNKNOWN_KEY, 1070, "no such API key (or operator key)"),
    Reason(KEY_REVOKED, 1071, "the API key was revoked"),
    Reason(KEY_EXPIRED, 1072, "the API key has expired (or its rotated-out secret's grace period ended)"),
    Reason(ADDRESS_NOT_ALLOWED, 1073, "the source address is not on the key's allow-list", "gateway"),
    Reason(INVALID_KEY, 1074, "bad key or operator settings: id, label, scopes, allow-list (CIDR), expiry, role, grace"),
    Reason(UNKNOWN_OPERATOR, 1075, "no such operator identity"),
    Reason(AUDIT_UNAVAILABLE, 1076, "the audit log cannot be written: the admin action was not carried out", "gateway"),
)

BY_NAME: dict[str, Reason] = {r.name: r for r in TABLE}
OTHER_CODE = 1999  # a reason missing from TABLE (a bug: test_reasons keeps every engine reason in it)


def code(reason: str) -> int:
    """The wire error code of ``reason`` (1000-1999; ``OTHER_CODE`` for a name not in ``TABLE``)."""
    entry = BY_NAME.get(reason)
    return entry.code if entry is not None else OTHER_CODE


def meaning(reason: str) -> str:
    """One line saying what ``reason`` means ("" for a name not in ``TABLE``)."""
    entry = BY_NAME.get(reason)
    return entry.meaning if entry is not None else ""
