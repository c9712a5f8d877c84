"""Where the protocol is spoken: the WebSocket path and the subprotocol names."""

from __future__ import annotations

from typing import Final

PATH: Final = "/v1"  # the one WebSocket path; anything else is answered 404
MSGPACK_SUBPROTOCOL: Final = "carbonx.v1.msgpack"  # binary MessagePack frames; no subprotocol = JSON text frames
