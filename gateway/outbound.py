"""Outbound: the one writer of everything the gateway sends (stage 5 of the data path).

Replies, error replies, notifications (market data, private reports) and heartbeats all
leave through ``Outbound.send``: each message is encoded once per wire format and written to
every recipient with websockets' ``broadcast`` (no per-recipient await). ``broadcast`` has no
backpressure, so before every write the connection's transport buffer is checked: past
``write_buffer_bytes`` the connection is cut off with close code 1008 and reason "slow
consumer" and receives nothing more; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import msgspec
from websockets.asyncio.server import broadcast

from carbonx.gateway.protocol.codec import MSGPACK
from carbonx.gateway.sessions import Session

log = logging.getLogger("carbonx.marketdata")

SLOW_CONSUMER_CODE = 1008
SLOW_CONSUMER_REASON = "slow consumer"


class Outbound:
    """Writes encoded notifications to sessions, guarding each one's write buffer."""

    def __init__(self, write_buffer_bytes: int) -> None:
        self.limit = write_buffer_bytes
        self.slow_disconnects = 0
        self.messages = 0  # deliveries (message x subscriber)
        self.cut: set[Session] = set()
        self.closing: set[asyncio.Task[None]] = set()

    def _writable(self, session: Session) -> bool:
        """False (and the session is being cut off) when it has fallen behind."""
        conn = session.connection
        if conn is None or session in self.cut:
            return False
        transport = conn.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() <= self.limit:
            return True
        self.cut_off(session)
        return False

    def cut_off(self, session: Session) -> None:
        """Close ``session`` as a slow consumer (1008); it receives nothing more."""
        if session.connection is None:
            return
        self.cut.add(session)
        self.slow_disconnects += 1
        log.warning("cutting off slow consumer session %s (member %s)", session.session_id, session.member)
        task = asyncio.get_running_loop().create_task(session.connection.close(SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON))
        self.closing.add(task)  # keep a reference until done (the loop holds tasks only weakly)
        task.add_done_callback(self.closing.discard)

    def forget(self, session: Session) -> None:
        self.cut.discard(session)

    def send(self, sessions: Iterable[Session], message: dict[str, Any] | list[Any]) -> None:
        """Encode ``message`` at most once per format and write it to every session (a list:
        the answers of a batch, one array frame)."""
        text: list[Any] = []
        binary: list[Any] = []
        for s in sessions:
            if self._writable(s):
                (binary if s.binary else text).append(s.connection)
        if text:  # UTF-8 JSON bytes straight into text frames: no str round trip
            broadcast(text, _json_bytes(message), text=True)
        if binary:
            broadcast(binary, MSGPACK.encode(message))
        self.messages += len(text) + len(binary)

    def send_one(self, session: Session, message: dict[str, Any] | list[Any]) -> None:
        self.send((session,), message)


_json_bytes = msgspec.json.Encoder().encode


_json_bytes = msgspec.json.Encoder().encode
