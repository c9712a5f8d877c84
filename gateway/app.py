"""The gateway: its stages composed, start-up and shutdown, and ``run`` for ``carbonx serve``.

The data path, in the order data flows (docs/architecture.md):

1. ``connection.py``: listeners, the socket loop, admission, abuse handling;
2. ``rpc/``: the method table (``rpc/registry.py``) and the handlers by domain;
3. ``sequencer.py``: the only caller of ``Engine.apply``: journal, apply, release once durable;
4. ``journal.py``, ``snapshots.py``, ``recovery.py``, ``storage.py``: durability;
5. ``outbound.py`` (the one writer, with the slow-consumer guard) and ``marketdata.py``.

The wire contract the stages speak is ``protocol/``. One event loop owns the engine; nothing
here blocks it except the engine itself (scrypt logins, snapshot writes and fsyncs run in
worker threads).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server

from carbonx.engine import auction as auctions
from carbonx.engine import reasons as R
from carbonx.engine.admin import day_due
from carbonx.engine.engine import Engine
from carbonx.engine.schema import CancelAll, Command, CreateAccount, CreateMember, DayOpen, Deposit, Event, Reject, Tick
from carbonx.gateway import protocol
from carbonx.gateway import supervision_checkpoint as checkpoints
from carbonx.gateway.audit import AuditLog
from carbonx.gateway.connection import Connections
from carbonx.gateway.http import HttpServer, day_trades, page_config
from carbonx.gateway.journal import Journal
from carbonx.gateway.logins import LoginGuard
from carbonx.gateway.marketdata import MarketData
from carbonx.gateway.metrics import LatencyHistogram, LoopLag, make_registry
from carbonx.gateway.outbound import Outbound
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.rpc.access import close_unusable, refresh_roles
from carbonx.gateway.sequencer import Sequencer
from carbonx.gateway.sessions import ConnectionRegistry
from carbonx.gateway.settings import Settings, SettingsError
from carbonx.gateway.snapshots import SnapshotError, SnapshotStore
from carbonx.gateway.storage import StorageStatus, StorageUnavailable, check_storage, free_bytes, is_disk_full
from carbonx.gateway.supervision import REPORTS, Sinks, Supervision, SupervisionCollector
from carbonx.gateway.tls import ReloadableTls, plaintext_refusal

log = logging.getLogger("carbonx.gateway")


class Gateway:
    """The stages of the data path around one engine: what ``run`` starts and stops."""

    def __init__(self, settings: Settings, engine: Engine, journal: Journal, snapshots: SnapshotStore | None = None) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.engine = engine
        self.journal = journal
        self.snapshots = snapshots
        self.outbound = Outbound(self.limits.write_buffer_bytes)
        self.market = MarketData(engine, self.outbound, settings.server.coalesce_ms / 1000)
        self.latency_durable = LatencyHistogram()
        self.latency_reply = LatencyHistogram()
        self.loop_lag = LoopLag()
        # Surveillance and disclosure consume the same durable events, after market data (docs/supervision.md).
        directory = getattr(journal, "directory", None)
        reports_dir = Path(directory) / REPORTS if directory is not None else None
        self.supervision = Supervision(settings.surveillance, settings.disclosure, self.market, self.outbound, reports_dir)
        sink = Sinks(self.market, self.supervision)
        self.seq = Sequencer(engine, journal, sink, self.latency_durable, self.latency_reply, self._fatal)
        self.registry = ConnectionRegistry(self.limits)
        self.connections = Connections(self)
        lim = self.limits
        backoff = (lim.login_backoff_base_s, lim.login_backoff_max_s, lim.login_throttle_entries)
        # Operators get a hashing lane of their own: a login storm on the trading listener
        # never makes the operator's login wait or fail as busy.
        self.logins = {
            False: LoginGuard(lim.login_hash_concurrency, lim.login_hash_queue, *backoff),
            True: LoginGuard(1, lim.max_admin_connections, *backoff, name="carbonx-scrypt-admin"),
        }
        self.login_timeouts = 0
        self.abuse_disconnects = 0
        self.rate_limited = 0
        self.closing = False
        self.ready = False
        self.servers: list[Server] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.last_snapshot_seq = engine.seq
        self.registry_metrics: CollectorRegistry | None = None  # set by ``run`` (scraped by /metrics)
        self.journal_open = True
        self.fatal: BaseException | None = None
        self.stop_event: asyncio.Event | None = None  # set by ``run``: a fatal error stops the process
        self.storage = StorageStatus(-1)  # refreshed by ``_storage_watch`` (gateway/storage.py)
        # key id -> ns of its last login on this gateway (in memory, not journaled: a login is
        # not a state change; admin.key.list shows it, "since this gateway started").
        self.key_last_used: dict[str, int] = {}
        self.tls: ReloadableTls | None = None  # the listeners' TLS context (gateway/tls.py), if configured
        self.audit: AuditLog | None = None  # the admin audit log (gateway/audit.py), opened by ``run``

    def _fatal(self, exc: BaseException) -> None:
        """The journal failed: nothing more can be made durable, so stop taking commands."""
        if self.fatal is None:
            log.critical("journal failure, stopping: %r", exc)
            self.fatal = exc
        self.ready = False
        self.closing = True
        if self.stop_event is not None:
            self.stop_event.set()

    async def bootstrap(self) -> int:
        """Journal the configured members, accounts and funding that the recovered state
        lacks (so restarts never double-fund), and open the day if configured. Returns
        the number of commands applied."""
        eng, now, n = self.engine, time.time_ns(), 0
        for m in self.settings.members:
            if m.member not in eng.members:
                n += self._boot(CreateMember(ts=now, member=m.member, key_id=m.key_id, secret_hash=m.secret_hash))
        for a in self.settings.accounts:
            if a.account in eng.accounts:
                continue
            n += self._boot(CreateAccount(ts=now, account=a.account, member=a.member, type=a.type))  # type: ignore[arg-type]
            if a.cash:
                n += self._boot(Deposit(ts=now, account=a.account, cash=a.cash))
            for h in a.holdings:
                n += self._boot(Deposit(ts=now, account=a.account, instrument=h.instrument, quantity=h.quantity, vintage=h.vintage))
        if self.settings.server.auto_open_day and not eng.day_open and eng.schedule_enabled:  # the operator's switch (SetSchedule)
            n += self._boot(DayOpen(ts=now))
        for session, member in list(eng.cod_sessions.items()):  # sessions a crash disconnected
            log.warning("cancelling open orders of session %s (%s): cancel-on-disconnect, the exchange restarted", session, member)
            n += self._boot(CancelAll(ts=now, member=member, session=session))
        if n:
            await self.journal.wait_durable(eng.seq)
        return n

    def _boot(self, cmd: Command) -> int:
        def check(events: list[Event]) -> None:
            for ev in events:
                if type(ev) is Reject:
                    log.error("bootstrap command %s rejected: %s %s", ev.command, ev.reason, ev.message)

        self.seq.submit(cmd, check)
        return 1

    def reload_tls(self) -> None:
        """SIGHUP: load the TLS certificate and key again; new connections get the new
        certificate, open sessions are not dropped (gateway/tls.py)."""
        if self.tls is None:
            log.info("SIGHUP: no TLS configured, nothing to reload")
            return
        problem = self.tls.reload()
        if problem is None:
            log.warning("TLS certificate reloaded from %s (reload %d)", self.tls.cert, self.tls.reloads)
        else:
            log.error("%s", problem)

    async def listen(self, host: str, port: int, admin: bool) -> str:
        """Start one listener (``connection.py``); returns its ws(s):// URL with the actual port."""
        return await self.connections.listen(host, port, admin)

    def start_background(self) -> None:
        for coro in (self._ticker(), self._heartbeats(), self.loop_lag.run(), self._storage_watch(), self._access_sweep()):
            self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def _access_sweep(self) -> None:
        """Every ``tick_s``: cut off the sessions whose key stopped being usable (expiry, the end
        of a rotation's grace period, a revocation another gateway of a cluster journaled) and
        give operator sessions their identity's current role (``rpc.access``). Both modes."""
        while True:
            await asyncio.sleep(self.settings.server.tick_s)
            close_unusable(self, time.time_ns())
            refresh_roles(self)

    async def _ticker(self) -> None:
        """Session boundaries become journaled Tick commands (and status updates)."""
        while True:
            await asyncio.sleep(self.settings.server.tick_s)
            failure = getattr(self.journal, "failure", None)
            if failure is not None:
                self._fatal(failure)
                return
            now = time.time_ns()
            if not self.closing:
                if self.engine.needs_tick(now):
                    self.seq.submit(Tick(ts=now))
                for due in auctions.due(self.engine, now):  # bidding windows that opened/ended
                    self.seq.submit(due)
                if self.settings.server.day_schedule:  # the calendar's day open/close (or midnight roll)
                    for day in day_due(self.engine, now):
                        self.seq.submit(day)
            every = self.settings.server.snapshot_every
            if every and self.snapshots is not None and self.engine.seq - self.last_snapshot_seq >= every:
                try:
                    await self.snapshot()
                except RpcError as exc:  # e.g. STORAGE_FULL: the reason says it all, no traceback
                    log.error("periodic snapshot failed: %s", exc.message)
                    self.last_snapshot_seq = self.engine.seq
                except Exception:  # the journal still has everything; try again next time
                    log.exception("periodic snapshot failed")
                    self.last_snapshot_seq = self.engine.seq

    async def _storage_watch(self) -> None:
        """Re-check the data directory's free space and writability (off the loop)."""
        srv = self.settings.server
        directory = getattr(self.journal, "directory", None)
        if directory is None or not srv.storage_check_s:
            return
        loop = asyncio.get_running_loop()
        while True:
            srv = self.settings.server
            status = await loop.run_in_executor(None, check_storage, Path(directory), srv.min_free_bytes)
            if status.ok != self.storage.ok:
                if status.ok:
                    log.warning("storage recovered: %d bytes free; taking new commands again", status.free_bytes)
                else:
                    log.error("storage low, refusing new commands and reporting not-ready: %s", status.problem)
            self.storage = status
            await asyncio.sleep(srv.storage_check_s)

    async def _heartbeats(self) -> None:
        interval = self.settings.server.heartbeat_s
        if not interval:
            return
        while True:
            await asyncio.sleep(interval)
            msg = protocol.notification("heartbeat", {"seq": self.journal.durable_seq, "ts": time.time_ns()})
            self.outbound.send(list(self.registry.sessions), msg)

    async def snapshot(self) -> dict[str, Any]:
        if self.snapshots is None:
            raise RpcError.business(R.INVALID_STATE, "snapshots are not configured")
        seq = self.engine.seq
        try:
            path = await self.snapshots.save(self.engine, self.journal, alongside=self._supervision_checkpoint)
        except OSError as exc:  # the store removed its temporary file: nothing is left behind
            where = self.snapshots.folder
            if is_disk_full(exc):
                free = free_bytes(where) if where.is_dir() else 0
                raise RpcError.business(
                    protocol.STORAGE_FULL, f"snapshot not written: no space left in {where} ({free} bytes free); nothing was left behind"
                ) from None
            raise RpcError.business(R.INVALID_STATE, f"snapshot not written: {exc.strerror or exc}") from None
        except SnapshotError as exc:
            raise RpcError.business(R.INVALID_STATE, f"snapshot not written: {exc}") from None
        self.last_snapshot_seq = seq
        archived: list[Path] = []
        if self.settings.server.archive_segments:  # segments the snapshot covers are not needed to start
            archived = await asyncio.get_running_loop().run_in_executor(None, self.snapshots.archive_segments_before, seq)
        return {"seq": seq, "path": str(path), "archived_segments": len(archived)}

    def _supervision_checkpoint(self) -> Callable[[], object] | None:
        """``SnapshotStore.save``'s ``alongside``: the supervision consumers' checkpoint, captured
        with the engine state (here on the loop thread that feeds them, or in the forked child)
        and written by a worker thread or the child, so start-up replays only from a snapshot
        on (gateway/supervision_checkpoint.py). A failure is logged, nothing else: the next
        start replays more of the journal."""
        found = self.supervision.checkpoint()
        if found is None or self.snapshots is None:
            return None
        # The consumers have the events released so far; the rest, up to the engine's seq (the
        # snapshot's), wait in the sequencer for durability: carried through them, the
        # checkpoint sits at the snapshot's seq, and start-up replays from that snapshot.
        upto = self.engine.seq
        later = [(seq, events) for seq, events, _, _ in self.seq.pending if events]
        directory, supervision = self.snapshots.directory, self.supervision

        def write() -> None:
            checkpoints.save(directory, *supervision.checkpoint_through(found, later, upto))

        return write

    async def shutdown(self) -> None:
        """Stop accepting, cancel-on-disconnect, flush the journal, close with 1001."""
        self.ready = False
        self.closing = True
        for server in self.servers:
            server.close(close_connections=False)
        if self.fatal is None:
            for s in list(self.registry.sessions):
                self.connections.cancel_on_disconnect(s)
        for task in self.tasks:
            task.cancel()
        try:
            if self.fatal is None:  # after a journal failure the engine is ahead of it: no flush, no snapshot
                await self.flush_for_shutdown()
                self.market.close()
                await self.supervision.drain()
                if self.snapshots is not None and self.engine.seq > self.last_snapshot_seq:
                    await self.snapshot()
        except Exception:
            log.exception("shutdown could not flush or snapshot (recovery will replay the journal)")
        self.journal_open = False
        try:
            await self.journal.close()
        except Exception:
            log.exception("journal close failed")
        for guard in self.logins.values():
            guard.close()
        conns = [s.connection for s in self.registry.sessions if s.connection is not None]
        await asyncio.gather(*(c.close(1001, "server shutting down") for c in conns), return_exceptions=True)
        if self.audit is not None:
            await self.audit.close()
        for server in self.servers:
            await server.wait_closed()

    async def flush_for_shutdown(self) -> None:
        """Shutdown, before the last snapshot: wait until every command applied so far is durable
        (embedded: fsynced), so their replies and events go out. Raises ``JournalError`` if the
        journal cannot get there (``shutdown`` logs it: recovery replays the journal)."""
        await self.journal.wait_durable(self.engine.seq)


# --------------------------------------------------------------------------- the process


@dataclass
class ServeOptions:
    """``carbonx serve`` flags; ``None`` = take the configuration's value."""

    data_dir: str | None = None
    host: str | None = None
    port: int | None = None
    admin_host: str | None = None
    admin_port: int | None = None
    metrics_host: str | None = None
    metrics_port: int | None = None
    fsync_policy: str | None = None


def _readiness(gw: Gateway | None) -> bool | str:
    """/readyz: True once serving with usable storage, else why not (False: recovering)."""
    if gw is None or not gw.ready:
        return False
    return True if gw.storage.ok else f"not ready: {gw.storage.problem}"


def refuse_plaintext(settings: Settings, opts: ServeOptions) -> None:
    """``SettingsError`` when the trading or admin listener would take plain text off loopback
    without ``allow_plaintext`` (gateway/tls.py). ``serve`` and ``carbonx gateway`` alike."""
    srv = settings.server
    hosts = {"trading listener": opts.host or srv.host, "admin listener": opts.admin_host or srv.admin_host}
    refusal = plaintext_refusal(hosts, bool(srv.tls_cert), srv.allow_plaintext)
    if refusal is not None:
        raise SettingsError(refusal)


class ProcessHttp:
    """The metrics, health and page listener of a gateway process (``serve`` and ``carbonx
    gateway``). It starts before the gateway exists (``/readyz`` answers "not ready" during
    recovery or catch-up): set ``gw`` once there is one, and fill ``page`` (``/config.json``,
    ``page_config``) once the trading listener is up; ``/trades.json`` waits for both."""

    def __init__(self) -> None:
        self.gw: Gateway | None = None
        self.page: dict[str, object] = {}
        self.http = HttpServer(
            lambda: self.gw.registry_metrics if self.gw is not None else None,
            lambda: _readiness(self.gw),
            lambda: self.page or None,
            lambda symbol: day_trades(self.gw.engine, symbol, self.gw.journal.durable_seq) if self.page and self.gw is not None else None,
        )

    async def start(self, settings: Settings, opts: ServeOptions) -> str:
        """Listen on the configured (or ``opts``') metrics address; returns its URL."""
        srv = settings.server
        host = srv.metrics_host if opts.metrics_host is None else opts.metrics_host
        port = await self.http.start(host, srv.metrics_port if opts.metrics_port is None else opts.metrics_port)
        return f"http://{host}:{port}"


async def run(settings: Settings, opts: ServeOptions, stop: asyncio.Event | None = None) -> int:
    """Start everything, print the ready line, serve until SIGTERM/SIGINT (or ``stop``)."""
    from carbonx.gateway.journal import LocalJournal
    from carbonx.gateway.recovery import recover

    srv = settings.server
    refuse_plaintext(settings, opts)
    data_dir = Path(opts.data_dir or srv.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    http = ProcessHttp()
    metrics_url = await http.start(settings, opts)
    loop = asyncio.get_running_loop()
    recovered = await loop.run_in_executor(None, recover, data_dir, settings.market)
    storage = await loop.run_in_executor(None, check_storage, data_dir, srv.min_free_bytes)
    if not storage.ok:  # the first journal write would fail and stop the exchange: do not start
        await http.http.close()
        raise StorageUnavailable(storage.problem)
    engine = recovered.engine
    journal = LocalJournal(
        data_dir,
        policy=opts.fsync_policy or srv.fsync_policy,  # type: ignore[arg-type]
        segment_bytes=srv.segment_bytes,
        linger_ms=srv.journal_linger_ms,
        next_seq=engine.seq + 1,
    )
    await journal.start()
    gw = Gateway(settings, engine, journal, SnapshotStore(data_dir, fork=srv.snapshot_fork))
    gw.storage = storage
    gw.audit = AuditLog(data_dir / "audit", fsync=(opts.fsync_policy or srv.fsync_policy) == "fsync")
    gw.audit.open()
    gw.registry_metrics = make_registry(gw)
    gw.registry_metrics.register(SupervisionCollector(gw.supervision))
    # Alerts, acks and reports are derived from the journal, not stored: rebuild them first.
    derived = await loop.run_in_executor(None, gw.supervision.derive, data_dir, settings.market, engine.seq)
    log.info("supervision: ready (%d journal records replayed for it)", derived)
    http.gw = gw
    booted = await gw.bootstrap()
    trading = await gw.listen(opts.host or srv.host, srv.port if opts.port is None else opts.port, admin=False)
    admin = await gw.listen(opts.admin_host or srv.admin_host, srv.admin_port if opts.admin_port is None else opts.admin_port, admin=True)
    http.page.update(page_config(trading, srv.public_url, list(engine.specs)))
    gw.start_background()
    gw.ready = True
    log.info(
        "recovered seq %d (snapshot %d, %d replayed, %.2f s); %d bootstrap commands",
        engine.seq,
        recovered.snapshot_seq,
        recovered.replayed,
        recovered.seconds,
        booted,
    )
    sys.stdout.write(f"carbonx ready trading={trading} admin={admin} metrics={metrics_url}\n")
    sys.stdout.flush()
    stop = stop or asyncio.Event()
    gw.stop_event = stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gw.reload_tls)
    await stop.wait()
    log.info("shutting down")
    await gw.shutdown()
    await http.http.close()
    return 1 if gw.fatal is not None else 0
