"""Supervision checkpoints: start-up restores the consumers from the newest checkpoint and
replays only from the snapshot at or below it, with exactly the state a full replay gives;
anything unusable (damaged, other thresholds, another format, past the journal, no snapshot
under it, a journal that does not reach it) falls back to the full replay."""

from __future__ import annotations

import hashlib
import itertools
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command, DayClose, DayOpen
from carbonx.engine.supervision.thresholds import DisclosureSpec, SurveillanceSpec
from carbonx.gateway import supervision_checkpoint as checkpoints
from carbonx.gateway.journal import journal_dir, list_segments
from carbonx.gateway.snapshots import SnapshotStore
from carbonx.gateway.supervision import Supervision
from tests.journal.helpers import write_journal
from tests.supervision.kit import Watched, watched
from tests.supervision.test_detectors import cross
from tests.supervision.test_disclosure import DAY, S

T0 = 1_764_043_200_000_000_000


def two_days() -> Watched:
    """Alerts on both days (wash trades inside a member, a 7% move) and a report per day."""
    eng = watched()
    cross(eng, "A2", "A1", 6000, 1)  # wash trade inside M1
    cross(eng, "B1", "A1", 6420, 1)  # a 7% move
    eng.apply(DayClose(ts=T0 + 3_300 * S))
    eng.apply(DayOpen(ts=T0 + DAY))
    cross(eng, "B2", "B1", 6420, 2, ts=T0 + DAY + S)  # wash trade inside M2
    cross(eng, "A1", "B2", 6000, 3)
    eng.apply(DayClose(ts=T0 + DAY + 3_300 * S))
    return eng


def supervision() -> Supervision:
    return Supervision(SurveillanceSpec(), DisclosureSpec(), market=None, outbound=None)  # type: ignore[arg-type]


def state(sup: Supervision) -> bytes:
    """Everything the consumers show: alerts (acks included), counts, reports."""
    assert sup.surveillance is not None and sup.reports is not None
    return msgspec.msgpack.encode(
        [list(sup.surveillance.alerts.values()), sorted(sup.surveillance.counts.items()), list(sup.reports.reports.values())]
    )


def snapshot_at(directory: Path, eng: Watched, seq: int) -> None:
    """Write the engine state after its first ``seq`` commands as a snapshot file."""
    scratch = Engine(eng.config)
    for cmd in eng.commands[:seq]:
        scratch.apply(cmd)
    data = scratch.snapshot()
    SnapshotStore(directory).save_bytes(seq, data, hashlib.sha256(data).hexdigest())


def checkpoint_at(directory: Path, eng: Watched, seq: int) -> None:
    """Write the consumers as they were after the first ``seq`` commands as a checkpoint."""
    sup = supervision()
    sup.derive(directory, eng.config, seq)
    found = sup.checkpoint()
    assert found is not None and found[0] == seq
    checkpoints.save(directory, *found)


def journaled(tmp_path: Path) -> tuple[Watched, bytes, int]:
    """The two days journaled in ``tmp_path``; the full replay's consumer state; records."""
    eng = two_days()
    write_journal(tmp_path, eng.config, eng.commands)
    full = supervision()
    assert full.derive(tmp_path, eng.config, eng.seq) == eng.seq
    assert full.surveillance is not None and len(full.surveillance.alerts) >= 2
    assert full.reports is not None and len(full.reports.reports) == 2
    return eng, state(full), eng.seq


def day_two_start(eng: Watched) -> int:
    """The seq of the second day's DayOpen (the checkpoints below sit on day one)."""
    return next(i for i, c in enumerate(eng.commands, 1) if isinstance(c, DayOpen) and c.ts > T0)


def test_start_up_replays_only_from_the_snapshot_under_the_checkpoint_and_matches_a_full_replay(tmp_path: Path) -> None:
    eng, full, n = journaled(tmp_path)
    mid = day_two_start(eng)
    snapshot_at(tmp_path, eng, mid - 3)
    checkpoint_at(tmp_path, eng, mid)  # past the snapshot: its first three commands are replayed unfed
    sup = supervision()
    assert sup.derive(tmp_path, eng.config, n) == n - (mid - 3)
    assert state(sup) == full
    assert sup.fed_seq == n
    # and it goes on as the live consumers would: the same checkpoint as a full replay's
    again = supervision()
    again.derive(tmp_path, eng.config, n)
    mine, theirs = sup.checkpoint(), again.checkpoint()
    assert mine is not None and theirs is not None and mine[0] == theirs[0]
    assert checkpoints.decode(mine[1], sup.fingerprint) == checkpoints.decode(theirs[1], sup.fingerprint)


def test_a_checkpoint_makes_a_journal_whose_start_was_deleted_derivable(tmp_path: Path) -> None:
    eng = two_days()
    cmds: list[Command] = list(eng.commands)
    write_journal(tmp_path, eng.config, cmds, segment_bytes=1024, burst=1)
    full = supervision()
    full.derive(tmp_path, eng.config, eng.seq)
    mid = day_two_start(eng)
    snapshot_at(tmp_path, eng, mid)
    checkpoint_at(tmp_path, eng, mid)
    segs = list_segments(journal_dir(tmp_path))
    covered = [p for (_, p), (nxt, _) in itertools.pairwise(segs) if nxt - 1 <= mid]
    assert covered, "some segments end before the snapshot"
    for p in covered:
        p.unlink()  # an operator "cleaned up" what the snapshot covers
    sup = supervision()
    assert sup.derive(tmp_path, eng.config, eng.seq) == eng.seq - mid
    assert state(sup) == state(full)


def damage(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize(
    "spoil, why",
    [
        (lambda d, eng, mid: damage(checkpoints.files(d)[-1][1]), "damaged (SHA-256 mismatch)"),
        (lambda d, eng, mid: [p.unlink() for _, p in SnapshotStore(d).files()], "no snapshot at or below it"),
        (lambda d, eng, mid: checkpoints.files(d)[-1][1].write_bytes(b"junk"), "not a supervision checkpoint"),
    ],
    ids=["damaged", "no-snapshot-under-it", "not-a-checkpoint"],
)
def test_an_unusable_checkpoint_falls_back_to_the_full_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Any, why: str
) -> None:
    eng, full, n = journaled(tmp_path)
    mid = day_two_start(eng)
    snapshot_at(tmp_path, eng, mid)
    checkpoint_at(tmp_path, eng, mid)
    spoil(tmp_path, eng, mid)
    sup = supervision()
    with caplog.at_level(logging.WARNING):
        assert sup.derive(tmp_path, eng.config, n) == n
    assert state(sup) == full
    assert why in caplog.text


def test_other_thresholds_or_a_checkpoint_past_the_journal_are_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eng, full, n = journaled(tmp_path)
    mid = day_two_start(eng)
    snapshot_at(tmp_path, eng, mid)
    checkpoint_at(tmp_path, eng, mid)
    stricter = Supervision(SurveillanceSpec(price_move_bp=100), DisclosureSpec(), market=None, outbound=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert stricter.derive(tmp_path, eng.config, n) == n  # history re-derived with the new thresholds
    assert "other [surveillance]/[disclosure] thresholds" in caplog.text
    assert state(stricter) != full  # a 1% move alerts where the default 7% did not
    caplog.clear()
    short = supervision()
    with caplog.at_level(logging.WARNING):
        assert short.derive(tmp_path, eng.config, mid - 1) == mid - 1  # the journal ends before it
    assert "past the journal's end" in caplog.text


def test_a_checkpoint_keeps_the_two_newest_and_a_consumer_error_writes_none(tmp_path: Path) -> None:
    eng, _, n = journaled(tmp_path)
    for seq in (n - 3, n - 2, n - 1):
        checkpoint_at(tmp_path, eng, seq)
    assert [s for s, _ in checkpoints.files(tmp_path)] == [n - 2, n - 1]
    torn = checkpoints.folder_of(tmp_path) / f"{n:020d}.ckpt.tmp"  # a crash while writing one
    torn.write_bytes(b"half")
    supervision().derive(tmp_path, eng.config, n)  # start-up removes it
    assert not torn.exists() and [s for s, _ in checkpoints.files(tmp_path)] == [n - 2, n - 1]
    sup = supervision()
    sup.derive(tmp_path, eng.config, n)
    sup.errors = 1  # a detector raised once: its state may be half-updated
    assert sup.checkpoint() is None


def test_a_checkpoint_carried_through_unreleased_events_equals_one_taken_there(tmp_path: Path) -> None:
    """What ``Gateway`` does at a snapshot: the consumers have the released events, the rest up
    to the snapshot's seq wait for durability; carried through them, the checkpoint is the one
    the consumers would give at the snapshot's seq."""
    eng, _, n = journaled(tmp_path)
    released = day_two_start(eng)
    sup = supervision()
    sup.derive(tmp_path, eng.config, released)
    found = sup.checkpoint()
    assert found is not None and found[0] == released
    later = [(seq, events) for seq, events in enumerate(eng.log[released:], released + 1) if events]
    carried = sup.checkpoint_through(found, later, n)
    there = supervision()
    there.derive(tmp_path, eng.config, n)
    taken = there.checkpoint()
    assert taken is not None and carried[0] == taken[0] == n
    fp = sup.fingerprint  # the same state (pickle bytes are not canonical: compare what they hold)
    assert checkpoints.decode(carried[1], fp) == checkpoints.decode(taken[1], fp)
    assert sup.checkpoint() == found  # the live consumers were not touched
    assert sup.checkpoint_through(found, [], released) == found
