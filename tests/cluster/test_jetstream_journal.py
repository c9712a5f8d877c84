"""The command log on a real 3-node NATS JetStream cluster (R3): JetStreamJournal and read_stream.

What must hold: what the journal acknowledged reads back exactly as a LocalJournal records it;
a retried publish is stored once; a second writer cannot interleave; killing a NATS node while
appending loses no acknowledged command and writes resume; the Sequencer on this journal with
a real engine gives a stream that replays to the same digest.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from carbonx.engine.engine import Engine
from carbonx.engine.schema import Deposit, Event
from carbonx.engine.testkit import throughput_workload
from carbonx.gateway.cluster.journal import (
    EXPECTED_LAST_SEQ,
    MSG_ID,
    SEQ_HEADER,
    JetStreamJournal,
    StreamCorruption,
    connect,
    read_stream,
    retrying,
)
from carbonx.gateway.journal import JournalError, LocalJournal, UnencodableCommand, read_records
from carbonx.gateway.metrics import LatencyHistogram
from carbonx.gateway.natskit import NatsCluster
from carbonx.gateway.sequencer import EventSink, Sequencer, replay_all
from carbonx.gateway.settings import ClusterSettings
from carbonx.gateway.testkit import demo_config, workload

pytestmark = pytest.mark.cluster


async def _read_all(settings: ClusterSettings, after_seq: int = 0) -> list[tuple[int, object]]:
    nc = await connect(settings.nats_urls)
    try:
        return [rec async for rec in read_stream(nc.jetstream(), settings.command_stream, after_seq)]
    finally:
        await nc.close()


async def test_append_ack_replay_equals_the_local_journal(cluster_settings: ClusterSettings, tmp_path: Path) -> None:
    settings = replace(cluster_settings, batch_max_commands=97)  # several stream messages, a short last one
    cmds = workload(demo_config(), 1500, seed=3)
    local = LocalJournal(tmp_path, "os")
    journal = JetStreamJournal(settings)
    await local.start()
    await journal.start()
    seen: list[int] = []
    journal.add_listener(seen.append)
    for seq, cmd in enumerate(cmds, 1):
        local.append(seq, cmd)
        journal.append(seq, cmd)
        if seq % 200 == 0:
            await asyncio.sleep(0)
    await journal.wait_durable(len(cmds))
    await local.close()
    await journal.close()
    assert journal.durable_seq == len(cmds) and journal.records == len(cmds)
    assert journal.batches >= len(cmds) // 97 and journal.duplicates == 0
    assert seen == sorted(seen) and seen[-1] == len(cmds), "listeners fire in order, up to the last command"
    expected = list(read_records(tmp_path))
    assert await _read_all(settings) == expected
    assert await _read_all(settings, after_seq=1000) == expected[1000:], "replay from a position"


async def test_a_retried_publish_is_stored_once(cluster_settings: ClusterSettings) -> None:
    cmds = workload(demo_config(), 50, seed=4)
    journal = JetStreamJournal(cluster_settings, writer_id="w1")
    await journal.start()
    for seq, cmd in enumerate(cmds, 1):
        journal.append(seq, cmd)
    await journal.close()
    nc = await connect(cluster_settings.nats_urls)
    try:
        js = nc.jetstream()
        last = journal.stream_last_seq
        msg = await js.get_msg(cluster_settings.command_stream, last)
        assert msg.headers is not None and msg.headers[MSG_ID] == f"w1-{journal.batches}"
        # The same publish again (a retry after a lost ack): JetStream answers with the stored seq.
        headers = {k: msg.headers[k] for k in (MSG_ID, EXPECTED_LAST_SEQ, SEQ_HEADER)}
        # (retrying: a fresh connection's server may not have heard of the stream's subject yet: "no responders")
        ack = await retrying(lambda: js.publish(cluster_settings.command_subject, msg.data, headers=dict(headers)))
        assert ack.seq == last and ack.duplicate
        info = await js.stream_info(cluster_settings.command_stream)
        assert info.state.last_seq == last
    finally:
        await nc.close()
    assert [seq for seq, _ in await _read_all(cluster_settings)] == list(range(1, len(cmds) + 1))


async def test_a_second_writer_cannot_interleave(cluster_settings: ClusterSettings) -> None:
    cmds = workload(demo_config(), 20, seed=5)
    first = JetStreamJournal(cluster_settings)
    await first.start()
    for seq, cmd in enumerate(cmds[:10], 1):
        first.append(seq, cmd)
    await first.wait_durable(10)
    # A second writer that believes it continues the log (a deposed leader, a mistake).
    second = JetStreamJournal(cluster_settings, next_seq=11)
    await second.start()
    second.append(11, cmds[10])
    await second.wait_durable(11)
    first.append(11, cmds[11])  # the first writer did not see it: its publish is refused
    with pytest.raises(JournalError, match="another writer"):
        await first.wait_durable(11)
    with pytest.raises(JournalError):
        first.append(12, cmds[12])
    with pytest.raises(JournalError, match="another writer"):
        await first.close()
    await second.close()
    assert [seq for seq, _ in await _read_all(cluster_settings)] == list(range(1, 12))


async def test_the_reader_refuses_a_log_that_is_not_one(cluster_settings: ClusterSettings) -> None:
    """A batch that does not continue the previous one, a payload that is not a batch, a message
    deleted from the middle: StreamCorruption naming the stream seq, never a silent skip."""
    cmds = workload(demo_config(), 3, seed=9)
    nc = await connect(cluster_settings.nats_urls)
    try:
        js = nc.jetstream()
        for n, (headers, payload, why) in enumerate(
            [
                ({SEQ_HEADER: "4"}, msgspec.msgpack.encode(cmds[2:4]), "batch starts at seq 4, expected 3"),
                ({SEQ_HEADER: "3"}, b"not msgpack", "batch does not decode"),
                ({SEQ_HEADER: "3"}, msgspec.msgpack.encode([]), "empty batch"),
                ({SEQ_HEADER: "x"}, msgspec.msgpack.encode(cmds[2:4]), "is not a sequence number"),
                (None, None, "message missing"),
            ]
        ):
            settings = replace(cluster_settings, command_stream=f"BAD{n}", command_subject=f"carbonx.bad{n}", batch_max_commands=1)
            journal = JetStreamJournal(settings)
            await journal.start()
            journal.append(1, cmds[0])
            journal.append(2, cmds[1])
            await journal.close()
            assert journal.batches == 2
            if headers is None:  # delete the second of three messages
                journal = JetStreamJournal(settings, next_seq=3)
                await journal.start()
                journal.append(3, cmds[2])
                await journal.close()
                assert await js.delete_msg(settings.command_stream, 2)
            else:
                await retrying(lambda s=settings, h=headers, p=payload: js.publish(s.command_subject, p, headers=dict(h)))
            with pytest.raises(StreamCorruption, match=why) as exc:
                await _read_all(settings)
            assert exc.value.stream == settings.command_stream
    finally:
        await nc.close()


async def test_start_refuses_a_next_seq_that_does_not_continue_the_stream(cluster_settings: ClusterSettings) -> None:
    cmds = workload(demo_config(), 5, seed=6)
    journal = JetStreamJournal(cluster_settings)
    await journal.start()
    for seq, cmd in enumerate(cmds, 1):
        journal.append(seq, cmd)
    await journal.close()
    for wrong in (1, len(cmds), len(cmds) + 2):
        with pytest.raises(JournalError, match=f"ends at seq {len(cmds)} but next_seq is {wrong}"):
            await JetStreamJournal(cluster_settings, next_seq=wrong).start()
    again = JetStreamJournal(cluster_settings, next_seq=len(cmds) + 1)
    await again.start()
    await again.close()


async def test_a_stream_with_another_configuration_is_refused(cluster_settings: ClusterSettings) -> None:
    await JetStreamJournal(cluster_settings).start()
    with pytest.raises(JournalError, match="as configured: stream name already in use with a different configuration"):
        await JetStreamJournal(replace(cluster_settings, replicas=1)).start()


def test_unencodable_and_oversized_commands_append_nothing() -> None:
    journal = JetStreamJournal(replace(ClusterSettings(), batch_max_bytes=1024))
    journal.append(1, Deposit(ts=1, account="A", cash=5))
    with pytest.raises(UnencodableCommand, match="cannot be journaled"):
        journal.append(2, Deposit(ts=1, account="A", cash=10**30))
    with pytest.raises(UnencodableCommand, match=r"above cluster\.batch_max_bytes"):
        journal.append(2, Deposit(ts=1, account="A" * 2000, cash=5))
    journal.append(2, Deposit(ts=1, account="B", cash=6))  # the refused ones used no seq
    with pytest.raises(JournalError, match="last appended was 2"):
        journal.append(4, Deposit(ts=1, account="B", cash=6))


async def test_linger_holds_a_batch_back_to_fill_it(cluster_settings: ClusterSettings) -> None:
    cmds = workload(demo_config(), 10, seed=8)
    for linger_ms, most_batches in ((0.0, None), (200.0, 1)):
        suffix = f"L{int(linger_ms)}"
        settings = replace(
            cluster_settings,
            linger_ms=linger_ms,
            command_stream=f"{cluster_settings.command_stream}_{suffix}",
            command_subject=f"{cluster_settings.command_subject}.{suffix}",
        )
        journal = JetStreamJournal(settings)
        await journal.start()
        journal.append(1, cmds[0])
        await asyncio.sleep(0.05)  # without linger the first command is published alone meanwhile
        for seq, cmd in enumerate(cmds[1:], 2):
            journal.append(seq, cmd)
        await journal.wait_durable(len(cmds))
        await journal.close()
        if most_batches is None:
            assert journal.batches >= 2
        else:
            assert journal.batches == most_batches


def test_closing_an_unstarted_journal_with_appends_fails_it() -> None:
    journal = JetStreamJournal(ClusterSettings())
    journal.append(1, Deposit(ts=1, account="A", cash=5))
    with pytest.raises(JournalError, match=r"closed before start: seqs 1\.\.1 were never published"):
        asyncio.run(journal.close())


async def test_kill9_a_nats_node_while_appending_loses_no_acknowledged_command(
    nats_cluster: NatsCluster, cluster_settings: ClusterSettings
) -> None:
    """SIGKILL the stream's leader mid-stream: writes pause (the election), then resume;
    every command acknowledged before, during and after is in the stream once, in order."""
    cmds = workload(demo_config(), 6000, seed=7)
    journal = JetStreamJournal(cluster_settings)
    await journal.start()
    acks: list[tuple[float, int]] = []
    journal.add_listener(lambda durable: acks.append((time.monotonic(), durable)))
    victim: int | None = None
    killed_at = 0.0
    for seq, cmd in enumerate(cmds, 1):
        journal.append(seq, cmd)
        if seq % 50 == 0:
            await asyncio.sleep(0.002)  # ~25k commands/s offered, in bursts
        if seq == 2000:
            victim = nats_cluster.stream_leader(cluster_settings.command_stream)
            assert victim is not None
            killed_at = time.monotonic()
            nats_cluster.kill9(victim)
    await journal.wait_durable(len(cmds))
    await journal.close()
    assert victim is not None
    nats_cluster.restart(victim)
    durable = [d for _, d in acks]
    assert durable == sorted(durable) and durable[-1] == len(cmds)
    # Writes resumed after the kill (acks after it), and the longest pause is reported.
    after = [t for t, _ in acks if t > killed_at]
    assert after, "no write was acknowledged after the node was killed"
    times = [killed_at, *after]
    pause = max(b - a for a, b in itertools.pairwise(times))
    print(f"\nwrite pause after SIGKILL of the stream leader: {pause:.2f} s ({journal.retries} retried publishes)")
    replayed = await _read_all(cluster_settings)
    assert [seq for seq, _ in replayed] == list(range(1, len(cmds) + 1))
    assert [cmd for _, cmd in replayed] == cmds
    # The restarted node catches up: it ends up holding every batch.
    deadline = time.monotonic() + 30
    while (state := nats_cluster.stream_state(victim, cluster_settings.command_stream)) is None or state.get(
        "last_seq"
    ) != journal.stream_last_seq:
        assert time.monotonic() < deadline, f"restarted node did not catch up: {state} vs last seq {journal.stream_last_seq}"
        await asyncio.sleep(0.1)
    assert state.get("messages") == journal.stream_last_seq


class _Sink(EventSink):
    def __init__(self) -> None:
        self.published: list[int] = []

    def publish(self, seq: int, events: list[Event]) -> None:
        self.published.append(seq)


async def test_sequencer_on_jetstream_replays_to_the_same_digest(cluster_settings: ClusterSettings) -> None:
    config = demo_config()
    setup, trading = throughput_workload(config, 3000, seed=11, n_accounts=20)
    engine = Engine(config)
    journal = JetStreamJournal(cluster_settings)
    await journal.start()
    sink = _Sink()
    sequencer = Sequencer(engine, journal, sink, LatencyHistogram(), LatencyHistogram())
    replies: list[int] = []
    for i, cmd in enumerate([*setup, *trading], 1):
        sequencer.submit(cmd, lambda events, i=i: replies.append(i))
        if i % 100 == 0:
            await asyncio.sleep(0)
    await journal.wait_durable(engine.seq)
    await journal.close()
    assert replies == list(range(1, engine.seq + 1)), "every reply released, in seq order, once durable"
    assert sink.published == sorted(sink.published)
    replayed = Engine(config)
    records = await _read_all(cluster_settings)
    assert [seq for seq, _ in records] == list(range(1, engine.seq + 1))
    replay_all(replayed, (cmd for _, cmd in records))
    assert replayed.seq == engine.seq and replayed.digest() == engine.digest()


async def test_the_journal_fails_when_nats_is_gone_past_the_retry_time(tmp_path: Path) -> None:
    """One node (R1) killed for good: the publish is retried for publish_retry_s, then the
    journal fails like a local one after a failed fsync."""
    with NatsCluster(tmp_path, nodes_count=1) as single:
        settings = replace(ClusterSettings(), nats_urls=tuple(single.urls), replicas=1, publish_timeout_s=0.2, publish_retry_s=1.0)
        journal = JetStreamJournal(settings)
        await journal.start()
        journal.append(1, Deposit(ts=1, account="A", cash=5))
        await journal.wait_durable(1)
        single.kill9(0)
        journal.append(2, Deposit(ts=1, account="A", cash=5))
        t0 = time.monotonic()
        with pytest.raises(JournalError, match="not acknowledged"):
            await journal.wait_durable(2)
        assert time.monotonic() - t0 < 30, "the journal gives up after publish_retry_s, it does not hang"
        assert journal.failure is not None and journal.durable_seq == 1
        with pytest.raises(JournalError, match="failed earlier"):
            journal.append(3, Deposit(ts=1, account="A", cash=5))
        with pytest.raises(JournalError):
            await journal.close()
