"""Snapshots: the whole engine state at a sequence number, so start-up need not replay
the journal from the beginning of time.

``DIR/snapshots/<seq>.snap`` (seq zero-padded to 20 digits) holds::

    magic "CXSNAP01" | u64 seq | u64 payload length | u32 crc32(payload) | 64-byte hex SHA-256 digest | payload

The payload is ``Engine.snapshot()`` and the digest is ``Engine.digest()`` of that state
(a SHA-256 over those same bytes), so a snapshot is checked twice: the CRC catches a
damaged file cheaply, the digest proves the restored engine is the one that was saved.

Writing is atomic (temporary file, fsync, rename, fsync of the directory) so a crash
leaves either the old set of snapshots or the new one, never half a file under a
snapshot's name. ``save`` encodes on the engine thread (the only moment the engine is
paused) and does hashing and file I/O in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import re
import signal
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from carbonx.gateway.journal import archive_dir, fsync_dir, journal_dir, list_segments

if TYPE_CHECKING:
    from carbonx.engine.engine import Engine
    from carbonx.gateway.journal import Journal

log = logging.getLogger(__name__)

MAGIC = b"CXSNAP01"
HEADER = struct.Struct("<8sQQI64s")  # magic, seq, payload length, crc32, hex digest
SUFFIX = ".snap"
_NAME = re.compile(r"^(\d{20})\.snap$")
_CHILD_OTHER = 255  # exit status of a snapshot child that failed other than with an OSError

# Files that go with a snapshot (``SnapshotStore.save``'s ``alongside``): called at the moment the
# engine state is captured - on the engine's thread, or in the forked child - it captures what
# it needs and returns a blocking writer (run in a worker thread, or in the child), or None.
# Best effort: a writer's failure is reported (log, or the child's stderr), never the snapshot's.
Alongside = Callable[[], Callable[[], object] | None]


class SnapshotError(ValueError):
    """A snapshot file is unusable; the message names the file and the reason."""


def encode_snapshot(seq: int, data: bytes, digest: str) -> bytes:
    raw_digest = digest.encode("ascii")
    if len(raw_digest) != 64:
        raise ValueError(f"digest must be 64 hex characters, got {len(raw_digest)}")
    return HEADER.pack(MAGIC, seq, len(data), zlib.crc32(data), raw_digest) + data


def decode_snapshot(path: Path, blob: bytes) -> tuple[int, bytes, str]:
    """(seq, state bytes, digest) of a snapshot file's contents, fully validated."""
    if len(blob) < HEADER.size:
        raise SnapshotError(f"{path}: shorter than the snapshot header")
    magic, seq, length, crc, raw_digest = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise SnapshotError(f"{path}: not a carbonx snapshot (magic {magic!r})")
    data = blob[HEADER.size :]
    if len(data) != length:
        raise SnapshotError(f"{path}: payload is {len(data)} bytes, header says {length}")
    if zlib.crc32(data) != crc:
        raise SnapshotError(f"{path}: CRC mismatch")
    digest = raw_digest.decode("ascii", "replace")
    if hashlib.sha256(data).hexdigest() != digest:
        raise SnapshotError(f"{path}: state does not match its digest")
    m = _NAME.match(path.name)
    if m is not None and int(m.group(1)) != seq:
        raise SnapshotError(f"{path}: file name says seq {int(m.group(1))}, header says {seq}")
    return seq, data, digest


class SnapshotStore:
    """Snapshot files under ``directory/snapshots`` (``directory`` = the data dir).

    ``fork=False`` (default): ``save`` encodes the state on the engine's thread, which
    pauses the engine for the encoding (about 0.2 s per 50 MB of state measured here).
    ``fork=True`` (POSIX): ``save`` forks; the child encodes, hashes and writes the file
    from its copy-on-write image of the process while the engine carries on, so the
    pause is only the fork itself. The cost is memory: pages the engine modifies while
    the child runs are copied (at worst the state's size once more)."""

    def __init__(self, directory: Path, fork: bool = False) -> None:
        if fork and not hasattr(os, "fork"):
            raise ValueError("fork snapshots need os.fork (POSIX)")
        self.directory = Path(directory)
        self.folder = self.directory / "snapshots"
        self.fork = fork

    def remove_leftovers(self) -> list[Path]:
        """Delete temporary files of snapshots a crash interrupted. Only at start-up
        (recovery): while a server runs, a ``.tmp`` may be a snapshot being written."""
        if not self.folder.is_dir():
            return []
        leftovers = list(self.folder.glob(f"*{SUFFIX}.tmp"))
        for path in leftovers:
            path.unlink()
        return leftovers

    def path_for(self, seq: int) -> Path:
        return self.folder / f"{seq:020d}{SUFFIX}"

    def _tmp_for(self, seq: int) -> Path:
        path = self.path_for(seq)
        return path.with_name(path.name + ".tmp")

    def save_bytes(self, seq: int, data: bytes, digest: str) -> Path:
        """Atomically write one snapshot (tmp + fsync + rename + fsync dir). Safe to
        call from a worker thread: touches nothing but files."""
        self._write_tmp(seq, data, digest)
        return self._publish(seq)

    def _write_tmp(self, seq: int, data: bytes, digest: str) -> None:
        """Write the temporary file; on any failure (a full disk: ``ENOSPC``) remove
        what was written, so a failed snapshot never makes a shortage worse."""
        blob = encode_snapshot(seq, data, digest)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_for(seq)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self.discard_tmp(seq)
            raise

    def discard_tmp(self, seq: int) -> None:
        """Remove the temporary file of the snapshot at ``seq`` if there is one."""
        with contextlib.suppress(FileNotFoundError):
            self._tmp_for(seq).unlink()

    def _publish(self, seq: int) -> Path:
        path = self.path_for(seq)
        os.replace(self._tmp_for(seq), path)
        fsync_dir(self.folder)
        return path

    async def save(self, engine: Engine, journal: Journal | None = None, alongside: Alongside | None = None) -> Path:
        """Snapshot ``engine`` as of now; call it on the engine's thread between
        commands. The state is captured before this returns control to the loop (encoded
        here, or by a forked child); hashing and writing run off the engine thread. With
        ``journal`` given, the file is only published once the journal is durable up to
        the snapshot's seq, so a snapshot never gets ahead of the journal (recovery copes
        if it does, by setting such a snapshot aside). ``alongside`` (see ``Alongside``)
        captures, at the same moment, files that go with the snapshot."""
        seq = engine.seq
        loop = asyncio.get_running_loop()
        try:
            if self.fork:
                await self._write_tmp_forked(engine, seq, alongside)
            else:
                data = engine.snapshot()
                writer = alongside() if alongside is not None else None
                # Engine.digest() is SHA-256 over exactly these bytes (tests pin this).
                await loop.run_in_executor(None, lambda: self._write_tmp(seq, data, hashlib.sha256(data).hexdigest()))
                if writer is not None:
                    try:
                        await loop.run_in_executor(None, writer)
                    except Exception as exc:
                        log.warning("a file that goes with snapshot %d was not written: %r", seq, exc)
            if journal is not None:
                await journal.wait_durable(seq)
            return await loop.run_in_executor(None, self._publish, seq)
        except BaseException:  # every failure path: no partial file left behind
            self.discard_tmp(seq)
            raise

    async def _write_tmp_forked(self, engine: Engine, seq: int, alongside: Alongside | None = None) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; coverage cannot follow it
            self._child(engine, seq, alongside)
        _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            self.discard_tmp(seq)  # the child may have died (killed) before removing it
            if 0 < code < _CHILD_OTHER:  # the child's exit status is the errno of its OSError
                raise OSError(code, os.strerror(code), str(self._tmp_for(seq)))
            raise SnapshotError(f"{self._tmp_for(seq)}: snapshot child process failed (exit status {code})")

    def _child(self, engine: Engine, seq: int, alongside: Alongside | None) -> None:  # pragma: no cover - runs in the child
        """Encode, hash, write (then ``alongside``'s files), exit - touching no lock another
        thread may have held at fork time (no logging, no sys.stderr: raw writes only) and
        never returning."""
        code = _CHILD_OTHER
        try:
            signal.set_wakeup_fd(-1)  # signals sent to the child must not wake the parent's loop
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            data = engine.snapshot()
            self._write_tmp(seq, data, hashlib.sha256(data).hexdigest())
            code = 0
            if alongside is not None:
                try:
                    writer = alongside()
                    if writer is not None:
                        writer()
                except Exception as exc:  # best effort: the snapshot itself is written
                    os.write(2, f"carbonx snapshot child: a file that goes with snapshot {seq} was not written: {exc!r}\n".encode())
        except BaseException as exc:
            if isinstance(exc, OSError) and exc.errno and 0 < exc.errno < _CHILD_OTHER:
                code = exc.errno  # the parent re-raises it as an OSError (ENOSPC: disk full)
            os.write(2, f"carbonx snapshot child: {exc!r}\n".encode())
        finally:
            os._exit(code)

    def files(self) -> list[tuple[int, Path]]:
        """(seq, path) of every snapshot file, oldest first (not validated)."""
        out: list[tuple[int, Path]] = []
        if not self.folder.is_dir():
            return out
        for path in self.folder.iterdir():
            m = _NAME.match(path.name)
            if m is not None:
                out.append((int(m.group(1)), path))
        out.sort()
        return out

    def load(self, path: Path) -> tuple[int, bytes, str]:
        return decode_snapshot(path, path.read_bytes())

    def latest(self, max_seq: int | None = None) -> tuple[int, bytes, str] | None:
        """The newest snapshot that validates (at or below ``max_seq`` if given),
        skipping invalid ones with a logged warning."""
        for seq, path in reversed(self.files()):
            if max_seq is not None and seq > max_seq:
                continue
            try:
                return self.load(path)
            except (SnapshotError, OSError) as exc:
                log.warning("snapshot skipped: %s", exc)
        return None

    def set_aside(self, path: Path, why: str) -> Path:
        """Move a snapshot that must not be used into ``snapshots/stale`` (kept for
        inspection, never deleted)."""
        stale = self.folder / "stale"
        stale.mkdir(exist_ok=True)
        dest = stale / path.name
        os.replace(path, dest)
        fsync_dir(self.folder)
        log.warning("snapshot %s set aside to %s: %s", path, dest, why)
        return dest

    def prune(self, keep: int = 3) -> list[Path]:
        """Delete all but the newest ``keep`` snapshot files."""
        if keep < 1:
            raise ValueError("keep at least one snapshot")
        doomed = [path for _, path in self.files()[:-keep]]
        for path in doomed:
            path.unlink()
        return doomed

    def archive_segments_before(self, seq: int) -> list[Path]:
        """Move journal segments whose every record is at or below ``seq`` (covered by
        the snapshot at ``seq``) into ``archive/``. The newest segment is never moved:
        it is the one being written. Archived segments still count for
        ``carbonx journal verify`` and ``dump``; delete them only after backing up."""
        segs = list_segments(journal_dir(self.directory))
        target = archive_dir(self.directory)
        moved = []
        for (_, path), (next_first, _) in itertools.pairwise(segs):
            if next_first - 1 > seq:
                break
            target.mkdir(exist_ok=True)
            dest = target / path.name
            os.replace(path, dest)
            moved.append(dest)
        if moved:
            fsync_dir(target)
            fsync_dir(journal_dir(self.directory))
        return moved
