"""Checkpoints of the supervision consumers, so start-up replays the journal since a snapshot
instead of all of it.

Alerts, acknowledgements and day reports are functions of the journal (docs/supervision.md):
without a checkpoint, start-up rebuilds them by replaying every record from seq 1, a second
replay after recovery's that grows with the exchange's age (1-2 minutes per 10 million
commands), and impossible once archived segments were deleted. With one, it restores the
consumers as they were at seq ``C``, restores a scratch engine from the newest snapshot at or
below ``C`` and replays only from that snapshot on, feeding the consumers the events after
``C``: the same state as a full replay, at the cost of the records since the snapshot.

``Gateway.snapshot`` writes one with every snapshot (``SnapshotStore.save``'s ``alongside``:
captured with the engine state, in the forked child when snapshots fork); ``Supervision.derive``
reads the newest usable one (``load_latest``). Anything that does not fit - damaged file, another
format, other ``[surveillance]``/``[disclosure]`` thresholds than the running ones (a
threshold change must re-derive history with the new thresholds, as without checkpoints), no
snapshot at or below it - is logged and start-up falls back to the full replay.

File ``DATA/supervision/<seq, 20 digits>.ckpt``: ``MAGIC`` | SHA-256 of the payload (32
bytes) | payload, a pickle of ``{"format", "seq", "fingerprint", "surveillance", "reports"}``
where each consumer is its instance attributes (its specification and handler table are
rebuilt from the running configuration). Written atomically (temporary file, fsync, rename,
fsync of the folder); the two newest are kept. Like the journal and the snapshots, the file is
the data directory's own: pickle is read only after the digest matched, and nothing from
outside the process ever writes there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import msgspec

from carbonx.engine.supervision.thresholds import DisclosureSpec, SurveillanceSpec
from carbonx.gateway.journal import fsync_dir

log = logging.getLogger("carbonx.gateway")

FOLDER = "supervision"  # in the data directory
MAGIC = b"CXSUPCK1"
# Bump when a consumer's attributes change meaning or shape: older checkpoints are then ignored
# (start-up replays the whole journal once, and the next snapshot writes a current one).
FORMAT = 1
KEEP = 2
_NAME = re.compile(r"^(\d{20})\.ckpt$")
# Attributes rebuilt from the running configuration, never restored.
_NOT_STATE = frozenset({"spec", "_handlers", "out", "done"})


def fingerprint(surveillance: SurveillanceSpec, disclosure: DisclosureSpec) -> str:
    """What a checkpoint's consumers were computed with: the thresholds and the format."""
    return hashlib.sha256(msgspec.msgpack.encode([FORMAT, surveillance, disclosure])).hexdigest()


def state_of(consumer: object | None) -> dict[str, Any] | None:
    """A consumer's state: its instance attributes, without what the configuration rebuilds."""
    if consumer is None:
        return None
    return {k: v for k, v in vars(consumer).items() if k not in _NOT_STATE}


def restore_into(consumer: object | None, state: dict[str, Any] | None) -> None:
    """Put ``state`` (``state_of``) back into a freshly built consumer of the same kind. Raises
    ``ValueError`` when one of the two is missing (a consumer switched on or off since)."""
    if (consumer is None) != (state is None):
        raise ValueError("the checkpoint and the configuration disagree on which consumers run")
    if consumer is None or state is None:
        return
    unknown = set(state) - set(vars(consumer))
    if unknown:
        raise ValueError(f"checkpoint attributes unknown to {type(consumer).__name__}: {sorted(unknown)}")
    vars(consumer).update(state)


def encode(seq: int, fp: str, surveillance: object | None, reports: object | None) -> bytes:
    """The file's bytes for the consumers now (call on the thread that feeds them)."""
    payload = pickle.dumps(
        {"format": FORMAT, "seq": seq, "fingerprint": fp, "surveillance": state_of(surveillance), "reports": state_of(reports)},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(blob: bytes, fp: str) -> dict[str, Any]:
    """The payload of a checkpoint file; ``ValueError`` naming why it cannot be used."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 32:
        raise ValueError("not a supervision checkpoint")
    digest, payload = blob[len(MAGIC) : len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("damaged (SHA-256 mismatch)")
    data: dict[str, Any] = pickle.loads(payload)  # our own file, read only once its digest matched
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')}, this version reads {FORMAT}")
    if data.get("fingerprint") != fp:
        raise ValueError("written with other [surveillance]/[disclosure] thresholds")
    return data


def folder_of(data_dir: Path) -> Path:
    return Path(data_dir) / FOLDER


def files(data_dir: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every checkpoint file, oldest first (not validated)."""
    folder = folder_of(data_dir)
    if not folder.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) is not None]
    out.sort()
    return out


def save(data_dir: Path, seq: int, blob: bytes) -> Path:
    """Write ``blob`` (``encode``) as the checkpoint at ``seq`` atomically, then keep the
    ``KEEP`` newest. Blocking (files only): run it in a worker thread."""
    folder = folder_of(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{seq:020d}.ckpt"
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(folder)
    for _, old in files(data_dir)[:-KEEP]:
        old.unlink()
    return path


def remove_leftovers(data_dir: Path) -> list[Path]:
    """Delete temporary files of checkpoints a crash interrupted. Only at start-up: while a
    server runs, a ``.tmp`` may be a checkpoint being written."""
    folder = folder_of(data_dir)
    if not folder.is_dir():
        return []
    leftovers = list(folder.glob("*.ckpt.tmp"))
    for path in leftovers:
        path.unlink()
    return leftovers


def load_latest(data_dir: Path, fp: str, max_seq: int) -> dict[str, Any] | None:
    """The payload of the newest usable checkpoint at or below ``max_seq`` (the recovered
    engine's seq: a checkpoint past it belongs to records the journal lost), or None. Unusable
    files are logged and skipped, never deleted."""
    for seq, path in reversed(files(data_dir)):
        if seq > max_seq:
            log.warning("supervision checkpoint %s skipped: past the journal's end (seq %d)", path, max_seq)
            continue
        try:
            data = decode(path.read_bytes(), fp)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            log.warning("supervision checkpoint %s skipped: %s", path, exc)
            continue
        if data.get("seq") != seq:
            log.warning("supervision checkpoint %s skipped: it says seq %s", path, data.get("seq"))
            continue
        return data
    return None
