"""Joining the cluster: what an engine and a gateway both do before anything else.

Connect to NATS, make sure the command stream, the events stream and the KV bucket exist
(created, or accepted with the same configuration), and load the engine state to start the
replica from: the latest snapshot in the object store with its anchor, or an empty engine
(replay from the stream's first message).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from carbonx.engine.engine import Engine
from carbonx.gateway.cluster.events import ensure_events_stream
from carbonx.gateway.cluster.journal import Anchor, connect, ensure_command_stream, retrying
from carbonx.gateway.cluster.lease import ensure_kv
from carbonx.gateway.cluster.snapshots import load_latest
from carbonx.gateway.settings import Settings


@dataclass
class Joined:
    """A connection to the cluster and the state to start a replica from (``anchor`` None:
    read the command stream from its first message)."""

    nc: NatsClient
    js: JetStreamContext
    kv: KeyValue
    engine: Engine
    anchor: Anchor | None
    snapshot: str | None  # the name of the snapshot loaded (None: none)


async def join(settings: Settings, client_name: str) -> Joined:
    """Connect as ``client_name`` (shown in NATS's monitoring), ensure the streams and the KV
    bucket, load the latest snapshot. The caller owns ``nc`` and closes it."""
    cs = settings.cluster
    nc = await connect(cs.nats_urls, name=client_name)
    js = nc.jetstream(timeout=cs.publish_timeout_s)
    await ensure_command_stream(js, cs)
    await ensure_events_stream(js, cs)
    kv = await ensure_kv(js, cs)
    loaded = await retrying(lambda: load_latest(js, cs, settings.market), what="loading the latest snapshot")
    if loaded is None:
        return Joined(nc, js, kv, Engine(settings.market), None, None)
    return Joined(nc, js, kv, loaded.engine, loaded.anchor, loaded.name)
