"""Hostile bytes at the codec: every one is an RpcError with the code it deserves (never another
exception, which the server would answer with -32603), with the id echoed when it was readable."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonx.gateway import protocol
from carbonx.gateway.protocol import JSON, MSGPACK, RpcError

enc = msgspec.msgpack.encode
PLACE = {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 10}


def _outcome(codec: protocol.Codec, frame: str | bytes, kind: type = protocol.PlaceParams) -> tuple[int, Any]:
    """(error code, id answered with), or (0, params) when the frame is accepted."""
    try:
        req = codec.request(frame)
    except RpcError as err:
        return err.code, getattr(err, "req_id", None)
    try:
        return 0, codec.params(req, kind)
    except RpcError as err:
        return err.code, req.id


def _mp_request(params: bytes, rid: Any = 1, method: str = "order.place") -> bytes:
    head = enc({"jsonrpc": "2.0", "id": rid, "method": method})
    return bytes([head[0] + 1]) + head[1:] + enc("params") + params


def _mp_map(*items: bytes) -> bytes:
    return bytes([0x80 | (len(items) // 2)]) + b"".join(items)


JSON_CASES = [
    ("jsonrpc 1.0 echoes the id", '{"jsonrpc":"1.0","id":7,"method":"ping"}', -32600, 7),
    ("jsonrpc as a number", '{"jsonrpc":2,"id":"x","method":"ping"}', -32600, "x"),
    ("duplicate envelope key", '{"jsonrpc":"2.0","id":7,"method":"ping","method":"order.place"}', -32600, 7),
    ("duplicate spelled with an escape", '{"jsonrpc":"2.0","id":7,"method":"ping","meth\\u006fd":"x"}', -32600, 7),
    ("duplicate id", '{"jsonrpc":"2.0","id":7,"id":8,"method":"ping"}', -32600, None),
    ("duplicate params key, last valid", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"quantity":0,'
     + json.dumps(PLACE)[1:] + "}", -32602, 7),
    ("duplicate nested key", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"account":{"a":1,"a":2},'
     + json.dumps(PLACE)[1:] + "}", -32602, 7),
    ("unknown envelope member", '{"jsonrpc":"2.0","id":7,"method":"ping","parms":{}}', -32600, 7),
    ("nesting 1000 deep in params", '{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":' + "[" * 1000 + "]" * 1000 + "}}", -32602,
     None),
    ("nesting 9 deep in params", '{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":' + "[" * 8 + "]" * 8 + "}}", -32602, 7),
    ("nesting 1000 deep as id", '{"jsonrpc":"2.0","method":"ping","id":' + "[" * 1000 + "]" * 1000 + "}", -32600, None),
    ("unclosed nesting", '{"jsonrpc":"2.0","id":7,"method":"ping","params":' + "[" * 3000, -32602, None),  # too deep first
    ("float id", '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', -32600, None),
    ("bool id", '{"jsonrpc":"2.0","id":true,"method":"ping"}', -32600, None),
    ("id past int64", '{"jsonrpc":"2.0","id":9223372036854775808,"method":"ping"}', -32600, None),
    ("id of 5000 digits", '{"jsonrpc":"2.0","id":' + "9" * 5000 + ',"method":"ping"}', -32600, None),
    ("object id", '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', -32600, None),
    ("params array", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":["A-001"]}', -32602, 7),
    ("batch", '[{"jsonrpc":"2.0","id":7,"method":"ping"}]', -32600, None),
    ("empty batch", "[]", -32600, None),
    ("empty frame", "", -32700, None),
    ("whitespace frame", " \n\t ", -32700, None),
    ("NaN", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"quantity":NaN}}', -32700, None),
    ("Infinity", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"quantity":-Infinity}}', -32700, None),
    ("1e999", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"quantity":1e999}}', -32602, 7),
    ("BOM", '\ufeff{"jsonrpc":"2.0","id":7,"method":"ping"}', -32700, None),
    ("lone surrogate escape", '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"account":"\\ud800"}}', -32700, None),
    ("JSON in a binary frame", b'{"jsonrpc":"2.0","id":7,"method":"ping"}', -32600, None),
    ("invalid UTF-8 in a binary frame", b'{"jsonrpc":"2.0","id":7,"method":"p\xffing"}', -32600, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "frame", "code", "rid"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_hostile_json_gets_its_error(case: str, frame: str | bytes, code: int, rid: Any) -> None:
    assert _outcome(JSON, frame) == (code, rid)


def test_duplicate_errors_name_the_key() -> None:
    frame = '{"jsonrpc":"2.0","id":7,"method":"order.place","params":{"price":"1.00",' + json.dumps(PLACE)[1:] + "}"
    with pytest.raises(RpcError) as err:
        JSON.params(JSON.request(frame), protocol.PlaceParams)
    assert err.value.data == {"reason": "INVALID_PARAMS", "field": "price"}
    assert "duplicate key `price`" in err.value.message
    with pytest.raises(RpcError) as err:
        JSON.request('{"jsonrpc":"2.0","id":7,"method":"ping","method":"x"}')
    assert "duplicate key `method`" in err.value.message


@pytest.mark.parametrize(
    "frame",
    [
        '{"jsonrpc" : "2.0" , "id" : 7 ,\n "method" : "order.place" , "params" : ' + json.dumps(PLACE, indent=2) + "}",
        '{"jsonrpc":"2.0","id":"a:b","method":"order.place","params":' + json.dumps(PLACE | {"client_order_id": "x:y\\u003az"}) + "}",
        '{"jsonrpc":"2.0","id":7,"method":"order.place","params":' + json.dumps(PLACE | {"client_order_id": "x\\\\u003az"}) + "}",
        '{"jsonrpc":"2.0","id":7,"method":"order.place","params":' + json.dumps(PLACE | {"client_order_id": "\\\\\\u003a"}) + "}",
    ],
)
def test_colons_in_strings_and_whitespace_are_not_duplicates(frame: str) -> None:
    code, params = _outcome(JSON, frame)
    assert code == 0 and params.quantity == 10, params


def _mp_wide_str(s: str) -> bytes:
    raw = s.encode()
    return b"\xd9" + bytes([len(raw)]) + raw


MSGPACK_CASES = [
    ("invalid UTF-8 in the method", b"\x83" + enc("jsonrpc") + enc("2.0") + enc("id") + enc(7) + enc("method") + b"\xa2\xff\xfe",
     -32700, None),
    ("invalid UTF-8 in a params string", _mp_request(_mp_map(enc("account"), b"\xa2\xc3\x28")), -32700, None),
    ("bin where a string goes", _mp_request(_mp_map(enc("account"), enc(b"A-001"))), -32602, 1),
    ("ext value", _mp_request(_mp_map(enc("account"), b"\xd4\x01\x00")), -32602, 1),
    ("timestamp value", _mp_request(_mp_map(enc("account"), b"\xd6\xff\x00\x00\x00\x00")), -32602, 1),
    ("int key", _mp_request(_mp_map(enc(1), enc(2))), -32602, 1),
    ("bin key", _mp_request(_mp_map(enc(b"account"), enc("A"))), -32602, 1),
    ("array key", _mp_request(_mp_map(b"\x91\x01", enc("A"))), -32602, 1),
    ("nesting 1000 deep", _mp_request(b"\x91" * 1000 + b"\x90"), -32602, None),  # too deep to skip to the id
    ("duplicate envelope key", b"\x85" + enc("jsonrpc") + enc("2.0") + enc("id") + enc(7) + enc("method") + enc("ping")
     + enc("params") + b"\x80" + enc("method") + enc("order.place"), -32600, None),
    ("duplicate params key", _mp_request(_mp_map(enc("quantity"), enc(0), *[enc(x) for kv in PLACE.items() for x in kv])), -32602, 1),
    ("duplicate params key, wide encoding", _mp_request(_mp_map(_mp_wide_str("quantity"), b"\xce\x00\x00\x00\x00",
     *[x for k, v in PLACE.items() for x in (_mp_wide_str(k), _mp_wide_str(v) if isinstance(v, str) else b"\xce" + v.to_bytes(4, "big"))])),
     -32602, 1),
    ("id past uint64", enc({"jsonrpc": "2.0", "id": 2**64 - 1, "method": "ping"}), -32600, None),
    ("float id", enc({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}), -32600, None),
    ("bin id", enc({"jsonrpc": "2.0", "id": b"7", "method": "ping"}), -32600, None),
    ("jsonrpc 1.0", enc({"jsonrpc": "1.0", "id": 7, "method": "ping"}), -32600, 7),
    ("lying map header", b"\xdf\xff\xff\xff\xff" + enc("jsonrpc"), -32700, None),
    ("trailing bytes", enc({"jsonrpc": "2.0", "id": 7, "method": "ping"}) + b"\x00", -32700, None),
    ("empty frame", b"", -32700, None),
    ("array", enc([{"jsonrpc": "2.0", "id": 7, "method": "ping"}]), -32600, None),
    ("text frame on MessagePack", '{"jsonrpc":"2.0","id":7,"method":"ping"}', -32600, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "frame", "code", "rid"), MSGPACK_CASES, ids=[c[0] for c in MSGPACK_CASES])
def test_hostile_msgpack_gets_its_error(case: str, frame: str | bytes, code: int, rid: Any) -> None:
    assert _outcome(MSGPACK, frame) == (code, rid)


def test_msgpack_in_a_wider_encoding_without_duplicates_is_accepted() -> None:
    items = [_mp_wide_str(k) + (_mp_wide_str(v) if isinstance(v, str) else b"\xce" + v.to_bytes(4, "big")) for k, v in PLACE.items()]
    code, params = _outcome(MSGPACK, _mp_request(bytes([0x80 | len(items)]) + b"".join(items)))
    assert code == 0 and params.quantity == 10 and params.account == "A-001"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200), st.sampled_from([JSON, MSGPACK]))
def test_any_bytes_give_an_rpc_error_or_a_request(frame: str | bytes, codec: protocol.Codec) -> None:
    code, _ = _outcome(codec, frame, protocol.NoParams)
    assert code in (0, -32700, -32600, -32602)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.sampled_from([JSON, MSGPACK]), st.booleans())
def test_any_params_value_gives_a_params_error_or_params(params: Any, codec: protocol.Codec, twice: bool) -> None:
    """Any value as params (repeated keys when ``twice``): -32602 or a PlaceParams, nothing else."""
    if codec is JSON:
        body = json.dumps(params, allow_nan=True)
        if twice and isinstance(params, dict) and params:
            body = "{" + body[1:-1] + "," + body[1:-1] + "}"
        frame: str | bytes = '{"jsonrpc":"2.0","id":1,"method":"order.place","params":' + body + "}"
    else:
        try:
            frame = enc({"jsonrpc": "2.0", "id": 1, "method": "order.place", "params": params})
        except OverflowError:
            return
    code, _ = _outcome(codec, frame)
    assert code in (0, -32700, -32602)
    if twice and isinstance(params, dict) and params and codec is JSON:
        assert code != 0


def test_nested_duplicates_are_named_and_big_ones_are_not_reparsed() -> None:
    create = {"instrument": "SHEA", "quantity": 1}
    frame = '{"jsonrpc":"2.0","id":1,"method":"admin.auction.create","params":{"reserve":{"lookback_days":5,"lookback_days":6},'
    with pytest.raises(RpcError) as err:
        JSON.params(JSON.request(frame + json.dumps(create)[1:] + "}"), protocol.AuctionCreateParams)
    assert err.value.data == {"reason": "INVALID_PARAMS", "field": "lookback_days"}
    repeats = '"account":"A-001",' * 300  # > 4 KiB of repeats: refused, not named (that would re-parse it in Python)
    frame = '{"jsonrpc":"2.0","id":1,"method":"order.place","params":{' + repeats + json.dumps(PLACE)[1:] + "}"
    with pytest.raises(RpcError) as err:
        JSON.params(JSON.request(frame), protocol.PlaceParams)
    assert err.value.code == -32602 and err.value.data == {"reason": "INVALID_PARAMS"}
    assert "duplicate key in params" in err.value.message


# -- the duplicate-key check against an exact reference ------------------------------------------


class _Obj(list):  # type: ignore[type-arg]
    """An object as its list of (key, value) pairs, so it can repeat a key."""


_keys = st.sampled_from(["a", "b", "a:", ":", "\u4e2d", "ab"])
_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(alphabet='a:\\"\u4e2d', max_size=4)
_pairs: Any = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(_keys, inner), max_size=4).map(_Obj), max_leaves=10
)


def _has_duplicates(value: Any) -> bool:
    if isinstance(value, _Obj):
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(_has_duplicates(v) for _, v in value)
    if isinstance(value, list):
        return any(_has_duplicates(v) for v in value)
    return False


def _json_text(value: Any, draw: Any) -> str:
    """JSON with random spacing and escapes (colons and letters as \\uXXXX)."""
    if isinstance(value, _Obj):
        sep = draw(st.sampled_from([":", " : ", ":\n"]))
        return "{" + ",".join(_json_text(k, draw) + sep + _json_text(v, draw) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v, draw) for v in value) + "]"
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif draw(st.booleans()):
                out.append(f"\\u{ord(ch):04{draw(st.sampled_from(['x', 'X']))}}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    return json.dumps(value)


def _msgpack(value: Any, draw: Any) -> bytes:
    """MessagePack, each string and integer in the shortest or a wider encoding."""
    if isinstance(value, _Obj):
        return b"\xde" + len(value).to_bytes(2, "big") + b"".join(_msgpack(k, draw) + _msgpack(v, draw) for k, v in value)
    if isinstance(value, list):
        return b"\xdc" + len(value).to_bytes(2, "big") + b"".join(_msgpack(v, draw) for v in value)
    if isinstance(value, str) and draw(st.booleans()):
        raw = value.encode()
        return b"\xda" + len(raw).to_bytes(2, "big") + raw
    if type(value) is int and 0 <= value < 2**32 and draw(st.booleans()):
        return b"\xce" + value.to_bytes(4, "big")
    return enc(value)


@settings(max_examples=400, deadline=None)
@given(_pairs.map(lambda v: _Obj(v) if isinstance(v, _Obj) else _Obj([("a", v)])), st.data())
def test_json_duplicate_check_is_exact(params: Any, data: Any) -> None:
    frame = '{"jsonrpc":"2.0","id":1,"method":"x","params":' + _json_text(params, data.draw) + "}"
    req = JSON.request(frame)
    assert req.params_duplicates is _has_duplicates(params), frame


@settings(max_examples=400, deadline=None)
@given(_pairs.map(lambda v: _Obj(v) if isinstance(v, _Obj) else _Obj([("a", v)])), st.data())
def test_msgpack_duplicate_check_is_exact(params: Any, data: Any) -> None:
    frame = _mp_request(_msgpack(params, data.draw))
    req = MSGPACK.request(frame)
    repeats = req.params_duplicates if req.params_duplicates is not None else MSGPACK._params_repeat(req)
    assert repeats is _has_duplicates(params), frame
