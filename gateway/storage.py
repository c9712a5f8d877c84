"""Is the data directory usable? Free space and writability, checked before the server
declares itself ready and then every ``[server] storage_check_s`` seconds.

A journal write that fails stops the exchange (the engine would be ahead of its
journal), so the server refuses to start on a disk that is full or read-only, and
while running it stops taking new orders (answering ``STORAGE_FULL``) and reports
not-ready once free space falls below ``[server] min_free_bytes``, well before a write
can fail. Cancels and operator commands are still taken: they free risk, and the
margin is there for them.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

PROBE_NAME = ".carbonx-write-probe"
PROBE_BYTES = 4096
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StorageUnavailable(Exception):
    """The data directory cannot take writes (full, below ``min_free_bytes``, read-only):
    ``carbonx serve`` refuses to start (exit status 4) with this message."""


@dataclass(frozen=True)
class StorageStatus:
    """The data directory's state: ``problem`` is empty when it is usable."""

    free_bytes: int
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer can still use on the file system of ``directory``."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def check_storage(directory: Path, min_free: int, probe: bool = True) -> StorageStatus:
    """Free space against ``min_free`` and (with ``probe``) a real write: a 4 KiB file
    written, fsynced and removed, which catches read-only mounts, permissions and a disk
    that reports space it cannot give. Never raises for an unusable directory."""
    try:
        free = free_bytes(directory)
    except OSError as exc:
        return StorageStatus(0, f"cannot inspect data directory {directory}: {exc.strerror or exc}")
    if free < min_free:
        return StorageStatus(free, f"data directory {directory} has {free} bytes free, below min_free_bytes = {min_free}")
    if probe:
        path = Path(directory) / PROBE_NAME
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * PROBE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            return StorageStatus(free, f"data directory {directory} is not writable: {exc.strerror or exc}")
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    return StorageStatus(free)


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` saying the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
