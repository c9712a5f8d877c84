"""The WebSocket gateway: the I/O shell around the engine.

Flow of every command (the durability contract):

    receive -> validate params -> build the schema command (ts = time.time_ns())
    -> journal.append (encodes it: refused here if it cannot be) -> engine.apply
    -> ... group commit ... -> journal listener
    -> release, strictly in seq order: the reply to the requester, then the events
       to the fan-out (``EventSink``)

so nobody hears about a command before it is durable. Reads are computed at once but
their replies are queued behind every command applied so far, so a read never reveals
state that a crash could still take back.

One event loop owns the engine; nothing here blocks it except the engine itself
(scrypt logins, snapshot writes and fsyncs run in worker threads).

``Sequencer`` is the engine + journal + release queue; ``Gateway`` holds the
listeners, sessions and method handlers; ``run`` is what ``carbonx serve`` calls.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import signal
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from carbonx.engine import auction as auctions
from carbonx.engine import blocks, ranges, retirement
from carbonx.engine import reasons as R
from carbonx.engine.engine import Engine
from carbonx.engine.schema import (
    AccountCreated,
    AmendOrder,
    AuctionAmendBid,
    AuctionBid,
    AuctionCancel,
    AuctionClose,
    AuctionCreate,
    AuctionOpen,
    AuctionUpdate,
    AuctionWithdrawBid,
    Balance,
    BidUpdate,
    BlockAccept,
    BlockCancel,
    BlockDecline,
    BlockedChanged,
    BlockPropose,
    BlockUpdate,
    CancelAll,
    CancelOrder,
    Certificate,
    Command,
    CreateAccount,
    CreateMember,
    DayClose,
    DayClosed,
    DayOpen,
    DayOpened,
    Deposit,
    Event,
    EventCreate,
    ExecReport,
    Holding,
    InstrumentStatus,
    MemberCreated,
    NeutralityEvent,
    PlaceOrder,
    ReferencePrice,
    Reject,
    Retire,
    SetBlocked,
    SetCancelOnDisconnect,
    SetHalt,
    SetReference,
    SnapshotMark,
    Tick,
    Trade,
    Withdraw,
)
from carbonx.gateway import wire
from carbonx.gateway.journal import UnencodableCommand
from carbonx.gateway.logins import Busy, LoginGuard, Throttled
from carbonx.gateway.marketdata import ChannelError, Fanout, MarketData
from carbonx.gateway.metrics import HttpEndpoint, LatencyHistogram, LoopLag, make_registry
from carbonx.gateway.passwords import hash_secret, verify_secret
from carbonx.gateway.sessions import ConnectionRegistry, Refused, Session, address_key
from carbonx.gateway.settings import Settings
from carbonx.gateway.snapshots import SnapshotError
from carbonx.gateway.storage import StorageStatus, StorageUnavailable, check_storage, free_bytes, is_disk_full
from carbonx.gateway.wire import RpcError

log = logging.getLogger("carbonx.gateway")

MSGPACK_SUBPROTOCOL = "carbonx.v1.msgpack"
PATH = "/v1"
# Verified against when the key id is unknown, so a wrong key id costs as long as a wrong secret.
_DUMMY_HASH = "scrypt$" + "00" * 16 + "$" + "00" * 32

Done = Callable[[list[Event]], None]
# Errors that say the request itself was malformed: each counts against max_violations.
_MALFORMED = frozenset({wire.PARSE_ERROR, wire.INVALID_REQUEST, wire.METHOD_NOT_FOUND, wire.INVALID_PARAMS})


class Sequencer:
    """Applies commands, journals them and releases their results once durable, in order."""

    def __init__(
        self,
        engine: Engine,
        journal: Any,
        sink: Any,
        latency_durable: LatencyHistogram,
        latency_reply: LatencyHistogram,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_fatal = on_fatal
        self.journal = journal
        self.sink = sink
        self.pending: deque[tuple[int, list[Event] | None, Callable[..., None] | None, int]] = deque()
        self.latency_durable = latency_durable
        self.latency_reply = latency_reply
        journal.add_listener(self.on_durable)

    def submit(self, cmd: Command, done: Done | None = None, recv_ns: int = 0) -> int:
        """Journal, then apply ``cmd``; ``done(events)`` runs once it is durable.

        Journal first (docs/journal.md): appending encodes the command, so a command the
        journal cannot record is refused (RpcError -32602) before the engine sees it:
        nothing changes, no sequence number is used, the exchange keeps running. Appending
        only buffers; the engine applies the command at once, before anything can be
        released, and the reply still waits for durability. After a journal failure every
        command is answered ``SHUTTING_DOWN`` and never reaches the engine."""
        failure = getattr(self.journal, "failure", None)
        if failure is not None:  # failed since the last check: refuse before the engine gets ahead
            self._stop(failure)
        if cmd.ts < self.engine.ts:  # the wall clock stepped back (NTP): engine time never does
            cmd.ts = self.engine.ts
        seq = self.engine.seq + 1
        try:
            self.journal.append(seq, cmd)
        except UnencodableCommand as exc:  # a value escaped its range check (engine.ranges): refuse it
            log.warning("refused a command the journal cannot encode: %s", exc)
            raise RpcError(wire.INVALID_PARAMS, "invalid params: a value is out of range", {"reason": wire.INVALID_PARAMS_REASON}) from None
        except Exception as exc:  # the journal failed: nothing more can be made durable, stop serving
            self._stop(exc)
        try:
            events = self.engine.apply(cmd)
        except Exception:  # an engine bug: it is journaled anyway, so replay reproduces it
            log.exception("engine failed on %r", cmd)
            events = []
        self.pending.append((seq, events, done, recv_ns))
        return seq

    def _stop(self, exc: BaseException) -> None:
        """The journal failed: report it (the gateway stops) and answer the documented
        ``SHUTTING_DOWN``; the command was not made durable, so it did not happen."""
        if self.on_fatal is not None:
            self.on_fatal(exc)
        raise RpcError.business(wire.SHUTTING_DOWN, "the exchange is shutting down (its journal failed)")

    def after_durable(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once everything applied so far is durable (and released)."""
        if not self.pending:
            fn()
        else:
            self.pending.append((self.engine.seq, None, fn, 0))

    def on_durable(self, durable: int) -> None:
        pending = self.pending
        now = time.time_ns()
        while pending and pending[0][0] <= durable:
            seq, events, done, recv_ns = pending.popleft()
            if events is None:
                if done is not None:
                    try:
                        done()
                    except Exception:
                        log.exception("read reply after seq %d failed", seq)
                continue
            if recv_ns:
                self.latency_durable.observe_ns(now - recv_ns)
            if done is not None:
                try:
                    done(events)
                except Exception:
                    log.exception("reply for seq %d failed", seq)
                if recv_ns:
                    self.latency_reply.observe_ns(time.time_ns() - recv_ns)
            if events:
                try:
                    self.sink.publish(seq, events)
                except Exception:  # never let fan-out stall the release of later replies
                    log.exception("publishing seq %d failed", seq)


@dataclass(frozen=True)
class Method:
    params: type
    handler: str  # Gateway attribute name
    access: str  # public | private | operator
    order: bool = False  # charged to the order rate limit too


class Call:
    """One request being answered: who asked, with which id, when it arrived."""

    __slots__ = ("gw", "recv_ns", "req_id", "session")

    def __init__(self, gw: Gateway, session: Session, req_id: Any, recv_ns: int) -> None:
        self.gw, self.session, self.req_id, self.recv_ns = gw, session, req_id, recv_ns

    def reply(self, result: Any) -> None:
        if self.req_id is not None:
            self.gw.fanout.send_one(self.session, wire.reply(self.req_id, result))

    def error(self, err: RpcError) -> None:
        if self.req_id is not None:
            self.gw.fanout.send_one(self.session, wire.error_reply(self.req_id, err))

    def read(self, result: Any) -> None:
        """Reply with a read result once everything applied before it is durable."""
        self.gw.seq.after_durable(lambda: self.reply(result))

    def command(self, cmd: Command, build: Callable[[list[Event]], Any]) -> int:
        """Submit ``cmd``; reply with ``build(events)`` (or the Reject) once durable.
        Returns the command's seq (known before ``build`` runs)."""
        if self.gw.closing:
            raise RpcError.business(wire.SHUTTING_DOWN, "the exchange is shutting down")
        failure = ranges.command_failure(cmd)  # the engine's own range check, before a seq is spent
        if failure is not None:
            raise RpcError.business(failure[0], failure[1], failure[2])
        if not self.gw.storage.ok and not self.session.operator and type(cmd) not in (CancelOrder, CancelAll):
            raise RpcError.business(wire.STORAGE_FULL, f"not accepting new commands: {self.gw.storage.problem} (cancels still work)")

        def done(events: list[Event]) -> None:
            for ev in events:
                if type(ev) is Reject:
                    self.error(wire.reject_error(ev))
                    return
            try:
                self.reply(build(events))
            except RpcError as err:
                self.error(err)

        return self.gw.seq.submit(cmd, done, self.recv_ns)


def _first(events: list[Event], kind: type) -> Any:
    for ev in events:
        if type(ev) is kind:
            return ev
    raise RpcError(wire.INTERNAL_ERROR, f"internal error: no {kind.__name__} event")


def _order_result(events: list[Event]) -> dict[str, Any]:
    """The final execution report of the order the command was about (the first
    report's order; later reports may be for resting orders it traded with)."""
    first = _first(events, ExecReport)
    last = first
    for ev in events:
        if type(ev) is ExecReport and ev.order_id == first.order_id:
            last = ev
    return wire.exec_report(last)


def _ref(p: Any) -> tuple[int, str]:
    """(order_id, client_order_id) of an order reference; exactly one must be given."""
    if (p.order_id is None) == (p.client_order_id is None):
        raise RpcError(
            wire.INVALID_PARAMS,
            "invalid params: give exactly one of order_id or client_order_id",
            {"reason": wire.INVALID_PARAMS_REASON, "field": "order_id"},
        )
    if p.order_id is not None:
        return wire.parse_id(p.order_id), ""
    if not p.client_order_id:
        raise RpcError(
            wire.INVALID_PARAMS,
            "invalid params: client_order_id must not be empty",
            {"reason": wire.INVALID_PARAMS_REASON, "field": "client_order_id"},
        )
    return 0, wire.check_client_id(p.client_order_id, "client_order_id")


def _money_events(events: list[Event], seq_hint: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": events[0].seq if events else seq_hint}
    for ev in events:
        if type(ev) is Balance:
            out["cash"] = {"available": wire.format_fen(ev.available), "frozen": wire.format_fen(ev.frozen)}
        elif type(ev) is Holding:
            out.setdefault("holdings", []).append(
                {"instrument": ev.instrument, "vintage": ev.vintage or None, "tradable": ev.tradable, "frozen": ev.frozen,
                 "compliance_only": ev.compliance_only, "locked": ev.locked}
            )  # fmt: skip
    return out


class Gateway:
    """Listeners, sessions and the protocol's methods around one Sequencer."""

    def __init__(self, settings: Settings, engine: Engine, journal: Any, snapshots: Any = None) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.engine = engine
        self.journal = journal
        self.snapshots = snapshots
        self.fanout = Fanout(self.limits.write_buffer_bytes)
        self.market = MarketData(engine, self.fanout, settings.server.coalesce_ms / 1000)
        self.latency_durable = LatencyHistogram()
        self.latency_reply = LatencyHistogram()
        self.loop_lag = LoopLag()
        self.seq = Sequencer(engine, journal, self.market, self.latency_durable, self.latency_reply, self._fatal)
        self.registry = ConnectionRegistry(self.limits)
        lim = self.limits
        backoff = (lim.login_backoff_base_s, lim.login_backoff_max_s, lim.login_throttle_entries)
        # Operators get a hashing lane of their own: a login storm on the trading listener
        # never makes the operator's login wait or fail as busy.
        self.logins = {
            False: LoginGuard(lim.login_hash_concurrency, lim.login_hash_queue, *backoff),
            True: LoginGuard(1, lim.max_admin_connections, *backoff, name="carbonx-scrypt-admin"),
        }
        self.login_timeouts = 0
        self._closers: set[asyncio.Task[None]] = set()
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

    def _fatal(self, exc: BaseException) -> None:
        """The journal failed: nothing more can be made durable, so stop taking commands."""
        if self.fatal is None:
            log.critical("journal failure, stopping: %r", exc)
            self.fatal = exc
        self.ready = False
        self.closing = True
        if self.stop_event is not None:
            self.stop_event.set()

    # ------------------------------------------------------------------ start-up

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
        if self.settings.server.auto_open_day and not eng.day_open:
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

    def _ssl(self) -> ssl.SSLContext | None:
        server = self.settings.server
        if not server.tls_cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(server.tls_cert, server.tls_key)
        return ctx

    async def listen(self, host: str, port: int, admin: bool) -> str:
        """Start one listener; returns its ws(s):// URL with the actual port."""
        server_settings = self.settings.server
        tls = self._ssl()

        async def handler(ws: ServerConnection) -> None:
            await self._connection(ws, admin)

        server = await serve(
            handler,
            host,
            port,
            process_request=_only_v1,
            select_subprotocol=_select_subprotocol,
            subprotocols=[MSGPACK_SUBPROTOCOL],  # type: ignore[list-item]
            max_size=self.limits.max_frame_bytes,
            max_queue=16,
            compression="deflate" if server_settings.compression else None,
            ping_interval=server_settings.keepalive_s or None,
            ping_timeout=server_settings.keepalive_s or None,
            close_timeout=5,
            ssl=tls,
        )
        self.servers.append(server)
        bound = server.sockets[0].getsockname()
        return f"{'wss' if tls else 'ws'}://{host}:{bound[1]}{PATH}"

    def start_background(self) -> None:
        for coro in (self._ticker(), self._heartbeats(), self.loop_lag.run(), self._storage_watch()):
            self.tasks.append(asyncio.get_running_loop().create_task(coro))

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
            msg = wire.notification("heartbeat", {"seq": self.journal.durable_seq, "ts": time.time_ns()})
            self.fanout.send(list(self.registry.sessions), msg)

    async def snapshot(self) -> dict[str, Any]:
        if self.snapshots is None:
            raise RpcError.business(R.INVALID_STATE, "snapshots are not configured")
        seq = self.engine.seq
        try:
            path = await self.snapshots.save(self.engine, self.journal)
        except OSError as exc:  # the store removed its temporary file: nothing is left behind
            where = self.snapshots.folder
            if is_disk_full(exc):
                free = free_bytes(where) if where.is_dir() else 0
                raise RpcError.business(
                    wire.STORAGE_FULL, f"snapshot not written: no space left in {where} ({free} bytes free); nothing was left behind"
                ) from None
            raise RpcError.business(R.INVALID_STATE, f"snapshot not written: {exc.strerror or exc}") from None
        except SnapshotError as exc:
            raise RpcError.business(R.INVALID_STATE, f"snapshot not written: {exc}") from None
        self.last_snapshot_seq = seq
        archived: list[Path] = []
        if self.settings.server.archive_segments:  # segments the snapshot covers are not needed to start
            archived = await asyncio.get_running_loop().run_in_executor(None, self.snapshots.archive_segments_before, seq)
        return {"seq": seq, "path": str(path), "archived_segments": len(archived)}

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self) -> None:
        """Stop accepting, cancel-on-disconnect, flush the journal, close with 1001."""
        self.ready = False
        self.closing = True
        for server in self.servers:
            server.close(close_connections=False)
        if self.fatal is None:
            for s in list(self.registry.sessions):
                self._cancel_on_disconnect(s)
        for task in self.tasks:
            task.cancel()
        try:
            if self.fatal is None:  # after a journal failure the engine is ahead of it: no flush, no snapshot
                await self.journal.wait_durable(self.engine.seq)
                self.market.close()
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
        for server in self.servers:
            await server.wait_closed()

    # ------------------------------------------------------------------ connections

    async def _connection(self, ws: ServerConnection, admin: bool) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None and self.limits.socket_send_buffer:  # so the slow-consumer guard sees backlog early
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.socket_send_buffer)
        session = Session(
            self.limits, admin=admin, binary=ws.subprotocol == MSGPACK_SUBPROTOCOL, connection=ws, address=address_key(ws.remote_address)
        )
        if self.closing:
            await ws.close(1001, "server shutting down")
            return
        try:
            victim = self.registry.admit(session)
        except Refused as refused:
            await ws.close(1013, str(refused))
            return
        if victim is not None and victim.connection is not None:
            self._close_later(victim, 1013, "anonymous connections are full: log in to keep a connection")
        self._arm_login_timeout(session)
        codec = wire.MSGPACK if session.binary else wire.JSON
        try:
            while True:
                frame = await ws.recv()  # str for a text frame (websockets closes with 1007 if it is not UTF-8), bytes for binary
                result = self._on_frame(session, codec, frame)
                if result is not None:
                    await result
                if session.abusive:
                    self.abuse_disconnects += 1
                    await ws.close(1008, "too many rejected requests (rate limit or malformed input)")
                    break
        except ConnectionClosed:
            pass
        finally:
            self._disconnect(session)

    def _arm_login_timeout(self, session: Session) -> None:
        """Check ``login_timeout_s`` from now that the connection has logged in (see
        ``_login_deadline``)."""
        if session.login_timer is not None:
            session.login_timer.cancel()
        session.login_timer = asyncio.get_running_loop().call_later(self.limits.login_timeout_s, self._login_deadline, session)

    def _login_deadline(self, session: Session) -> None:
        """Close a connection still anonymous after ``login_timeout_s`` (1008). On the trading
        listener with public market data, an anonymous connection holding subscriptions is a
        market-data subscriber: it stays (counted in the anonymous budget) and is checked again
        every ``login_timeout_s``."""
        session.login_timer = None
        if session.authenticated or session not in self.registry.sessions or session.connection is None:
            return
        if not session.admin and not self.settings.server.market_data_requires_login and session.subscriptions:
            self._arm_login_timeout(session)
            return
        self.login_timeouts += 1
        reason = f"login timeout: not logged in within {self.limits.login_timeout_s:g} s"
        if not session.admin and not self.settings.server.market_data_requires_login:
            reason += " (or subscribe to market data)"
        self._close_later(session, 1008, reason)

    def _close_later(self, session: Session, code: int, reason: str) -> None:
        """Close another connection than the one being handled (its own handler cleans up)."""
        task = asyncio.get_running_loop().create_task(session.connection.close(code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def _disconnect(self, session: Session) -> None:
        if session.login_timer is not None:
            session.login_timer.cancel()
            session.login_timer = None
        self._cancel_on_disconnect(session)
        self.market.drop(session)
        self.registry.drop(session)

    def _cancel_on_disconnect(self, session: Session) -> None:
        if session.cancel_on_disconnect and session.member is not None and self.journal_open and self.fatal is None:
            session.cancel_on_disconnect = False
            self.seq.submit(CancelAll(ts=time.time_ns(), member=session.member, session=session.session_id))

    def _on_frame(self, session: Session, codec: wire.Codec, frame: str | bytes) -> Awaitable[None] | None:
        """Handle one request. Returns an awaitable only for the few async methods."""
        recv_ns = time.time_ns()
        allowed = session.allow(False)  # every frame is charged, before anything else (unparsable ones too)
        try:
            req = codec.request(frame)
        except RpcError as err:
            if allowed:  # a refused budget already counted this frame as a violation
                session.refused()
            self.fanout.send_one(session, wire.error_reply(getattr(err, "req_id", None), err))
            return None
        call = Call(self, session, req.id, recv_ns)
        try:
            if not allowed:
                self.rate_limited += 1
                raise RpcError.business(R.RATE_LIMITED, "request rate limit exceeded: slow down")
            method = self._method(session, req.method)
            if method.order and not session.allow_order():
                self.rate_limited += 1
                raise RpcError.business(R.RATE_LIMITED, "order rate limit exceeded: slow down")
            self._check_access(session, method)
            params = codec.params(req, method.params)
            session.well_formed()
            result = getattr(self, method.handler)(call, params)
        except RpcError as err:
            if err.code in _MALFORMED:  # unknown method, invalid params: every malformed request counts
                session.refused()
            call.error(err)
            return None
        except Exception:
            log.exception("method %s failed", req.method)
            call.error(RpcError(wire.INTERNAL_ERROR, "internal error"))
            return None
        if result is not None:
            return self._finish(call, result)
        return None

    async def _finish(self, call: Call, pending: Awaitable[None]) -> None:
        try:
            await pending
        except RpcError as err:
            call.error(err)
        except Exception:
            log.exception("async method failed")
            call.error(RpcError(wire.INTERNAL_ERROR, "internal error"))

    def _method(self, session: Session, name: str) -> Method:
        table = ADMIN_METHODS if session.admin else TRADING_METHODS
        method = table.get(name)
        if method is None:
            where = "the admin listener" if session.admin else "the trading listener (operator methods live on the admin listener)"
            raise RpcError(wire.METHOD_NOT_FOUND, f"method not found: {name!r} on {where}", {"reason": "METHOD_NOT_FOUND"})
        return method

    def _check_access(self, session: Session, method: Method) -> None:
        if method.access == "public":
            if self.settings.server.market_data_requires_login and not session.authenticated and method.handler != "m_login":
                raise RpcError.business(R.NOT_AUTHENTICATED, "log in first (session.login)")
            return
        if not session.authenticated:
            raise RpcError.business(R.NOT_AUTHENTICATED, "log in first (session.login)")
        if method.access == "operator" and not session.operator:
            raise RpcError.business(R.NOT_AUTHORIZED, "operator credentials required")

    def _member(self, call: Call) -> str | None:
        """The acting member (None for an operator on the admin listener: any account)."""
        return None if call.session.operator else call.session.member

    def _broker(self, call: Call) -> str:
        if call.session.member is None:
            raise RpcError.business(R.NOT_AUTHORIZED, "operators do not trade; log in as a member")
        return call.session.member

    def _account(self, call: Call, account: str) -> Any:
        acct = self.engine.account_of(self._member(call), account)
        if acct is None:
            raise RpcError.business(R.NOT_AUTHORIZED, f"no account {account!r} for this member", "account")
        return acct

    # ------------------------------------------------------------------ session methods

    def m_login(self, call: Call, p: wire.LoginParams) -> Awaitable[None]:
        return self._login(call, p)

    async def _login(self, call: Call, p: wire.LoginParams) -> None:
        s = call.session
        if s.authenticated:
            raise RpcError.business(R.INVALID_STATE, "already logged in on this connection")
        stored, member = None, None
        if s.admin:
            op = self.settings.operator
            if op is not None and hmac.compare_digest(op.key_id.encode(), p.key_id.encode()):
                stored = op.secret_hash
        else:
            found = self.engine.member_of_key(p.key_id)
            if found is not None:
                stored, member = found.secret_hash, found.member
        secret, against = p.secret, stored or _DUMMY_HASH
        try:
            ok = await self.logins[s.admin].verify(p.key_id, s.address, lambda: verify_secret(secret, against)) and stored is not None
        except Throttled as throttled:
            self._login_failed(s)
            raise RpcError.business(
                wire.LOGIN_THROTTLED, str(throttled), retry_after_ms=max(1, int(throttled.retry_after * 1000)), scope=throttled.scope
            ) from None
        except Busy as busy:
            self.rate_limited += 1
            raise RpcError.business(R.RATE_LIMITED, f"{busy}", retry_after_ms=1000) from None
        if not ok:
            self._login_failed(s)
            raise RpcError.business(R.NOT_AUTHENTICATED, "invalid key id or secret", "secret")
        if s.evicted:  # made room for another address's connection while the secret was checked
            raise RpcError.business(wire.TOO_MANY_CONNECTIONS, "this connection was closed to make room for another")
        if s.admin:
            self.registry.logged_in(s)
            s.operator = True
            call.reply(
                {
                    "member": None,
                    "operator": True,
                    "accounts": [],
                    "session_id": s.session_id,
                    "heartbeat_s": self.settings.server.heartbeat_s,
                }
            )
            return
        assert member is not None
        if not self.registry.bind_member(s, member):
            raise RpcError.business(
                wire.TOO_MANY_CONNECTIONS, f"member {member} is at its limit of {self.limits.max_connections_per_member} connections"
            )
        accounts = self.engine.accounts_of(member)
        call.reply({"member": member, "accounts": accounts, "session_id": s.session_id, "heartbeat_s": self.settings.server.heartbeat_s})

    def _login_failed(self, s: Session) -> None:
        s.login_failures += 1
        if s.login_failures >= self.limits.max_login_failures:
            s.violations = self.limits.max_violations  # closes the connection after this reply

    def m_logout(self, call: Call, p: wire.NoParams) -> None:
        s = call.session
        if s.cancel_on_disconnect and s.member is not None:  # logout is deliberate: orders stay
            self.seq.submit(SetCancelOnDisconnect(ts=call.recv_ns, member=s.member, session=s.session_id, enabled=False))
        s.cancel_on_disconnect = False
        self.market.unsubscribe(s, "orders")
        s.subscriptions.discard("orders")
        self.registry.unbind_member(s)
        s.operator = False
        self.registry.logged_out(s)
        self._arm_login_timeout(s)
        call.reply({"logged_out": True})

    def m_cancel_on_disconnect(self, call: Call, p: wire.CancelOnDisconnectParams) -> None:
        """Journaled (not just a session flag): if the exchange crashes, the restarted
        gateway cancels the orders of every session that had asked for it."""
        member = self._broker(call)
        call.session.cancel_on_disconnect = p.enabled
        cmd = SetCancelOnDisconnect(ts=call.recv_ns, member=member, session=call.session.session_id, enabled=p.enabled)
        call.command(cmd, lambda events: {"enabled": p.enabled})

    def m_ping(self, call: Call, p: wire.NoParams) -> None:
        call.reply({"ts": time.time_ns()})

    def m_subscribe(self, call: Call, p: wire.ChannelsParams) -> None:
        s = call.session
        for name in p.channels:
            try:
                self.market.parse_channel(name)
            except ChannelError as exc:
                raise RpcError.business(exc.reason, str(exc), "channels") from None
            if name == "orders" and not s.authenticated:
                raise RpcError.business(R.NOT_AUTHENTICATED, "the orders channel is private: log in first", "channels")
        wanted = s.subscriptions | set(p.channels)
        if len(wanted) > self.limits.max_subscriptions:
            raise RpcError.business(
                wire.TOO_MANY_SUBSCRIPTIONS, f"at most {self.limits.max_subscriptions} subscriptions per connection", "channels"
            )
        s.subscriptions = wanted
        call.reply({"subscribed": sorted(wanted)})
        for name in dict.fromkeys(p.channels):
            self.market.subscribe(s, name)

    def m_unsubscribe(self, call: Call, p: wire.ChannelsParams) -> None:
        s = call.session
        for name in p.channels:
            if name in s.subscriptions:
                self.market.unsubscribe(s, name)
                s.subscriptions.discard(name)
        call.reply({"subscribed": sorted(s.subscriptions)})

    # ------------------------------------------------------------------ order entry

    def m_place(self, call: Call, p: wire.PlaceParams) -> None:
        price = None if p.price is None else wire.parse_price(p.price)  # the engine decides: market + price, limit - price
        cmd = PlaceOrder(
            ts=call.recv_ns, member=self._broker(call), account=p.account, instrument=p.instrument, side=p.side, type=p.type,
            price=price, quantity=p.quantity, tif=p.time_in_force, post_only=p.post_only, stp=p.stp,
            client_order_id=wire.check_client_id(p.client_order_id, "client_order_id"), session=call.session.session_id,
        )  # fmt: skip
        call.command(cmd, _order_result)

    def m_amend(self, call: Call, p: wire.AmendParams) -> None:
        oid, coid = _ref(p)
        price = None if p.price is None else wire.parse_price(p.price)
        cmd = AmendOrder(
            ts=call.recv_ns,
            member=self._broker(call),
            account=p.account,
            order_id=oid,
            client_order_id=coid,
            price=price,
            quantity=p.quantity,
        )
        call.command(cmd, _order_result)

    def m_cancel(self, call: Call, p: wire.OrderRefParams) -> None:
        oid, coid = _ref(p)
        cmd = CancelOrder(ts=call.recv_ns, member=self._broker(call), account=p.account, order_id=oid, client_order_id=coid)
        call.command(cmd, _order_result)

    def m_cancel_all(self, call: Call, p: wire.CancelAllParams) -> None:
        cmd = CancelAll(ts=call.recv_ns, member=self._broker(call), account=p.account, instrument=p.instrument, side=p.side)
        _cancel_all(call, cmd)

    def m_order_get(self, call: Call, p: wire.OrderRefParams) -> None:
        oid, coid = _ref(p)
        self._account(call, p.account)
        order = self.engine.order_of(self._member(call), p.account, oid, coid)
        if order is None:
            raise RpcError.business(
                R.UNKNOWN_ORDER, "no such order in this account", "order_id" if p.order_id is not None else "client_order_id"
            )
        call.read(wire.order_view(order, self.engine.seq))

    def m_order_list(self, call: Call, p: wire.OrderListParams) -> None:
        self._account(call, p.account)
        orders = self.engine.orders_of(self._member(call), p.account, p.instrument, p.open_only)
        seq = self.engine.seq
        call.read({"orders": [wire.order_view(o, seq) for o in orders]})

    def m_trade_list(self, call: Call, p: wire.TradeListParams) -> None:
        self._account(call, p.account)
        trades = self.engine.trades_of(self._member(call), p.account, p.instrument, p.since_ts)
        call.read({"trades": [wire.account_trade(t, p.account) for t in trades]})

    def m_account_get(self, call: Call, p: wire.AccountParams) -> None:
        call.read(wire.account_view(self._account(call, p.account)))

    # ------------------------------------------------------------------ retirement, blocks

    def m_retire(self, call: Call, p: wire.RetireParams) -> None:
        cmd = Retire(
            ts=call.recv_ns, member=self._broker(call), account=p.account, instrument=p.instrument, quantity=p.quantity,
            purpose=p.purpose, beneficiary=p.beneficiary, vintage=p.vintage, event_id=p.event_id,
        )  # fmt: skip
        call.command(cmd, lambda events: wire.certificate_view(_first(events, Certificate)))

    def m_certificate(self, call: Call, p: wire.CertificateParams) -> None:
        cert = retirement.certificate(self.engine, wire.parse_id(p.certificate_id))
        if cert is None:
            raise RpcError.business(wire.UNKNOWN_CERTIFICATE, f"no certificate {p.certificate_id!r}", "certificate_id")
        call.read(wire.certificate_view(cert))

    def m_event_get(self, call: Call, p: wire.EventParams) -> None:
        ev = retirement.event_view(self.engine, p.event_id)
        if ev is None:
            raise RpcError.business(R.UNKNOWN_EVENT, f"no event {p.event_id!r}", "event_id")
        call.read(wire.neutrality_view(ev))

    def m_block_propose(self, call: Call, p: wire.BlockProposeParams) -> None:
        cmd = BlockPropose(
            ts=call.recv_ns, member=self._broker(call), account=p.account, instrument=p.instrument, side=p.side,
            price=wire.parse_price(p.price), quantity=p.quantity, counterparty_account=p.counterparty_account, vintage=p.vintage,
        )  # fmt: skip
        call.command(cmd, lambda events: wire.block_view(_first(events, BlockUpdate)))

    def m_block_accept(self, call: Call, p: wire.BlockRefParams) -> None:
        block_id = wire.parse_id(p.block_id)
        cmd = BlockAccept(ts=call.recv_ns, member=self._broker(call), account=p.account, block_id=block_id)

        def build(events: list[Event]) -> dict[str, Any]:
            out = wire.account_trade(_first(events, Trade), p.account)
            out["block_id"] = p.block_id
            return out

        call.command(cmd, build)

    def m_block_decline(self, call: Call, p: wire.BlockRefParams) -> None:
        cmd = BlockDecline(ts=call.recv_ns, member=self._broker(call), account=p.account, block_id=wire.parse_id(p.block_id))
        call.command(cmd, lambda events: wire.block_view(_first(events, BlockUpdate)))

    def m_block_cancel(self, call: Call, p: wire.BlockRefParams) -> None:
        cmd = BlockCancel(ts=call.recv_ns, member=self._broker(call), account=p.account, block_id=wire.parse_id(p.block_id))
        call.command(cmd, lambda events: wire.block_view(_first(events, BlockUpdate)))

    def m_block_get(self, call: Call, p: wire.BlockRefParams) -> None:
        self._account(call, p.account)
        view = blocks.block_view(self.engine, self._broker(call), p.account, wire.parse_id(p.block_id))
        if view is None:
            raise RpcError.business(R.UNKNOWN_BLOCK, f"no block {p.block_id!r} for this account", "block_id")
        call.read(wire.block_view(view))

    # ------------------------------------------------------------------ auctions

    def m_auction_list(self, call: Call, p: wire.NoParams) -> None:
        out = []
        for info in auctions.list_auctions(self.engine):
            view = auctions.auction_view(self.engine, info.auction_id)
            out.append(wire.auction_view(info, view[1] if view else None))
        call.read({"auctions": out})

    def m_auction_get(self, call: Call, p: wire.AuctionRefParams) -> None:
        view = auctions.auction_view(self.engine, wire.parse_id(p.auction_id))
        if view is None:
            raise RpcError.business(R.UNKNOWN_AUCTION, f"no auction {p.auction_id!r}", "auction_id")
        call.read(wire.auction_view(*view))

    def m_auction_bid(self, call: Call, p: wire.BidParams) -> None:
        cmd = AuctionBid(
            ts=call.recv_ns, member=self._broker(call), auction_id=wire.parse_id(p.auction_id), account=p.account,
            price=wire.parse_price(p.price), quantity=p.quantity, client_bid_id=wire.check_client_id(p.client_bid_id, "client_bid_id"),
        )  # fmt: skip
        call.command(cmd, lambda events: wire.bid_view(_first(events, BidUpdate)))

    def m_auction_amend(self, call: Call, p: wire.AmendBidParams) -> None:
        cmd = AuctionAmendBid(
            ts=call.recv_ns, member=self._broker(call), auction_id=wire.parse_id(p.auction_id), bid_id=wire.parse_id(p.bid_id),
            price=None if p.price is None else wire.parse_price(p.price), quantity=p.quantity,
        )  # fmt: skip
        call.command(cmd, lambda events: wire.bid_view(_first(events, BidUpdate)))

    def m_auction_withdraw(self, call: Call, p: wire.WithdrawBidParams) -> None:
        cmd = AuctionWithdrawBid(
            ts=call.recv_ns, member=self._broker(call), auction_id=wire.parse_id(p.auction_id), bid_id=wire.parse_id(p.bid_id)
        )
        call.command(cmd, lambda events: wire.bid_view(_first(events, BidUpdate)))

    def m_my_bids(self, call: Call, p: wire.MyBidsParams) -> None:
        self._account(call, p.account)
        bids = auctions.bids_of(self.engine, self._broker(call), wire.parse_id(p.auction_id), p.account)
        if bids is None:
            raise RpcError.business(R.UNKNOWN_AUCTION, f"no auction {p.auction_id!r}", "auction_id")
        call.read({"bids": [wire.bid_view(b) for b in bids]})

    # ------------------------------------------------------------------ operators

    def m_member_create(self, call: Call, p: wire.MemberCreateParams) -> Awaitable[None]:
        return self._member_create(call, p)

    async def _member_create(self, call: Call, p: wire.MemberCreateParams) -> None:
        secret = p.secret
        try:
            secret_hash = await self.logins[True].run(lambda: hash_secret(secret))
        except Busy as busy:
            raise RpcError.business(R.RATE_LIMITED, str(busy), retry_after_ms=1000) from None
        cmd = CreateMember(ts=time.time_ns(), member=p.member, key_id=p.key_id, secret_hash=secret_hash)
        call.command(cmd, lambda events: _pick(_first(events, MemberCreated), "member", "key_id") | {"seq": events[0].seq})

    def m_account_create(self, call: Call, p: wire.AccountCreateParams) -> None:
        cmd = CreateAccount(ts=call.recv_ns, account=p.account, member=p.member, type=p.type)
        call.command(cmd, lambda events: _pick(_first(events, AccountCreated), "account", "member", "type") | {"seq": events[0].seq})

    def m_deposit(self, call: Call, p: wire.DepositParams) -> None:
        cash = 0 if p.cash is None else wire.parse_money(p.cash, "cash")
        cmd = Deposit(
            ts=call.recv_ns,
            account=p.account,
            cash=cash,
            instrument=p.instrument,
            quantity=p.quantity,
            vintage=p.vintage,
            compliance_only=p.compliance_only,
        )
        call.command(cmd, lambda events: {"account": p.account, **_money_events(events)})

    def m_withdraw(self, call: Call, p: wire.MoneyMoveParams) -> None:
        cash = 0 if p.cash is None else wire.parse_money(p.cash, "cash")
        cmd = Withdraw(ts=call.recv_ns, account=p.account, cash=cash, instrument=p.instrument, quantity=p.quantity, vintage=p.vintage)
        call.command(cmd, lambda events: {"account": p.account, **_money_events(events)})

    def _set_halt(self, call: Call, instrument: str, halted: bool) -> None:
        def build(events: list[Event]) -> dict[str, Any]:
            st = next((e for e in events if type(e) is InstrumentStatus), None)
            return {"instrument": instrument, "halted": halted, "phase": st.phase if st else None, "seq": events[0].seq if events else None}

        call.command(SetHalt(ts=call.recv_ns, instrument=instrument, halted=halted), build)

    def m_halt(self, call: Call, p: wire.InstrumentParams) -> None:
        self._set_halt(call, p.instrument, True)

    def m_resume(self, call: Call, p: wire.InstrumentParams) -> None:
        self._set_halt(call, p.instrument, False)

    def m_set_reference(self, call: Call, p: wire.SetReferenceParams) -> None:
        def build(events: list[Event]) -> dict[str, Any]:
            ev = _first(events, ReferencePrice)
            return {
                "instrument": ev.instrument,
                "price": wire.format_fen(ev.price),
                "lower": wire.format_fen(ev.lower),
                "upper": wire.format_fen(ev.upper),
                "seq": ev.seq,
            }

        call.command(SetReference(ts=call.recv_ns, instrument=p.instrument, price=wire.parse_price(p.price)), build)

    def _set_blocked(self, call: Call, p: wire.BlockedParams, blocked: bool) -> None:
        cmd = SetBlocked(ts=call.recv_ns, member=p.member, account=p.account, blocked=blocked)
        call.command(cmd, lambda events: _pick(_first(events, BlockedChanged), "member", "account", "blocked") | {"seq": events[0].seq})

    def m_block(self, call: Call, p: wire.BlockedParams) -> None:
        self._set_blocked(call, p, True)

    def m_unblock(self, call: Call, p: wire.BlockedParams) -> None:
        self._set_blocked(call, p, False)

    def m_admin_cancel_all(self, call: Call, p: wire.AdminCancelAllParams) -> None:
        cmd = CancelAll(ts=call.recv_ns, member=p.member or "", account=p.account, instrument=p.instrument, side=p.side)
        _cancel_all(call, cmd)

    def m_snapshot(self, call: Call, p: wire.NoParams) -> Awaitable[None]:
        return self._snapshot(call)

    async def _snapshot(self, call: Call) -> None:
        if self.snapshots is None:
            raise RpcError.business(R.INVALID_STATE, "snapshots are not configured")
        done: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self.seq.submit(SnapshotMark(ts=call.recv_ns), done.set_result, call.recv_ns)
        await done
        call.reply(await self.snapshot())

    def m_day_open(self, call: Call, p: wire.NoParams) -> None:
        call.command(
            DayOpen(ts=call.recv_ns), lambda events: {"trading_date": _first(events, DayOpened).trading_date, "seq": events[0].seq}
        )

    def m_day_close(self, call: Call, p: wire.NoParams) -> None:
        def build(events: list[Event]) -> dict[str, Any]:
            ev = _first(events, DayClosed)
            return {"trading_date": ev.trading_date, "closes": {k: wire.daily_stats(v) for k, v in ev.closes.items()}, "seq": ev.seq}

        call.command(DayClose(ts=call.recv_ns), build)

    def m_auction_create(self, call: Call, p: wire.AuctionCreateParams) -> None:
        reserve = p.reserve
        cmd = AuctionCreate(
            ts=call.recv_ns, instrument=p.instrument, vintage=p.vintage, quantity=p.quantity,
            reserve_price=None if p.reserve_price is None else wire.parse_price(p.reserve_price, "reserve_price"),
            reserve_lookback_days=reserve.lookback_days if reserve else None,
            reserve_factor_pct=120 if reserve and reserve.factor in ("1.2", "120", 120) else 100,
            reserve_cap=wire.parse_price(reserve.cap, "reserve.cap") if reserve and reserve.cap else None,
            rule_set=p.rule_set, eligible=list(p.eligible) if p.eligible is not None else None,
            caps={str(k): v for k, v in p.caps.items()} if p.caps is not None else None, min_lot=p.min_lot, irrevocable=p.irrevocable,
            suspend_trading=p.suspend_trading, start_ts=p.start_ts, end_ts=p.end_ts,
            seed=p.seed if p.seed is not None else secrets.randbits(63),
        )  # fmt: skip
        call.command(cmd, _auction_result)

    def m_auction_open(self, call: Call, p: wire.AuctionRefParams) -> None:
        call.command(AuctionOpen(ts=call.recv_ns, auction_id=wire.parse_id(p.auction_id)), _auction_result)

    def m_auction_close(self, call: Call, p: wire.AuctionRefParams) -> None:
        call.command(AuctionClose(ts=call.recv_ns, auction_id=wire.parse_id(p.auction_id)), _auction_result)

    def m_auction_cancel(self, call: Call, p: wire.AuctionRefParams) -> None:
        call.command(AuctionCancel(ts=call.recv_ns, auction_id=wire.parse_id(p.auction_id)), _auction_result)

    def m_auction_bids(self, call: Call, p: wire.AuctionRefParams) -> None:
        bids = auctions.all_bids(self.engine, wire.parse_id(p.auction_id))
        if bids is None:
            raise RpcError.business(R.UNKNOWN_AUCTION, f"no auction {p.auction_id!r}", "auction_id")
        call.read({"bids": [wire.bid_view(b) | {"member": b.member} for b in bids]})

    def m_event_create(self, call: Call, p: wire.EventCreateParams) -> None:
        cmd = EventCreate(ts=call.recv_ns, event_id=p.event_id, name=p.name, footprint=p.footprint)
        call.command(cmd, lambda events: wire.neutrality_view(_first(events, NeutralityEvent)))

    def m_status(self, call: Call, p: wire.NoParams) -> None:
        eng = self.engine
        call.read(
            {
                "seq": eng.seq,
                "durable_seq": self.journal.durable_seq,
                "day_open": eng.day_open,
                "trading_date": eng.trading_date or None,
                "phases": {sym: eng.phase(sym, time.time_ns()) for sym in eng.specs},
                "sessions": len(self.registry.sessions),
            }
        )


def _pick(ev: Any, *names: str) -> dict[str, Any]:
    return {n: getattr(ev, n) for n in names}


def _cancel_all(call: Call, cmd: CancelAll) -> None:
    """Mass cancel; the reply's ``seq`` is the command's even when nothing was cancelled
    (the command was journaled and used its sequence number all the same)."""
    seq = 0

    def build(events: list[Event]) -> dict[str, Any]:
        n = sum(1 for ev in events if type(ev) is ExecReport and ev.exec_type == "cancelled")
        return {"cancelled": n, "seq": seq}

    seq = call.command(cmd, build)


def _auction_result(events: list[Event]) -> dict[str, Any]:
    """The auction's final state after the command (closing publishes closed, then cleared)."""
    ev = _first(events, AuctionUpdate)
    for e in events:
        if type(e) is AuctionUpdate:
            ev = e
    return wire.auction_view(ev.auction, ev.results)


def _select_subprotocol(connection: ServerConnection, offered: Any) -> Any:
    """MessagePack if asked for; plain JSON (no subprotocol) otherwise."""
    return MSGPACK_SUBPROTOCOL if MSGPACK_SUBPROTOCOL in offered else None


def _only_v1(connection: ServerConnection, request: HttpRequest) -> Response | None:
    if request.path.split("?", 1)[0] != PATH:
        return connection.respond(404, f"carbonx speaks WebSocket on {PATH}\n")
    return None


# --------------------------------------------------------------------------- method tables

_PUBLIC = {
    "session.login": Method(wire.LoginParams, "m_login", "public"),
    "session.logout": Method(wire.NoParams, "m_logout", "private"),
    "ping": Method(wire.NoParams, "m_ping", "public"),
    "subscribe": Method(wire.ChannelsParams, "m_subscribe", "public"),
    "unsubscribe": Method(wire.ChannelsParams, "m_unsubscribe", "public"),
    "auction.list": Method(wire.NoParams, "m_auction_list", "public"),
    "auction.get": Method(wire.AuctionRefParams, "m_auction_get", "public"),
    "retire.certificate": Method(wire.CertificateParams, "m_certificate", "public"),
    "event.get": Method(wire.EventParams, "m_event_get", "public"),
}
_READS = {
    "order.get": Method(wire.OrderRefParams, "m_order_get", "private"),
    "order.list": Method(wire.OrderListParams, "m_order_list", "private"),
    "trade.list": Method(wire.TradeListParams, "m_trade_list", "private"),
    "account.get": Method(wire.AccountParams, "m_account_get", "private"),
}
TRADING_METHODS: dict[str, Method] = {
    **_PUBLIC,
    **_READS,
    "session.cancel_on_disconnect": Method(wire.CancelOnDisconnectParams, "m_cancel_on_disconnect", "private"),
    "order.place": Method(wire.PlaceParams, "m_place", "private", order=True),
    "order.amend": Method(wire.AmendParams, "m_amend", "private", order=True),
    "order.cancel": Method(wire.OrderRefParams, "m_cancel", "private", order=True),
    "order.cancel_all": Method(wire.CancelAllParams, "m_cancel_all", "private", order=True),
    "retire": Method(wire.RetireParams, "m_retire", "private", order=True),
    "block.propose": Method(wire.BlockProposeParams, "m_block_propose", "private", order=True),
    "block.accept": Method(wire.BlockRefParams, "m_block_accept", "private", order=True),
    "block.decline": Method(wire.BlockRefParams, "m_block_decline", "private", order=True),
    "block.cancel": Method(wire.BlockRefParams, "m_block_cancel", "private", order=True),
    "block.get": Method(wire.BlockRefParams, "m_block_get", "private"),
    "auction.bid": Method(wire.BidParams, "m_auction_bid", "private", order=True),
    "auction.amend_bid": Method(wire.AmendBidParams, "m_auction_amend", "private", order=True),
    "auction.withdraw_bid": Method(wire.WithdrawBidParams, "m_auction_withdraw", "private", order=True),
    "auction.my_bids": Method(wire.MyBidsParams, "m_my_bids", "private"),
}
ADMIN_METHODS: dict[str, Method] = {
    **_PUBLIC,
    **_READS,
    "admin.member.create": Method(wire.MemberCreateParams, "m_member_create", "operator"),
    "admin.account.create": Method(wire.AccountCreateParams, "m_account_create", "operator"),
    "admin.account.deposit": Method(wire.DepositParams, "m_deposit", "operator"),
    "admin.account.withdraw": Method(wire.MoneyMoveParams, "m_withdraw", "operator"),
    "admin.instrument.halt": Method(wire.InstrumentParams, "m_halt", "operator"),
    "admin.instrument.resume": Method(wire.InstrumentParams, "m_resume", "operator"),
    "admin.instrument.set_reference": Method(wire.SetReferenceParams, "m_set_reference", "operator"),
    "admin.block": Method(wire.BlockedParams, "m_block", "operator"),
    "admin.unblock": Method(wire.BlockedParams, "m_unblock", "operator"),
    "admin.order.cancel_all": Method(wire.AdminCancelAllParams, "m_admin_cancel_all", "operator"),
    "admin.snapshot": Method(wire.NoParams, "m_snapshot", "operator"),
    "admin.day.open": Method(wire.NoParams, "m_day_open", "operator"),
    "admin.day.close": Method(wire.NoParams, "m_day_close", "operator"),
    "admin.auction.create": Method(wire.AuctionCreateParams, "m_auction_create", "operator"),
    "admin.auction.open": Method(wire.AuctionRefParams, "m_auction_open", "operator"),
    "admin.auction.close": Method(wire.AuctionRefParams, "m_auction_close", "operator"),
    "admin.auction.cancel": Method(wire.AuctionRefParams, "m_auction_cancel", "operator"),
    "admin.auction.bids": Method(wire.AuctionRefParams, "m_auction_bids", "operator"),
    "admin.event.create": Method(wire.EventCreateParams, "m_event_create", "operator"),
    "admin.status": Method(wire.NoParams, "m_status", "operator"),
}


# --------------------------------------------------------------------------- the process


@dataclass
class ServeOptions:
    """``carbonx serve`` flags; ``None`` = take the configuration's value."""

    data_dir: str | None = None
    host: str | None = None
    port: int | None = None
    admin_host: str | None = None
    admin_port: int | None = None
    metrics_port: int | None = None
    fsync_policy: str | None = None


def _readiness(gw: Gateway | None) -> bool | str:
    """/readyz: True once serving with usable storage, else why not (False: recovering)."""
    if gw is None or not gw.ready:
        return False
    return True if gw.storage.ok else f"not ready: {gw.storage.problem}"


async def run(settings: Settings, opts: ServeOptions, stop: asyncio.Event | None = None) -> int:
    """Start everything, print the ready line, serve until SIGTERM/SIGINT (or ``stop``)."""
    from carbonx.gateway.journal import LocalJournal
    from carbonx.gateway.recovery import recover
    from carbonx.gateway.snapshots import SnapshotStore

    srv = settings.server
    data_dir = Path(opts.data_dir or srv.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    holder: dict[str, Gateway] = {}
    http = HttpEndpoint(lambda: holder["gw"].registry_metrics if "gw" in holder else None, lambda: _readiness(holder.get("gw")))
    metrics_port = await http.start(srv.metrics_host, srv.metrics_port if opts.metrics_port is None else opts.metrics_port)
    loop = asyncio.get_running_loop()
    recovered = await loop.run_in_executor(None, recover, data_dir, settings.market)
    storage = await loop.run_in_executor(None, check_storage, data_dir, srv.min_free_bytes)
    if not storage.ok:  # the first journal write would fail and stop the exchange: do not start
        await http.close()
        raise StorageUnavailable(storage.problem)
    engine = recovered.engine
    journal = LocalJournal(
        data_dir,
        policy=opts.fsync_policy or srv.fsync_policy,  # type: ignore[arg-type]
        segment_bytes=srv.segment_bytes,
        next_seq=engine.seq + 1,
    )
    await journal.start()
    gw = Gateway(settings, engine, journal, SnapshotStore(data_dir, fork=srv.snapshot_fork))
    gw.storage = storage
    gw.registry_metrics = make_registry(gw)
    holder["gw"] = gw
    booted = await gw.bootstrap()
    trading = await gw.listen(opts.host or srv.host, srv.port if opts.port is None else opts.port, admin=False)
    admin = await gw.listen(opts.admin_host or srv.admin_host, srv.admin_port if opts.admin_port is None else opts.admin_port, admin=True)
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
    sys.stdout.write(f"carbonx ready trading={trading} admin={admin} metrics=http://{srv.metrics_host}:{metrics_port}\n")
    sys.stdout.flush()
    stop = stop or asyncio.Event()
    gw.stop_event = stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await gw.shutdown()
    await http.close()
    return 1 if gw.fatal is not None else 0
