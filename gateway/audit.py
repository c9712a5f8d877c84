"""The audit log: every call on the admin listener — who, from where, when, what, the result —
append-only on disk, written with group commit, read back by ``admin.audit.list``.

Audited: every call of a logged-in operator and every login attempt (except ``ping`` and
requests refused by the request rate limit: ``connection.audited``).

Each call leaves two records in ``DATA/audit/audit.log`` (one JSON object per line):

* ``request`` — written and made durable **before** the call is acted on: its ``id``, ``ts``
  (the time the request arrived: the command it journals carries this ``ts``, or a slightly
  later one when the call first waits — scrypt for a new secret — or the wall clock stepped
  back, since journal time never goes back), the
  operator ``identity`` and ``role`` (null before login; a login records the ``key_id`` it
  tried), the source ``address``, the ``session_id``, the ``method`` and its ``params``
  (secrets replaced by ``"***"``);
* ``result`` — written and made durable **before** the reply is sent: ``ok`` or ``error``
  (``code``, ``reason``, ``message``), and the journal ``seq`` of the command it caused.

So every action an operator was told about is in the log, and every action that may have
happened is at least in it as a request (a request without a result after a crash: its
command's fate is in the journal, at that ``ts`` or just after). If the request record cannot be
written the call is refused (``AUDIT_UNAVAILABLE``) and nothing is done.

Group commit: records arriving while a write is in progress go out together in the next
write (one ``write`` + one ``fsync`` per batch, on a thread of the log's own), so a burst of
admin calls costs one fsync per batch. ``fsync=False`` (fsync policy ``os``/``none``) leaves
the flush to the OS: the log still survives the process being killed (kill -9), not a power
loss. A torn last line (a crash mid-write) is skipped when reading and the next record
starts on a fresh line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger("carbonx.gateway")

FILE_NAME = "audit.log"
REDACTED = "***"
SECRET_FIELDS = frozenset({"secret"})


class AuditUnavailable(Exception):
    """The audit log could not be written (the message says why)."""


def redact(params: Any) -> Any:
    """``params`` with every secret field's value replaced (recursively)."""
    if isinstance(params, dict):
        return {k: REDACTED if k in SECRET_FIELDS else redact(v) for k, v in params.items()}
    if isinstance(params, list):
        return [redact(v) for v in params]
    return params


class AuditLog:
    """Append-only JSON lines with group commit (see the module docstring)."""

    def __init__(self, directory: Path, fsync: bool = True) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.fsync = fsync
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carbonx-audit")
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flushing = False
        self._fd: int | None = None
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)  # ids stay unique across restarts
        self._tasks: set[asyncio.Task[None]] = set()
        self.records = 0  # written since start (metrics, tests)
        self.batches = 0

    def open(self) -> None:
        """Create the directory and open the file for appending (a torn last line is closed off)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(self._fd).st_size
        if size:
            with self.path.open("rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def append(self, record: dict[str, Any]) -> None:
        """Write ``record``; returns once it is durable (per the fsync setting)."""
        if self._fd is None:
            raise AuditUnavailable("the audit log is closed")
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, fut))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                data = b"".join(line for line, _ in batch)
                try:
                    await loop.run_in_executor(self._executor, self._write, data)
                except OSError as exc:
                    err = AuditUnavailable(f"audit log {self.path}: {exc.strerror or exc}")
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                self.records += len(batch)
                self.batches += 1
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._flushing = False

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise OSError("closed")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(fd)

    def finish(self, record_id: str, outcome: dict[str, Any], then: Callable[[], None]) -> None:
        """Append the ``result`` record of call ``record_id``, then run ``then`` (send the
        reply). If the record cannot be written the reply is still sent (the request record
        is there) and the failure logged."""

        async def run() -> None:
            try:
                await self.append({"kind": "result", "id": record_id, "done_ts": time.time_ns(), **outcome})
            except AuditUnavailable as exc:
                log.error("audit result record of %s not written: %s", record_id, exc)
            then()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._flushing:
            await asyncio.sleep(0.005)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._executor.shutdown(wait=False)


def read_entries(path: Path, keep: Callable[[dict[str, Any]], bool] = lambda e: True, limit: int = 100) -> list[dict[str, Any]]:
    """The audit entries of ``path`` (a request merged with its result, if any; ``result``
    null = no result was recorded: the process stopped first), oldest first, the last
    ``limit`` that ``keep`` accepts. Torn or foreign lines are skipped. Blocking: run it off
    the event loop."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        with path.open("rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                    continue
                kind = rec.pop("kind", None)
                if kind == "request":
                    entries[rec["id"]] = rec | {"result": None}
                elif kind == "result" and rec["id"] in entries:
                    entries[rec["id"]].update(rec)
    except FileNotFoundError:
        return []
    kept = [e for e in entries.values() if keep(e)]
    return kept[-limit:]
