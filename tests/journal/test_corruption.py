"""Damaged journals: a torn final record is reported (and truncated by recovery);
damage anywhere else raises JournalCorruption naming the file and offset."""

from __future__ import annotations

import logging
import shutil
import struct
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonx.engine.config import MarketConfig
from carbonx.engine.schema import AnyCommand
from carbonx.gateway.journal import HEADER, JournalCorruption, JournalReader, encode_frame, read_records
from carbonx.gateway.recovery import recover
from carbonx.gateway.testkit import demo_config, workload
from tests.journal.helpers import replay_from_empty, segments, write_journal

CMDS = workload(demo_config(), 60)  # 24 setup commands + 60 orders/cancels


@pytest.fixture
def journaled(tmp_path: Path, demo_config: MarketConfig) -> Path:
    write_journal(tmp_path, demo_config, CMDS)
    return tmp_path


def frame_offsets(data: bytes) -> list[int]:
    offsets, off = [], 0
    while off < len(data):
        offsets.append(off)
        off += HEADER.size + HEADER.unpack_from(data, off)[0]
    return offsets


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x41
    path.write_bytes(bytes(data))


def read_all(directory: Path) -> tuple[list[int], JournalReader]:
    reader = JournalReader(directory)
    return [seq for seq, _ in reader], reader


# --------------------------------------------------------------------------- torn tails


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 20])
def test_torn_last_record_is_dropped_and_reported(journaled: Path, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    seg = segments(journaled)[0]
    data = seg.read_bytes()
    last = frame_offsets(data)[-1]
    seg.write_bytes(data[: last + cut])
    seqs, reader = read_all(journaled)
    assert seqs == list(range(1, len(CMDS)))
    assert reader.torn is not None and reader.torn.offset == last and reader.torn.path == seg
    with caplog.at_level(logging.WARNING):
        assert len(list(read_records(journaled))) == len(CMDS) - 1
    assert f"torn record at {seg} offset {last}" in caplog.text
    assert seg.stat().st_size == last + cut  # reading never modifies


def test_zero_filled_tail_is_torn(journaled: Path) -> None:
    """After a power loss the file may be longer than what reached the disk (zeros)."""
    seg = segments(journaled)[0]
    size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(b"\0" * 4096)
    seqs, reader = read_all(journaled)
    assert seqs == list(range(1, len(CMDS) + 1))
    assert reader.torn is not None and reader.torn.offset == size


def test_last_record_with_bad_crc_at_end_of_file_is_torn(journaled: Path) -> None:
    seg = segments(journaled)[0]
    last = frame_offsets(seg.read_bytes())[-1]
    flip(seg, seg.stat().st_size - 1)
    seqs, reader = read_all(journaled)
    assert seqs == list(range(1, len(CMDS)))
    assert reader.torn is not None and reader.torn.offset == last and reader.torn.why == "CRC mismatch"


def test_recovery_truncates_the_torn_tail_and_the_journal_continues(
    journaled: Path, demo_config: MarketConfig, caplog: pytest.LogCaptureFixture
) -> None:
    seg = segments(journaled)[0]
    data = seg.read_bytes()
    last = frame_offsets(data)[-1]
    seg.write_bytes(data[: last + 11])
    with caplog.at_level(logging.WARNING):
        rec = recover(journaled, demo_config)
    assert "truncating torn final record" in caplog.text and str(seg) in caplog.text
    assert rec.truncated_tail and rec.replayed == len(CMDS) - 1 and rec.snapshot_seq == 0
    assert seg.stat().st_size == last
    assert rec.engine.digest() == replay_from_empty(demo_config, CMDS[:-1]).digest()
    # the gateway carries on from there; the lost command can be re-sent
    write_journal(journaled, demo_config, CMDS[-1:], engine=rec.engine)
    assert [s for s, _ in read_records(journaled)] == list(range(1, len(CMDS) + 1))
    again = recover(journaled, demo_config)
    assert not again.truncated_tail
    assert again.engine.digest() == replay_from_empty(demo_config, CMDS).digest()


# --------------------------------------------------------------------------- corruption


def test_flipped_byte_mid_file_stops_with_file_and_offset(journaled: Path, demo_config: MarketConfig) -> None:
    seg = segments(journaled)[0]
    offsets = frame_offsets(seg.read_bytes())
    bad = offsets[30]
    flip(seg, bad + HEADER.size + 5)
    before = seg.read_bytes()
    with pytest.raises(JournalCorruption) as info:
        list(read_records(journaled))
    assert (info.value.file, info.value.offset, info.value.why) == (seg, bad, "CRC mismatch")
    with pytest.raises(JournalCorruption, match=rf"journal corrupt: {seg} at offset {bad}: CRC mismatch"):
        recover(journaled, demo_config)
    assert seg.read_bytes() == before  # recovery refused and changed nothing


def test_length_flipped_past_end_of_file_mid_file_is_corruption_not_a_torn_tail(journaled: Path) -> None:
    """A huge length in a middle record looks like a torn write; the later valid records
    prove it is not, so nothing is dropped."""
    seg = segments(journaled)[0]
    data = bytearray(seg.read_bytes())
    bad = frame_offsets(bytes(data))[10]
    struct.pack_into("<I", data, bad, len(data))
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorruption) as info:
        list(read_records(journaled))
    assert info.value.offset == bad and "runs past the end" in info.value.why


def test_length_flipped_to_reach_end_of_file_is_corruption(journaled: Path) -> None:
    seg = segments(journaled)[0]
    data = bytearray(seg.read_bytes())
    bad = frame_offsets(bytes(data))[-5]
    struct.pack_into("<I", data, bad, len(data) - bad - HEADER.size)
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorruption) as info:
        list(read_records(journaled))
    assert info.value.offset == bad and info.value.why == "CRC mismatch"


def test_zero_length_record_mid_file_is_corruption(journaled: Path) -> None:
    seg = segments(journaled)[0]
    data = bytearray(seg.read_bytes())
    bad = frame_offsets(bytes(data))[3]
    struct.pack_into("<I", data, bad, 0)
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorruption, match="impossible record length 0") as info:
        list(read_records(journaled))
    assert info.value.offset == bad


def test_record_with_valid_crc_that_does_not_decode_is_corruption(journaled: Path) -> None:
    seg = segments(journaled)[0]
    junk = msgspec.msgpack.encode((len(CMDS) + 1, {"c": "no_such_command", "ts": 1}))
    seg.write_bytes(seg.read_bytes() + HEADER.pack(len(junk), zlib.crc32(junk)) + junk)
    with pytest.raises(JournalCorruption, match="does not decode") as info:
        list(read_records(journaled))
    assert info.value.offset == len(seg.read_bytes()) - len(junk) - HEADER.size


def test_out_of_sequence_record_is_corruption(journaled: Path) -> None:
    seg = segments(journaled)[0]
    size = seg.stat().st_size
    seg.write_bytes(seg.read_bytes() + encode_frame(len(CMDS) + 2, CMDS[0]))
    with pytest.raises(JournalCorruption, match=rf"at offset {size}: record has seq {len(CMDS) + 2}, expected {len(CMDS) + 1}"):
        list(read_records(journaled))


def multi_segment(tmp_path: Path, config: MarketConfig) -> list[Path]:
    write_journal(tmp_path, config, CMDS, segment_bytes=1_500, burst=5)
    segs = segments(tmp_path)
    assert len(segs) >= 3
    return segs


def test_torn_end_of_an_older_segment_is_corruption(tmp_path: Path, demo_config: MarketConfig) -> None:
    segs = multi_segment(tmp_path, demo_config)
    data = segs[0].read_bytes()
    segs[0].write_bytes(data[:-4])
    with pytest.raises(JournalCorruption) as info:
        list(read_records(tmp_path))
    assert info.value.file == segs[0] and info.value.offset == frame_offsets(data)[-1]


def test_missing_segment_is_corruption(tmp_path: Path, demo_config: MarketConfig) -> None:
    segs = multi_segment(tmp_path, demo_config)
    segs[1].unlink()
    with pytest.raises(JournalCorruption, match=rf"{segs[2]} at offset 0: segment starts at seq {int(segs[2].stem)}"):
        list(read_records(tmp_path))


def test_segment_renamed_by_hand_is_corruption(tmp_path: Path, demo_config: MarketConfig) -> None:
    segs = multi_segment(tmp_path, demo_config)
    shutil.move(segs[1], segs[1].with_name("copy.seg"))
    with pytest.raises(JournalCorruption, match="not a 20-digit sequence number"):
        list(read_records(tmp_path))


def test_segment_whose_name_disagrees_with_its_first_record(tmp_path: Path, demo_config: MarketConfig) -> None:
    segs = multi_segment(tmp_path, demo_config)
    first = int(segs[1].stem)
    shutil.move(segs[1], segs[1].with_name(f"{first - 1:020d}.seg"))
    with pytest.raises(JournalCorruption):
        list(read_records(tmp_path))


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0))
def test_any_truncation_yields_exactly_the_complete_records(journaled: Path, cut: int) -> None:
    seg = segments(journaled)[0]
    original = seg.read_bytes()
    try:
        cut %= len(original) + 1
        seg.write_bytes(original[:cut])
        seqs, reader = read_all(journaled)
        complete = [o for o in [*frame_offsets(original), len(original)] if o <= cut]
        assert seqs == list(range(1, len(complete)))
        assert (reader.torn is None) == (cut == complete[-1])
    finally:
        seg.write_bytes(original)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_caught_and_never_yields_a_wrong_record(journaled: Path, pos: int, bit: int) -> None:
    """Damage in any record but the last raises; in the last it may read as torn. Either
    way every record that is yielded is the original one."""
    seg = segments(journaled)[0]
    original = seg.read_bytes()
    try:
        pos %= len(original)
        data = bytearray(original)
        data[pos] ^= 1 << bit
        seg.write_bytes(bytes(data))
        last = frame_offsets(original)[-1]
        got: list[tuple[int, AnyCommand]] = []
        try:
            got.extend(read_records(journaled))
            raised = False
        except JournalCorruption:
            raised = True
        assert got == list(enumerate(CMDS, 1))[: len(got)]
        if pos < last:
            assert raised
        else:
            assert raised or len(got) == len(CMDS) - 1
    finally:
        seg.write_bytes(original)
