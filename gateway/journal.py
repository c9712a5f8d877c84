"""The command journal: where commands become durable, in sequence order.

Every command the engine applies is appended here under the engine's sequence number
before any of its events leave the process. Replaying the journal into a fresh engine
rebuilds the exact state (the engine is deterministic), so the journal *is* the
exchange's book of record.

On disk (``DIR`` is the data directory shared with snapshots and recovery)::

    DIR/journal/00000000000000000001.seg   # segment, named by the seq of its first record
    DIR/archive/...                        # segments fully covered by a snapshot

A segment is a sequence of frames ``<u32 length><u32 crc32(payload)><payload>``
(little endian), the payload being the MessagePack encoding of ``(seq, command)``.
Segments roll at batch boundaries once they reach ``segment_bytes``.

Durability uses group commit: ``append`` only encodes into the pending batch; once per
event-loop iteration the batch is handed (a ``queue.SimpleQueue``) to the journal's own
writer thread, which writes it with one ``os.write`` and (policy ``fsync``) one
``fdatasync`` while the next batch accumulates, then reports back with one
``loop.call_soon_threadsafe``: ``durable_seq`` advances, waiters wake, listeners run and
the next batch is handed over. One fsync per batch rather than per command is what makes
durable order entry affordable (an fsync costs milliseconds); one thread hand-off each way
per batch, with no executor, future or task in between, is what keeps it cheap on the loop.

Policies (see docs/journal.md):

* ``fsync`` - durable means on stable storage: survives a power loss.
* ``os``    - durable once written to the OS page cache: survives a crash of this
  process, not of the machine.
* ``none``  - durable as soon as appended; data may still be in our buffer. Tests and
  benchmarks only: a crash loses recent commands that clients were told about.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import queue
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from carbonx.engine.schema import AnyCommand, Command

log = logging.getLogger(__name__)

Policy = Literal["fsync", "os", "none"]
POLICIES: tuple[str, ...] = ("fsync", "os", "none")

HEADER = struct.Struct("<II")  # payload length, crc32 of payload
MAX_RECORD = 16 << 20  # far above any command the gateway admits; bounds a corrupt length
SEGMENT_SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")

_record_decoder: msgspec.msgpack.Decoder[tuple[int, AnyCommand]] = msgspec.msgpack.Decoder(tuple[int, AnyCommand])
_seq_decoder = msgspec.msgpack.Decoder(tuple[int, msgspec.Raw])
_encoder = msgspec.msgpack.Encoder()
_encode_into = _encoder.encode_into
_pack_into = HEADER.pack_into
_crc32 = zlib.crc32


class JournalError(RuntimeError):
    """The journal cannot be used as asked (misuse, failed write, inconsistent files)."""


class UnencodableCommand(ValueError):
    """``append`` could not encode the command; nothing was appended and the journal is fine."""


class JournalCorruption(JournalError):
    """A record that should be valid is not. Never skipped: start-up must stop here."""

    def __init__(self, file: Path, offset: int, why: str) -> None:
        super().__init__(f"journal corrupt: {file} at offset {offset}: {why}")
        self.file = file
        self.offset = offset
        self.why = why


# --------------------------------------------------------------------------- layout


def journal_dir(directory: Path) -> Path:
    return Path(directory) / "journal"


def archive_dir(directory: Path) -> Path:
    return Path(directory) / "archive"


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(folder: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment in ``folder``, oldest first. A ``.seg`` file
    whose name is not a sequence number is refused rather than ignored: it means
    someone renamed or dropped files by hand and the history is no longer certain."""
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        if path.suffix != SEGMENT_SUFFIX:
            continue
        m = _SEGMENT_NAME.match(path.name)
        if m is None:
            raise JournalCorruption(path, 0, "segment file name is not a 20-digit sequence number")
        out.append((int(m.group(1)), path))
    out.sort()
    return out


def encode_frame(seq: int, cmd: AnyCommand) -> bytes:
    """One framed record (used by tests and tools; the journal inlines the same steps)."""
    payload = _encoder.encode((seq, cmd))
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def fsync_dir(folder: Path) -> None:
    """Make a created/renamed directory entry durable (POSIX needs the directory synced)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TornTail:
    """An incomplete final record: the process died in the middle of writing it."""

    path: Path
    offset: int  # where the torn frame starts = the length to truncate the file to
    size: int  # file size found
    why: str


class JournalReader:
    """Iterates ``(seq, command)`` over the journal after ``after_seq``, validating
    framing, CRC, decoding and sequence continuity.

    Mid-file damage raises ``JournalCorruption``. Only the end of the newest segment may
    be torn (a crash mid-write): iteration then stops before it and ``torn`` describes
    it; the reader never modifies files (``recovery`` decides to truncate)."""

    def __init__(self, directory: Path, after_seq: int = 0, include_archive: bool = False) -> None:
        self.directory = Path(directory)
        self.after_seq = after_seq
        self.include_archive = include_archive
        self.torn: TornTail | None = None
        self.last_seq = 0  # last valid record seen (0 = none)
        self.first_seq = 0  # first record seen in the segments read (0 = none)

    def segments(self) -> list[tuple[int, Path]]:
        segs = list_segments(journal_dir(self.directory))
        if self.include_archive:
            segs = sorted(list_segments(archive_dir(self.directory)) + segs)
        for (a, pa), (b, pb) in itertools.pairwise(segs):
            if a == b:
                raise JournalCorruption(pb, 0, f"segment starts at the same seq as {pa}")
        return segs

    def __iter__(self) -> Iterator[tuple[int, AnyCommand]]:
        segs = self.segments()
        # Skip whole segments that end before after_seq: the next one starts at or below it.
        start = 0
        for i, (first, _) in enumerate(segs):
            if first <= self.after_seq + 1:
                start = i
        expected = 0  # 0 = anything (first record read); then previous + 1
        for i in range(start, len(segs)):
            first, path = segs[i]
            last_segment = i == len(segs) - 1
            if expected and first != expected and path.stat().st_size:
                raise JournalCorruption(path, 0, f"segment starts at seq {first} but the previous segment ended at {expected - 1}")
            seen = 0
            for seq, cmd in self._read_segment(path, first, last_segment):
                seen += 1
                self.last_seq = seq
                if seq > self.after_seq:
                    yield seq, cmd
            # An empty segment (created, then a crash before its first write) holds
            # nothing and proves nothing; gaps show up in the seqs of the records.
            if seen:
                self.first_seq = self.first_seq or first
                expected = self.last_seq + 1

    def _read_segment(self, path: Path, first: int, last_segment: bool) -> Iterator[tuple[int, AnyCommand]]:
        data = path.read_bytes()
        mv = memoryview(data)
        size = len(data)
        off = 0
        expected = first
        unpack = HEADER.unpack_from
        crc32 = zlib.crc32
        decode = _record_decoder.decode
        while off < size:
            problem = None
            start = off + 8  # HEADER.size
            if start > size:
                problem = "incomplete frame header"
            else:
                length, crc = unpack(data, off)
                end = start + length
                if length == 0 or length > MAX_RECORD:
                    problem = f"impossible record length {length}"
                elif end > size:
                    problem = f"record of {length} bytes runs past the end of the file ({size} bytes)"
                else:
                    payload = mv[start:end]
                    if crc32(payload) != crc:
                        problem = "CRC mismatch"
            if problem is not None:
                self._bad_frame(path, data, off, expected, problem, last_segment)
                return
            try:
                seq, cmd = decode(payload)
            except msgspec.DecodeError as exc:
                raise JournalCorruption(path, off, f"record passes its CRC but does not decode: {exc}") from None
            if seq != expected:
                raise JournalCorruption(path, off, f"record has seq {seq}, expected {expected}")
            yield seq, cmd
            expected += 1
            off = end

    def _bad_frame(self, path: Path, data: bytes, off: int, expected: int, problem: str, last_segment: bool) -> None:
        """Decide between a torn tail (stop, remember it) and corruption (raise)."""
        if last_segment and _is_torn(data, off, expected, problem):
            self.torn = TornTail(path, off, len(data), problem)
            return
        raise JournalCorruption(path, off, problem)


def _is_torn(data: bytes, off: int, expected: int, problem: str) -> bool:
    """A crash mid-write leaves a prefix of the last write (possibly with zero-filled
    pages after a power loss). So a bad frame counts as torn only if it plausibly is
    the last thing written: the rest of the file is zeros or too short for a header, or
    the frame reaches or runs past the end of the file *and* no later record (seq
    ``expected + 1``) can be found after it. Otherwise a flipped length field could
    pass for a torn write and we would throw away good records."""
    if problem == "incomplete frame header" or not data[off:].strip(b"\0"):
        return True
    length, _ = HEADER.unpack_from(data, off)
    end: int = off + HEADER.size + length
    if end < len(data):
        return False
    return not _later_record_exists(data, off + HEADER.size, expected + 1)


def _later_record_exists(data: bytes, start: int, seq: int) -> bool:
    """True if a valid frame carrying ``seq`` starts somewhere after ``start``."""
    marker = b"\x92" + _encoder.encode(seq)  # msgpack: 2-element array, then the seq
    pos = data.find(marker, start)
    while pos != -1:
        hdr = pos - HEADER.size
        if hdr >= start:
            length, crc = HEADER.unpack_from(data, hdr)
            end = pos + length
            if 0 < length <= MAX_RECORD and end <= len(data) and zlib.crc32(data[pos:end]) == crc:
                return True
        pos = data.find(marker, pos + 1)
    return False


def read_records(directory: Path, after_seq: int = 0) -> Iterator[tuple[int, AnyCommand]]:
    """``(seq, command)`` for every journaled command after ``after_seq``, in order.

    Raises ``JournalCorruption(file, offset, why)`` on corruption; stops with a logged
    warning at a torn tail (the file is left as is: ``recovery.recover`` truncates)."""
    reader = JournalReader(directory, after_seq)
    yield from reader
    if reader.torn is not None:
        t = reader.torn
        log.warning("journal: torn record at %s offset %d (%s); %d bytes after it ignored", t.path, t.offset, t.why, t.size - t.offset)


def segment_last_seq(path: Path) -> int | None:
    """Seq of the last record of one segment, walking frame headers only (cheap), or
    None if it is empty. Raises ``JournalError`` if the frames do not end exactly at
    the end of the file: a torn tail that recovery has not truncated yet."""
    data = path.read_bytes()
    off, last = 0, -1
    while off + HEADER.size <= len(data):
        length, _ = HEADER.unpack_from(data, off)
        if length == 0 or off + HEADER.size + length > len(data):
            break
        last, off = off, off + HEADER.size + length
    if off != len(data):
        raise JournalError(f"{path} has an incomplete record at offset {off}: run recovery before appending")
    if last < 0:
        return None
    length, crc = HEADER.unpack_from(data, last)
    payload = data[last + HEADER.size : last + HEADER.size + length]
    if zlib.crc32(payload) != crc:
        raise JournalCorruption(path, last, "CRC mismatch in the last record")
    seq, _ = _seq_decoder.decode(payload)
    return int(seq)


# --------------------------------------------------------------------------- writing


class Journal(abc.ABC):
    """Where commands become durable, in sequence order.

    ``append`` never blocks; durability is reported asynchronously through
    ``wait_durable`` and listeners, in seq order, so the gateway can release each
    command's reply and events only once the command is durable."""

    durable_seq: int
    failure: BaseException | None = None  # set once the journal failed: nothing more becomes durable
    directory: Path | None = None  # the data directory (None: not on disk), watched for free space
    # Metrics read at scrape time: plain attributes, nothing done per record.
    batches: int
    records: int
    last_batch_size: int
    fsync_seconds_total: float
    last_fsync_seconds: float
    bytes_written: int

    @abc.abstractmethod
    def append(self, seq: int, cmd: Command) -> None:
        """Add the command to the pending batch. ``seq`` must be the previous + 1.

        Raises ``UnencodableCommand`` (and appends nothing: the same ``seq`` may be
        appended next) if the command cannot be encoded, e.g. an integer outside
        MessagePack's 64 bits; ``JournalError`` if the journal failed or is closed."""

    @abc.abstractmethod
    async def wait_durable(self, seq: int) -> None:
        """Return once ``durable_seq >= seq``; raise ``JournalError`` if the journal failed."""

    @abc.abstractmethod
    def add_listener(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(durable_seq)`` on the event loop after every durable batch."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the group-commit writer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Write and sync everything pending, then stop the writer."""


class SequencedJournal(Journal):
    """The bookkeeping every journal shares: appends in seq order, durability reported in seq
    order to waiters and listeners, and failure (after which nothing more becomes durable and
    appends raise). A concrete journal encodes and writes; it calls ``_durable(seq)`` once
    ``seq`` is durable and ``_fail(exc)`` when it cannot go on."""

    def __init__(self, next_seq: int) -> None:
        if next_seq < 1:
            raise ValueError("next_seq must be >= 1")
        self.durable_seq = next_seq - 1
        self.failure: BaseException | None = None
        self._last_appended = next_seq - 1
        self._listeners: list[Callable[[int], None]] = []
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._closing = False
        self._refusing = False  # closing or failed: append must raise

    def _refuse(self, seq: int) -> None:
        if self.failure is not None:
            raise JournalError(f"journal failed earlier: {self.failure!r}")
        if self._closing:
            raise JournalError("journal is closed")
        raise JournalError(f"append seq {seq} but the last appended was {self._last_appended}")

    async def wait_durable(self, seq: int) -> None:
        if self.durable_seq >= seq:
            return
        if self.failure is not None:
            raise JournalError(f"journal failed: {self.failure!r}")
        if seq > self._last_appended:
            raise JournalError(f"seq {seq} was never appended (last appended {self._last_appended})")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), fut))
        await fut

    def add_listener(self, fn: Callable[[int], None]) -> None:
        self._listeners.append(fn)

    @property
    def closing(self) -> bool:
        """True once ``close`` was called (or the journal failed): appends will raise."""
        return self._refusing

    def _durable(self, seq: int) -> None:
        if seq > self.durable_seq:
            self.durable_seq = seq
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.durable_seq:
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(None)
        for fn in self._listeners:
            try:
                fn(self.durable_seq)
            except Exception:
                log.exception("journal: durability listener failed")

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        self._refusing = True
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(JournalError(f"journal failed: {exc!r}"))
        self._waiters.clear()


Batch = tuple[bytearray, int, int, int]  # buffer, bytes used, first seq, last seq


class LocalJournal(SequencedJournal):
    """Segment files in ``directory/journal`` with group commit.

    Policy ``fsync`` writes and syncs in a dedicated writer thread (started by ``start``,
    stopped by ``close``); ``os`` and ``none`` write on the event loop (a page-cache write).
    A failed write or fsync is fatal (after a failed fsync the kernel may have dropped
    the dirty pages, so retrying could report durability that is not there): the
    journal stops, waiters get ``JournalError`` and further appends raise."""

    def __init__(
        self, directory: Path, policy: Policy = "fsync", segment_bytes: int = 64 << 20, next_seq: int = 1, linger_ms: float = 0.0
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"fsync policy must be one of {list(POLICIES)}, not {policy!r}")
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        if not 0 <= linger_ms <= 1000:
            raise ValueError("linger_ms must be between 0 and 1000")
        super().__init__(next_seq)
        self.directory: Path = Path(directory)
        self.folder = journal_dir(self.directory)
        self.policy: Policy = policy
        self.segment_bytes = segment_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_continuity(next_seq)
        self.batches = self.records = self.last_batch_size = self.bytes_written = 0
        self.fsync_seconds_total = self.last_fsync_seconds = 0.0
        # Double buffering: appends fill _pending[:_used] while the writer writes the
        # other buffer. Buffers are reused, never shrunk (encode_into truncates only the
        # logical length), so a batch costs no fresh allocation or page faults.
        self._pending = bytearray(HEADER.size)
        self._spare: bytearray | None = bytearray(HEADER.size)
        self._used = 0
        self._pending_first = next_seq  # seq of the first record in _pending
        self._fd = -1
        self._segment_size = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start: batches are handed over
        # Policy fsync: its own thread (fsyncs never queue behind other users of the default
        # executor, e.g. password hashing at login). It takes the pending batch itself whenever
        # it finishes one, so a busy writer is never woken; an idle one waits for a token in
        # _wakeup, posted by _kick. Shared with it, under _lock: the pending batch (_pending,
        # _used, _pending_first, _last_appended, _spare, _due, _last_batch_records), _idle and
        # _stopping. Without a thread (policies os, none) the loop writes at _kick.
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wakeup: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._idle = True  # the writer waits for a token (or has no thread): a new batch needs _kick
        self._stopping = False
        self._kick_scheduled = False
        # Group-commit linger: while batches are forming (the last one held more than one
        # record), a new batch is taken this long after its first append (or when the previous
        # one is durable, if later) instead of at the end of the loop iteration: fewer, larger
        # batches (fewer fsyncs and thread hand-offs) for at most this much latency. A lone
        # command on a quiet exchange (the last batch held one) never waits.
        self.linger = linger_ms / 1000
        self._last_batch_records = 0  # records in the last batch taken
        self._due = 0.0  # time.monotonic() from which the pending batch may be taken (0: at once)
        self._written_seq = next_seq - 1  # last seq written (and synced under fsync) and reported on the loop
        self._drained: asyncio.Future[None] | None = None  # close: resolved once everything appended is written
        self._closed = False
        self._durable_on_append = policy == "none"

    def _check_continuity(self, next_seq: int) -> None:
        """Refuse to fork history: if segments exist, ``next_seq`` must follow the last
        record on disk (with no segments left - all archived - any start is accepted)."""
        for _, path in reversed(list_segments(self.folder)):
            last = segment_last_seq(path)
            if last is None:  # empty: holds nothing (reused if it has the next name)
                continue
            if last + 1 != next_seq:
                raise JournalError(f"journal ends at seq {last} ({path}) but next_seq is {next_seq}: recover the engine first")
            return

    # ------------------------------------------------------------------ hot path

    def append(self, seq: int, cmd: Command) -> None:
        # The hot path (once per command): locals and module aliases, no policy strings.
        if seq != self._last_appended + 1 or self._refusing:
            self._refuse(seq)
        lingering = kick = False
        with self._lock:  # the writer thread takes batches under it
            buf = self._pending
            start = self._used
            body = start + 8  # HEADER.size
            try:
                _encode_into((seq, cmd), buf, body)
            except (OverflowError, TypeError, ValueError) as exc:  # nothing appended: _used is unchanged
                raise UnencodableCommand(f"{type(cmd).__name__} seq {seq} cannot be journaled: {exc}") from None
            end = len(buf)
            _pack_into(buf, start, end - body, _crc32(buf[body:end]))
            self._used = end
            self._last_appended = seq
            if not start:  # first record of a batch: an idle writer needs a kick, a busy one takes it itself
                self._pending_first = seq
                lingering = bool(self.linger) and self._last_batch_records > 1
                self._due = time.monotonic() + self.linger if lingering else 0.0
                kick = self._idle and not self._kick_scheduled and self._loop is not None
        if kick:
            assert self._loop is not None
            self._kick_scheduled = True
            if lingering:
                self._loop.call_later(self.linger, self._kick)
            else:  # at the end of this loop iteration: the batch holds everything it read
                self._loop.call_soon(self._kick)
        if self._durable_on_append:
            self.durable_seq = seq

    # ------------------------------------------------------------------ writer

    async def start(self) -> None:
        if self._loop is not None:
            raise JournalError("journal already started")
        self._loop = asyncio.get_running_loop()
        if self.policy == "fsync":
            self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
            self._thread.start()
        if self._used:
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)

    async def close(self) -> None:
        """Flush everything pending and fsync it whatever the policy, so a clean
        shutdown never loses a command."""
        if self._closed:
            return
        self._closing = self._refusing = True
        if self._loop is not None:
            if self.failure is None and self._written_seq < self._last_appended:
                self._drained = self._loop.create_future()
                self._kick()  # an idle (or lingering) writer takes what is pending at once
                await self._drained
            if self._thread is not None:
                with self._lock:
                    self._stopping = True
                self._wakeup.put(None)
                self._thread.join()  # idle (drained) or stopped by a failure: returns at once
        elif self._used and self.failure is None:
            data, used, first, last = self._take()
            await asyncio.to_thread(self._write_batch, data, used, first, last, False)
            self._spare = data
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                if self.failure is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
        self._closed = True
        if self.failure is not None:
            raise JournalError(f"journal failed: {self.failure!r}")

    def _kick(self) -> None:
        """On the loop: wake an idle writer thread for the pending batch (a busy one takes it
        when done); without a thread (policies os, none), write the batch here."""
        self._kick_scheduled = False
        if self.failure is not None:
            return
        if self._thread is not None:
            with self._lock:
                if not self._idle or not self._used:
                    return
                self._idle = False
            self._wakeup.put(None)
            return
        if not self._used:
            return
        data, used, first, last = self._take()
        try:
            self._write_batch(data, used, first, last, False)
        except Exception as exc:
            self._on_failed(exc)
            return
        self._spare = data
        self._on_written(last)

    def _writer(self) -> None:
        """The writer thread (policy fsync): take the pending batch (once its linger is over,
        unless closing), write and sync it, give the buffer back, report to the loop; wait
        for a token when there is nothing to take. Stops when told or after a failure."""
        loop = self._loop
        assert loop is not None
        lock, wait = self._lock, self._wakeup.get
        while True:
            batch: Batch | None = None
            timeout: float | None = None
            with lock:
                if self._used:
                    due = self._due
                    now = time.monotonic() if due else 0.0
                    if due and now < due and not self._closing:
                        timeout = due - now
                    else:
                        batch = self._take()
                if batch is None:
                    if self._stopping:
                        return
                    self._idle = True
                else:
                    self._idle = False
            if batch is None:
                with contextlib.suppress(queue.Empty):
                    wait(timeout=timeout)
                continue
            data, used, first, last = batch
            try:
                self._write_batch(data, used, first, last, True)
            except BaseException as exc:  # a failed write/fsync: stop for good
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
                    loop.call_soon_threadsafe(self._on_failed, exc)
                return
            with lock:
                self._spare = data
            try:
                loop.call_soon_threadsafe(self._on_written, last)
            except RuntimeError:  # the loop is closed (abandoned without close()): stop
                return

    def _on_written(self, last: int) -> None:
        """On the loop: the batch up to ``last`` is written (synced under fsync): durable."""
        self._written_seq = last
        self._durable(last)
        if self._drained is not None and last >= self._last_appended and not self._drained.done():
            self._drained.set_result(None)

    def _on_failed(self, exc: BaseException) -> None:
        log.critical("journal: write failed, journal stopped: %r", exc)
        self._fail(exc)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _take(self) -> Batch:
        """The pending batch, for writing; appends continue in the spare buffer (given back
        by the writer before it takes the next batch). Under ``_lock`` when there is a writer
        thread."""
        data, used = self._pending, self._used
        self._pending = self._spare if self._spare is not None else bytearray(HEADER.size)
        self._spare = None
        self._used = 0
        self._last_batch_records = self._last_appended - self._pending_first + 1
        return data, used, self._pending_first, self._last_appended

    def _write_batch(self, data: bytearray, used: int, first: int, last: int, sync: bool) -> None:
        """One write (and one fdatasync) of a whole batch, ``data[:used]``; runs in the
        writer thread for policy fsync. Rolls to a new segment first if the current one
        is full. Every view of ``data`` is released before returning, so the buffer can
        grow again when it next collects appends."""
        if self._fd < 0 or self._segment_size >= self.segment_bytes:
            self._open_segment(first)
        with memoryview(data) as whole:
            view = whole[:used]
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            view.release()
        self._segment_size += used
        if sync:
            t0 = time.perf_counter()
            os.fdatasync(self._fd)
            dt = time.perf_counter() - t0
            self.last_fsync_seconds = dt
            self.fsync_seconds_total += dt
        self.batches += 1
        self.records += last - first + 1
        self.last_batch_size = last - first + 1
        self.bytes_written += used

    def _open_segment(self, first: int) -> None:
        """Close the full segment (synced under every policy: rolling is rare) and start
        the next one, named by its first seq. An existing empty file of that name (left
        by a crash before its first write) is reused; a non-empty one never is."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        path = self.folder / segment_name(first)
        if path.exists() and path.stat().st_size:
            raise JournalError(f"segment {path} already exists and is not empty")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment_size = 0
        if self.policy == "fsync":
            fsync_dir(self.folder)
