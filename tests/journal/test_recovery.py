"""Snapshots and recovery: snapshot + replay equals replay from empty; bad snapshots are
skipped or set aside, never trusted; verify compares digests at every snapshot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Tick
from carbonx.gateway.journal import JournalCorruption, LocalJournal, read_records
from carbonx.gateway.recovery import RecoveryError, recover, verify
from carbonx.gateway.snapshots import SnapshotError, SnapshotStore, decode_snapshot
from carbonx.gateway.testkit import demo_config, workload
from tests.journal.helpers import replay_from_empty, segments, write_journal, write_journal_async

CMDS = workload(demo_config(), 400)


async def journal_with_snapshots(directory: Path, config: MarketConfig, at: tuple[int, ...], segment_bytes: int = 64 << 20) -> Engine:
    """Journal CMDS, saving a snapshot after each command count in ``at`` (as the gateway
    would: on the engine thread, between commands)."""
    eng = Engine(config)
    store = SnapshotStore(directory)
    journal = LocalJournal(directory, "os", segment_bytes=segment_bytes)
    await journal.start()
    for cmd in CMDS:
        eng.apply(cmd)
        journal.append(eng.seq, cmd)
        if eng.seq in at:
            await store.save(eng, journal)
        if eng.seq % 10 == 0:
            await asyncio.sleep(0)  # let the writer take a batch
    await journal.close()
    return eng


async def test_snapshot_plus_replay_equals_replay_from_empty(tmp_path: Path, demo_config: MarketConfig) -> None:
    live = await journal_with_snapshots(tmp_path, demo_config, at=(100, 250))
    rec = recover(tmp_path, demo_config)
    assert (rec.snapshot_seq, rec.replayed, rec.truncated_tail) == (250, len(CMDS) - 250, False)
    assert rec.engine.seq == len(CMDS)
    assert rec.engine.digest() == live.digest() == replay_from_empty(demo_config, CMDS).digest()
    assert rec.seconds > 0


async def test_snapshot_file_holds_the_engine_state_and_digest(tmp_path: Path, demo_config: MarketConfig) -> None:
    eng = replay_from_empty(demo_config, CMDS[:50])
    path = await SnapshotStore(tmp_path).save(eng)
    assert path.name == "00000000000000000050.snap"
    seq, data, digest = decode_snapshot(path, path.read_bytes())
    assert (seq, data, digest) == (50, eng.snapshot(), eng.digest())
    assert not list(path.parent.glob("*.tmp"))


def test_recover_an_empty_directory_gives_a_fresh_engine(tmp_path: Path, demo_config: MarketConfig) -> None:
    rec = recover(tmp_path, demo_config)
    assert (rec.engine.seq, rec.snapshot_seq, rec.replayed, rec.truncated_tail) == (0, 0, 0, False)
    assert rec.engine.digest() == Engine(demo_config).digest()


async def test_restart_cycle_recover_then_append_then_recover(tmp_path: Path, demo_config: MarketConfig) -> None:
    """What the server does on every start: recover, open the journal at the next seq."""
    await write_journal_async(tmp_path, demo_config, CMDS[:150])
    first = recover(tmp_path, demo_config)
    await SnapshotStore(tmp_path).save(first.engine)
    await write_journal_async(tmp_path, demo_config, CMDS[150:], engine=first.engine, policy="fsync")
    second = recover(tmp_path, demo_config)
    assert (second.snapshot_seq, second.replayed) == (150, len(CMDS) - 150)
    assert second.engine.digest() == replay_from_empty(demo_config, CMDS).digest()


async def test_corrupt_newest_snapshot_is_skipped_with_a_warning(
    tmp_path: Path, demo_config: MarketConfig, caplog: pytest.LogCaptureFixture
) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=(100, 250))
    newest = SnapshotStore(tmp_path).path_for(250)
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        rec = recover(tmp_path, demo_config)
    assert f"snapshot skipped: {newest}: CRC mismatch" in caplog.text
    assert rec.snapshot_seq == 100
    assert rec.engine.digest() == replay_from_empty(demo_config, CMDS).digest()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda b: b[:20], "shorter than the snapshot header"),
        (lambda b: b"XXXXXXXX" + b[8:], "not a carbonx snapshot"),
        (lambda b: b + b"!", "header says"),
    ],
)
def test_snapshot_validation_names_the_problem(tmp_path: Path, damage: object, why: str) -> None:
    store = SnapshotStore(tmp_path)
    eng = replay_from_empty(demo_config(), CMDS[:30])
    path = store.save_bytes(eng.seq, eng.snapshot(), eng.digest())
    with pytest.raises(SnapshotError, match=why):
        decode_snapshot(path, damage(path.read_bytes()))  # type: ignore[operator]


def test_snapshot_whose_state_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    eng = replay_from_empty(demo_config(), CMDS[:30])
    path = store.save_bytes(eng.seq, eng.snapshot(), "0" * 64)
    with pytest.raises(SnapshotError, match="does not match its digest"):
        store.load(path)
    assert store.latest() is None


async def test_snapshot_ahead_of_the_journal_is_set_aside(
    tmp_path: Path, demo_config: MarketConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot written before the journal was durable up to its seq (then a crash):
    its state includes commands that never became durable, so recovery must not use it."""
    await journal_with_snapshots(tmp_path, demo_config, at=(100,))
    ahead = replay_from_empty(demo_config, [*CMDS, Tick(ts=CMDS[-1].ts + 1)])
    store = SnapshotStore(tmp_path)
    store.save_bytes(ahead.seq, ahead.snapshot(), ahead.digest())
    with caplog.at_level(logging.WARNING):
        rec = recover(tmp_path, demo_config)
    assert "ahead of the journal" in caplog.text
    assert rec.snapshot_seq == 100 and rec.engine.seq == len(CMDS)
    assert rec.engine.digest() == replay_from_empty(demo_config, CMDS).digest()
    assert (store.folder / "stale" / store.path_for(ahead.seq).name).exists()
    assert [s for s, _ in store.files()] == [100]


async def test_save_with_journal_waits_until_the_snapshot_seq_is_durable(tmp_path: Path, demo_config: MarketConfig) -> None:
    eng = Engine(demo_config)
    journal = LocalJournal(tmp_path, "fsync")
    await journal.start()
    for cmd in CMDS[:20]:
        eng.apply(cmd)
        journal.append(eng.seq, cmd)
    assert journal.durable_seq < 20
    await SnapshotStore(tmp_path).save(eng, journal)
    assert journal.durable_seq >= 20
    await journal.close()


async def test_gap_between_snapshot_and_journal_stops_recovery(tmp_path: Path, demo_config: MarketConfig) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=(100,), segment_bytes=3_000)
    segs = segments(tmp_path)
    after = [p for p in segs if int(p.stem) > 101]
    after[0].unlink()  # records after the snapshot are missing
    with pytest.raises(JournalCorruption, match="segment starts at seq"):
        recover(tmp_path, demo_config)


async def test_snapshot_from_another_configuration_is_refused(tmp_path: Path, demo_config: MarketConfig) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=(100,))
    reduced = msgspec.structs.replace(demo_config, instruments={"SHEA": demo_config.instruments["SHEA"]})
    with pytest.raises(RecoveryError, match="does not restore with this configuration"):
        recover(tmp_path, reduced)


async def test_archived_segments_are_still_verified_and_recovery_needs_only_the_rest(tmp_path: Path, demo_config: MarketConfig) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=(100, 300), segment_bytes=3_000)
    store = SnapshotStore(tmp_path)
    before = segments(tmp_path)
    moved = store.archive_segments_before(300)
    assert moved and all(p.parent.name == "archive" for p in moved)
    remaining = segments(tmp_path)
    assert remaining == [p for p in before if p.name not in {m.name for m in moved}]
    assert int(remaining[0].stem) <= 301  # the record after the snapshot is still there
    rec = recover(tmp_path, demo_config)
    assert rec.snapshot_seq == 300
    assert rec.engine.digest() == replay_from_empty(demo_config, CMDS).digest()
    report = verify(tmp_path, demo_config)
    assert report.ok and report.records == len(CMDS) and report.first_seq == 1, report.problems
    assert [s.seq for s in report.snapshots] == [100, 300]


async def test_verify_compares_digests_at_every_snapshot(tmp_path: Path, demo_config: MarketConfig) -> None:
    live = await journal_with_snapshots(tmp_path, demo_config, at=(50, 200, 400))
    report = verify(tmp_path, demo_config)
    assert report.ok, report.problems
    assert (report.records, report.first_seq, report.last_seq, report.digest) == (len(CMDS), 1, len(CMDS), live.digest())
    assert [(s.seq, s.ok) for s in report.snapshots] == [(50, True), (200, True), (400, True)]
    assert all(s.saved_digest == s.replayed_digest == s.restored_digest for s in report.snapshots)


async def test_verify_reports_a_snapshot_that_differs_from_the_replay(tmp_path: Path, demo_config: MarketConfig) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=(200,))
    # A self-consistent snapshot at seq 200 of a different history.
    other = replay_from_empty(demo_config, [*CMDS[:199], Tick(ts=CMDS[198].ts)])
    path = SnapshotStore(tmp_path).save_bytes(200, other.snapshot(), other.digest())
    report = verify(tmp_path, demo_config)
    assert not report.ok
    assert report.problems == [
        f"{path}: replay from empty gives digest {replay_from_empty(demo_config, CMDS[:200]).digest()} at seq 200, the snapshot has {other.digest()}"
    ]


async def test_verify_reports_corruption_and_torn_tail_without_changing_files(tmp_path: Path, demo_config: MarketConfig) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=())
    seg = segments(tmp_path)[0]
    seg.write_bytes(seg.read_bytes()[:-2])
    report = verify(tmp_path, demo_config)
    assert report.ok and report.records == len(CMDS) - 1
    assert report.torn_tail is not None and str(seg) in report.torn_tail
    size = seg.stat().st_size
    data = bytearray(seg.read_bytes())
    data[100] ^= 1
    seg.write_bytes(bytes(data))
    report = verify(tmp_path, demo_config)
    assert not report.ok and report.problems[0].startswith(f"journal corrupt: {seg} at offset ")
    assert seg.stat().st_size == size


def test_prune_keeps_the_newest_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for n in (10, 20, 30, 40):
        eng = replay_from_empty(demo_config(), CMDS[:n])
        store.save_bytes(n, eng.snapshot(), eng.digest())
    removed = store.prune(keep=2)
    assert [p.name for p in removed] == [store.path_for(10).name, store.path_for(20).name]
    assert [s for s, _ in store.files()] == [30, 40]
    latest = store.latest()
    assert latest is not None and latest[0] == 40


def test_write_journal_helper_round_trips(tmp_path: Path, demo_config: MarketConfig) -> None:
    write_journal(tmp_path, demo_config, CMDS[:10])
    assert [c for _, c in read_records(tmp_path)] == CMDS[:10]


def test_save_bytes_is_callable_from_a_worker_thread(tmp_path: Path) -> None:
    eng = replay_from_empty(demo_config(), CMDS[:10])
    store = SnapshotStore(tmp_path)
    path = asyncio.run(asyncio.to_thread(store.save_bytes, eng.seq, eng.snapshot(), eng.digest()))
    assert store.load(path)[0] == 10


async def test_empty_segment_left_by_a_crash_is_harmless_and_reused(tmp_path: Path, demo_config: MarketConfig) -> None:
    """A crash between creating a segment and its first write leaves an empty file."""
    await write_journal_async(tmp_path, demo_config, CMDS[:30])
    empty = tmp_path / "journal" / f"{31:020d}.seg"
    empty.touch()
    rec = recover(tmp_path, demo_config)
    assert rec.engine.seq == 30 and not rec.truncated_tail
    await write_journal_async(tmp_path, demo_config, CMDS[30:40], engine=rec.engine)
    assert segments(tmp_path)[-1] == empty and empty.stat().st_size > 0
    assert [c for _, c in read_records(tmp_path)] == CMDS[:40]


async def test_starting_from_a_snapshot_backup_with_an_empty_journal(tmp_path: Path, demo_config: MarketConfig) -> None:
    eng = replay_from_empty(demo_config, CMDS[:50])
    SnapshotStore(tmp_path).save_bytes(eng.seq, eng.snapshot(), eng.digest())
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / f"{1:020d}.seg").touch()  # an empty journal
    rec = recover(tmp_path, demo_config)
    assert (rec.snapshot_seq, rec.replayed) == (50, 0)
    await write_journal_async(tmp_path, demo_config, CMDS[50:80], engine=rec.engine)
    again = recover(tmp_path, demo_config)
    assert (again.snapshot_seq, again.replayed) == (50, 30)
    assert again.engine.digest() == replay_from_empty(demo_config, CMDS[:80]).digest()


async def test_forked_snapshot_writes_the_same_file(tmp_path: Path, demo_config: MarketConfig) -> None:
    eng = Engine(demo_config)
    journal = LocalJournal(tmp_path, "fsync")
    await journal.start()
    for cmd in CMDS[:120]:
        eng.apply(cmd)
        journal.append(eng.seq, cmd)
    path = await SnapshotStore(tmp_path, fork=True).save(eng, journal)
    assert journal.durable_seq >= 120
    await journal.close()
    assert decode_snapshot(path, path.read_bytes()) == (120, eng.snapshot(), eng.digest())
    assert not list(path.parent.glob("*.tmp"))
    assert recover(tmp_path, demo_config).snapshot_seq == 120


async def test_forked_snapshot_failure_is_reported_and_nothing_is_published(
    tmp_path: Path, demo_config: MarketConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(tmp_path, fork=True)
    eng = replay_from_empty(demo_config, CMDS[:10])

    def broken(seq: int, data: bytes, digest: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write_tmp", broken)  # the child inherits the patch
    with pytest.raises(OSError) as info:  # the child's errno comes back: the caller can say "disk full"
        await store.save(eng)
    assert info.value.errno == 28
    assert store.files() == []

    def other(seq: int, data: bytes, digest: str) -> None:
        raise RuntimeError("not an OSError")

    monkeypatch.setattr(store, "_write_tmp", other)
    with pytest.raises(SnapshotError, match="snapshot child process failed"):
        await store.save(eng)
    assert store.files() == [] and not list(store.folder.glob("*.tmp"))


def test_leftover_temporary_files_are_removed_at_recovery_only(tmp_path: Path, demo_config: MarketConfig) -> None:
    store = SnapshotStore(tmp_path)
    store.folder.mkdir()
    tmp = store.path_for(7).with_name(store.path_for(7).name + ".tmp")
    tmp.write_bytes(b"half a snapshot")
    assert verify(tmp_path, demo_config).ok  # read-only: a running server may be writing it
    assert tmp.exists()
    recover(tmp_path, demo_config)
    assert not tmp.exists()


def test_verify_creates_nothing(tmp_path: Path, demo_config: MarketConfig) -> None:
    write_journal(tmp_path, demo_config, CMDS[:10])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert verify(tmp_path, demo_config).ok
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("fork", [False, True])
async def test_snapshot_captures_the_state_at_the_call_while_the_engine_moves_on(
    tmp_path: Path, demo_config: MarketConfig, fork: bool
) -> None:
    eng = replay_from_empty(demo_config, CMDS[:200])
    expected = eng.digest()
    task = asyncio.create_task(SnapshotStore(tmp_path, fork=fork).save(eng))
    await asyncio.sleep(0)  # save() runs up to its first await: the state is captured
    for cmd in CMDS[200:]:
        eng.apply(cmd)  # the engine keeps going while the file is written
    path = await task
    seq, _, digest = decode_snapshot(path, path.read_bytes())
    assert (seq, digest) == (200, expected)


async def test_journal_without_its_beginning_and_no_snapshot_stops_recovery(tmp_path: Path, demo_config: MarketConfig) -> None:
    await journal_with_snapshots(tmp_path, demo_config, at=(), segment_bytes=3_000)
    first = segments(tmp_path)[0]
    first.unlink()  # e.g. archived segments deleted, no snapshot to start from
    with pytest.raises(RecoveryError, match=r"journal resumes at seq \d+ but the engine is at 0: records 1\.\.\d+ are missing"):
        recover(tmp_path, demo_config)


async def test_a_command_the_engine_raised_on_is_replayed_the_same_way(
    tmp_path: Path, demo_config: MarketConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server journals a command even if the engine raised on it (a bug); replay must
    carry on past it exactly as the server did, not refuse to start."""

    def broken(eng: Engine, cmd: object) -> None:
        raise ZeroDivisionError("engine bug")

    monkeypatch.setitem(Engine.handlers, Tick, broken)
    cmds = [*CMDS[:40], Tick(ts=CMDS[39].ts), *CMDS[40:60]]
    journal = LocalJournal(tmp_path, "os")
    await journal.start()
    for seq, cmd in enumerate(cmds, 1):
        journal.append(seq, cmd)
    await journal.close()
    with caplog.at_level(logging.ERROR):
        rec = recover(tmp_path, demo_config)
    assert "engine raised on replay of seq 41" in caplog.text
    assert rec.engine.seq == len(cmds) and rec.replayed == len(cmds)
    report = verify(tmp_path, demo_config)
    assert report.ok and report.engine_errors == ["seq 41: ZeroDivisionError('engine bug')"]


@pytest.mark.parametrize("fork", [False, True], ids=["inline", "forked"])
async def test_files_alongside_a_snapshot_are_captured_with_it_and_never_fail_it(
    tmp_path: Path, demo_config: MarketConfig, fork: bool
) -> None:
    """``alongside`` captures at the engine state's moment (a later change is not in the file)
    and writes off the engine's thread or in the child; a failing writer leaves the snapshot."""
    store = SnapshotStore(tmp_path, fork=fork)
    eng = replay_from_empty(demo_config, CMDS[:10])
    state = {"value": "at capture"}
    out = tmp_path / "alongside.txt"

    def capture() -> Callable[[], object]:
        captured = state["value"]
        return lambda: out.write_text(captured)

    task = asyncio.ensure_future(store.save(eng, alongside=capture))
    await asyncio.sleep(0)  # the capture has happened (inline: before the first await; forked: the fork)
    state["value"] = "changed later"
    path = await task
    assert out.read_text() == "at capture" and path.exists()

    def broken() -> Callable[[], object]:
        def write() -> None:
            raise OSError(28, "No space left on device")

        return write

    eng.apply(CMDS[10])
    again = await store.save(eng, alongside=broken)
    assert decode_snapshot(again, again.read_bytes())[0] == eng.seq
