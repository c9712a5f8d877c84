"""``carbonx journal verify --cluster`` against a real 3-node cluster, as a real process.

What must hold: the digest it prints is the digest of replaying the whole stream (from the latest
snapshot + tail, and with --full from empty, every snapshot compared); a corrupt message in the
stream makes it exit 1 naming the stream seq; usage and connection problems exit 2.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from msgspec.structs import replace

from carbonx.engine.engine import Engine
from carbonx.gateway.cluster import snapshots
from carbonx.gateway.cluster.journal import Anchor, JetStreamJournal, connect
from carbonx.gateway.sequencer import replay
from carbonx.gateway.settings import ClusterSettings
from carbonx.gateway.testkit import demo_config, workload, write_config

pytestmark = pytest.mark.cluster


def _config(tmp_path: Path, settings: ClusterSettings) -> Path:
    return write_config(
        tmp_path / "cluster.toml",
        cluster={
            "nats_urls": list(settings.nats_urls),
            "command_stream": settings.command_stream,
            "command_subject": settings.command_subject,
            "snapshot_bucket": settings.snapshot_bucket,
        },
    )


async def _cli(*args: str) -> tuple[int, dict[str, object] | None, str]:
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "carbonx.gateway.cli", "journal", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(proc.stdout.splitlines()[-1]) if proc.stdout.strip() else None
    return proc.returncode, report, proc.stderr


@pytest.fixture
def settings(cluster_settings: ClusterSettings) -> ClusterSettings:
    return replace(cluster_settings, snapshot_bucket=f"SNAP_{cluster_settings.command_stream}", batch_max_commands=40)


async def test_verify_from_snapshot_and_from_empty_agree_with_a_full_replay(settings: ClusterSettings, tmp_path: Path) -> None:
    config = demo_config()
    cmds = workload(config, 800, seed=21)[:800]
    journal = JetStreamJournal(settings)
    await journal.start()
    for seq, cmd in enumerate(cmds[:400], 1):
        journal.append(seq, cmd)
    await journal.wait_durable(400)
    anchor = Anchor(journal.stream_last_seq, 400)
    for seq, cmd in enumerate(cmds[400:], 401):
        journal.append(seq, cmd)
    await journal.close()
    engine = Engine(config)
    for cmd in cmds[:410]:
        replay(engine, cmd)
    nc = await connect(settings.nats_urls)
    try:
        await snapshots.save_snapshot(nc.jetstream(), settings, engine, anchor)
    finally:
        await nc.close()
    for cmd in cmds[410:]:
        replay(engine, cmd)
    path = _config(tmp_path, settings)

    code, report, err = await _cli("--cluster", "--config", str(path))
    assert code == 0, err
    assert report is not None and report["ok"] is True
    assert report["snapshot"] == snapshots.object_name(410) and report["snapshot_seq"] == 410
    assert report["records"] == 390 and report["last_seq"] == 800 and report["digest"] == engine.digest()
    assert report["stream_messages"] == journal.batches

    code, report, err = await _cli("--cluster", "--full", "--config", str(path))
    assert code == 0, err
    assert report is not None and report["ok"] is True and report["snapshot"] is None
    assert report["records"] == 800 and report["digest"] == engine.digest()
    checks = report["snapshots"]
    assert isinstance(checks, list) and [(c["seq"], c["ok"]) for c in checks] == [(410, True)]


async def test_a_corrupt_message_is_refused_naming_its_stream_seq(settings: ClusterSettings, tmp_path: Path) -> None:
    config = demo_config()
    cmds = workload(config, 200, seed=22)[:200]
    journal = JetStreamJournal(settings)
    await journal.start()
    for seq, cmd in enumerate(cmds, 1):
        journal.append(seq, cmd)
    await journal.close()
    good_end = journal.stream_last_seq
    nc = await connect(settings.nats_urls)
    try:
        js = nc.jetstream()
        ack = await js.publish(settings.command_subject, b"\xc1 not a batch", stream=settings.command_stream)
        assert ack.seq == good_end + 1
    finally:
        await nc.close()
    path = _config(tmp_path, settings)
    for extra in ((), ("--full",)):
        code, report, err = await _cli("--cluster", *extra, "--config", str(path))
        assert code == 1, err
        assert report is not None and report["ok"] is False and report["last_seq"] == 200, "replayed up to the corruption"
        problems = report["problems"]
        assert isinstance(problems, list) and len(problems) == 1
        assert f"corrupt at stream seq {good_end + 1}" in problems[0] and "does not decode" in problems[0]


async def test_usage_and_connection_errors_exit_2(settings: ClusterSettings, tmp_path: Path) -> None:
    path = _config(tmp_path, settings)
    code, report, err = await _cli("--cluster", str(tmp_path), "--config", str(path))
    assert code == 2 and report is None and "--cluster takes no DIR" in err
    code, report, err = await _cli("--full", "--config", str(path))
    assert code == 2 and "--full needs --cluster" in err
    code, report, err = await _cli("--cluster", "--config", str(path))  # nothing written to this stream yet
    assert code == 2 and f"no stream {settings.command_stream}" in err
    nowhere = _config(tmp_path, replace(settings, nats_urls=("nats://127.0.0.1:1",)))
    code, report, err = await _cli("--cluster", "--config", str(nowhere))
    assert code == 2 and "cannot connect to NATS" in err


async def test_a_message_deleted_from_the_middle_is_refused(settings: ClusterSettings, tmp_path: Path) -> None:
    config = demo_config()
    journal = JetStreamJournal(settings)
    await journal.start()
    for seq, cmd in enumerate(workload(config, 200, seed=23)[:200], 1):
        journal.append(seq, cmd)
    await journal.close()
    nc = await connect(settings.nats_urls)
    try:
        await nc.jetstream().delete_msg(settings.command_stream, 3)  # 40 commands per batch: seqs 81..120
    finally:
        await nc.close()
    code, report, err = await _cli("--cluster", "--full", "--config", str(_config(tmp_path, settings)))
    assert code == 1, err
    assert report is not None and report["last_seq"] == 80, "replayed up to the hole"
    problems = report["problems"]
    assert isinstance(problems, list) and "corrupt at stream seq 3" in problems[0] and "missing" in problems[0]
