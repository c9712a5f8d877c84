"""``carbonx journal verify --cluster``: audit the cluster's command stream (read-only).

Two ways, both ending with the state digest and counts (``ClusterVerifyReport``):

* default: the latest usable snapshot of the object store (``snapshots.load_latest``: every
  check of that module) plus the stream's tail from its anchor. Fast: what a new engine does.
* ``full=True``: replay the whole stream into an empty engine, comparing the digest with every
  snapshot in the bucket when the replay reaches its seq (as the local ``journal verify`` does
  with snapshot files): proves the snapshots and the stream tell the same story.

Any ``StreamCorruption`` (an undecodable batch, a batch that does not continue the previous one,
a message missing from the middle) is a problem naming the stream seq; a snapshot refused on
load is a problem too (the older one is used, as a starting engine would). Nothing is written.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

import nats
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import STATE_FORMAT, Engine
from carbonx.gateway.cluster import snapshots
from carbonx.gateway.cluster.journal import read_stream, retrying
from carbonx.gateway.journal import JournalError
from carbonx.gateway.recovery import SnapshotCheck
from carbonx.gateway.sequencer import replay
from carbonx.gateway.settings import ClusterSettings


@dataclass
class ClusterVerifyReport:
    ok: bool = True
    stream: str = ""
    stream_messages: int = 0  # batches in the stream when verification started
    stream_last_seq: int = 0
    snapshot: str | None = None  # the object the replay started from (None: from the stream's start)
    snapshot_seq: int = 0
    records: int = 0  # commands replayed
    last_seq: int = 0  # engine seq at the end
    digest: str = ""  # state digest at the end
    snapshots: list[SnapshotCheck] = field(default_factory=list)  # full=True: each snapshot compared
    problems: list[str] = field(default_factory=list)
    engine_errors: list[str] = field(default_factory=list)  # commands the engine raised on (reproduced, not failed)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def open_connection(settings: ClusterSettings, timeout: float = 10.0) -> NatsClient:
    """A connection for a command-line tool: gives up (``JournalError``) after ``timeout`` s
    instead of reconnecting forever."""
    try:
        return await nats.connect(servers=list(settings.nats_urls), name="carbonx-verify", connect_timeout=2, max_reconnect_attempts=2)
    except Exception as exc:
        raise JournalError(f"cannot connect to NATS at {', '.join(settings.nats_urls)}: {exc!r}") from exc


async def verify_cluster(settings: ClusterSettings, config: MarketConfig, full: bool = False) -> ClusterVerifyReport:
    """Verify the command stream of ``settings`` (see the module docstring)."""
    nc = await asyncio.wait_for(open_connection(settings), 30)
    try:
        return await _verify(nc.jetstream(timeout=settings.publish_timeout_s), settings, config, full)
    finally:
        await nc.close()


async def _verify(js: JetStreamContext, settings: ClusterSettings, config: MarketConfig, full: bool) -> ClusterVerifyReport:
    stream = settings.command_stream
    report = ClusterVerifyReport(stream=stream)
    try:
        info = await retrying(lambda: js.stream_info(stream), 10, f"stream info of {stream}")
    except nats.js.errors.NotFoundError:
        raise JournalError(f"there is no stream {stream} on NATS at {', '.join(settings.nats_urls)}") from None
    report.stream_messages, report.stream_last_seq = info.state.messages, info.state.last_seq
    if full:
        engine, anchor = Engine(config), None
        pending = await _all_snapshots(js, settings, config, report)
    else:
        loaded = await snapshots.load_latest(js, settings, config)
        pending = []
        if loaded is None:
            engine, anchor = Engine(config), None
        else:
            engine, anchor = loaded.engine, loaded.anchor
            report.snapshot, report.snapshot_seq = loaded.name, engine.seq
            for why in loaded.refused:
                report.fail(why)
    start = engine.seq
    try:
        _check_due(engine, pending, report)
        async for seq, cmd in read_stream(js, stream, after_seq=engine.seq, retry_s=10, anchor=anchor):
            if seq != engine.seq + 1:  # read_stream numbers by position: only a stream not starting at 1 does this
                report.fail(f"{stream} resumes at seq {seq} but the engine is at {engine.seq}: commands are missing")
                break
            error = replay(engine, cmd)
            if error is not None:
                report.engine_errors.append(error)
            _check_due(engine, pending, report)
    except JournalError as exc:  # StreamCorruption names the stream seq
        report.fail(str(exc))
    report.records = engine.seq - start
    report.last_seq = engine.seq
    report.digest = engine.digest()
    for name, seq, saved, _ in pending:
        report.snapshots.append(SnapshotCheck(seq, name, saved, None, None, False))
        report.fail(f"snapshot {name} at seq {seq} is beyond the replayed stream (ends at {engine.seq})")
    return report


async def _all_snapshots(
    js: JetStreamContext, settings: ClusterSettings, config: MarketConfig, report: ClusterVerifyReport
) -> list[tuple[str, int, str, bool]]:
    """(name, seq, saved digest, older state format) of every usable snapshot, by seq."""
    store = await snapshots.snapshot_store(js, settings)
    out = []
    for name in await snapshots.list_snapshots(store):
        try:
            blob = (await store.get(name)).data or b""
            engine, _ = await asyncio.to_thread(snapshots.decode, name, blob, config)
        except Exception as exc:  # refused (SnapshotRefused) or damaged chunks (DigestMismatchError)
            report.fail(f"snapshot {name}: {exc}")
            continue
        out.append((name, engine.seq, engine.digest(), engine.restored_format < STATE_FORMAT))
    return sorted(out, key=lambda x: x[1])


def _check_due(engine: Engine, pending: list[tuple[str, int, str, bool]], report: ClusterVerifyReport) -> None:
    if not pending or pending[0][1] != engine.seq:
        return
    actual = engine.digest()
    while pending and pending[0][1] == engine.seq:
        name, seq, restored, old_format = pending.pop(0)
        ok = actual == restored
        report.snapshots.append(SnapshotCheck(seq, name, restored, actual, restored, ok, old_format=old_format))
        if not ok:
            report.fail(f"snapshot {name}: replay from empty gives digest {actual} at seq {seq}, the snapshot restores to {restored}")
