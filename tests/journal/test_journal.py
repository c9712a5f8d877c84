"""The journal writer: framing, sequence discipline, group commit, policies, segments."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from carbonx.engine.schema import (
    AnyCommand,
    AuctionBid,
    AuctionCreate,
    BlockPropose,
    CancelAll,
    CancelOrder,
    DayClose,
    Deposit,
    EventCreate,
    PlaceOrder,
    Retire,
    SetHalt,
    SnapshotMark,
    Tick,
)
from carbonx.gateway import journal as journal_mod
from carbonx.gateway.journal import HEADER, JournalError, JournalReader, LocalJournal, read_records, segment_last_seq
from tests.journal.helpers import segments

T = 1_764_043_200_000_000_000


def mixed_commands(n: int) -> list[AnyCommand]:
    """Every family of command: orders, operator, auctions, blocks, retirement."""
    kinds: list[AnyCommand] = [
        PlaceOrder(ts=T, member="M1", account="A1", instrument="SHEA", side="buy", price=6000, quantity=5, client_order_id="x"),
        CancelOrder(ts=T, member="M1", account="A1", client_order_id="x"),
        CancelAll(ts=T, member="M2", session="s-1"),
        Deposit(ts=T, account="A1", instrument="SHEA", quantity=10, vintage=2025, compliance_only=True),
        SetHalt(ts=T, instrument="CCER", halted=True),
        DayClose(ts=T),
        Tick(ts=T),
        SnapshotMark(ts=T),
        AuctionCreate(
            ts=T, instrument="SHEA", vintage=2025, quantity=1000, reserve_price=5000, caps={"institution": 10}, eligible=["institution"]
        ),
        AuctionBid(ts=T, member="M1", auction_id=1, account="A1", price=5100, quantity=10, client_bid_id="b"),
        BlockPropose(
            ts=T, member="M1", account="A1", instrument="SHEA", side="sell", price=6000, quantity=100_000, counterparty_account="B1"
        ),
        Retire(
            ts=T, member="M1", account="A1", instrument="SHEA", quantity=1, purpose="event_neutrality", beneficiary="Expo", event_id="e1"
        ),
        EventCreate(ts=T, event_id="e1", name="Expo 2026", footprint=1_000),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


async def journal_of(tmp_path: Path, cmds: list[AnyCommand], policy: str = "os", **kw: int) -> LocalJournal:
    j = LocalJournal(tmp_path, policy, **kw)  # type: ignore[arg-type]
    await j.start()
    for seq, cmd in enumerate(cmds, 1):
        j.append(seq, cmd)
    await j.close()
    return j


async def test_records_round_trip_in_order_for_every_command_family(tmp_path: Path) -> None:
    cmds = mixed_commands(40)
    await journal_of(tmp_path, cmds)
    assert list(read_records(tmp_path)) == list(enumerate(cmds, 1))
    assert list(read_records(tmp_path, after_seq=35)) == list(enumerate(cmds, 1))[35:]


async def test_frame_is_length_crc_msgpack(tmp_path: Path) -> None:
    cmd = Tick(ts=T)
    await journal_of(tmp_path, [cmd])
    data = segments(tmp_path)[0].read_bytes()
    assert segments(tmp_path)[0].name == "00000000000000000001.seg"
    assert data == journal_mod.encode_frame(1, cmd)
    length, _ = HEADER.unpack_from(data)
    assert length == len(data) - HEADER.size


async def test_append_requires_the_next_seq(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "os", next_seq=5)
    await j.start()
    with pytest.raises(JournalError, match="append seq 4 but the last appended was 4"):
        j.append(4, Tick(ts=T))
    j.append(5, Tick(ts=T))
    with pytest.raises(JournalError, match="append seq 7"):
        j.append(7, Tick(ts=T))
    assert not j.closing
    await j.close()
    assert j.closing
    with pytest.raises(JournalError, match="closed"):
        j.append(6, Tick(ts=T))
    assert [s for s, _ in read_records(tmp_path)] == [5]
    assert segments(tmp_path)[0].name == "00000000000000000005.seg"


async def test_group_commit_one_fsync_per_batch_and_appends_continue_during_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the first batch's fsync is running, new appends pile up into the next batch;
    nothing is durable (no waiter resolves, no listener fires) until its fsync returns."""
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync
    syncs: list[int] = []

    def slow_sync(fd: int) -> None:
        syncs.append(fd)
        entered.set()
        assert release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    j = LocalJournal(tmp_path, "fsync")
    seen: list[int] = []
    j.add_listener(seen.append)
    await j.start()
    for seq in range(1, 4):
        j.append(seq, Tick(ts=T + seq))
    first = asyncio.create_task(j.wait_durable(3))
    await asyncio.to_thread(entered.wait, 5)  # batch 1 (seqs 1-3) is inside fsync
    for seq in range(4, 11):
        j.append(seq, Tick(ts=T + seq))
    second = asyncio.create_task(j.wait_durable(10))
    await asyncio.sleep(0.05)
    assert j.durable_seq == 0 and not first.done() and seen == []
    release.set()
    await asyncio.wait_for(second, 5)
    assert first.done()
    assert seen == [3, 10]
    assert (j.batches, j.records, j.last_batch_size) == (2, 10, 7)
    assert len(syncs) == 2
    assert j.fsync_seconds_total >= j.last_fsync_seconds > 0
    assert j.bytes_written == sum(p.stat().st_size for p in segments(tmp_path))
    await j.close()


async def test_os_policy_is_durable_after_write_without_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sync(fd: int) -> None:
        raise AssertionError("policy os must not fsync per batch")

    monkeypatch.setattr(os, "fdatasync", no_sync)
    j = LocalJournal(tmp_path, "os")
    seen: list[int] = []
    j.add_listener(seen.append)
    await j.start()
    j.append(1, Tick(ts=T))
    j.append(2, Tick(ts=T))
    assert j.durable_seq == 0
    await j.wait_durable(2)
    assert seen == [2] and j.durable_seq == 2
    assert segments(tmp_path)[0].stat().st_size == 2 * len(journal_mod.encode_frame(1, Tick(ts=T)))  # written (page cache)
    await j.close()


async def test_none_policy_is_durable_on_append(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "none")
    seen: list[int] = []
    j.add_listener(seen.append)
    await j.start()
    j.append(1, Tick(ts=T))
    assert j.durable_seq == 1
    await j.wait_durable(1)  # returns at once
    await j.close()
    assert seen == [1]
    assert [s for s, _ in read_records(tmp_path)] == [1]


async def test_close_flushes_everything_pending(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "fsync")
    await j.start()
    for seq in range(1, 501):
        j.append(seq, Tick(ts=T + seq))
    await j.close()
    assert j.durable_seq == 500
    assert [s for s, _ in read_records(tmp_path)] == list(range(1, 501))


async def test_segments_roll_at_the_configured_size_and_are_named_by_first_seq(tmp_path: Path) -> None:
    cmds = mixed_commands(300)
    j = LocalJournal(tmp_path, "os", segment_bytes=2_000)
    await j.start()
    for seq, cmd in enumerate(cmds, 1):
        j.append(seq, cmd)
        if seq % 10 == 0:
            await asyncio.sleep(0)  # a batch every 10 commands
    await j.close()
    segs = segments(tmp_path)
    assert len(segs) > 5
    for path in segs:
        first = next(iter(JournalReader(tmp_path, after_seq=int(path.stem) - 1)))[0]
        assert first == int(path.stem)
        assert path.stat().st_size < 2_000 + 10 * 200  # rolls at a batch boundary past the limit
    assert list(read_records(tmp_path)) == list(enumerate(cmds, 1))
    assert list(read_records(tmp_path, after_seq=250)) == list(enumerate(cmds, 1))[250:]


async def test_reopening_continues_in_a_new_segment_and_refuses_a_fork(tmp_path: Path) -> None:
    await journal_of(tmp_path, mixed_commands(10))
    with pytest.raises(JournalError, match=r"journal ends at seq 10 .* next_seq is 5"):
        LocalJournal(tmp_path, "os", next_seq=5)
    with pytest.raises(JournalError, match="next_seq is 1"):
        LocalJournal(tmp_path, "os")
    j = LocalJournal(tmp_path, "os", next_seq=11)
    await j.start()
    j.append(11, Tick(ts=T))
    await j.close()
    assert [p.name for p in segments(tmp_path)] == ["00000000000000000001.seg", "00000000000000000011.seg"]
    assert [s for s, _ in read_records(tmp_path)] == list(range(1, 12))
    assert segment_last_seq(segments(tmp_path)[-1]) == 11


async def test_reopening_over_a_torn_tail_is_refused_until_recovered(tmp_path: Path) -> None:
    await journal_of(tmp_path, mixed_commands(10))
    seg = segments(tmp_path)[0]
    seg.write_bytes(seg.read_bytes()[:-3])
    with pytest.raises(JournalError, match=r"incomplete record .* run recovery"):
        LocalJournal(tmp_path, "os", next_seq=10)


async def test_a_failed_write_stops_the_journal_and_fails_waiters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    j = LocalJournal(tmp_path, "fsync")
    await j.start()
    monkeypatch.setattr(os, "write", broken)
    j.append(1, Tick(ts=T))
    with pytest.raises(JournalError, match="No space left"):
        await j.wait_durable(1)
    assert j.durable_seq == 0
    with pytest.raises(JournalError, match="failed"):
        j.append(2, Tick(ts=T))
    with pytest.raises(JournalError, match="failed"):
        await j.wait_durable(1)
    monkeypatch.undo()
    with pytest.raises(JournalError):
        await j.close()


async def test_wait_durable_for_a_seq_never_appended_is_an_error(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "fsync")
    await j.start()
    with pytest.raises(JournalError, match="never appended"):
        await j.wait_durable(1)
    await j.close()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync policy"):
        LocalJournal(tmp_path, "sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="segment_bytes"):
        LocalJournal(tmp_path, segment_bytes=0)
    with pytest.raises(ValueError, match="next_seq"):
        LocalJournal(tmp_path, next_seq=0)


async def test_fsync_does_not_queue_behind_a_busy_default_executor(tmp_path: Path) -> None:
    """Logins hash passwords in the default executor; durability must not wait for them."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    blockers = [loop.run_in_executor(None, release.wait, 10) for _ in range(64)]
    try:
        j = LocalJournal(tmp_path, "fsync")
        await j.start()
        j.append(1, Tick(ts=T))
        await asyncio.wait_for(j.wait_durable(1), 5)
        await j.close()
    finally:
        release.set()
        await asyncio.gather(*blockers)


@pytest.mark.parametrize("policy", ["fsync", "os", "none"])
async def test_reused_batch_buffers_grow_and_shrink_between_batches(tmp_path: Path, policy: str) -> None:
    """Batches of very different sizes alternate between the two reused buffers."""
    cmds = mixed_commands(3_000)
    j = LocalJournal(tmp_path, policy)  # type: ignore[arg-type]
    await j.start()
    seq = 0
    for size in (1, 900, 2, 1_500, 1, 3, 590, 3):
        for _ in range(size):
            seq += 1
            j.append(seq, cmds[seq - 1])
        await j.wait_durable(seq)
        await asyncio.sleep(0)
    await j.close()
    assert j.batches >= 8 and j.records == seq == 3_000
    assert list(read_records(tmp_path)) == list(enumerate(cmds, 1))
