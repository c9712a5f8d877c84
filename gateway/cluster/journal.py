"""The command log on NATS JetStream: a ``Journal`` whose records live in a replicated stream.

``JetStreamJournal`` is what the ``Sequencer`` journals to in cluster mode instead of
``LocalJournal`` (docs/cluster.md, "Command log"). Group commit as in the local journal:
``append`` only encodes the command into the pending batch; a writer task publishes *one
stream message per batch* (many commands each, split at ``batch_max_commands`` /
``batch_max_bytes``) and advances ``durable_seq`` and calls the listeners when JetStream
acknowledges it, i.e. when the message is stored on a quorum of the stream's replicas.

A stream message (a *batch*):

* payload: a MessagePack array of commands (``engine.schema`` structs, as in the local journal's
  records, without the seq);
* ``Carbonx-Seq``: the engine sequence number of the batch's first command; the others follow
  (first + index). The stream order is the command order, so this header is a check, never a
  choice: the reader refuses a batch whose header does not continue the previous one;
* ``Nats-Msg-Id``: ``<writer id>-<batch number>``: a publish retried after a lost ack is
  recognised by JetStream (same stream sequence, ``duplicate=True``) instead of stored twice;
* ``Nats-Expected-Last-Sequence``: the stream sequence of this writer's previous batch, so a
  second writer (a deposed leader, an operator mistake) can never interleave its commands with
  ours: its publish is refused, and so would ours be after it, which fails this journal.

A publish that is not acknowledged within ``publish_timeout_s`` is retried (same id and headers)
for ``publish_retry_s``, which rides out a NATS leader election (4-7 s after a SIGKILL on the
test machine). After that, or on any refusal, the journal fails like the local one after a
failed fsync: waiters get ``JournalError``, appends raise, the gateway stops.

``read_stream`` replays the stream from an engine sequence number, decoding batches back into
``(seq, command)``, for recovery and ``journal verify``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from carbonx.engine.schema import AnyCommand, Command
from carbonx.gateway.journal import JournalError, SequencedJournal, UnencodableCommand
from carbonx.gateway.settings import ClusterSettings

log = logging.getLogger(__name__)

SEQ_HEADER = "Carbonx-Seq"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code: another message was stored since the expected one

_ARRAY32 = struct.Struct(">BI")  # MessagePack array32 header: 0xdd, u32 big-endian element count
_encoder = msgspec.msgpack.Encoder()
_encode_into = _encoder.encode_into
# A batch holds bare commands (this single-writer journal) or ``[origin, command]`` pairs (the
# cluster roles' many-writer format, gateway/cluster/commands.py); the reader accepts both.
_batch_decoder: msgspec.msgpack.Decoder[list[AnyCommand | tuple[str, AnyCommand]]] = msgspec.msgpack.Decoder(
    list[AnyCommand | tuple[str, AnyCommand]]
)

T = TypeVar("T")

# Errors that mean "not now" (no leader yet, server gone, reconnecting): retried, not fatal.
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
)


# JetStream's "no suitable peers for placement" (e.g. "peer offline"): a cluster still forming,
# or a node restarting, cannot place an R3 stream yet; it can once the peers are back.
_NO_PEERS_FOR_PLACEMENT = 10005


def _transient(exc: Exception) -> bool:
    """True for errors worth retrying: the transient ones, JetStream's 5xx (e.g. 503 "no
    leader") and "no suitable peers for placement" (a peer offline: it comes back)."""
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, nats.js.errors.APIError) and ((exc.code or 0) >= 500 or exc.err_code == _NO_PEERS_FOR_PLACEMENT)


class StreamCorruption(JournalError):
    """A stream message that should be a valid batch is not. Never skipped."""

    def __init__(self, stream: str, stream_seq: int, why: str) -> None:
        super().__init__(f"command stream {stream} corrupt at stream seq {stream_seq}: {why}")
        self.stream = stream
        self.stream_seq = stream_seq
        self.why = why


# --------------------------------------------------------------------------- connection, stream


async def connect(urls: list[str] | tuple[str, ...], name: str = "carbonx") -> NatsClient:
    """A NATS connection that reconnects forever (to any of ``urls``) after losing its server."""
    return await nats.connect(
        servers=list(urls),
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
    )


async def retrying(fn: Callable[[], Awaitable[T]], seconds: float = 30.0, what: str = "JetStream request") -> T:
    """``await fn()``, retried on timeouts and "no responders / no leader yet" errors for ``seconds``:
    JetStream API calls right after a (re)start or during an election time out until a leader
    is elected. Other API errors are raised at once."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not _transient(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise JournalError(f"{what} failed for {seconds}s: {exc!r}") from exc
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def ensure_command_stream(js: JetStreamContext, settings: ClusterSettings) -> None:
    """Create the command stream (file storage, ``replicas`` copies, limits retention: it is the
    book of record, nothing expires it) or accept the existing one if its configuration matches."""
    config = StreamConfig(
        name=settings.command_stream,
        subjects=[settings.command_subject],
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
    )
    await ensure_stream(js, config, "command stream")


async def ensure_stream(js: JetStreamContext, config: StreamConfig, kind: str) -> None:
    """Create the stream ``config`` names, or accept the existing one if its configuration is the
    same; any other configuration is refused (``JournalError``), never changed. Retried while
    JetStream has no leader yet."""
    try:
        await retrying(lambda: js.add_stream(config), what=f"creating stream {config.name}")
    except nats.js.errors.BadRequestError as exc:
        # e.g. "stream name already in use with a different configuration", "subjects overlap with an existing stream"
        raise JournalError(f"cannot create {kind} {config.name} as configured: {exc.description}") from exc


# --------------------------------------------------------------------------- the journal


class _Batch:
    """Commands waiting to be published as one stream message: an array32 header, then the encoded commands."""

    __slots__ = ("buf", "count", "first")

    def __init__(self, first: int) -> None:
        self.first = first
        self.count = 0
        self.buf = bytearray(_ARRAY32.size)

    def payload(self) -> bytearray:
        _ARRAY32.pack_into(self.buf, 0, 0xDD, self.count)
        return self.buf


class JetStreamJournal(SequencedJournal):
    """The Sequencer's command log on a JetStream stream (see the module docstring).

    ``nc``: an open NATS connection to use (the caller closes it); otherwise one is opened to
    ``settings.nats_urls`` at ``start`` and closed at ``close``. ``next_seq`` must follow the
    last command in the stream (checked at ``start``; an empty stream accepts any start).
    ``writer_id`` (default: a random one) names this writer in message ids; never reuse one
    for a different history."""

    def __init__(self, settings: ClusterSettings, *, next_seq: int = 1, nc: NatsClient | None = None, writer_id: str | None = None) -> None:
        super().__init__(next_seq)
        self.settings = settings
        self.stream = settings.command_stream
        self.subject = settings.command_subject
        self.writer_id = writer_id or uuid.uuid4().hex
        self.directory = None
        self.batches = self.records = self.last_batch_size = self.bytes_written = 0
        self.fsync_seconds_total = self.last_fsync_seconds = 0.0  # here: time from publish to quorum ack
        self.retries = 0  # publish attempts repeated after a timeout or an unavailable leader
        self.duplicates = 0  # acks that said "already stored" (a retried publish had been stored)
        self.stream_last_seq = 0  # stream sequence of the last batch stored (ours or found at start)
        self._nc = nc
        self._own_nc = nc is None
        self._js: JetStreamContext | None = None
        self._open: _Batch | None = None
        self._full: list[_Batch] = []
        self._batch_no = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ hot path

    def append(self, seq: int, cmd: Command) -> None:
        if seq != self._last_appended + 1 or self._refusing:
            self._refuse(seq)
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(seq)
            if self._wake is not None:
                self._wake.set()
        buf = batch.buf
        start = len(buf)
        try:
            _encode_into(cmd, buf, start)
        except (OverflowError, TypeError, ValueError) as exc:
            del buf[start:]
            raise UnencodableCommand(f"{type(cmd).__name__} seq {seq} cannot be journaled: {exc}") from None
        size = len(buf) - start
        if size + _ARRAY32.size > self.settings.batch_max_bytes:
            del buf[start:]
            raise UnencodableCommand(f"{type(cmd).__name__} seq {seq} is {size} bytes, above cluster.batch_max_bytes")
        if batch.count and len(buf) > self.settings.batch_max_bytes:  # does not fit: it starts the next batch
            del buf[start:]
            self._full.append(batch)
            batch = self._open = _Batch(seq)
            _encode_into(cmd, batch.buf, _ARRAY32.size)
        batch.count += 1
        self._last_appended = seq
        if batch.count >= self.settings.batch_max_commands:
            self._full.append(batch)
            self._open = None

    # ------------------------------------------------------------------ start / close

    async def start(self) -> None:
        """Connect (unless given a connection), create or check the stream, check that
        ``next_seq`` continues it, start the writer."""
        if self._task is not None:
            raise JournalError("journal already started")
        if self._nc is None:
            self._nc = await connect(self.settings.nats_urls, name=f"carbonx-journal-{self.writer_id}")
        self._js = self._nc.jetstream(timeout=self.settings.publish_timeout_s)
        await ensure_command_stream(self._js, self.settings)
        await self._check_continuity()
        self._wake = asyncio.Event()
        if self._open is not None or self._full:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="jetstream-journal-writer")

    async def _check_continuity(self) -> None:
        assert self._js is not None
        js = self._js
        info = await retrying(lambda: js.stream_info(self.stream), what=f"stream info of {self.stream}")
        last = info.state.last_seq
        self.stream_last_seq = last
        if not info.state.messages:
            return
        msg = await retrying(lambda: js.get_msg(self.stream, last), what=f"reading the last message of {self.stream}")
        first, commands = decode_batch(self.stream, last, msg.headers, msg.data)
        if first is None:
            raise JournalError(f"the last message of {self.stream} (stream seq {last}) has no {SEQ_HEADER} header")
        ends = first + len(commands) - 1
        if ends != self.durable_seq:
            raise JournalError(
                f"command stream {self.stream} ends at seq {ends} but next_seq is {self.durable_seq + 1}: recover the engine first"
            )

    async def close(self) -> None:
        """Publish everything pending (waiting for its acks), stop the writer, close the connection we opened."""
        if self._closed:
            return
        self._closing = self._refusing = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            await self._task
        elif self.failure is None and self._last_appended > self.durable_seq:
            self.failure = JournalError(f"closed before start: seqs {self.durable_seq + 1}..{self._last_appended} were never published")
        if self._own_nc and self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # closing a connection that is already gone
                log.debug("closing the NATS connection failed", exc_info=True)
        self._closed = True
        if self.failure is not None:
            raise JournalError(f"journal failed: {self.failure!r}")

    # ------------------------------------------------------------------ writer

    async def _run(self) -> None:
        assert self._wake is not None
        linger = self.settings.linger_ms / 1000
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if linger and self._open is not None and not self._full and not self._closing:
                    await asyncio.sleep(linger)
                batches, self._full = self._full, []
                if self._open is not None:
                    batches.append(self._open)
                    self._open = None
                for batch in batches:
                    await self._publish(batch)
                    self._durable(batch.first + batch.count - 1)
                if self._closing and self._open is None and not self._full:
                    return
                if self._open is not None or self._full:  # appended while we published
                    self._wake.set()
        except Exception as exc:
            log.critical("journal: publishing to %s failed, journal stopped: %r", self.stream, exc)
            self._fail(exc)

    async def _publish(self, batch: _Batch) -> None:
        """Publish one batch until JetStream acknowledges it (quorum stored), retrying with
        the same message id; raise ``JournalError`` if that cannot be done in time."""
        assert self._js is not None
        self._batch_no += 1
        payload = bytes(batch.payload())
        expected = self.stream_last_seq
        headers = {MSG_ID: f"{self.writer_id}-{self._batch_no}", EXPECTED_LAST_SEQ: str(expected), SEQ_HEADER: str(batch.first)}
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.settings.publish_retry_s
        pause = 0.02
        while True:
            try:
                ack = await self._js.publish(
                    self.subject, payload, timeout=self.settings.publish_timeout_s, stream=self.stream, headers=dict(headers)
                )
                break
            except Exception as exc:
                if isinstance(exc, nats.js.errors.APIError) and exc.err_code == WRONG_LAST_SEQUENCE:
                    raise JournalError(
                        f"another writer appended to {self.stream} after stream seq {expected}: this journal is no longer the writer"
                    ) from exc
                if not _transient(exc):
                    raise JournalError(f"JetStream refused batch {batch.first}..{batch.first + batch.count - 1}: {exc!r}") from exc
                problem = exc
            if time.monotonic() + pause > deadline:
                raise JournalError(
                    f"batch {batch.first}..{batch.first + batch.count - 1} not acknowledged by {self.stream} "
                    f"within {self.settings.publish_retry_s}s: {problem!r}"
                )
            self.retries += 1
            log.warning("journal: publish of batch %d to %s not acknowledged (%r), retrying", batch.first, self.stream, problem)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
        if ack.seq != expected + 1:
            raise JournalError(f"{self.stream} stored batch {batch.first} at stream seq {ack.seq}, expected {expected + 1}")
        if ack.duplicate:
            self.duplicates += 1
        dt = time.perf_counter() - t0
        self.stream_last_seq = ack.seq
        self.last_fsync_seconds = dt
        self.fsync_seconds_total += dt
        self.batches += 1
        self.records += batch.count
        self.last_batch_size = batch.count
        self.bytes_written += len(payload)


# --------------------------------------------------------------------------- reading


def decode_batch(stream: str, stream_seq: int, headers: dict[str, str] | None, data: bytes | None) -> tuple[int | None, list[AnyCommand]]:
    """``(first engine seq or None if the message carries none, commands)`` of one stream message
    (the origins of a cluster batch dropped: ``decode_origins`` keeps them)."""
    first, items = decode_origins(stream, stream_seq, headers, data)
    return first, [cmd for _, cmd in items]


def decode_origins(
    stream: str, stream_seq: int, headers: dict[str, str] | None, data: bytes | None
) -> tuple[int | None, list[tuple[str, AnyCommand]]]:
    """``(first engine seq or None, [(origin, command)])`` of one stream message; a bare
    command (single-writer format) has origin ``""``."""
    first: int | None = None
    raw = (headers or {}).get(SEQ_HEADER)
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise StreamCorruption(stream, stream_seq, f"{SEQ_HEADER} header {raw!r} is not a sequence number")
        first = int(raw)
    try:
        decoded = _batch_decoder.decode(data or b"")
    except msgspec.DecodeError as exc:
        raise StreamCorruption(stream, stream_seq, f"batch does not decode: {exc}") from None
    if not decoded:
        raise StreamCorruption(stream, stream_seq, "empty batch")
    return first, [item if isinstance(item, tuple) else ("", item) for item in decoded]


class Anchor(msgspec.Struct, frozen=True):
    """A position in the command stream: ``stream_seq`` is a stream message (a batch) and
    ``engine_seq`` the engine seq of that batch's last command. A snapshot stores the anchor
    of the last batch it includes (wholly or partly), so replay starts at the next message."""

    stream_seq: int
    engine_seq: int


async def read_stream(
    js: JetStreamContext, stream: str, after_seq: int = 0, retry_s: float = 30.0, anchor: Anchor | None = None
) -> AsyncIterator[tuple[int, AnyCommand]]:
    """``(seq, command)`` for every command in the stream after engine seq ``after_seq``, in
    order, up to the stream's end when reading started.

    ``anchor``: start reading at the message after ``anchor.stream_seq``, whose first command
    is engine seq ``anchor.engine_seq + 1``, instead of at the stream's first message (a snapshot's
    anchor: ``after_seq`` is then the snapshot's engine seq, at or after ``anchor.engine_seq``).
    An anchor past the stream's end, or before its first message, raises ``JournalError``.

    Engine seqs are positions: the first batch starts at its ``Carbonx-Seq`` (1 if it has
    none), each batch continues the previous one; a batch whose header says otherwise raises
    ``StreamCorruption`` (as does a message that is not a batch, or one missing from the middle).
    Messages are delivered by an ordered consumer (flow-controlled, recreated by the client
    after a gap), not fetched one request each."""
    info = await retrying(lambda: js.stream_info(stream), retry_s, f"stream info of {stream}")
    state = info.state
    if anchor is not None:
        if anchor.stream_seq > state.last_seq:
            raise JournalError(f"anchor stream seq {anchor.stream_seq} is past the end of {stream} (last stream seq {state.last_seq})")
        if anchor.stream_seq < state.first_seq - 1:
            raise JournalError(f"anchor stream seq {anchor.stream_seq} is before the first message of {stream} ({state.first_seq})")
        if after_seq < anchor.engine_seq:
            raise JournalError(f"after_seq {after_seq} is before the anchor's engine seq {anchor.engine_seq}")
        if anchor.stream_seq == state.last_seq:
            return
    if not state.messages:
        return
    subjects = info.config.subjects or []
    if len(subjects) != 1:
        raise JournalError(f"command stream {stream} must have exactly one subject, it has {subjects}")
    start = None if anchor is None else ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=anchor.stream_seq + 1)
    sub = await retrying(
        lambda: js.subscribe(subjects[0], stream=stream, ordered_consumer=True, idle_heartbeat=1.0, flow_control=True, config=start),
        retry_s,
        f"reading {stream}",
    )
    try:
        expected: int | None = None if anchor is None else anchor.engine_seq + 1
        previous = state.first_seq - 1 if anchor is None else anchor.stream_seq
        while previous < state.last_seq:
            try:
                msg = await sub.next_msg(timeout=retry_s)
            except nats.errors.TimeoutError:
                raise JournalError(f"reading {stream}: no message after stream seq {previous} within {retry_s}s") from None
            stream_seq = msg.metadata.sequence.stream
            if stream_seq != previous + 1:
                raise StreamCorruption(stream, previous + 1, "message missing (deleted from the middle of the command log)")
            previous = stream_seq
            first, commands = decode_batch(stream, stream_seq, msg.headers, msg.data)
            if expected is None:
                expected = first if first is not None else 1
            if first is not None and first != expected:
                raise StreamCorruption(stream, stream_seq, f"batch starts at seq {first}, expected {expected}")
            for i, cmd in enumerate(commands):
                if expected + i > after_seq:
                    yield expected + i, cmd
            expected += len(commands)
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the connection is gone: the ephemeral consumer expires by itself
            log.debug("unsubscribing the reader failed", exc_info=True)
