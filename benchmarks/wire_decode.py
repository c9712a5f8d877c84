"""Request decoding cost: ns per request through ``Codec.request`` + ``Codec.params``.

Measures what every frame pays before its method runs: the bounded first pass (nesting limit,
UTF-8, key types), the typed envelope, the duplicate-key check, the typed params. Cases: an
``order.place`` in JSON (compact, and with spaces and colons inside strings, which the
duplicate check handles without a slow path), in MessagePack (shortest encoding, and a wide
encoding with str8 strings and 32-bit integers, which takes the value-counting path), and a
``ping``.

Last line of output: one JSON object with ``ns_per_request`` per case, ``python``, ``machine``.
"""

from __future__ import annotations

import json
import platform
import timeit
from typing import Any

import msgspec

from carbonx.gateway import protocol

PLACE = {"account": "A-001", "instrument": "SHEA", "side": "buy", "price": "60.00", "quantity": 10, "time_in_force": "day",
         "client_order_id": "c-123456"}  # fmt: skip
REQUEST = {"jsonrpc": "2.0", "id": 12345, "method": "order.place", "params": PLACE}


def _wide(value: Any) -> bytes:
    if isinstance(value, dict):
        return bytes([0x80 | len(value)]) + b"".join(_wide(k) + _wide(v) for k, v in value.items())
    if isinstance(value, str):
        raw = value.encode()
        return b"\xd9" + bytes([len(raw)]) + raw
    return b"\xce" + int(value).to_bytes(4, "big")


def main() -> None:
    cases = {
        "json_place": (protocol.JSON, json.dumps(REQUEST, separators=(",", ":")), protocol.PlaceParams),
        "json_place_spaced_colons": (
            protocol.JSON,
            json.dumps(REQUEST | {"params": PLACE | {"client_order_id": "a:b:c"}}),
            protocol.PlaceParams,
        ),
        "msgpack_place": (protocol.MSGPACK, msgspec.msgpack.encode(REQUEST), protocol.PlaceParams),
        "msgpack_place_wide": (protocol.MSGPACK, _wide(REQUEST), protocol.PlaceParams),
        "json_ping": (protocol.JSON, '{"jsonrpc":"2.0","id":1,"method":"ping"}', protocol.NoParams),
    }
    out: dict[str, float] = {}
    for name, (codec, frame, kind) in cases.items():
        n = 50_000
        best = min(timeit.repeat(lambda c=codec, f=frame, k=kind: c.params(c.request(f), k), number=n, repeat=5))
        out[name] = round(best / n * 1e9)
        print(f"{name:28s} {out[name]:6d} ns")
    print(json.dumps({"ns_per_request": out, "python": platform.python_version(), "machine": platform.machine()}))


if __name__ == "__main__":
    main()
