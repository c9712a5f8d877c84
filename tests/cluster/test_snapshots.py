"""Engine snapshots in the JetStream object store on a real 3-node cluster, and replay from their anchor.

What must hold: snapshot + the stream's tail from the anchor gives exactly the engine that replays
the whole stream (also for a snapshot taken in the middle of a batch); only the newest
``snapshot_keep`` are kept; a corrupt snapshot, or one ahead of the stream, is refused with a
reason naming it and the previous one is used; no usable snapshot means None (replay from start).
"""

from __future__ import annotations

import msgspec
import pytest
from msgspec.structs import replace

from carbonx.engine.engine import Engine
from carbonx.gateway.cluster import snapshots
from carbonx.gateway.cluster.journal import Anchor, JetStreamJournal, connect, read_stream
from carbonx.gateway.journal import JournalError
from carbonx.gateway.sequencer import replay
from carbonx.gateway.settings import ClusterSettings
from carbonx.gateway.testkit import demo_config, workload

pytestmark = pytest.mark.cluster


@pytest.fixture
def settings(cluster_settings: ClusterSettings) -> ClusterSettings:
    return replace(cluster_settings, snapshot_bucket=f"SNAP_{cluster_settings.command_stream}", batch_max_commands=50)


async def _write(settings: ClusterSettings, commands: list[object], first: int) -> int:
    """Append ``commands`` from engine seq ``first`` on a fresh journal; return the stream seq of the last batch."""
    journal = JetStreamJournal(settings, next_seq=first)
    await journal.start()
    for i, cmd in enumerate(commands):
        journal.append(first + i, cmd)  # type: ignore[arg-type]
    await journal.close()
    return journal.stream_last_seq


async def test_snapshot_plus_tail_from_the_anchor_equals_full_replay(settings: ClusterSettings) -> None:
    config = demo_config()
    cmds = workload(config, 1000, seed=11)[:1000]
    anchor_stream_seq = await _write(settings, cmds[:600], 1)  # 12 batches of 50
    await _write(settings, cmds[600:], 601)
    engine = Engine(config)
    for cmd in cmds[:620]:  # 20 commands into the batch after the anchor: a mid-batch snapshot
        replay(engine, cmd)
    nc = await connect(settings.nats_urls)
    try:
        js = nc.jetstream()
        name = await snapshots.save_snapshot(js, settings, engine, Anchor(anchor_stream_seq, 600))
        assert name == snapshots.object_name(620)
        loaded = await snapshots.load_latest(js, settings, config)
        assert loaded is not None and loaded.refused == [] and loaded.name == name
        assert loaded.engine.seq == 620 and loaded.engine.digest() == engine.digest()
        assert loaded.anchor == Anchor(anchor_stream_seq, 600)
        tail = [rec async for rec in read_stream(js, settings.command_stream, after_seq=620, anchor=loaded.anchor)]
        assert [seq for seq, _ in tail] == list(range(621, 1001))
        for _, cmd in tail:
            replay(loaded.engine, cmd)
        full = Engine(config)
        async for _, cmd in read_stream(js, settings.command_stream):
            replay(full, cmd)
        assert full.seq == loaded.engine.seq == 1000 and full.digest() == loaded.engine.digest()
        # the anchor's arithmetic is checked against the stream: an anchor that says the next batch
        # starts elsewhere than its Carbonx-Seq header is refused, never silently renumbered
        with pytest.raises(JournalError, match="expected 602"):
            [r async for r in read_stream(js, settings.command_stream, after_seq=601, anchor=Anchor(anchor_stream_seq, 601))]
        with pytest.raises(JournalError, match="past the end"):
            [r async for r in read_stream(js, settings.command_stream, after_seq=2000, anchor=Anchor(anchor_stream_seq + 100, 2000))]
        at_end = Anchor(anchor_stream_seq + 8, 1000)  # the last batch: nothing after it
        assert [r async for r in read_stream(js, settings.command_stream, after_seq=1000, anchor=at_end)] == []
    finally:
        await nc.close()


async def test_keeps_the_newest_n_and_falls_back_past_a_corrupt_or_early_snapshot(settings: ClusterSettings) -> None:
    settings = replace(settings, snapshot_keep=3)
    config = demo_config()
    cmds = workload(config, 500, seed=12)[:500]
    last_stream_seq = await _write(settings, cmds, 1)  # 10 batches of 50
    engine = Engine(config)
    nc = await connect(settings.nats_urls)
    try:
        js = nc.jetstream()
        assert await snapshots.load_latest(js, settings, config) is None, "empty bucket: replay from the start"
        digests = {}
        for batch in range(1, 6):  # snapshots at engine seq 50, 100, ..., 250
            for cmd in cmds[(batch - 1) * 50 : batch * 50]:
                replay(engine, cmd)
            await snapshots.save_snapshot(js, settings, engine, Anchor(batch, batch * 50))
            digests[engine.seq] = engine.digest()
        store = await snapshots.snapshot_store(js, settings)
        assert await snapshots.list_snapshots(store) == [snapshots.object_name(s) for s in (250, 200, 150)]

        # the newest object is damaged: its state no longer matches its digest
        good = snapshots._decoder.decode((await store.get(snapshots.object_name(250))).data)
        state = bytearray(good.state)
        state[len(state) // 2] ^= 0xFF
        bad = msgspec.msgpack.encode(replace(good, state=bytes(state)))
        await store.put(snapshots.object_name(250), bad)
        loaded = await snapshots.load_latest(js, settings, config)
        assert loaded is not None and loaded.engine.seq == 200 and loaded.engine.digest() == digests[200]
        assert len(loaded.refused) == 1 and snapshots.object_name(250) in loaded.refused[0]
        assert "does not match its digest" in loaded.refused[0]

        # a newer one that is not a snapshot at all, and one anchored past the stream's end
        await store.put(snapshots.object_name(300), b"\x93garbage")
        ahead = Engine.restore(config, engine.snapshot())
        for cmd in cmds[250:400]:
            replay(ahead, cmd)
        # (keep more now: pruning counts every object, the damaged ones too)
        await snapshots.save_snapshot(js, replace(settings, snapshot_keep=6), ahead, Anchor(last_stream_seq + 5, 400))
        assert snapshots.object_name(400) in await snapshots.list_snapshots(store)
        # a save below an object ahead of it is kept: pruning counts only what is older than it
        await snapshots.save_snapshot(js, replace(settings, snapshot_keep=1), engine, Anchor(5, 250))
        assert snapshots.object_name(250) in await snapshots.list_snapshots(store)
        loaded = await snapshots.load_latest(js, settings, config)
        assert loaded is not None and loaded.engine.seq == 250 and loaded.engine.digest() == digests[250]
        reasons = " | ".join(loaded.refused)
        assert "past the end" in reasons and "does not decode" in reasons
    finally:
        await nc.close()


async def test_a_snapshot_for_another_configuration_is_refused(settings: ClusterSettings) -> None:
    config = demo_config()
    engine = Engine(config)
    for cmd in workload(config, 100, seed=13)[:100]:
        replay(engine, cmd)
    blob = snapshots.encode(engine, Anchor(2, 100))
    other = replace(config, instruments=dict(list(config.instruments.items())[:1]))
    with pytest.raises(snapshots.SnapshotRefused, match="does not restore with this configuration"):
        snapshots.decode(snapshots.object_name(100), blob, other)
    with pytest.raises(snapshots.SnapshotRefused, match="name says engine seq 99"):
        snapshots.decode(snapshots.object_name(99), blob, config)
    with pytest.raises(ValueError, match="past the engine's seq"):
        snapshots.encode(engine, Anchor(3, 101))
