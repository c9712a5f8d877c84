"""JSON-RPC batches at the codec (``Codec.frame``): an array is split into its members, each decoded
exactly as a request alone in a frame (same bounds, same errors, same id echoed); what is refused
as a whole (empty, longer than ``max_batch``, unparsable) is one error."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonx.gateway import protocol
from carbonx.gateway.protocol import JSON, MSGPACK, InvalidRequest, RpcError
from carbonx.gateway.protocol.codec import MAX_DEPTH
from tests.gateway.test_wire_hostile import JSON_CASES, MSGPACK_CASES

enc = msgspec.msgpack.encode
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def _outcome(codec: protocol.Codec, member: protocol.Request | RpcError) -> tuple[Any, ...]:
    """What a member came to: (code, id to answer with) for an error, (0, id, method) for a request."""
    if isinstance(member, RpcError):
        return member.code, member.req_id if isinstance(member, InvalidRequest) else None
    return 0, member.id, member.method


def _alone(codec: protocol.Codec, frame: str | bytes) -> tuple[Any, ...]:
    try:
        return _outcome(codec, codec.request(frame))
    except RpcError as err:
        return _outcome(codec, err)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_a_single_request_is_not_a_batch() -> None:
    req = JSON.frame(json.dumps(PING), 10)
    assert isinstance(req, protocol.Request) and req.id == 1
    req = MSGPACK.frame(enc(PING), 10)
    assert isinstance(req, protocol.Request) and req.method == "ping"


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_members_in_order_each_with_its_own_outcome(codec: protocol.Codec) -> None:
    members: list[Any] = [PING, 1, {"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "1.0", "id": "x", "method": "ping"}, [PING]]
    frame = json.dumps(members) if codec is JSON else enc(members)
    got = codec.frame(frame, 10)
    assert isinstance(got, list)
    assert [_outcome(codec, m) for m in got] == [(0, 1, "ping"), (-32600, None), (0, None, "ping"), (-32600, "x"), (-32600, None)]
    assert isinstance(got[4], RpcError) and "batches do not nest" in got[4].message


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
@pytest.mark.parametrize(
    ("members", "code", "words"),
    [([], -32600, "an empty batch"), ([PING] * 4, -32600, "at most 3 requests (limits.max_batch), this one has 4")],
)
def test_refused_whole(codec: protocol.Codec, members: list[Any], code: int, words: str) -> None:
    frame = json.dumps(members) if codec is JSON else enc(members)
    with pytest.raises(RpcError) as err:
        codec.frame(frame, 3)
    assert err.value.code == code and words in err.value.message


@pytest.mark.parametrize(
    ("codec", "frame"),
    [
        (JSON, "[" + json.dumps(PING)),  # unclosed
        (JSON, "[1,]"),
        (JSON, "[1] x"),
        (JSON, "[" * 5000 + "]" * 5000),  # deeper than the parser's own bound
        (MSGPACK, b"\x92\x01"),  # announces two members, holds one
        (MSGPACK, b"\xdc\x00"),  # header cut short
        (MSGPACK, b"\x91" * 5000 + b"\x90"),
    ],
)
def test_unparsable_batch_is_one_parse_error(codec: protocol.Codec, frame: str | bytes) -> None:
    with pytest.raises(RpcError) as err:
        codec.frame(frame, 100)
    assert err.value.code == -32700


def test_a_huge_announced_msgpack_array_is_refused_unread() -> None:
    with pytest.raises(RpcError) as err:
        MSGPACK.frame(b"\xdd\xff\xff\xff\xff", 100)
    assert err.value.code == -32600 and "this one has 4294967295" in err.value.message


def test_request_still_refuses_an_array() -> None:
    with pytest.raises(RpcError) as err:
        JSON.request(json.dumps([PING]))
    assert err.value.code == -32600 and "batch" in err.value.message


# Members: hostile single requests of the wire tests (those that are one complete value), any JSON
# value, valid requests, deep nesting.
def _complete_json(text: str) -> bool:
    try:
        msgspec.json.decode("[" + text + "]", type=list[msgspec.Raw])
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _complete_msgpack(data: bytes) -> bool:
    try:
        got = msgspec.msgpack.decode(b"\x91" + data, type=list[msgspec.Raw])
    except (msgspec.DecodeError, RecursionError):
        return False
    return bytes(got[0]) == data


_JSON_SINGLES = [f for _, f, _, _ in JSON_CASES if isinstance(f, str) and f.strip() and _complete_json(f)]
_MSGPACK_SINGLES = [f for _, f, _, _ in MSGPACK_CASES if isinstance(f, bytes) and f and _complete_msgpack(f)]
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "params", "x"]), inner, max_size=4)
    ),
    max_leaves=16,
)
_requests = st.builds(
    lambda rid, method, params: {"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
    st.integers(-5, 5) | st.text(max_size=4) | st.none(),
    st.sampled_from(["ping", "order.place", "x"]),
    st.dictionaries(st.text(max_size=4), _values, max_size=3),
)


@st.composite
def _json_members(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(_JSON_SINGLES))
    if kind == 3:
        d = draw(st.integers(1, 1200))
        return '{"jsonrpc":"2.0","id":3,"method":"ping","params":{"a":' + "[" * d + "]" * d + "}}"
    return json.dumps(draw(_values if kind == 1 else _requests))


@st.composite
def _msgpack_members(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(_MSGPACK_SINGLES))
    if kind == 3:
        head = enc({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        return bytes([head[0] + 1]) + head[1:] + enc("params") + b"\x91" * draw(st.integers(1, 1200)) + b"\x90"
    return enc(draw(_values if kind == 1 else _requests))


@settings(max_examples=300, deadline=None)
@given(st.lists(_json_members(), max_size=12), st.integers(1, 10))
def test_hostile_json_batches_keep_every_bound(members: list[str], max_batch: int) -> None:
    _check_batch(JSON, "[" + ",".join(members) + "]", [m.encode() for m in members], max_batch)


@settings(max_examples=300, deadline=None)
@given(st.lists(_msgpack_members(), max_size=12), st.integers(1, 10))
def test_hostile_msgpack_batches_keep_every_bound(members: list[bytes], max_batch: int) -> None:
    head = bytes([0x90 | len(members)]) if len(members) < 16 else b"\xdc" + len(members).to_bytes(2, "big")
    _check_batch(MSGPACK, head + b"".join(members), members, max_batch)


def _check_batch(codec: protocol.Codec, frame: str | bytes, members: list[bytes], max_batch: int) -> None:
    """The batch is refused whole exactly when it is empty, too long or does not parse; otherwise
    every member comes to what it would alone in a frame, and a decoded request is bounded."""
    try:
        got = codec.frame(frame, max_batch)
    except RpcError as err:
        if not members or len(members) > max_batch:
            assert err.code == -32600
        else:
            assert err.code == -32700  # a member too deep for the parser itself (>= ~1000 levels)
            assert any(len(m) > 1000 for m in members)
        return
    assert isinstance(got, list) and 1 <= len(got) == len(members) <= max_batch
    for member, data in zip(got, members, strict=True):
        alone = data.decode() if codec is JSON else data
        assert _outcome(codec, member) == _alone(codec, alone)
        if isinstance(member, protocol.Request):
            assert _depth(member.params_value) <= MAX_DEPTH - 1
