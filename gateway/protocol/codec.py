"""The envelope and the two frame codecs (JSON text frames, MessagePack binary frames).

Every request is decoded twice: once into a bounded, untyped shape (hostile bytes are refused
cheaply and exactly), then into the typed envelope; a method's params are decoded into its
Struct (``carbonx.gateway.protocol.params``) once the method is known.

A frame holding an array is a JSON-RPC 2.0 batch (``Codec.frame``): the array is split into
its members without looking inside them (at most ``max_batch``), and every member is then
decoded exactly as a request alone in a frame would be, with the same bounds and errors.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import msgspec

from carbonx.gateway.protocol.errors import (
    INVALID_PARAMS,
    INVALID_PARAMS_REASON,
    INVALID_REQUEST,
    PARSE_ERROR,
    InvalidRequest,
    RpcError,
    params_error,
)
from carbonx.gateway.protocol.names import MSGPACK_SUBPROTOCOL

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
            self._members: Any = msgspec.msgpack.Decoder(list[msgspec.Raw])
            self._generic: Any = msgspec.msgpack
            self._wrong_frame = f"this connection speaks MessagePack (subprotocol {MSGPACK_SUBPROTOCOL}): send binary frames"
        else:
            self.encode = _json_text
            self._request = msgspec.json.Decoder(_Envelope)
            self._shape = msgspec.json.Decoder(_Shape)
            self._id_only = msgspec.json.Decoder(_IdOnly)
            self._members = msgspec.json.Decoder(list[msgspec.Raw])
            self._generic = msgspec.json
            self._wrong_frame = f"JSON requests go in text frames (binary frames need the subprotocol {MSGPACK_SUBPROTOCOL})"

    def request(self, frame: bytes | str) -> Request:
        """Decode the envelope of a frame holding one request (an array is refused: use ``frame``
        where batches are allowed). Raises RpcError(-32700) or InvalidRequest(-32600 / -32602, with
        the id to answer when it could be read). ``frame`` is str for a text frame, bytes for binary."""
        if isinstance(frame, str) == self.binary:
            raise InvalidRequest(INVALID_REQUEST, f"invalid request: {self._wrong_frame}")
        return self._one(frame, member=False)

    def frame(self, frame: bytes | str, max_batch: int) -> Request | list[Request | RpcError]:
        """Decode one frame: a single request (as ``request``), or a batch (an array of requests)
        as the list of its members in order, each the decoded ``Request`` or the error to answer
        that member with (its id when readable, else null). What is refused as a whole, with one
        error and no list: a frame of the wrong kind, bytes that do not parse, an empty array
        (-32600) and an array of more than ``max_batch`` members (-32600)."""
        if isinstance(frame, str) == self.binary:
            raise InvalidRequest(INVALID_REQUEST, f"invalid request: {self._wrong_frame}")
        if not _is_array(frame):
            return self._one(frame, member=False)
        if self.binary:  # the array header says how many members follow: refuse a long one unread
            assert isinstance(frame, bytes)
            announced = _msgpack_array_len(frame)
            if announced > max_batch:
                raise InvalidRequest(INVALID_REQUEST, _too_long(announced, max_batch))
        try:
            raws = self._members.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise RpcError(PARSE_ERROR, _parse_message(frame, exc)) from None
        if not raws:
            raise InvalidRequest(INVALID_REQUEST, "invalid request: an empty batch (a batch holds at least one request)")
        if len(raws) > max_batch:
            raise InvalidRequest(INVALID_REQUEST, _too_long(len(raws), max_batch))
        members: list[Request | RpcError] = []
        for raw in raws:
            try:
                members.append(self._one(bytes(raw), member=True))
            except RpcError as err:
                members.append(err)
        return members

    def _one(self, frame: bytes | str, member: bool) -> Request:
        """Decode one request: a whole frame, or (``member``) one member of a batch, as bytes."""
        try:
            shape = self._shape.decode(frame)
        except msgspec.ValidationError as exc:
            raise self._shape_error(frame, str(exc), member) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise RpcError(PARSE_ERROR, _parse_message(frame, exc)) from None
        try:
            env = self._request.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise InvalidRequest(INVALID_REQUEST, f"invalid request: {exc}", _readable_id(shape.id)) from None
        if env.jsonrpc != "2.0":
            raise InvalidRequest(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', _readable_id(shape.id))
        return Request(env, shape, self._duplicates(frame, shape, env))

    def _shape_error(self, frame: bytes | str, text: str, member: bool) -> RpcError:
        if text.startswith("Expected `object`, got") and " - at `" not in text:  # the frame itself is not an object
            if "got `array`" in text:
                if member:
                    return InvalidRequest(INVALID_REQUEST, "invalid request: a batch member is a request object (batches do not nest)")
                return InvalidRequest(INVALID_REQUEST, "invalid request: a batch (array) is not accepted here; send one request per frame")
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


_JSON_SPACE = " \t\r\n"


def _is_array(frame: bytes | str) -> bool:
    """Whether the frame holds an array (a batch): JSON's first non-blank character is ``[``;
    MessagePack's first byte is an array header (fixarray, array 16, array 32)."""
    if isinstance(frame, str):
        head = frame[:1]
        if head in _JSON_SPACE and head:
            head = frame.lstrip(_JSON_SPACE)[:1]
        return head == "["
    return bool(frame) and (0x90 <= frame[0] <= 0x9F or frame[0] in (0xDC, 0xDD))


def _msgpack_array_len(frame: bytes) -> int:
    """Members the outermost MessagePack array header announces (0 when the header is cut short)."""
    head = frame[0]
    if head <= 0x9F:
        return head & 0x0F
    width = 2 if head == 0xDC else 4
    return int.from_bytes(frame[1 : 1 + width], "big") if len(frame) > width else 0


def _too_long(n: int, max_batch: int) -> str:
    return f"invalid request: a batch holds at most {max_batch} requests (limits.max_batch), this one has {n}"


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
