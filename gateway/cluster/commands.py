"""The cluster's command batches: many writers publish ``[origin, command]`` pairs into one stream.

In cluster mode every gateway (and the active engine, for clock-driven commands and
``GatewayLost``) publishes straight into the command stream (docs/cluster.md, "Command log,
cluster format"). One stream message is one batch: a MessagePack array of ``[origin, command]``
pairs, the command encoded as in the local journal (a map with the tag field ``c``). There is no
``Carbonx-Seq`` header and no ``Nats-Expected-Last-Sequence`` fence (there are many writers): a
command's engine seq is its position in the stream, counted over every message in stream order,
which only the stream decides. ``origin`` routes the result back and is never seen by the
engine's rules: ``<gateway id>.<boot nonce>/<request no>`` for a gateway's command,
``engine.<engine id>/<what>`` for the active engine's.

``Nats-Msg-Id`` makes a retry idempotent: ``<writer life>-<batch no>`` for a gateway's batches
(its life is ``<gateway id>.<boot nonce>``), a deterministic name for the engine's (e.g.
``clock-day_open-20261125``) so that two leaders publishing the same clock command store it
once (and the engine's rules refuse a second copy anyway).

``CommandPublisher`` is a gateway's writer: ``add`` encodes into the open batch (never blocks,
refuses what cannot be encoded with ``UnencodableCommand``), a task publishes one message per
batch and waits for JetStream's acknowledgement (stored on a quorum), retrying with the same id
for ``publish_retry_s``; then it fails (``on_fatal``) like a journal whose fsync failed.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext

from carbonx.engine.schema import Command
from carbonx.gateway.cluster.journal import MSG_ID, _transient
from carbonx.gateway.journal import JournalError, UnencodableCommand
from carbonx.gateway.settings import ClusterSettings

log = logging.getLogger(__name__)

_ARRAY32 = struct.Struct(">BI")  # MessagePack array32 header: 0xdd, u32 big-endian element count
_encoder = msgspec.msgpack.Encoder()


def encode_batch(items: list[tuple[str, Command]]) -> bytes:
    """One stream message's payload: the ``[origin, command]`` pairs."""
    return _encoder.encode(items)


async def publish_once(js: JetStreamContext, settings: ClusterSettings, payload: bytes, msg_id: str) -> tuple[int, bool]:
    """Publish one batch with ``msg_id``, retrying transient failures (no leader, timeouts) with
    the same id for ``publish_retry_s``. Returns ``(stream seq, duplicate)``; raises
    ``JournalError`` when it cannot be stored."""
    deadline = time.monotonic() + settings.publish_retry_s
    pause = 0.02
    while True:
        try:
            ack = await js.publish(
                settings.command_subject,
                payload,
                timeout=settings.publish_timeout_s,
                stream=settings.command_stream,
                headers={MSG_ID: msg_id},
            )
            return ack.seq, bool(ack.duplicate)
        except Exception as exc:
            if not _transient(exc):
                raise JournalError(f"JetStream refused command batch {msg_id}: {exc!r}") from exc
            problem = exc
        if time.monotonic() + pause > deadline:
            raise JournalError(f"command batch {msg_id} not acknowledged within {settings.publish_retry_s}s: {problem!r}")
        log.warning("publish of command batch %s not acknowledged (%r), retrying", msg_id, problem)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


class CommandPublisher:
    """A gateway's group-commit writer into the command stream (see the module docstring)."""

    def __init__(self, js: JetStreamContext, settings: ClusterSettings, life: str, on_fatal: Callable[[BaseException], None]) -> None:
        self.js = js
        self.settings = settings
        self.life = life
        self.on_fatal = on_fatal
        self.failure: BaseException | None = None
        self.batches = self.records = self.last_batch_size = self.bytes_written = self.retries = 0
        self.publish_seconds_total = self.last_publish_seconds = 0.0
        self._buf = bytearray(_ARRAY32.size)
        self._count = 0
        self._full: list[tuple[bytearray, int]] = []
        self._batch_no = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, origin: str, cmd: Command) -> None:
        """Encode ``(origin, cmd)`` into the open batch. Raises ``UnencodableCommand`` (nothing
        added) for a value MessagePack cannot hold or a command above ``batch_max_bytes``, and
        ``JournalError`` once the publisher failed or is closing."""
        if self.failure is not None or self._closing:
            raise JournalError(f"command publisher stopped: {self.failure!r}")
        buf = self._buf
        start = len(buf)
        try:
            _encoder.encode_into((origin, cmd), buf, start)
        except (OverflowError, TypeError, ValueError) as exc:
            del buf[start:]
            raise UnencodableCommand(f"{type(cmd).__name__} cannot be published: {exc}") from None
        size = len(buf) - start
        limit = self.settings.batch_max_bytes
        if size + _ARRAY32.size > limit:
            del buf[start:]
            raise UnencodableCommand(f"{type(cmd).__name__} is {size} bytes, above cluster.batch_max_bytes")
        if self._count and len(buf) > limit:  # does not fit: close this batch, start the next with it
            item = bytes(buf[start:])
            del buf[start:]
            self._close_batch()
            self._buf.extend(item)
        self._count += 1
        if self._count >= self.settings.batch_max_commands:
            self._close_batch()
        self._wake.set()

    def _close_batch(self) -> None:
        self._full.append((self._buf, self._count))
        self._buf = bytearray(_ARRAY32.size)
        self._count = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster-command-publisher")

    async def close(self) -> None:
        """Publish what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        linger = self.settings.linger_ms / 1000
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if linger and self._count and not self._full and not self._closing:
                    await asyncio.sleep(linger)
                if self._count:
                    self._close_batch()
                batches, self._full = self._full, []
                for buf, count in batches:
                    await self._publish(buf, count)
                if self._closing and not self._count and not self._full:
                    return
                if self._count or self._full:
                    self._wake.set()
        except Exception as exc:
            log.critical("command publisher failed, stopping: %r", exc)
            self.failure = exc
            self.on_fatal(exc)

    async def _publish(self, buf: bytearray, count: int) -> None:
        _ARRAY32.pack_into(buf, 0, 0xDD, count)
        self._batch_no += 1
        t0 = time.perf_counter()
        _, duplicate = await publish_once(self.js, self.settings, bytes(buf), f"{self.life}-{self._batch_no}")
        if duplicate:
            self.retries += 1
        dt = time.perf_counter() - t0
        self.last_publish_seconds = dt
        self.publish_seconds_total += dt
        self.batches += 1
        self.records += count
        self.last_batch_size = count
        self.bytes_written += len(buf)
