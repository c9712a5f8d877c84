"""Engine snapshots in the JetStream object store, with the command stream anchor they resume from.

A cluster engine (or a gateway's replica, or ``carbonx journal verify --cluster``) starts from
the latest snapshot plus the command stream's tail instead of replaying the stream from its
first message. One object per snapshot in the bucket ``[cluster] snapshot_bucket`` (R =
``replicas``, file storage), named ``snap-<engine seq, 20 digits>`` so names sort by seq. The
object holds a ``ClusterSnapshot`` (MessagePack):

* ``state``: ``Engine.snapshot()`` bytes; ``digest``: ``Engine.digest()`` of that state (SHA-256
  of the same bytes); ``state_format``: ``engine.STATE_FORMAT`` when written; ``engine_seq``;
* ``anchor``: the stream seq of the last command message the state includes and the engine seq
  at the end of that message (``journal.Anchor``); replay reads from the next message and skips
  commands up to ``engine_seq`` (a snapshot taken in the middle of a batch is fine).

Loading checks, before the engine is used: the object's own SHA-256 (the object store's), the
state against ``digest``, the restored engine's seq and digest against the saved ones, and the
anchor against the stream (not past its end: a snapshot ahead of the book of record is never
used). A snapshot failing any check is logged with the reason and the previous one is tried;
no usable snapshot means replay from the stream's start (``load_latest`` returns ``None``).

Saving keeps the newest ``snapshot_keep`` objects and deletes older ones.

Use: ``await save_snapshot(js, settings, engine, anchor)`` from the engine that applied the
stream up to ``anchor`` (and possibly further within the next batch: pass ``engine.seq``'s
batch start as the anchor); ``await load_latest(js, settings, config)`` -> ``Loaded`` or None,
then ``read_stream(js, stream, after_seq=loaded.engine.seq, anchor=loaded.anchor)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import STATE_FORMAT, Engine
from carbonx.gateway.cluster.journal import Anchor, retrying
from carbonx.gateway.journal import JournalError
from carbonx.gateway.settings import ClusterSettings

log = logging.getLogger(__name__)

PREFIX = "snap-"
_NAME = re.compile(r"^snap-(\d{20})$")
CHUNK = 128 * 1024  # object store chunk size: each chunk is one stream message


class ClusterSnapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One snapshot object's content (see the module docstring)."""

    engine_seq: int
    state_format: int
    digest: str
    anchor: Anchor
    state: bytes


_decoder = msgspec.msgpack.Decoder(ClusterSnapshot)
_encoder = msgspec.msgpack.Encoder()


class SnapshotRefused(JournalError):
    """A snapshot object that must not be used; the message names the object and the reason."""


@dataclass
class Loaded:
    engine: Engine
    anchor: Anchor
    name: str  # the object it came from
    refused: list[str]  # newer snapshots skipped, each with its reason


def object_name(engine_seq: int) -> str:
    return f"{PREFIX}{engine_seq:020d}"


async def snapshot_store(js: JetStreamContext, settings: ClusterSettings) -> ObjectStore:
    """The snapshot bucket, created if missing (file storage, ``replicas`` copies)."""
    bucket = settings.snapshot_bucket
    try:
        return await retrying(lambda: js.object_store(bucket), what=f"opening object store {bucket}")
    except nats.js.errors.BucketNotFoundError:
        pass
    config = ObjectStoreConfig(bucket=bucket, storage=StorageType.FILE, replicas=settings.replicas, description="carbonx engine snapshots")
    return await retrying(lambda: js.create_object_store(bucket, config), what=f"creating object store {bucket}")


def encode(engine: Engine, anchor: Anchor) -> bytes:
    """The object content for ``engine``'s state now. Encodes on the caller's thread: the engine
    must not change during the call (call it between commands)."""
    if anchor.engine_seq > engine.seq:
        raise ValueError(f"anchor engine seq {anchor.engine_seq} is past the engine's seq {engine.seq}")
    state = engine.snapshot()
    digest = hashlib.sha256(state).hexdigest()
    return _encoder.encode(ClusterSnapshot(engine.seq, STATE_FORMAT, digest, anchor, state))


def decode(name: str, blob: bytes, config: MarketConfig) -> tuple[Engine, Anchor]:
    """Restore a snapshot object's engine, every check applied; raises ``SnapshotRefused``."""
    try:
        snap = _decoder.decode(blob)
    except msgspec.DecodeError as exc:
        raise SnapshotRefused(f"snapshot {name}: does not decode: {exc}") from None
    m = _NAME.match(name)
    if m is not None and int(m.group(1)) != snap.engine_seq:
        raise SnapshotRefused(f"snapshot {name}: its name says engine seq {int(m.group(1))}, its content {snap.engine_seq}")
    if hashlib.sha256(snap.state).hexdigest() != snap.digest:
        raise SnapshotRefused(f"snapshot {name}: state does not match its digest {snap.digest}")
    if not 0 <= snap.anchor.engine_seq <= snap.engine_seq or snap.anchor.stream_seq < 0:
        raise SnapshotRefused(f"snapshot {name}: anchor {snap.anchor} does not fit engine seq {snap.engine_seq}")
    try:
        engine = Engine.restore(config, snap.state)
    except Exception as exc:  # decodable but not for this configuration / version
        raise SnapshotRefused(f"snapshot {name}: does not restore with this configuration: {exc!r}") from exc
    if engine.seq != snap.engine_seq:
        raise SnapshotRefused(f"snapshot {name}: restored engine is at seq {engine.seq}, the snapshot says {snap.engine_seq}")
    if engine.restored_format >= STATE_FORMAT and engine.digest() != snap.digest:
        raise SnapshotRefused(f"snapshot {name}: restored state digest {engine.digest()} differs from the saved {snap.digest}")
    return engine, snap.anchor


async def save_snapshot(js: JetStreamContext, settings: ClusterSettings, engine: Engine, anchor: Anchor) -> str:
    """Store ``engine``'s state with ``anchor`` as a new object, then delete all but it and the
    ``snapshot_keep - 1`` newest before it. Returns the object name. The state is encoded synchronously (before the
    first await), so the engine may move on as soon as this coroutine first yields."""
    blob = encode(engine, anchor)
    name = object_name(engine.seq)
    store = await snapshot_store(js, settings)
    await retrying(lambda: store.put(name, blob, meta=_meta(name)), what=f"storing snapshot {name}")
    # Keep this one and the newest snapshot_keep - 1 before it; never delete the one just stored
    # (an object with a higher seq - ahead of the stream, from a deposed leader - does not count
    # and is left for load_latest to refuse).
    older = [n for n in await list_snapshots(store) if n < name]  # zero-padded: names sort by seq
    for old in older[settings.snapshot_keep - 1 :]:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted meanwhile by another saver
            await store.delete(old)
    log.info("snapshot %s stored in %s (%d bytes, anchor %s)", name, settings.snapshot_bucket, len(blob), anchor)
    return name


def _meta(name: str) -> nats.js.api.ObjectMeta:
    return nats.js.api.ObjectMeta(name=name, options=nats.js.api.ObjectMetaOptions(max_chunk_size=CHUNK))


async def list_snapshots(store: ObjectStore) -> list[str]:
    """Names of the snapshot objects, newest (highest engine seq) first."""
    try:
        infos = await store.list(ignore_deletes=True)
    except nats.js.errors.NotFoundError:  # an empty bucket
        return []
    return sorted((i.name for i in infos if _NAME.match(i.name or "") and not i.deleted), reverse=True)


async def load_latest(js: JetStreamContext, settings: ClusterSettings, config: MarketConfig) -> Loaded | None:
    """The newest snapshot that passes every check (see the module docstring), restored; or None
    if there is none (then replay the stream from its start). Snapshots refused on the way are
    logged and listed in ``Loaded.refused``."""
    store = await snapshot_store(js, settings)
    stream = settings.command_stream
    info = await retrying(lambda: js.stream_info(stream), what=f"stream info of {stream}")
    last_stream_seq = info.state.last_seq
    refused: list[str] = []
    for name in await list_snapshots(store):
        try:
            result = await retrying(lambda: store.get(name), what=f"reading snapshot {name}")  # noqa: B023 - awaited here
        except nats.js.errors.DigestMismatchError:
            refused.append(f"snapshot {name}: object store digest mismatch (damaged chunks)")
        except nats.js.errors.NotFoundError:
            continue  # deleted since listed
        else:
            try:
                engine, anchor = await asyncio.to_thread(decode, name, result.data or b"", config)
            except SnapshotRefused as exc:
                refused.append(str(exc))
            else:
                if anchor.stream_seq > last_stream_seq:
                    refused.append(
                        f"snapshot {name}: anchor stream seq {anchor.stream_seq} is past the end of {stream} ({last_stream_seq})"
                    )
                else:
                    for why in refused:
                        log.error("%s; using an older snapshot", why)
                    return Loaded(engine, anchor, name, refused)
    for why in refused:
        log.error("%s; no usable snapshot: replaying from the stream's start", why)
    return None
