"""Append + fdatasync: CPU time per call on a growing file vs a pre-allocated one.

The journal writer appends one group-commit batch (``--record`` bytes x ``--per-batch``
records) and calls ``fdatasync``. On a file that grows, every ``fdatasync`` must also commit
the new size (and new blocks) through the filesystem's metadata journal; on a file whose
blocks are already allocated and written (pre-zeroed), only the data pages go out. This
measures the calling thread's CPU time (user + system, ``time.thread_time``) and the wall
time per write+fdatasync for three layouts, alternating rounds so drift hits all equally:

* ``growing``: ``O_APPEND`` on a new file (what ``LocalJournal`` did up to session 3)
* ``prezeroed``: the file written full of zeros and synced first, then ``pwrite`` in place
* ``fallocated``: ``posix_fallocate`` (unwritten extents: each first write converts one)

Run it where the data directory lives (``--dir``, default the system temp dir). The last
line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _fallocate_keep_size(fd: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, 1, ctypes.c_long(0), ctypes.c_long(length)) != 0:  # FALLOC_FL_KEEP_SIZE
        raise OSError(ctypes.get_errno(), "fallocate")


def run(kind: str, folder: Path, calls: int, size: int) -> tuple[float, float]:
    path = folder / f"{kind}.seg"
    if path.exists():
        path.unlink()
    total = calls * size
    if kind in ("growing", "keepsize"):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if kind == "keepsize":
            _fallocate_keep_size(fd, total + (1 << 20))
            os.fsync(fd)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        if kind == "prezeroed":
            chunk = bytes(1 << 20)
            left = total + (1 << 20)
            while left > 0:
                left -= os.write(fd, chunk[: min(left, len(chunk))])
        elif kind == "fallocated":
            os.posix_fallocate(fd, 0, total + (1 << 20))
        else:  # keepsize: blocks reserved past the end, the size still grows with each write
            _fallocate_keep_size(fd, total + (1 << 20))
        os.fsync(fd)
    payload = os.urandom(size)
    off = 0
    c0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(calls):
        if kind in ("growing", "keepsize"):
            os.write(fd, payload)
        else:
            os.pwrite(fd, payload, off)
        off += size
        os.fdatasync(fd)
    c1, w1 = time.thread_time(), time.perf_counter()
    os.close(fd)
    path.unlink()
    return (c1 - c0) / calls * 1e6, (w1 - w0) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--record", type=int, default=150, help="bytes per journal record")
    p.add_argument("--per-batch", type=int, default=4, help="records per group commit")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(dir=args.dir, prefix="fdatasync-"))
    size = args.record * args.per_batch
    kinds = ("growing", "keepsize", "prezeroed", "fallocated")
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds:
            c, w = run(kind, folder, args.calls, size)
            cpu[kind].append(c)
            wall[kind].append(w)
            print(f"round {r} {kind:10s} cpu {c:7.1f} us/call  wall {w:7.1f} us/call")
    folder.rmdir()
    out = {"dir": args.dir, "bytes_per_call": size, "calls": args.calls}
    for kind in kinds:
        out[f"{kind}_cpu_us_per_call"] = round(statistics.median(cpu[kind]), 1)
        out[f"{kind}_wall_us_per_call"] = round(statistics.median(wall[kind]), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
