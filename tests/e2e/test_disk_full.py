"""Disk full, end to end (issue 9, item 6): the real server on a real, small tmpfs.

Fill the file system and check what an operator and a broker see: new orders refused
with ``STORAGE_FULL`` and ``/readyz`` not ready once free space is below
``min_free_bytes`` (the server keeps running); a snapshot that does not fit answers
``STORAGE_FULL`` and leaves no temporary file; when the journal itself cannot write,
commands get ``SHUTTING_DOWN`` (never -32603) and the server stops; a restart on the
still-full disk refuses to start (exit 4) instead of reporting ready; once space is
freed the restart recovers every acknowledged order.

Needs ``mount -t tmpfs`` (root with CAP_SYS_ADMIN); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbonx.gateway.client import ClientError, RpcError
from carbonx.gateway.testkit import Server, start_server, write_config
from tests.e2e.conftest import broker, operator, running_server

DISK_BYTES = 16 * 1024 * 1024
MIN_FREE = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)], capture_output=True, text=True, check=False
        )
    except OSError as exc:  # no mount binary
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Write filler files until at most ``leave`` bytes are free (0: until ENOSPC)."""
    n = len(list(disk.glob("filler-*")))
    with (disk / f"filler-{n}").open("wb", buffering=0) as f:
        while True:
            st = os.statvfs(disk)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                return
            chunk = min(64 * 1024, free - leave) if leave else 64 * 1024
            try:
                f.write(b"\xff" * max(chunk, 1))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return


def readyz(server: Server) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.metrics + "/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(server: Server, name: str) -> float:
    with urllib.request.urlopen(server.metrics + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def wait_for(check: object, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_full_disk_is_reported_never_crashes_a_request_and_loses_no_acknowledged_order(small_disk: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        server={"min_free_bytes": MIN_FREE, "storage_check_s": 0.1, "snapshot_every": 0},
        limits={"requests_per_s": 100000.0, "request_burst": 100000, "orders_per_s": 100000.0, "order_burst": 100000},
    )
    acked: list[str] = []
    with running_server(small_disk, config=config) as server:
        async with broker(server, "a") as a, operator(server) as op:
            for _ in range(5):
                acked.append((await a.place("A-001", "SHCER", "sell", 1, "21.00"))["order_id"])

            # 1. free space below min_free_bytes: refused, not ready, still running
            fill(small_disk, leave=MIN_FREE // 2)
            await wait_for(lambda: readyz(server)[0] == 503)
            _, body = readyz(server)
            assert "min_free_bytes" in body
            assert metric(server, "carbonx_data_dir_free_bytes") < MIN_FREE
            assert metric(server, "carbonx_storage_ok") == 0
            with pytest.raises(RpcError) as refused:
                await a.place("A-001", "SHCER", "sell", 1, "21.00")
            assert refused.value.reason == "STORAGE_FULL"

            # 2. completely full: the snapshot does not fit, says so, leaves nothing behind
            fill(small_disk)
            with pytest.raises(RpcError) as snap:
                await op.call("admin.snapshot")
            assert snap.value.reason == "STORAGE_FULL" and "no space left" in snap.value.message
            assert not list((small_disk / "snapshots").glob("*.tmp"))
            assert server.proc.poll() is None

            # 3. the journal cannot write: SHUTTING_DOWN (or the connection closes), never -32603
            futures = [await a.submit("order.cancel", {"account": "A-001", "order_id": "999999"}) for _ in range(1000)]
            results = await asyncio.gather(*futures, return_exceptions=True)
        assert server.proc.wait(30) == 1, server.log_tail()
    answers = [r.reason for r in results if isinstance(r, RpcError)]
    assert all(isinstance(r, ClientError) for r in results), [r for r in results if not isinstance(r, ClientError)][:3]
    assert not [r for r in results if isinstance(r, RpcError) and r.code == -32603]
    assert set(answers) <= {"UNKNOWN_ORDER", "SHUTTING_DOWN"}, set(answers)
    assert "SHUTTING_DOWN" in answers

    # 4. a restart on the still-full disk refuses to report ready
    with pytest.raises(AssertionError, match="exited with 4 before ready") as refused_start:
        start_server(small_disk, config=config, timeout=60)
    assert "cannot start" in str(refused_start.value) and "min_free_bytes" in str(refused_start.value)

    # 5. space freed: every acknowledged order is there
    for filler in small_disk.glob("filler-*"):
        filler.unlink()
    with running_server(small_disk, config=config) as server:
        assert readyz(server)[0] == 200
        async with broker(server, "a") as a:
            for order_id in acked:
                assert (await a.get_order("A-001", order_id))["status"] == "new"
            live = await a.list_orders("A-001", "SHCER", open_only=True)
            assert sorted(o["order_id"] for o in live) == sorted(acked), "the refused order never happened"
        with contextlib.suppress(AssertionError):
            server.terminate()
