"""Disk full (issue 9, item 6) at unit level, with ENOSPC injected: a failed snapshot
leaves no temporary file and answers STORAGE_FULL; low free space makes the gateway
refuse new orders (not die) and report not-ready; a journal that failed answers
SHUTTING_DOWN, never -32603, and the engine does not get ahead of it."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from carbonx.engine.schema import Tick
from carbonx.gateway import protocol
from carbonx.gateway.app import ServeOptions, _readiness, run
from carbonx.gateway.http import HttpServer
from carbonx.gateway.journal import LocalJournal
from carbonx.gateway.metrics import make_registry
from carbonx.gateway.snapshots import SnapshotStore
from carbonx.gateway.storage import StorageUnavailable, check_storage, is_disk_full
from tests.gateway.support import demo_settings, start


def sell(price: str = "21.00", qty: int = 1, account: str = "A-001") -> dict[str, object]:
    return {"account": account, "instrument": "SHCER", "side": "sell", "price": price, "quantity": qty}


def fail_fsync_of_tmp_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from fsync, only for snapshot temporary files (the data was written, so a
    partial file exists when the error strikes). Inherited by a forked child too."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".snap.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("fork", [False, True])
async def test_snapshot_on_a_full_disk_answers_storage_full_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    h = await start(tmp_path)
    h.gw.snapshots = SnapshotStore(tmp_path, fork=fork)
    op = await h.operator()
    fail_fsync_of_tmp_files(monkeypatch)
    err = await op.fail("admin.snapshot")
    assert err.code == protocol.reason_code(protocol.STORAGE_FULL) and err.reason == protocol.STORAGE_FULL
    assert "no space left" in err.error["message"]
    assert not list((tmp_path / "snapshots").glob("*")), "the partial temporary file was removed"
    monkeypatch.undo()
    assert (await op.ok("admin.snapshot"))["seq"] == h.gw.engine.seq, "works again once there is space"
    await h.gw.shutdown()


async def test_snapshot_write_removes_its_temp_file_on_every_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    real = os.write

    def short_then_full(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            if len(data) > 10:
                return real(fd, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError) as info:
        store.save_bytes(7, b"x" * 1000, "0" * 64)
    assert is_disk_full(info.value)
    assert not list(store.folder.iterdir())


async def test_snapshot_child_killed_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = await start(tmp_path)
    store = SnapshotStore(tmp_path, fork=True)

    def die(self: SnapshotStore, engine: Any, seq: int, *rest: Any) -> None:  # the child writes a bit, then is killed
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tmp_for(seq).write_bytes(b"partial")
        os.kill(os.getpid(), 9)

    monkeypatch.setattr(SnapshotStore, "_child", die)
    with pytest.raises(Exception, match="child process failed"):
        await store.save(h.gw.engine)
    assert not list(store.folder.glob("*.tmp"))
    await h.gw.shutdown()


async def test_low_free_space_refuses_new_orders_keeps_cancels_and_reports_not_ready(tmp_path: Path) -> None:
    settings = demo_settings()
    h = await start(tmp_path, replace(settings, server=replace(settings.server, storage_check_s=0.05)))
    a = await h.broker("a")
    resting = await a.ok("order.place", **sell())
    assert _readiness(h.gw) is True
    h.gw.settings = replace(h.gw.settings, server=replace(h.gw.settings.server, min_free_bytes=1 << 62))  # "the disk filled up"
    for _ in range(100):
        if not h.gw.storage.ok:
            break
        await asyncio.sleep(0.02)
    seq = h.gw.engine.seq
    err = await a.fail("order.place", **sell())
    assert err.reason == protocol.STORAGE_FULL and "min_free_bytes" in err.error["message"]
    assert h.gw.engine.seq == seq, "refused before the engine"
    await a.ok("order.cancel", account="A-001", order_id=resting["order_id"])  # cancels still work
    readiness = _readiness(h.gw)
    assert isinstance(readiness, str) and "min_free_bytes" in readiness
    endpoint = HttpServer(lambda: make_registry(h.gw), lambda: _readiness(h.gw))
    ready = endpoint.answer("GET", "/readyz")
    assert ready.status == 503 and b"min_free_bytes" in ready.body
    metrics = endpoint.answer("GET", "/metrics").body
    assert b"carbonx_data_dir_free_bytes " in metrics and b"carbonx_storage_ok 0.0" in metrics
    h.gw.settings = replace(h.gw.settings, server=replace(h.gw.settings.server, min_free_bytes=0))  # space freed
    for _ in range(100):
        if h.gw.storage.ok:
            break
        await asyncio.sleep(0.02)
    await a.ok("order.place", **sell())
    assert _readiness(h.gw) is True
    await h.gw.shutdown()


def test_check_storage_reports_why() -> None:
    assert check_storage(Path("/"), 0).ok
    low = check_storage(Path("/"), 1 << 62)
    assert not low.ok and "below min_free_bytes" in low.problem and low.free_bytes > 0
    missing = check_storage(Path("/nonexistent/carbonx"), 0)
    assert not missing.ok and "cannot inspect" in missing.problem


async def test_run_refuses_to_start_without_free_space(tmp_path: Path) -> None:
    settings = demo_settings()
    settings = replace(settings, server=replace(settings.server, min_free_bytes=1 << 62))
    opts = ServeOptions(data_dir=str(tmp_path), host="127.0.0.1", port=0, admin_host="127.0.0.1", admin_port=0, metrics_port=0)
    with pytest.raises(StorageUnavailable, match="below min_free_bytes"):
        await run(settings, opts)
    assert not (tmp_path / "journal").exists() or not list((tmp_path / "journal").iterdir()), "nothing written"


async def test_a_journal_that_failed_answers_shutting_down_and_the_engine_stays_put(tmp_path: Path) -> None:
    journal = LocalJournal(tmp_path, policy="fsync")
    await journal.start()
    h = await start(tmp_path, journal=journal)
    h.gw.stop_event = asyncio.Event()
    a = await h.broker("a")
    acked = await a.ok("order.place", **sell())
    journal._fail(OSError(errno.ENOSPC, "No space left on device"))  # as the writer does on a failed write
    seq = h.gw.engine.seq
    err = await a.fail("order.place", **sell())
    assert err.reason == protocol.SHUTTING_DOWN and err.code != protocol.INTERNAL_ERROR
    assert h.gw.engine.seq == seq, "a command that cannot be journaled is not applied"
    assert h.gw.stop_event.is_set() and h.gw.fatal is not None
    with pytest.raises(Exception, match="shutting down"):
        h.gw.seq.submit(Tick(ts=h.gw.engine.ts))
    await h.gw.shutdown()
    assert acked["seq"] <= journal.durable_seq


@pytest.mark.parametrize(("key", "value"), [("min_free_bytes", -1), ("storage_check_s", -0.5), ("storage_check_s", 1e9)])
def test_storage_settings_are_bounded(key: str, value: float) -> None:
    from carbonx.gateway.settings import SettingsError, parse_settings
    from tests.gateway.support import DEMO_TEXT

    with pytest.raises(SettingsError, match=key):
        parse_settings(DEMO_TEXT.replace("[server]\n", f"[server]\n{key} = {value!r}\n", 1))
