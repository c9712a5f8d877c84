"""Hostile frames for the fuzz test: seeded, deterministic, each with the answers it may get.

Every frame carries a defect that must make the server refuse it (so no frame may change any state,
whatever method it names): ``Frame.codes`` is the set of JSON-RPC error codes that are a correct
answer, ``Frame.close`` the close code that is (for bytes the WebSocket layer refuses), and
``Frame.echo`` the id the error must carry (``None`` where the id cannot be read). Requests name the
real methods with plausible params, so a defect the server overlooks would show as a state change.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import msgspec

PARSE, INVALID, NO_METHOD, PARAMS = -32700, -32600, -32601, -32602
MAX_BATCH = 100  # limits.max_batch of the demo configuration
MAX_FRAME_BYTES = 65536  # limits.max_frame_bytes of the demo configuration
FLOAT_ID = 1.5

# Plausible params for the methods that change state (the broker's own accounts: valid if not broken).
BROKER_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("order.place", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 10}),
    ("order.place", {"account": "A-002", "instrument": "SHEA", "side": "sell", "type": "market", "quantity": 1}),
    ("order.cancel_all", {"account": "A-001"}),
    ("order.cancel", {"account": "A-001", "order_id": "1"}),
    ("order.amend", {"account": "A-001", "order_id": "1", "quantity": 1}),
    ("retire", {"account": "A-001", "instrument": "SHEA", "quantity": 1, "purpose": "public_welfare", "beneficiary": "x"}),
    ("block.propose", {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 100000,
                       "counterparty_account": "B-001"}),
    ("auction.bid", {"auction_id": "1", "account": "A-001", "price": "60.00", "quantity": 10}),
    ("session.cancel_on_disconnect", {"enabled": True}),
    ("subscribe", {"channels": ["book.SHEA"]}),
    ("account.get", {"account": "A-001"}),
]  # fmt: skip
OPERATOR_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("admin.account.deposit", {"account": "A-001", "cash": "100.00"}),
    ("admin.account.withdraw", {"account": "A-001", "cash": "100.00"}),
    ("admin.instrument.halt", {"instrument": "SHEA"}),
    ("admin.block", {"member": "demo-a"}),
    ("admin.order.cancel_all", {"member": "demo-a"}),
    ("admin.instrument.set_reference", {"instrument": "SHEA", "price": "61.00"}),
    ("admin.event.create", {"event_id": "fuzz", "name": "fuzz", "footprint": 1}),
]


@dataclass
class Frame:
    data: str | bytes  # str goes out as a text frame, bytes as binary
    codes: frozenset[int]
    echo: Any = None
    echo_optional: bool = False  # the id may also be unreadable (null)
    close: int | None = None  # a close code that is a correct answer instead of an error reply
    what: str = ""
    raw_text: bool = False  # bytes sent as a text frame (invalid UTF-8)
    members: list[Frame] | None = None  # a batch: answered with an array, one answer per member, in order


class Hostile:
    """Frames for one format (``binary``: MessagePack) and one listener (``admin``)."""

    def __init__(self, seed: int, binary: bool, admin: bool) -> None:
        self.rng = random.Random(seed)
        self.binary = binary
        self.calls = OPERATOR_CALLS if admin else BROKER_CALLS
        self.next_id = 1
        defects = [
            self.dup_params, self.dup_envelope, self.deep_params, self.deep_id, self.wrong_version, self.odd_id,
            self.params_array, self.unknown_member, self.unknown_param, self.wrong_type, self.truncated, self.trailing,
            self.empty, self.batch, self.garbage, self.wrong_frame_kind, self.unknown_method, self.not_object,
        ]  # fmt: skip
        defects += [self.nan, self.bom, self.escaped_dup] if not binary else [self.bad_utf8, self.bin_str, self.ext, self.int_key,
                                                                              self.lying_header, self.dup_params_wide]  # fmt: skip
        self.defects = defects
        # Defects of one request that keep it a complete value: batch members (answered one by one).
        self.member_defects = [
            self.dup_params, self.dup_envelope, self.deep_params, self.deep_id, self.wrong_version, self.odd_id, self.params_array,
            self.unknown_member, self.unknown_param, self.wrong_type, self.unknown_method, self.not_object,
        ]  # fmt: skip
        self.member_defects += [self.escaped_dup] if not binary else [self.bin_str, self.ext, self.int_key, self.dup_params_wide]

    # -- helpers --------------------------------------------------------------------------------

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _call(self) -> tuple[str, dict[str, Any]]:
        method, params = self.rng.choice(self.calls)
        return method, dict(params)

    def _enc(self, obj: Any) -> str | bytes:
        return msgspec.msgpack.encode(obj) if self.binary else json.dumps(obj, separators=(",", ":"))

    def _junk(self, depth: int = 2) -> Any:
        r = self.rng.random()
        if depth <= 0 or r < 0.5:
            return self.rng.choice([0, -1, 2**40, "x" * self.rng.randint(0, 40), True, None, "\u4e2d\u6587", "a:b"])
        if r < 0.75:
            return [self._junk(depth - 1) for _ in range(self.rng.randint(0, 4))]
        return {f"k{i}": self._junk(depth - 1) for i in range(self.rng.randint(0, 4))}

    def frame(self) -> Frame:
        if not self.binary and self.rng.random() < 0.004:  # rare: each costs a connection
            return self.bad_utf8_text()
        return self.rng.choice(self.defects)()

    # -- defects (both formats) -----------------------------------------------------------------

    def dup_params(self) -> Frame:
        """A params key twice, the last value valid: msgspec alone would execute it."""
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(list(params))
        first = self._junk()
        if self.binary:
            body = b"".join(msgspec.msgpack.encode(k) + msgspec.msgpack.encode(v) for k, v in [(key, first), *params.items()])
            head = bytes([0x80 | (len(params) + 1)])
            env = {"jsonrpc": "2.0", "id": rid, "method": method}
            data = msgspec.msgpack.encode(env)
            data = bytes([data[0] + 1]) + data[1:] + msgspec.msgpack.encode("params") + head + body
        else:
            inner = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in [(key, first), *params.items()])
            data = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method})[:-1] + f', "params": {{{inner}}}}}'
        return Frame(data, frozenset({PARAMS}), rid, what="dup_params")

    def dup_envelope(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(["method", "jsonrpc", "params"])
        first = {"method": "ping", "jsonrpc": "2.0", "params": {}}[key]
        items: list[tuple[str, Any]] = [(key, first), ("jsonrpc", "2.0"), ("id", rid), ("method", method), ("params", params)]
        if self.binary:
            enc = msgspec.msgpack.encode
            data: str | bytes = bytes([0x80 | len(items)]) + b"".join(enc(k) + enc(v) for k, v in items)
            return Frame(data, frozenset({INVALID}), None, what="dup_envelope")  # which key repeats is not named: no id
        data = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in items) + "}"
        return Frame(data, frozenset({INVALID}), rid, what="dup_envelope")

    def deep_params(self) -> Frame:
        method, _ = self._call()
        rid = self._id()
        depth = self.rng.choice([9, 20, 200, 1000, 3000, 20000])
        if self.binary:
            env = msgspec.msgpack.encode({"jsonrpc": "2.0", "id": rid, "method": method})
            data = bytes([env[0] + 1]) + env[1:] + msgspec.msgpack.encode("params") + b"\x81\xa1a" + b"\x91" * depth + b"\x90"
        else:
            data = f'{{"jsonrpc":"2.0","id":{rid},"method":{json.dumps(method)},"params":{{"a":' + "[" * depth + "]" * depth + "}}"
        return Frame(data, frozenset({PARAMS}), rid, echo_optional=True, what="deep_params")  # very deep: id unreadable

    def deep_id(self) -> Frame:
        depth = self.rng.choice([10, 1000, 5000])
        if self.binary:
            data = b"\x83" + msgspec.msgpack.encode("jsonrpc") + msgspec.msgpack.encode("2.0") + msgspec.msgpack.encode("method")
            data += msgspec.msgpack.encode("ping") + msgspec.msgpack.encode("id") + b"\x91" * depth + b"\x90"
        else:
            data = '{"jsonrpc":"2.0","method":"ping","id":' + "[" * depth + "]" * depth + "}"
        return Frame(data, frozenset({INVALID}), None, what="deep_id")

    def wrong_version(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        version = self.rng.choice(["1.0", "2", 2, None, "2.0 "])
        return Frame(
            self._enc({"jsonrpc": version, "id": rid, "method": method, "params": params}), frozenset({INVALID}), rid, what="version"
        )

    def odd_id(self) -> Frame:
        method, params = self._call()
        rid = self.rng.choice([FLOAT_ID, True, False, 2**63, -(2**63) - 1, {"a": 1}, [1], "x" * 65])
        if self.binary and isinstance(rid, int) and not isinstance(rid, bool) and rid < -(2**63):
            rid = 2**64 - 1
        return Frame(
            self._enc({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}), frozenset({INVALID}), None, what="odd_id"
        )

    def params_array(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        return Frame(self._enc({"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params.values())}), frozenset({PARAMS}), rid)

    def unknown_member(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        env = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params, self.rng.choice(["parms", "extra", "Id"]): self._junk()}
        return Frame(self._enc(env), frozenset({INVALID}), rid, what="unknown_member")

    def unknown_param(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        params[self.rng.choice(["prise", "colour", "accountt"])] = self._junk()
        return Frame(self._enc({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}), frozenset({PARAMS}), rid)

    def wrong_type(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(list(params))
        value = params[key]
        params[key] = self.rng.choice([[value], {"v": value}, 60.5] if not isinstance(value, int | bool) else [str(value), [value], 1.0])
        return Frame(self._enc({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}), frozenset({PARAMS}), rid)

    def truncated(self) -> Frame:
        method, params = self._call()
        data = self._enc({"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params})
        return Frame(data[: self.rng.randint(1, len(data) - 1)], frozenset({PARSE, INVALID}), what="truncated")

    def trailing(self) -> Frame:
        method, params = self._call()
        data = self._enc({"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params})
        extra: Any = self.rng.choice(["}", " x", "{}", "\x00"])
        return Frame(data + (extra.encode() if self.binary else extra), frozenset({PARSE}), what="trailing")

    def empty(self) -> Frame:
        data: Any = self.rng.choice(["", " ", "\n\t  ", "\r\n"])
        if self.binary:  # a lone space is the MessagePack integer 32: not an object
            return Frame(data.encode(), frozenset({PARSE, INVALID}), what="empty")
        return Frame(data, frozenset({PARSE}), what="empty")

    def batch(self) -> Frame:
        """An array of 1-6 hostile requests (each refused on its own, answered in order), or an
        array refused whole: empty, longer than ``max_batch`` (of valid requests: executing
        any would show), or holding a batch that does not parse."""
        kind = self.rng.random()
        if kind < 0.1:
            return Frame(self._enc([]), frozenset({INVALID}), what="empty_batch")
        if kind < 0.15:
            method, params = self._call()
            reqs = [{"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params} for _ in range(MAX_BATCH + 1)]
            return Frame(self._enc(reqs), frozenset({INVALID}), what="long_batch")
        members = [self.rng.choice(self.member_defects)() for _ in range(self.rng.randint(1, 6))]
        if self.binary:
            data: str | bytes = bytes([0x90 | len(members)]) + b"".join(m.data for m in members)  # type: ignore[misc]
        else:
            data = "[" + ",".join(m.data for m in members) + "]"  # type: ignore[misc]
        deep = any(m.what in ("deep_params", "deep_id") for m in members)  # past the parser's own depth: -32700 for the frame
        too_big = 1009 if len(data) > MAX_FRAME_BYTES else None  # deep members add up
        return Frame(data, frozenset({PARSE}) if deep else frozenset(), members=members, close=too_big, what="batch")

    def not_object(self) -> Frame:
        return Frame(self._enc(self.rng.choice([1, "order.place", None, True, 2.5])), frozenset({INVALID}), what="not_object")

    def garbage(self) -> Frame:
        n = self.rng.randint(1, 300)
        if self.binary:
            data = self.rng.randbytes(n)
            return Frame(data, frozenset({PARSE, INVALID}), what="garbage")
        text = "".join(self.rng.choice('{}[]":,0123456789.eE+-tfnaul \\/\u00e9\u4e2d') for _ in range(n))
        return Frame(text, frozenset({PARSE, INVALID}), what="garbage")

    def wrong_frame_kind(self) -> Frame:
        method, params = self._call()
        req = {"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params}
        if self.binary:
            return Frame(json.dumps(req), frozenset({INVALID}), what="text_on_msgpack")
        return Frame(json.dumps(req).encode(), frozenset({INVALID}), what="binary_on_json")

    def unknown_method(self) -> Frame:
        rid = self._id()
        method = self.rng.choice(["order.teleport", "admin.drop_everything", "", "x" * 64, "order.place "])
        return Frame(self._enc({"jsonrpc": "2.0", "id": rid, "method": method, "params": {}}), frozenset({NO_METHOD}), rid)

    # -- JSON only ------------------------------------------------------------------------------

    def nan(self) -> Frame:
        method, _ = self._call()
        literal = self.rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "undefined"])
        rid = self._id()
        data = f'{{"jsonrpc":"2.0","id":{rid},"method":{json.dumps(method)},"params":{{"quantity":{literal}}}}}'
        return Frame(data, frozenset({PARSE, PARAMS}), rid, echo_optional=True, what="nan")  # 1e999: -32602 with the id

    def bom(self) -> Frame:
        method, params = self._call()
        return Frame("\ufeff" + json.dumps({"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params}), frozenset({PARSE}))

    def bad_utf8_text(self) -> Frame:
        """A text frame that is not UTF-8: the WebSocket layer fails the connection (RFC 6455: 1007)."""
        method, params = self._call()
        data = json.dumps({"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params}).encode()
        cut = self.rng.randint(1, len(data) - 1)
        return Frame(data[:cut] + self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]) + data[cut:], frozenset(), close=1007,
                     raw_text=True, what="bad_utf8_text")  # fmt: skip

    def escaped_dup(self) -> Frame:
        """The same key spelled with an escape: still a duplicate."""
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(list(params))
        spelled = "".join(f"\\u{ord(c):04x}" if i == 0 else c for i, c in enumerate(key))
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        cut = body.index('"params": {') + len('"params": {')
        data = body[:cut] + f'"{spelled}": {json.dumps(self._junk())}, ' + body[cut:]
        return Frame(data, frozenset({PARAMS}), rid, what="escaped_dup")

    # -- MessagePack only -----------------------------------------------------------------------

    def _with_params_bytes(self, method: str, rid: Any, params: bytes) -> bytes:
        env = msgspec.msgpack.encode({"jsonrpc": "2.0", "id": rid, "method": method})
        return bytes([env[0] + 1]) + env[1:] + msgspec.msgpack.encode("params") + params

    def _params_with(self, params: dict[str, Any], key: str, value: bytes) -> bytes:
        enc = msgspec.msgpack.encode
        items = [enc(k) + (value if k == key else enc(v)) for k, v in params.items()]
        return bytes([0x80 | len(items)]) + b"".join(items)

    def bad_utf8(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice([k for k, v in params.items() if isinstance(v, str)] or list(params))
        bad = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"A\xf0\x28\x8c\x28"])
        return Frame(self._with_params_bytes(method, rid, self._params_with(params, key, bytes([0xA0 | len(bad)]) + bad)),
                     frozenset({PARSE}), what="bad_utf8")  # fmt: skip

    def bin_str(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(list(params))
        value = str(params[key]).encode()
        return Frame(self._with_params_bytes(method, rid, self._params_with(params, key, msgspec.msgpack.encode(value))),
                     frozenset({PARAMS}), rid, what="bin_str")  # fmt: skip

    def ext(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(list(params))
        value = self.rng.choice([b"\xd6\xff\x00\x00\x00\x01", b"\xd4\x01\x00", b"\xc7\x03\x05abc", b"\xd7\xff" + bytes(8)])
        return Frame(self._with_params_bytes(method, rid, self._params_with(params, key, value)), frozenset({PARAMS}), rid, what="ext")

    def int_key(self) -> Frame:
        method, params = self._call()
        rid = self._id()
        enc = msgspec.msgpack.encode
        key = self.rng.choice([enc(1), enc(b"account"), enc(None), enc(1.5), b"\x91\x01"])
        body = self._params_with(params, "", b"")
        body = bytes([body[0] + 1]) + body[1:] + key + enc("x")
        return Frame(self._with_params_bytes(method, rid, body), frozenset({PARAMS}), rid, what="int_key")

    def lying_header(self) -> Frame:
        method, params = self._call()
        data = bytearray(msgspec.msgpack.encode({"jsonrpc": "2.0", "id": self._id(), "method": method, "params": params}))
        data[0] = self.rng.choice([0x8F, 0xDE, 0xDF])
        return Frame(bytes(data), frozenset({PARSE, INVALID}), what="lying_header")

    def dup_params_wide(self) -> Frame:
        """A duplicate hidden in a non-minimal encoding (str8 keys, 32-bit ints): the length shortcut
        cannot see it, the value count must."""
        method, params = self._call()
        rid = self._id()
        key = self.rng.choice(list(params))

        def wide(v: Any) -> bytes:
            if isinstance(v, str):
                raw = v.encode()
                return b"\xd9" + bytes([len(raw)]) + raw
            if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32:
                return b"\xce" + v.to_bytes(4, "big")
            return msgspec.msgpack.encode(v)

        items = [wide(key) + wide(params[key]), *(wide(k) + wide(v) for k, v in params.items())]
        body = bytes([0x80 | len(items)]) + b"".join(items)
        return Frame(self._with_params_bytes(method, rid, body), frozenset({PARAMS}), rid, what="dup_params_wide")
