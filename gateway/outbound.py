"""Outbound: the one writer of everything the gateway sends (stage 5 of the data path).

Replies, error replies, notifications (market data, private reports) and heartbeats all
leave through ``Outbound.send``: each message is encoded once per wire format and framed for
every recipient at once (no per-recipient await). Writes are coalesced: frames are queued in
each connection's websockets protocol and, once per event-loop iteration, everything queued
for a connection goes out in one ``transport.write`` (one syscall for the ~8 replies a journal
batch releases to a pipelining connection, instead of one each; the order of frames on a
connection is the protocol buffer's, so it cannot change, and websockets' own frames - pongs,
close - flush what is queued before them). There is no backpressure, so before every message
the connection's transport buffer is checked: past ``write_buffer_bytes`` the connection is
cut off with close code 1008 and reason "slow consumer" and receives nothing more; nobody
else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.protocol import OPEN

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
        self.queued: dict[ServerConnection, None] = {}  # connections with frames waiting for ``flush`` (insertion-ordered)
        self.writes = 0  # transport writes (one per connection per flush)

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
        """Encode ``message`` at most once per format and queue it for every session (a list:
        the answers of a batch, one array frame); it is written at the end of this event-loop
        iteration (``flush``)."""
        text: bytes | None = None
        binary: bytes | None = None
        queued = self.queued
        first = not queued
        for s in sessions:
            if not self._writable(s):
                continue
            conn = s.connection
            assert conn is not None
            protocol = conn.protocol
            if protocol.state is not OPEN:  # closing: websockets would refuse the frame
                continue
            if s.binary:
                if binary is None:
                    binary = MSGPACK.encode(message)
                protocol.send_binary(binary)
            else:
                if text is None:  # UTF-8 JSON bytes straight into text frames: no str round trip
                    text = _json_bytes(message)
                protocol.send_text(text)
            queued[conn] = None
            self.messages += 1
        if first and queued:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what ``send`` queued: one write per connection (what websockets' ``send_data``
        does, with the frames joined)."""
        queued, self.queued = self.queued, {}
        for conn in queued:
            chunks = conn.protocol.data_to_send()
            if not chunks:  # websockets flushed them itself (a pong or close went out after them)
                continue
            transport = conn.transport
            if transport.is_closing():
                continue
            if all(chunks):
                transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                self.writes += 1
                continue
            for data in chunks:  # an end-of-stream marker among them: as websockets writes it
                if data:
                    transport.write(data)
                elif transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()

    def send_one(self, session: Session, message: dict[str, Any] | list[Any]) -> None:
        self.send((session,), message)


_json_bytes = msgspec.json.Encoder().encode
