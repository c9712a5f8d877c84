"""The wire format: JSON-RPC envelopes, per-method params, and engine structs <-> wire values.

Inside the engine prices are integer fen and ids are ints; on the wire prices are
decimal strings and ids are strings. Every method's params is a msgspec Struct with
``forbid_unknown_fields`` so a typo is an error (-32602), never silently ignored;
every string is length-bounded so no input can grow memory. Symbols are checked by
dict lookup in the engine, not by regex (cheaper, and the engine decides anyway).

Business rejects carry a stable ``reason``; ``REASON_CODES`` fixes the JSON-RPC error
code of each reason (1000-1999) once and for all: new reasons get new codes at the end.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import msgspec

from carbonx.engine import ranges
from carbonx.engine import reasons as R
from carbonx.engine.units import UnitError, format_fen, parse_fen

__all__ = ["format_fen"]  # re-exported: callers format money through this module

# ----------------------------------------------------------------------------- errors

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

# The codes are the engine's reason table (carbonx.engine.reasons: name, code, meaning).
REASON_CODES: dict[str, int] = {r.name: r.code for r in R.TABLE}
OTHER_REASON_CODE = R.OTHER_CODE  # a reason missing from the table
reason_code = R.code


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


# ----------------------------------------------------------------------------- envelope

MAX_DEPTH = 8  # objects/arrays nested in one request, the envelope included (real requests use 3)
MAX_ID = 2**63 - 1  # integer ids are signed 64-bit; string ids at most 64 characters

# Any JSON/MessagePack value nested at most MAX_DEPTH - 1 levels below the envelope. Decoding into this
# type (rather than "any") makes msgspec refuse deeper nesting at once, without recursing into it, and
# refuse what no request holds (MessagePack bin/ext/timestamps, non-string map keys).
_Value: Any = str | int | float | bool | None
for _ in range(MAX_DEPTH - 1):
    _Value = str | int | float | bool | None | list[_Value] | dict[str, _Value]
_TOO_DEEP = "Expected `bool | int | float | str | null`, got `"  # msgspec's words for the innermost level


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    """The whole frame, values untyped but bounded: first pass of every request."""

    jsonrpc: _Value
    method: _Value
    id: _Value | msgspec.UnsetType = msgspec.UNSET
    params: _Value | msgspec.UnsetType = msgspec.UNSET


class _IdOnly(msgspec.Struct):
    """Just the id, to answer a request whose envelope is broken elsewhere."""

    id: _Value = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """The typed envelope; ``params`` stays raw until the method is known."""

    jsonrpc: str
    method: Annotated[str, msgspec.Meta(max_length=64)]
    id: Annotated[int, msgspec.Meta(ge=-MAX_ID - 1, le=MAX_ID)] | Annotated[str, msgspec.Meta(max_length=64)] | None = None
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class Request:
    """A decoded JSON-RPC request: ``id`` (echoed), ``method``, raw ``params``."""

    __slots__ = ("id", "method", "params", "params_duplicates", "params_value")

    def __init__(self, env: _Envelope, shape: _Shape, params_duplicates: bool | None) -> None:
        self.id: Any = env.id
        self.method: str = env.method
        self.params: msgspec.Raw | msgspec.UnsetType = env.params
        self.params_value: Any = shape.params  # the same params, untyped (for the duplicate-key check)
        self.params_duplicates = params_duplicates  # whether they repeat a key; None: count once decoded


def _readable_id(value: Any) -> Any:
    """The request's id if it is one we can echo (JSON-RPC: null when it cannot be read)."""
    if (type(value) is int and -MAX_ID - 1 <= value <= MAX_ID) or (type(value) is str and len(value) <= 64):
        return value
    return None


class InvalidRequest(RpcError):
    """-32600 (or -32602 for params) that still knows the id to answer with."""

    def __init__(self, code: int, message: str, req_id: Any = None, data: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, data)
        self.req_id = req_id


# Colons in a JSON text: one per member of every object, plus those inside strings. msgspec keeps the
# last of two equal keys, so re-encoding the decoded value loses one colon per duplicate, unless a
# string hides a colon as the escape \u003a: those are turned into plain colons first (an escape is a
# backslash not itself escaped, i.e. preceded by an even run of backslashes).
_ESCAPED_COLON = re.compile(r"(?<!\\)((?:\\\\)*)\\u003[aA]")
_ESCAPED_COLON_B = re.compile(rb"(?<!\\)((?:\\\\)*)\\u003[aA]")


def _colons(text: str | bytes) -> int:
    if isinstance(text, str):
        if "\\u003" in text:
            text = _ESCAPED_COLON.sub(r"\1:", text)
        return text.count(":")
    if b"\\u003" in text:
        text = _ESCAPED_COLON_B.sub(rb"\1:", text)
    return text.count(b":")


_NAME_DUPLICATES_BELOW = 4096  # bytes: naming the key re-parses in Python, so only small texts get a name


def _json_duplicates(text: str | bytes, outermost: bool) -> list[str]:
    """Keys repeated in the outermost object of ``text`` (or in any object of it), to name them in
    the error. Error path only, and only for small texts: exact but a slow (pure Python) parse."""
    if len(text) > _NAME_DUPLICATES_BELOW:
        return []
    found: list[list[str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        found.append([k for k, _ in items if k in seen or seen.add(k)])  # type: ignore[func-returns-value]
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    if outermost:
        return found[-1] if found else []
    return [k for keys in found for k in keys][:1]


def _msgpack_map_len(frame: bytes) -> int:
    """Entries the outermost MessagePack map header announces (the frame decoded as a map)."""
    head = frame[0]
    if 0x80 <= head <= 0x8F:
        return head & 0x0F
    return int.from_bytes(frame[1:3] if head == 0xDE else frame[1:5], "big")


def _msgpack_items(buf: bytes, budget: int) -> int:
    """Values in the (valid) MessagePack ``buf``, counting map keys, container headers and scalars;
    stops counting past ``budget``. Only the length prefixes are read: strings are skipped whole."""
    pos, need, items, end = 0, 1, 0, len(buf)
    while need and items <= budget and pos < end:
        b = buf[pos]
        pos += 1
        items += 1
        need -= 1
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            continue
        if b <= 0x8F:
            need += 2 * (b & 0x0F)
        elif b <= 0x9F:
            need += b & 0x0F
        elif b <= 0xBF:
            pos += b & 0x1F
        elif b in (0xDC, 0xDE):
            n = int.from_bytes(buf[pos : pos + 2], "big")
            pos += 2
            need += 2 * n if b == 0xDE else n
        elif b in (0xDD, 0xDF):
            n = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
            need += 2 * n if b == 0xDF else n
        elif b in (0xD9, 0xC4):
            pos += 1 + buf[pos]
        elif b in (0xDA, 0xC5):
            pos += 2 + int.from_bytes(buf[pos : pos + 2], "big")
        elif b in (0xDB, 0xC6):
            pos += 4 + int.from_bytes(buf[pos : pos + 4], "big")
        else:  # numbers (and ext, which the first pass refused): fixed sizes
            pos += _FIXED.get(b, 0)
    return items


_FIXED = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def _value_items(value: Any) -> int:
    """What ``_msgpack_items`` counts for a decoded value without repeated keys."""
    if type(value) is dict:
        return 1 + len(value) + sum(_value_items(v) for v in value.values())
    if type(value) is list:
        return 1 + sum(_value_items(v) for v in value)
    return 1


def _duplicate_error(keys: list[str], where: str) -> str:
    named = ", ".join(f"`{k}`" for k in keys)
    return f"duplicate key {named} in {where}" if named else f"duplicate key in {where}"


class Codec:
    """Encoders/decoders of one format (JSON text frames or MessagePack binary frames).

    Every frame is decoded twice: once into ``_Shape`` (any values, nesting bounded, keys strings:
    what lets hostile bytes be refused cheaply and exactly), then into the typed envelope; the params
    are decoded by ``params`` once the method is known. Repeated keys are refused (msgspec would keep
    the last one silently): exactly and in C for the envelope and JSON; for MessagePack params that
    are not in the shortest encoding, by counting values (only after they decoded, so bounded).
    """

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        if binary:
            self.encode: Any = msgspec.msgpack.Encoder().encode
            self._request: Any = msgspec.msgpack.Decoder(_Envelope)
            self._shape: Any = msgspec.msgpack.Decoder(_Shape)
            self._id_only: Any = msgspec.msgpack.Decoder(_IdOnly)
            self._generic: Any = msgspec.msgpack
            self._wrong_frame = "this connection speaks MessagePack (subprotocol carbonx.v1.msgpack): send binary frames"
        else:
            self.encode = _json_text
            self._request = msgspec.json.Decoder(_Envelope)
            self._shape = msgspec.json.Decoder(_Shape)
            self._id_only = msgspec.json.Decoder(_IdOnly)
            self._generic = msgspec.json
            self._wrong_frame = "JSON requests go in text frames (binary frames need the subprotocol carbonx.v1.msgpack)"

    def request(self, frame: bytes | str) -> Request:
        """Decode the envelope. Raises RpcError(-32700) or InvalidRequest(-32600 / -32602, with the
        id to answer when it could be read). ``frame`` is str for a text frame, bytes for binary."""
        if isinstance(frame, str) == self.binary:
            raise InvalidRequest(INVALID_REQUEST, f"invalid request: {self._wrong_frame}")
        try:
            shape = self._shape.decode(frame)
        except msgspec.ValidationError as exc:
            raise self._shape_error(frame, str(exc)) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise RpcError(PARSE_ERROR, _parse_message(frame, exc)) from None
        try:
            env = self._request.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise InvalidRequest(INVALID_REQUEST, f"invalid request: {exc}", _readable_id(shape.id)) from None
        if env.jsonrpc != "2.0":
            raise InvalidRequest(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', _readable_id(shape.id))
        return Request(env, shape, self._duplicates(frame, shape, env))

    def _shape_error(self, frame: bytes | str, text: str) -> RpcError:
        if text.startswith("Expected `object`, got") and " - at `" not in text:  # the frame itself is not an object
            if "got `array`" in text:
                return InvalidRequest(INVALID_REQUEST, "invalid request: batches (arrays) are not supported; send one request per frame")
            return InvalidRequest(INVALID_REQUEST, f"invalid request: a request is an object ({text})")
        try:
            req_id = _readable_id(self._id_only.decode(frame).id)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
            req_id = None  # the id itself is broken (or behind nesting too deep to skip): answer with null
        if text.startswith(_TOO_DEEP):
            text = f"nested deeper than {MAX_DEPTH} levels ({text})"
        in_params = "`$.params" in text
        if in_params:
            return InvalidRequest(INVALID_PARAMS, f"invalid params: {text}", req_id, {"reason": INVALID_PARAMS_REASON})
        return InvalidRequest(INVALID_REQUEST, f"invalid request: {text}", req_id)

    def _duplicates(self, frame: bytes | str, shape: _Shape, env: _Envelope) -> bool | None:
        """Refuse an envelope that repeats a key; tell whether the params do (None: not known yet).

        MessagePack: a frame as long as the shortest encoding of what was decoded repeats no key (a
        repeated entry takes at least 2 bytes; a float, the one value msgspec may write longer than a
        client did, is refused by the typed decoding anyway). Otherwise the envelope's map header is
        compared with its fields, and the params are counted once they decoded (``_params_repeat``)."""
        if self.binary:
            assert isinstance(frame, bytes)
            if len(frame) == len(self.encode(shape)):
                return False
            present = 2 + (shape.id is not msgspec.UNSET) + (shape.params is not msgspec.UNSET)
            if _msgpack_map_len(frame) != present:
                raise InvalidRequest(INVALID_REQUEST, f"invalid request: {_duplicate_error([], 'the request')}", None)
            return None
        raw = env.params
        total, decoded = _colons(frame), _json_encoder.encode(shape).count(b":")
        if total == decoded:
            return False
        params_colons = params_decoded = 0
        if raw is not msgspec.UNSET:
            params_colons = _colons(bytes(raw))
            params_decoded = _json_encoder.encode(shape.params).count(b":")
        if total - params_colons != decoded - params_decoded:
            keys = _json_duplicates(frame, outermost=True)
            echo = None if "id" in keys else _readable_id(shape.id)
            raise InvalidRequest(INVALID_REQUEST, f"invalid request: {_duplicate_error(keys, 'the request')}", echo)
        return True

    def params(self, req: Request, kind: type[Any]) -> Any:
        """Decode ``req.params`` into the method's Struct. Raises RpcError(-32602)."""
        try:
            if req.params is msgspec.UNSET:
                return msgspec.convert({}, kind)
            if type(req.params_value) is list:
                raise RpcError(
                    INVALID_PARAMS,
                    "invalid params: params must be an object of named fields (by-position arrays are not supported)",
                    {"reason": INVALID_PARAMS_REASON},
                )
            value = self._generic.decode(req.params, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise params_error(exc) from None
        if req.params_duplicates or (req.params_duplicates is None and self._params_repeat(req)):
            keys = [] if self.binary else _json_duplicates(bytes(req.params), outermost=False)
            data: dict[str, Any] = {"reason": INVALID_PARAMS_REASON}
            if keys:
                data["field"] = keys[0]
            raise RpcError(INVALID_PARAMS, f"invalid params: {_duplicate_error(keys, 'params')}", data)
        return value

    def _params_repeat(self, req: Request) -> bool:
        """MessagePack not in the shortest encoding: whether the raw params repeat a key. Counts the
        values, which a repeat makes more than were decoded; run only once the params decoded into
        their Struct, so what is counted is bounded by the method's schema, not by the frame."""
        raw = bytes(req.params)  # type: ignore[arg-type]
        decoded = _value_items(req.params_value)
        return _msgpack_items(raw, decoded) > decoded


def _parse_message(frame: bytes | str, exc: BaseException) -> str:
    """-32700's message: what is wrong with the bytes, in words a client developer acts on."""
    if not frame or (isinstance(frame, str) and not frame.strip()):
        return "parse error: empty frame"
    if isinstance(frame, str) and frame.startswith("\ufeff"):
        return "parse error: a byte order mark (U+FEFF) may not precede the JSON text"
    if isinstance(exc, UnicodeDecodeError):
        return f"parse error: a string is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if isinstance(exc, RecursionError):
        return f"parse error: nested deeper than {MAX_DEPTH} levels"
    return f"parse error: {exc}"


_json_encoder = msgspec.json.Encoder()


def _json_text(obj: Any) -> str:
    """JSON frames go out as text (str), as the protocol says."""
    return _json_encoder.encode(obj).decode()


JSON = Codec(binary=False)
MSGPACK = Codec(binary=True)


def reply(req_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def error_reply(req_id: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": err.to_wire()}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


# ----------------------------------------------------------------------------- values

AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Price = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
Money = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
# Quantities: beyond ±10^12 is -32602 naming the field (as ever); the built command's range
# check (engine.ranges.QUANTITY, 10^9 t, in ``Call.command``) answers INVALID_QUANTITY /
# INVALID_LOT / INVALID_AMOUNT beyond it; the engine's rules check the sign and the instrument's limits.
QTY_WIRE_LIMIT = 10**12
Qty = Annotated[int, msgspec.Meta(ge=-QTY_WIRE_LIMIT, le=QTY_WIRE_LIMIT)]
WireId = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
ClientId = Annotated[str, msgspec.Meta(max_length=36)]
Text = Annotated[str, msgspec.Meta(max_length=128)]
Year = Annotated[int, msgspec.Meta(ge=0, le=ranges.VINTAGE.hi)]
Ts = Annotated[int, msgspec.Meta(ge=ranges.TS.lo, le=ranges.TS.hi)]


def parse_id(value: str) -> int:
    """Wire id -> engine id in ``ranges.ID``. A string that is not a positive int of at
    most 18 digits is an unknown id (-1): the engine answers UNKNOWN_ORDER/_AUCTION/..."""
    if value.isdigit() and len(value) <= ranges.ID_DIGITS and value.isascii():
        n = int(value)
        return n if n > 0 else -1
    return -1


def parse_price(value: str, field: str = "price") -> int:
    """Decimal string -> fen; more than two decimals is off the 0.01 tick; above
    ``ranges.PRICE.hi`` is INVALID_PRICE (0 passes: the engine's rule check refuses it)."""
    try:
        fen = parse_fen(value)
    except UnitError as exc:
        reason = R.INVALID_TICK if "decimals" in str(exc) else R.INVALID_PRICE
        raise RpcError.business(reason, f"{field} {exc}", field) from None
    if fen > ranges.PRICE.hi:
        raise RpcError.business(R.INVALID_PRICE, ranges.PRICE.too_large(field), field)
    return fen


def parse_money(value: str, field: str) -> int:
    """Decimal string -> fen in ``ranges.CASH``; anything else is INVALID_AMOUNT."""
    try:
        fen = parse_fen(value)
    except UnitError as exc:
        raise RpcError.business(R.INVALID_AMOUNT, f"{field} {exc}", field) from None
    if fen > ranges.CASH.hi:
        raise RpcError.business(R.INVALID_AMOUNT, ranges.CASH.too_large(field), field)
    return fen


def check_client_id(value: str, field: str) -> str:
    """1-36 printable ASCII (empty = none given)."""
    if value and not (value.isascii() and value.isprintable()):
        raise RpcError(
            INVALID_PARAMS, f"invalid params: {field} must be printable ASCII", {"reason": INVALID_PARAMS_REASON, "field": field}
        )
    return value


def avg_price(cum_notional: int, cum_qty: int) -> str | None:
    """cum_notional / cum_qty in fen, rounded half-up, as a decimal string (None if no fills)."""
    if cum_qty <= 0:
        return None
    return format_fen((2 * cum_notional + cum_qty) // (2 * cum_qty))


def fen_or_none(value: int | None) -> str | None:
    return None if value is None else format_fen(value)


# ----------------------------------------------------------------------------- params


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every method's params."""


class NoParams(Params):
    pass


class LoginParams(Params):
    key_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class CancelOnDisconnectParams(Params):
    enabled: bool


class ChannelsParams(Params):
    channels: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=48)]], msgspec.Meta(max_length=64)]


class PlaceParams(Params):
    account: AccountId
    instrument: Symbol
    side: Literal["buy", "sell"]
    quantity: Qty
    type: Literal["limit", "market"] = "limit"
    price: Price | None = None
    time_in_force: Literal["day", "gtc", "ioc", "fok"] = "day"
    post_only: bool = False
    stp: Literal["cancel_newest", "cancel_oldest", "cancel_both", "decrement"] = "cancel_newest"
    client_order_id: ClientId = ""


class OrderRefParams(Params):
    """An order by exchange id or by the client's id (exactly one)."""

    account: AccountId
    order_id: WireId | None = None
    client_order_id: ClientId | None = None


class AmendParams(OrderRefParams):
    price: Price | None = None
    quantity: Qty | None = None


class CancelAllParams(Params):
    account: AccountId | None = None
    instrument: Symbol | None = None
    side: Literal["buy", "sell"] | None = None


class OrderListParams(Params):
    account: AccountId
    instrument: Symbol | None = None
    open_only: bool = False


class TradeListParams(Params):
    account: AccountId
    instrument: Symbol | None = None
    since_ts: Ts = 0


class AccountParams(Params):
    account: AccountId


class RetireParams(Params):
    account: AccountId
    instrument: Symbol
    quantity: Qty
    purpose: Literal["public_welfare", "event_neutrality", "compliance_offset"]
    beneficiary: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    vintage: Year | None = None
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class CertificateParams(Params):
    certificate_id: WireId


class EventParams(Params):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class BlockProposeParams(Params):
    account: AccountId
    instrument: Symbol
    side: Literal["buy", "sell"]
    price: Price
    quantity: Qty
    counterparty_account: AccountId
    vintage: Year | None = None


class BlockRefParams(Params):
    account: AccountId
    block_id: WireId


class AuctionRefParams(Params):
    auction_id: WireId


class BidParams(Params):
    auction_id: WireId
    account: AccountId
    price: Price
    quantity: Qty
    client_bid_id: ClientId = ""


class AmendBidParams(Params):
    auction_id: WireId
    bid_id: WireId
    price: Price | None = None
    quantity: Qty | None = None


class WithdrawBidParams(Params):
    auction_id: WireId
    bid_id: WireId


class MyBidsParams(Params):
    auction_id: WireId
    account: AccountId


# -- operators --


class MemberCreateParams(Params):
    member: AccountId
    key_id: AccountId
    secret: Annotated[str, msgspec.Meta(min_length=8, max_length=256)]


class AccountCreateParams(Params):
    account: AccountId
    member: AccountId
    type: Literal["covered_entity", "institution", "individual"]


class MoneyMoveParams(Params):
    account: AccountId
    cash: Money | None = None
    instrument: Symbol | None = None
    quantity: Qty = 0
    vintage: Year | None = None


class DepositParams(MoneyMoveParams):
    compliance_only: bool = False


class InstrumentParams(Params):
    instrument: Symbol


class SetReferenceParams(Params):
    instrument: Symbol
    price: Price


class BlockedParams(Params):
    member: AccountId | None = None
    account: AccountId | None = None


class AdminCancelAllParams(CancelAllParams):
    member: AccountId | None = None


class ReserveParams(Params):
    lookback_days: Annotated[int, msgspec.Meta(ge=ranges.LOOKBACK_DAYS.lo, le=ranges.LOOKBACK_DAYS.hi)]
    factor: Literal["1.0", "1.2", "100", "120", 100, 120] = "1.0"  # x1.0 or x1.2 of the lookback VWAP
    cap: Price | None = None


class AuctionCreateParams(Params):
    instrument: Symbol
    quantity: Qty
    vintage: Year | None = None
    reserve_price: Price | None = None
    reserve: ReserveParams | None = None
    rule_set: Literal["shanghai", "eu", "quebec", "rggi"] = "shanghai"
    eligible: Annotated[list[Literal["covered_entity", "institution", "individual"]], msgspec.Meta(max_length=3)] | None = None
    caps: dict[Literal["covered_entity", "institution", "individual"], Qty] | None = None
    min_lot: Qty = 1
    irrevocable: bool | None = None
    suspend_trading: bool = False
    start_ts: Ts | None = None
    end_ts: Ts | None = None
    seed: Annotated[int, msgspec.Meta(ge=ranges.SEED.lo, le=ranges.SEED.hi)] | None = None


class EventCreateParams(Params):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    footprint: Qty


# ----------------------------------------------------------------------------- engine -> wire


def exec_report(ev: Any) -> dict[str, Any]:
    """An ExecReport event (or a book Order) as the protocol's execution report."""
    market = ev.type == "market"
    out: dict[str, Any] = {
        "order_id": str(ev.order_id),
        "client_order_id": ev.client_order_id or None,
        "account": ev.account,
        "instrument": ev.instrument,
        "side": ev.side,
        "type": ev.type,
        "price": None if market else format_fen(ev.price),
        "quantity": ev.quantity,
        "time_in_force": ev.tif,
        "exec_type": ev.exec_type,
        "status": ev.status,
        "cum_qty": ev.cum_qty,
        "leaves_qty": ev.leaves_qty,
        "avg_price": avg_price(ev.cum_notional, ev.cum_qty),
        "seq": ev.seq,
        "ts": ev.ts,
    }
    if ev.last_qty:
        out["last_qty"] = ev.last_qty
        out["last_price"] = format_fen(ev.last_price)
    if ev.trade_id:
        out["trade_id"] = str(ev.trade_id)
    if ev.reason:
        out["reason"] = ev.reason
    return out


def order_view(order: Any, seq: int) -> dict[str, Any]:
    """A book Order (read path) as an execution report of its current state."""
    market = order.type == "market"
    out: dict[str, Any] = {
        "order_id": str(order.order_id),
        "client_order_id": order.client_order_id or None,
        "account": order.account,
        "instrument": order.instrument,
        "side": order.side,
        "type": order.type,
        "price": None if market else format_fen(order.price),
        "quantity": order.quantity,
        "time_in_force": order.tif,
        "exec_type": "new" if order.status == "new" else _status_exec(order.status),
        "status": order.status,
        "cum_qty": order.cum_qty,
        "leaves_qty": order.leaves_qty,
        "avg_price": avg_price(order.cum_notional, order.cum_qty),
        "seq": seq,
        "ts": order.ts,
    }
    return out


def _status_exec(status: str) -> str:
    return {"partially_filled": "trade", "filled": "trade", "cancelled": "cancelled", "expired": "expired"}.get(status, "new")


def public_trade(t: Any) -> dict[str, Any]:
    out = {
        "trade_id": str(t.trade_id),
        "instrument": t.instrument,
        "price": format_fen(t.price),
        "quantity": t.quantity,
        "aggressor": t.aggressor,
        "seq": t.seq,
        "ts": t.ts,
    }
    if t.block:
        out["block"] = True
    return out


def account_trade(t: Any, account: str) -> dict[str, Any]:
    """A trade from one account's point of view (its side, order and fee)."""
    is_buy = t.buy_account == account
    out = public_trade(t)
    out["account"] = account
    out["side"] = "buy" if is_buy else "sell"
    out["order_id"] = str(t.buy_order_id if is_buy else t.sell_order_id) if (t.buy_order_id if is_buy else t.sell_order_id) else None
    out["fee"] = format_fen(t.buy_fee if is_buy else t.sell_fee)
    if t.vintages:
        out["vintages"] = {str(v): n for v, n in t.vintages}
    return out


def account_view(acct: Any) -> dict[str, Any]:
    holdings: dict[str, Any] = {}
    for symbol, by_vintage in acct.holdings.items():
        total = {"tradable": 0, "frozen": 0, "compliance_only": 0, "locked": 0}
        vintages: dict[str, Any] = {}
        for vintage, pos in sorted(by_vintage.items()):
            bucket = {"tradable": pos.tradable, "frozen": pos.frozen, "compliance_only": pos.compliance_only, "locked": pos.locked}
            for k, v in bucket.items():
                total[k] += v
            if vintage:
                vintages[str(vintage)] = bucket
        if vintages:
            total["vintages"] = vintages  # type: ignore[assignment]
        holdings[symbol] = total
    return {
        "account": acct.account,
        "member": acct.member,
        "type": acct.type,
        "blocked": acct.blocked,
        "cash": {"available": format_fen(acct.available), "frozen": format_fen(acct.frozen)},
        "holdings": holdings,
    }


def auction_view(info: Any, results: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "auction_id": str(info.auction_id),
        "instrument": info.instrument,
        "vintage": info.vintage,
        "quantity": info.quantity,
        "reserve_price": format_fen(info.reserve_price),
        "rule_set": info.rule_set,
        "eligible": list(info.eligible),
        "caps": dict(info.caps),
        "min_lot": info.min_lot,
        "irrevocable": info.irrevocable,
        "suspend_trading": info.suspend_trading,
        "start_ts": info.start_ts,
        "end_ts": info.end_ts,
        "state": info.state,
        "created_ts": info.created_ts,
    }
    if info.reserve_inputs:
        out["reserve_inputs"] = dict(info.reserve_inputs)
    if results is not None:
        out["results"] = {
            "quantity_offered": results.quantity_offered,
            "valid_bid_quantity": results.valid_bid_quantity,
            "bidders": results.bidders,
            "winners": results.winners,
            "quantity_sold": results.quantity_sold,
            "clearing_price": format_fen(results.clearing_price),
            "total_amount": format_fen(results.total_amount),
            "cover_ratio": f"{results.cover_ratio_bp / 10_000:.4f}",
        }
    return out


def bid_view(b: Any) -> dict[str, Any]:
    return {
        "auction_id": str(b.auction_id),
        "bid_id": str(b.bid_id),
        "client_bid_id": b.client_bid_id or None,
        "account": b.account,
        "price": format_fen(b.price),
        "quantity": b.quantity,
        "status": b.status,
        "allocated": b.allocated,
        "amount": format_fen(b.amount),
        "seq": b.seq,
        "ts": b.ts,
    }


def block_view(b: Any) -> dict[str, Any]:
    return {
        "block_id": str(b.block_id),
        "instrument": b.instrument,
        "side": b.side,
        "price": format_fen(b.price),
        "quantity": b.quantity,
        "vintage": b.vintage,
        "proposer_account": b.proposer_account,
        "counterparty_account": b.counterparty_account,
        "state": b.state,
        "trade_id": str(b.trade_id) if b.trade_id else None,
        "seq": b.seq,
        "ts": b.ts,
    }


def certificate_view(c: Any) -> dict[str, Any]:
    return {
        "certificate_id": str(c.certificate_id),
        "account": c.account,
        "instrument": c.instrument,
        "vintage": c.vintage,
        "quantity": c.quantity,
        "purpose": c.purpose,
        "beneficiary": c.beneficiary,
        "event_id": c.event_id,
        "vintages": [{"vintage": v, "quantity": n} for v, n in c.vintages] if c.vintages else None,
        "covers": [str(i) for i in c.covers] if c.covers else None,  # neutrality certificate: its retirements
        "seq": c.seq,
        "ts": c.ts,
    }


def neutrality_view(ev: Any) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "name": ev.name,
        "footprint": ev.footprint,
        "retired": ev.retired,
        "certificate_id": str(ev.certificate_id) if ev.certificate_id else None,
    }


def daily_stats(stats: Any) -> dict[str, Any]:
    return {
        "open": format_fen(stats.open),
        "close": format_fen(stats.close),
        "high": format_fen(stats.high),
        "low": format_fen(stats.low),
        "volume": stats.volume,
    }


def reject_error(rej: Any) -> RpcError:
    """An engine Reject as the JSON-RPC error the requester receives."""
    extra: dict[str, Any] = {}
    if rej.order_id:
        extra["order_id"] = str(rej.order_id)
    if rej.client_order_id:
        extra["client_order_id"] = rej.client_order_id
    return RpcError.business(rej.reason, rej.message, rej.field, seq=rej.seq, **extra)
