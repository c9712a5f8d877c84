"""Inbound: every complete WebSocket message handed to the gateway as soon as it is parsed.

websockets' ``ServerConnection`` queues each data frame (``Assembler``) for a ``recv()`` in
the connection's handler task: per message a future is resolved, the task is woken and
stepped, the message is reassembled and flow control checked. websockets' whole receive path
was ~15% of the main thread's busy time under load (docs/performance.md); the queue and task
switch, which this removes, ~1.4 µs of the ~6 µs a message costs there (frame parsing stays;
``benchmarks/inbound_delivery.py``). ``InboundConnection`` is
the same connection (``serve(create_connection=...)``, websockets' documented extension
point) with one change: once the gateway has set ``on_message``, complete messages are
passed to it synchronously from ``data_received``, in arrival order, without the queue or a
task switch. Everything else (handshake, control frames, pings, closing, size limits,
compression) stays websockets'.

Order and backpressure: ``on_message`` may return an awaitable (the few async methods). Then
the messages after it wait in ``backlog`` until it is done (``InboundConnection.run`` drains
them in order); past ``BACKLOG_HIGH`` waiting messages the socket stops being read, like
websockets' own ``max_queue``. A text message that is not UTF-8 is handed to websockets'
queue instead, so ``recv()`` fails the connection with 1007 exactly as before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

log = logging.getLogger("carbonx.gateway")

BACKLOG_HIGH = 16  # messages waiting behind an async method before the socket stops being read

OnMessage = Callable[[str | bytes], Awaitable[None] | None]


class InboundConnection(ServerConnection):
    """A websockets server connection that delivers messages to ``on_message`` directly."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on_message: OnMessage | None = None  # set by the gateway once it reads this connection
        self.backlog: collections.deque[str | bytes] | None = None  # not None while an async method runs
        self.draining: asyncio.Task[None] | None = None
        self.stopped = False  # the gateway is closing this connection: later messages are dropped
        self._paused = False
        self._fragments: list[bytes] = []
        self._fragmented_text = False

    def start_direct(self, on_message: OnMessage) -> bool:
        """Deliver messages to ``on_message`` from now on, if websockets' queue is empty (else
        False: ``recv()`` them first, so nothing is overtaken)."""
        if len(self.recv_messages.frames):
            return False
        self.on_message = on_message
        return True

    def process_event(self, event: Event) -> None:
        on_message = self.on_message
        if on_message is None or self.request is None or type(event) is not Frame:
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not event.fin:  # the first fragment of a message: collect until the last one
                self._fragments = [bytes(event.data)]
                self._fragmented_text = opcode is Opcode.TEXT
                return
            self._deliver(on_message, bytes(event.data), opcode is Opcode.TEXT)
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(event.data))
            if event.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._deliver(on_message, data, self._fragmented_text)
        else:
            super().process_event(event)  # control frames (pong bookkeeping)

    def _deliver(self, on_message: OnMessage, data: bytes, text: bool) -> None:
        if self.stopped:
            return
        message: str | bytes
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:  # websockets' recv() fails the connection with 1007
                super().process_event(Frame(Opcode.TEXT, data))
                return
        else:
            message = data
        backlog = self.backlog
        if backlog is not None:  # an async method is running: keep arrival order
            backlog.append(message)
            if len(backlog) > BACKLOG_HIGH and not self._paused:
                self._paused = True
                self.transport.pause_reading()
            return
        try:
            pending = on_message(message)
        except Exception:  # on_message answers every error itself; this is a bug
            log.exception("handling a message failed")
            return
        if pending is not None:
            self.backlog = collections.deque()
            self.draining = asyncio.get_running_loop().create_task(self._drain(on_message, pending))

    async def _drain(self, on_message: OnMessage, pending: Awaitable[None]) -> None:
        """Wait for the async method, then handle what arrived meanwhile, in order."""
        backlog = self.backlog
        assert backlog is not None
        while True:
            try:
                await pending
            except Exception:
                log.exception("an async method failed")
            next_pending = None
            while backlog and next_pending is None and not self.stopped:
                try:
                    next_pending = on_message(backlog.popleft())
                except Exception:
                    log.exception("handling a message failed")
            if next_pending is None:
                break
            pending = next_pending
        self.backlog = None
        self.draining = None
        if self._paused:
            self._paused = False
            self.transport.resume_reading()

    async def settled(self) -> None:
        """Wait until the async method running (if any) and the messages behind it are handled."""
        if self.draining is not None:
            await asyncio.shield(self.draining)
