"""A replica: an ``Engine`` fed by the command stream, in stream order, forever.

Both cluster roles run one (docs/cluster.md, "Roles"): the engine role (active or standby)
and every gateway (its reads and the events that drive its market data and replies come from
its own replica). A replica starts from a snapshot and its anchor (``snapshots.load_latest``)
or from an empty engine at the stream's first message, then follows the stream live through an
ordered consumer (flow-controlled; the client recreates it after a gap or a lost server).

Every command is applied with ``sequencer.apply_replicated`` (the timestamp rule
``ts = max(engine.ts, cmd.ts)``, the same path as the embedded Sequencer and ``replay``), so
every replica of the same stream reaches the same state at the same seq. After each stream
message ``on_batch(AppliedBatch)`` runs with every command's seq, origin and events.

A slow replica only falls behind on its own consumer: nothing waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from carbonx.engine.engine import Engine
from carbonx.engine.schema import Event
from carbonx.gateway.cluster.journal import Anchor, StreamCorruption, decode_origins, retrying
from carbonx.gateway.journal import JournalError
from carbonx.gateway.sequencer import apply_replicated
from carbonx.gateway.settings import ClusterSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AppliedBatch:
    """One command-stream message as applied: ``first`` is the engine seq of ``items[0]``."""

    stream_seq: int
    first: int
    items: list[tuple[str, list[Event]]]  # (origin, events) per command, in seq order

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1


class Replica:
    """See the module docstring. ``engine`` is at ``anchor`` (None: empty, from the stream's start)."""

    def __init__(
        self,
        js: JetStreamContext,
        settings: ClusterSettings,
        engine: Engine,
        on_batch: Callable[[AppliedBatch], None],
        anchor: Anchor | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.js = js
        self.settings = settings
        self.engine = engine
        self.on_batch = on_batch
        self.on_fatal = on_fatal
        self.stream_seq = 0 if anchor is None else anchor.stream_seq  # last stream message applied
        self.position = 0 if anchor is None else anchor.engine_seq  # engine seq at the end of that message
        if self.position > engine.seq:
            raise JournalError(f"anchor engine seq {self.position} is past the engine's seq {engine.seq}")
        self.caught_up = asyncio.Event()  # set once the stream's end (as of start) is applied
        self.failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._sub: object = None

    async def start(self) -> None:
        """Subscribe from the message after the anchor and start applying."""
        js, stream = self.js, self.settings.command_stream
        info = await retrying(lambda: js.stream_info(stream), what=f"stream info of {stream}")
        if info.state.last_seq <= self.stream_seq:
            self.caught_up.set()
        start = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.stream_seq + 1)
        sub = await retrying(
            lambda: js.subscribe(
                self.settings.command_subject,
                stream=stream,
                ordered_consumer=True,
                idle_heartbeat=1.0,
                flow_control=True,
                config=start,
                pending_msgs_limit=-1,
                pending_bytes_limit=-1,
            ),
            what=f"following {stream}",
        )
        self._sub = sub
        self._task = asyncio.get_running_loop().create_task(self._run(sub), name="cluster-replica")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        sub = self._sub
        if sub is not None:
            try:
                await sub.unsubscribe()  # type: ignore[attr-defined]
            except Exception:  # the connection is gone
                log.debug("unsubscribing the replica failed", exc_info=True)

    async def _run(self, sub: object) -> None:
        next_msg = sub.next_msg  # type: ignore[attr-defined]
        try:
            while True:
                try:
                    msg = await next_msg(timeout=3600)
                except nats.errors.TimeoutError:
                    continue
                self.apply_message(msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("replica stopped: %r", exc)
            self.failure = exc
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def apply_message(self, msg: Msg) -> None:
        """Apply one command-stream message (a batch) and report it."""
        meta = msg.metadata
        stream_seq = meta.sequence.stream
        stream = self.settings.command_stream
        if stream_seq <= self.stream_seq:  # redelivered after a consumer reset: applied already
            return
        if stream_seq != self.stream_seq + 1:
            raise StreamCorruption(stream, self.stream_seq + 1, "message missing (deleted from the middle of the command log)")
        first_header, items = decode_origins(stream, stream_seq, msg.headers, msg.data)
        first = self.position + 1
        if first_header is not None and first_header != first:
            raise StreamCorruption(stream, stream_seq, f"batch starts at seq {first_header}, expected {first}")
        engine = self.engine
        applied: list[tuple[str, list[Event]]] = []
        pos = self.position
        for origin, cmd in items:
            pos += 1
            if pos <= engine.seq:  # inside a snapshot taken mid-batch
                continue
            applied.append((origin, apply_replicated(engine, cmd)))
        self.position = pos
        self.stream_seq = stream_seq
        if meta.num_pending == 0:
            self.caught_up.set()
        if applied:
            self.on_batch(AppliedBatch(stream_seq, pos - len(applied) + 1, applied))

    @property
    def anchor(self) -> Anchor:
        """Where this replica is: the snapshot anchor for its engine now (between messages)."""
        return Anchor(self.stream_seq, self.position)
