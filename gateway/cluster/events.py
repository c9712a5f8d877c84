"""The events stream: what the active engine applied, per command batch, for the gateways.

Stream ``[cluster] events_stream`` (subject ``events_subject``, file storage, R = ``replicas``,
messages expire after ``events_max_age_s``: the command stream is the book of record, this is a
feed). One message per command-stream message the active engine applied:

* payload: a MessagePack array of ``[seq, origin, events]`` per command (events as
  ``engine.schema`` structs);
* ``Carbonx-Seq`` / ``Carbonx-Last-Seq``: the engine seqs of its first and last command;
* ``Nats-Msg-Id``: ``ev-<first seq>``. The engine is deterministic, so whoever publishes the
  events of a batch (the active engine, a standby that just took over, a deposed leader waking
  up) publishes the same bytes under the same id; JetStream stores the first and drops the rest
  (within ``duplicate_window_s``), and followers ignore anything at or below their watermark.

``Watermark`` follows the stream (headers only) and keeps the highest ``Carbonx-Last-Seq`` seen:
the engine seq the active engine has applied. Gateways release a reply only once it is at or
past the command's seq; a standby uses it to drop the events it keeps for a takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from carbonx.engine.schema import AnyEvent
from carbonx.gateway.cluster.journal import MSG_ID, SEQ_HEADER, _transient, ensure_stream, retrying
from carbonx.gateway.cluster.replica import AppliedBatch
from carbonx.gateway.journal import JournalError
from carbonx.gateway.settings import ClusterSettings

log = logging.getLogger(__name__)

LAST_SEQ_HEADER = "Carbonx-Last-Seq"
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[list[tuple[int, str, list[AnyEvent]]]] = msgspec.msgpack.Decoder(list[tuple[int, str, list[AnyEvent]]])


async def ensure_events_stream(js: JetStreamContext, settings: ClusterSettings) -> None:
    config = StreamConfig(
        name=settings.events_stream,
        subjects=[settings.events_subject],
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_age=settings.events_max_age_s,
        duplicate_window=settings.duplicate_window_s,
    )
    await ensure_stream(js, config, "events stream")


def encode_events(batch: AppliedBatch) -> bytes:
    return _encoder.encode([(batch.first + i, origin, events) for i, (origin, events) in enumerate(batch.items)])


def decode_events(data: bytes) -> list[tuple[int, str, list[AnyEvent]]]:
    return _decoder.decode(data)


async def publish_events(js: JetStreamContext, settings: ClusterSettings, batch: AppliedBatch) -> bool:
    """Publish one applied batch's events; True if the stream already had them (a duplicate).
    Transient failures (no stream leader during an election, timeouts, reconnecting) are retried
    with the same id for ``publish_retry_s``; then ``JournalError``."""
    headers = {MSG_ID: f"ev-{batch.first}", SEQ_HEADER: str(batch.first), LAST_SEQ_HEADER: str(batch.last)}
    payload = encode_events(batch)
    deadline = time.monotonic() + settings.publish_retry_s
    pause = 0.02
    while True:
        try:
            ack = await js.publish(
                settings.events_subject, payload, timeout=settings.publish_timeout_s, stream=settings.events_stream, headers=headers
            )
            return bool(ack.duplicate)
        except Exception as exc:
            if not _transient(exc):
                raise JournalError(f"JetStream refused the events of {batch.first}..{batch.last}: {exc!r}") from exc
            if time.monotonic() + pause > deadline:
                raise JournalError(
                    f"events of {batch.first}..{batch.last} not acknowledged within {settings.publish_retry_s}s: {exc!r}"
                ) from exc
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


class Watermark:
    """The highest engine seq the active engine has published events for (see the module docstring)."""

    def __init__(self, js: JetStreamContext, settings: ClusterSettings, on_advance: Callable[[int], None] | None = None) -> None:
        self.js = js
        self.settings = settings
        self.seq = 0
        self.on_advance = on_advance
        self.seen = asyncio.Event()  # set once any events message was seen (an engine was active once)
        self.empty = True  # the stream had no message when we started (fresh, or every message expired)
        self._sub: object = None

    async def start(self) -> None:
        """Read the stream's last message first (so ``seq`` is known before anyone acts on it),
        then follow new ones. ``empty`` tells whether the stream had no message at all."""
        js, s = self.js, self.settings
        info = await retrying(lambda: js.stream_info(s.events_stream), what=f"stream info of {s.events_stream}")
        self.empty = not info.state.messages
        if not self.empty:
            last = info.state.last_seq
            msg = await retrying(lambda: js.get_msg(s.events_stream, last), what=f"reading the last message of {s.events_stream}")
            await self._on_msg(msg)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST, headers_only=True)
        self._sub = await retrying(
            lambda: js.subscribe(
                s.events_subject,
                stream=s.events_stream,
                ordered_consumer=True,
                idle_heartbeat=1.0,
                flow_control=True,
                config=config,
                cb=self._on_msg,
                pending_msgs_limit=-1,
                pending_bytes_limit=-1,
            ),
            what=f"following {s.events_stream}",
        )

    async def _on_msg(self, msg: object) -> None:
        headers = getattr(msg, "headers", None) or {}
        raw = headers.get(LAST_SEQ_HEADER)
        if raw is None or not raw.isdigit():
            log.error("events message without %s: ignored", LAST_SEQ_HEADER)
            return
        last = int(raw)
        self.seen.set()
        if last > self.seq:
            self.seq = last
            if self.on_advance is not None:
                try:
                    self.on_advance(last)
                except Exception:
                    log.exception("watermark listener failed")

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
