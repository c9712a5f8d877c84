"""A data directory written by an earlier version (state format 1: before the retention windows)
must start with this one: the old snapshot restores (its bytes checked against its saved digest on
load; its state re-encodes to a new-format digest), the journal tail replays on top, and
``journal verify`` compares replay-from-empty with the restored snapshot re-encoded.

The fixture (tests/journal/fixtures/format1: 70 journaled commands of the demo configuration -
bootstrap, 40 SHEA orders that trade, a market order, a snapshot at seq 65, five resting CCER
buys - written by commit b3e9aaa's ``carbonx serve``) is also a pinned replay: the same journal
must keep giving the same state digest (a change to the engine that changes it changes what an
existing journal means; bump ``STATE_FORMAT`` and this pin together, deliberately)."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.engine import STATE_FORMAT, Engine, EngineSnapshot
from carbonx.gateway.journal import JournalReader
from carbonx.gateway.recovery import recover, verify
from carbonx.gateway.sequencer import replay

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "format1"
DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo.toml"
# Replay of the fixture journal from empty, in this version's state format.
PINNED_DIGEST = "665211ebcd531699721f62c09ceab87d412c90156a9a5af24d998ad187b021a4"


@pytest.fixture
def config() -> MarketConfig:
    return load_market_text(DEMO.read_text())


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "data")
    return tmp_path / "data"


def test_an_older_format_snapshot_restores_and_the_tail_replays(old_dir: Path, config: MarketConfig) -> None:
    rec = recover(old_dir, config)
    assert (rec.snapshot_seq, rec.replayed, rec.engine.seq) == (65, 5, 70)
    assert rec.engine.restored_format == 1 < STATE_FORMAT
    assert rec.engine.digest() == PINNED_DIGEST  # the same state replay from empty gives
    open_ccer = rec.engine.orders_of(None, "A-001", "CCER", open_only=True)
    assert [(o.price, o.leaves_qty) for o in open_ccer] == [(8000, 10)] * 5


def test_the_fixture_journal_replays_to_the_pinned_digest(old_dir: Path, config: MarketConfig) -> None:
    engine = Engine(config)
    for _, cmd in JournalReader(old_dir, include_archive=True):
        assert replay(engine, cmd) is None
    assert (engine.seq, engine.digest()) == (70, PINNED_DIGEST)


def test_verify_compares_an_older_format_snapshot_by_re_encoding(old_dir: Path, config: MarketConfig) -> None:
    report = verify(old_dir, config)
    assert report.ok, report.problems
    [check] = report.snapshots
    assert check.old_format and check.ok and check.replayed_digest == check.restored_digest != check.saved_digest


def test_a_current_format_snapshot_must_match_its_digest_exactly(old_dir: Path, config: MarketConfig) -> None:
    rec = recover(old_dir, config)
    data = rec.engine.snapshot()
    assert Engine.restore(config, data).restored_format == STATE_FORMAT
    assert Engine.restore(config, data).digest() == rec.engine.digest()


def test_a_snapshot_from_a_newer_version_is_refused(config: MarketConfig) -> None:
    snap = msgspec.msgpack.decode(Engine(config).snapshot(), type=EngineSnapshot)
    newer = msgspec.msgpack.encode(msgspec.structs.replace(snap, format=STATE_FORMAT + 1))
    with pytest.raises(ValueError, match="newer than this version"):
        Engine.restore(config, newer)
