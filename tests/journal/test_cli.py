"""``carbonx journal verify|dump`` (gateway.journal_cli.main)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.schema import AnyCommand
from carbonx.gateway.journal_cli import main
from carbonx.gateway.snapshots import SnapshotStore
from carbonx.gateway.testkit import DEMO as ROOT_CONFIG
from carbonx.gateway.testkit import demo_config, workload
from tests.journal.helpers import replay_from_empty, segments, write_journal

CMDS = workload(demo_config(), 100)


@pytest.fixture
def data_dir(tmp_path: Path, demo_config: MarketConfig) -> Path:
    eng = write_journal(tmp_path, demo_config, CMDS[:60])
    SnapshotStore(tmp_path).save_bytes(eng.seq, eng.snapshot(), eng.digest())
    write_journal(tmp_path, demo_config, CMDS[60:], engine=eng)
    return tmp_path


def test_dump_prints_every_record_as_a_json_line(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dump", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(CMDS)
    first = json.loads(lines[0])
    assert first["seq"] == 1 and first["cmd"]["c"] == "member_create" and first["cmd"]["member"] == "M1"
    decoded = [msgspec.convert(json.loads(line)["cmd"], AnyCommand) for line in lines]
    assert decoded == CMDS


def test_dump_from_seq(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "dump", str(data_dir), "--from", "95"]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == list(range(95, len(CMDS) + 1))


def test_dump_of_a_corrupt_journal_prints_what_is_good_then_fails(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg = segments(data_dir)[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x10
    seg.write_bytes(bytes(data))
    assert main(["dump", str(data_dir)]) == 1
    out = capsys.readouterr()
    assert f"journal corrupt: {seg} at offset" in out.err
    assert 0 < len(out.out.splitlines()) < len(CMDS)


def test_verify_ok_prints_a_json_report(data_dir: Path, demo_config: MarketConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(data_dir), "--config", str(ROOT_CONFIG)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["records"] == len(CMDS) and report["last_seq"] == len(CMDS)
    assert report["digest"] == replay_from_empty(demo_config, CMDS).digest()
    assert [(s["seq"], s["ok"]) for s in report["snapshots"]] == [(60, True)]


def test_verify_mismatch_exits_1(data_dir: Path, demo_config: MarketConfig, capsys: pytest.CaptureFixture[str]) -> None:
    other = replay_from_empty(demo_config, CMDS[:59] + CMDS[61:62])
    SnapshotStore(data_dir).save_bytes(60, other.snapshot(), other.digest())
    assert main(["verify", str(data_dir), "--config", str(ROOT_CONFIG)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "replay from empty gives digest" in report["problems"][0]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path)]) == 2  # --config is required
    assert main(["verify", str(tmp_path / "nope"), "--config", str(ROOT_CONFIG)]) == 2
    assert main(["verify", str(tmp_path), "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot load config" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_runs_as_a_module(data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "carbonx.gateway.journal_cli", "verify", str(data_dir), "--config", str(ROOT_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["ok"] is True
