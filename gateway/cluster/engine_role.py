"""``carbonx engine --config F --id ID``: a replica that may become the active engine.

Every engine process runs a ``Replica`` of the command stream (warm state) and follows the
events stream's ``Watermark``. At most one holds the leadership ``Lease`` (JetStream KV); that
one is **active** and additionally (docs/cluster.md, "Roles"):

* publishes the events of every command batch it applied to the events stream (``ev-<first
  seq>``). A standby keeps the events of batches not yet covered by the watermark, so when it
  takes over it publishes exactly what the old leader had not: no gap, and a duplicate is
  dropped by id (and by every follower's watermark);
* produces the clock-driven commands (session phase ``Tick``, auction windows opening/closing,
  the calendar's ``DayOpen``/``DayClose`` with ``[server] day_schedule``, ``auto_open_day``) and
  the configured bootstrap (members, accounts, funding the state lacks), publishing them into
  the command stream with deterministic ``Nats-Msg-Id`` (a deposed leader's copies are dropped);
* watches the gateways' liveness keys and publishes ``GatewayLost`` for a gateway life whose
  cancel-on-disconnect sessions are still flagged but whose key expired or changed nonce;
* stores a snapshot (``snapshots.save_snapshot``) every ``snapshot_every`` commands.

Before every publish it checks ``lease.held()``; on a lost lease it demotes to standby at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Iterator

import msgspec
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from carbonx.engine import auction as auctions
from carbonx.engine.admin import day_due
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command, CreateAccount, CreateMember, DayOpen, Deposit, GatewayLost, Tick
from carbonx.gateway.cluster.commands import encode_batch, publish_once
from carbonx.gateway.cluster.events import Watermark, publish_events
from carbonx.gateway.cluster.join import join
from carbonx.gateway.cluster.journal import Anchor
from carbonx.gateway.cluster.lease import Lease, liveness_key
from carbonx.gateway.cluster.replica import AppliedBatch, Replica
from carbonx.gateway.cluster.snapshots import save_snapshot
from carbonx.gateway.metrics import HttpEndpoint
from carbonx.gateway.settings import Settings

log = logging.getLogger("carbonx.engine")


def gateway_lives(engine: Engine) -> set[str]:
    """The gateway lives (``<gateway id>.<boot nonce>``) with cancel-on-disconnect sessions flagged."""
    return {s.rsplit(".", 1)[0] for s in engine.cod_sessions if s.count(".") >= 2}


def bootstrap_commands(settings: Settings, engine: Engine, now: int) -> list[Command]:
    """The configured members, accounts and funding the state lacks (as ``Gateway.bootstrap``)."""
    out: list[Command] = []
    for m in settings.members:
        if m.member not in engine.members:
            out.append(CreateMember(ts=now, member=m.member, key_id=m.key_id, secret_hash=m.secret_hash))
    for a in settings.accounts:
        if a.account in engine.accounts:
            continue
        out.append(CreateAccount(ts=now, account=a.account, member=a.member, type=a.type))  # type: ignore[arg-type]
        if a.cash:
            out.append(Deposit(ts=now, account=a.account, cash=a.cash))
        for h in a.holdings:
            out.append(Deposit(ts=now, account=a.account, instrument=h.instrument, quantity=h.quantity, vintage=h.vintage))
    return out


def clock_commands(settings: Settings, engine: Engine, now: int) -> list[Command]:
    """What the clock makes due at ``now`` (the embedded gateway's ``_ticker``, for the active engine)."""
    out: list[Command] = []
    if settings.server.auto_open_day and not engine.day_open and not settings.server.day_schedule:
        out.append(DayOpen(ts=now))
    if engine.needs_tick(now):
        out.append(Tick(ts=now))
    out.extend(auctions.due(engine, now))
    if settings.server.day_schedule:
        out.extend(day_due(engine, now))
    return out


def _digest(cmds: list[Command]) -> str:
    """A name for a set of commands that two leaders computing it from the same state share."""
    return hashlib.sha256(msgspec.msgpack.encode([msgspec.structs.replace(c, ts=0) for c in cmds])).hexdigest()[:16]


class EngineRole:
    """See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        engine_id: str,
        nc: NatsClient,
        js: JetStreamContext,
        kv: KeyValue,
        engine: Engine,
        replica_anchor: Anchor | None,
    ) -> None:
        self.settings = settings
        self.cs = settings.cluster
        self.engine_id = engine_id
        self.nc, self.js, self.kv = nc, js, kv
        self.engine = engine
        self.lease = Lease(kv, engine_id, self.cs.lease_ttl_s)
        self.replica = Replica(js, self.cs, engine, self._on_batch, anchor=replica_anchor, on_fatal=self._fatal)
        self.watermark = Watermark(js, self.cs, self._on_watermark)
        self.unpublished: deque[AppliedBatch] = deque()  # applied, events not yet seen in the events stream
        self.published = 0  # highest seq whose events this engine published (while active)
        self.active = False
        self.last_snapshot_seq = engine.seq
        self.events_published = 0
        self.fatal: BaseException | None = None
        self.stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _fatal(self, exc: BaseException) -> None:
        if self.fatal is None:
            log.critical("engine stopping: %r", exc)
            self.fatal = exc
        self.stop.set()

    # ------------------------------------------------------------------ replica and watermark

    def _on_batch(self, batch: AppliedBatch) -> None:
        if batch.last > self.watermark.seq:
            self.unpublished.append(batch)
            if self.active:
                self._wake.set()

    def _on_watermark(self, seq: int) -> None:
        unpublished = self.unpublished
        while unpublished and unpublished[0].last <= seq:
            unpublished.popleft()

    # ------------------------------------------------------------------ running

    async def start(self) -> None:
        await self.watermark.start()
        await self.replica.start()
        loop = asyncio.get_running_loop()
        for coro in (self._lease_loop(), self._events_loop(), self._clock_loop(), self._gateways_loop()):
            self._tasks.append(loop.create_task(self._guard(coro)))

    async def _guard(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal(exc)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.active:
            await self.lease.release()
        await self.replica.close()
        await self.watermark.close()

    def holds(self) -> bool:
        """Still the active engine? Checked before every publish; demotes at once if not."""
        if self.active and not self.lease.held():
            self.demote("lease lost")
        return self.active

    def demote(self, why: str) -> None:
        if self.active:
            log.warning("engine %s: standby now (%s)", self.engine_id, why)
        self.active = False

    async def _lease_loop(self) -> None:
        period = self.cs.lease_ttl_s / 3
        while True:
            if self.active:
                if not await self.lease.renew():
                    self.demote("lease lost")
            elif self.replica.caught_up.is_set() and await self.lease.try_acquire():
                self.active = True
                self.published = self.watermark.seq
                if self.watermark.seq == 0 and self.watermark.empty and len(self.unpublished) > 1:
                    # every events message expired (events_max_age_s) or none was ever written:
                    # the newest batch is enough to move every follower's watermark; republishing
                    # the whole history would only fill the feed
                    self.published = self.unpublished[-2].last
                log.warning("engine %s: ACTIVE at seq %d (events published up to %d)", self.engine_id, self.engine.seq, self.watermark.seq)
                self._wake.set()
            await asyncio.sleep(period)

    async def _events_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.active:
                # Everything not yet published, pipelined (up to 64 messages in flight): each
                # message is idempotent (ev-<first seq>) and followers only keep the highest seq.
                floor = max(self.published, self.watermark.seq)
                batches = [b for b in self.unpublished if b.last > floor][:64]
                if not batches or not self.holds():
                    break
                await asyncio.gather(*(publish_events(self.js, self.cs, b) for b in batches))
                self.published = batches[-1].last
                self.events_published += len(batches)
            if (
                self.active
                and self.cs.snapshot_every
                and self.engine.seq - self.last_snapshot_seq >= self.cs.snapshot_every
                and self.holds()
            ):
                self.last_snapshot_seq = self.engine.seq
                try:
                    await save_snapshot(self.js, self.cs, self.engine, self.replica.anchor)
                except Exception:  # the stream still has everything: try again later
                    log.exception("snapshot failed")

    async def _publish_commands(self, cmds: list[Command], msg_id: str) -> None:
        """Publish engine-made commands (if still active) and wait until the replica applied them."""
        if not cmds or not self.holds():
            return
        origin = f"engine.{self.engine_id}"
        stream_seq, _ = await publish_once(self.js, self.cs, encode_batch([(f"{origin}/{msg_id}", c) for c in cmds]), msg_id)
        deadline = time.monotonic() + 10
        while self.replica.stream_seq < stream_seq and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _clock_loop(self) -> None:
        """Bootstrap once active, then the clock: the only producer of clock-driven commands."""
        tick = self.settings.server.tick_s
        just_promoted = True
        while True:
            if not self.active or not self.replica.caught_up.is_set():
                just_promoted = True
                await asyncio.sleep(min(tick, 0.05))
                continue
            if not just_promoted:  # right after taking the lead: bootstrap and catch up with the clock at once
                await asyncio.sleep(tick)
            just_promoted = False
            if not self.active:
                continue
            now = time.time_ns()
            boot = bootstrap_commands(self.settings, self.engine, now)  # one batch with what the clock makes due
            due = clock_commands(self.settings, self.engine, max(now, self.engine.ts))
            if boot:
                await self._publish_commands(boot + due, f"boot-{_digest(boot)}")
            elif due:
                await self._publish_commands(due, f"clock-{self.engine.seq}-{_digest(due)}")

    async def _gateways_loop(self) -> None:
        """Gateway loss: cancel-on-disconnect for the sessions of gateway lives that ended."""
        period = self.cs.lease_ttl_s / 3
        while True:
            await asyncio.sleep(period)
            if not self.active or not self.replica.caught_up.is_set():
                continue
            for life in sorted(gateway_lives(self.engine)):
                gateway_id, nonce = life.split(".", 1)
                try:
                    entry = await self.kv.get(liveness_key(gateway_id))
                    current = (entry.value or b"").decode()
                except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                    current = ""
                except Exception as exc:  # cannot tell now: never cancel on a guess
                    log.info("gateway liveness of %s unknown for now: %r", gateway_id, exc)
                    continue
                if current == nonce:
                    continue
                log.warning("gateway %s lost (liveness %s): cancelling its cancel-on-disconnect sessions", life, current or "expired")
                await self._publish_commands([GatewayLost(ts=time.time_ns(), gateway=life)], f"gwlost-{life}-{self.engine.seq}")


class EngineCollector:
    """``/metrics`` of an engine process: its role, position and what it published."""

    def __init__(self, role: EngineRole) -> None:
        self.role = role

    def collect(self) -> Iterator[Metric]:
        r = self.role
        yield GaugeMetricFamily("carbonx_cluster_engine_active", "1 while this engine holds the lease", value=int(r.active))
        yield GaugeMetricFamily("carbonx_cluster_engine_seq", "Engine seq this replica has applied", value=r.engine.seq)
        yield GaugeMetricFamily("carbonx_cluster_engine_stream_seq", "Command stream message last applied", value=r.replica.stream_seq)
        yield GaugeMetricFamily("carbonx_cluster_events_watermark", "Highest seq in the events stream", value=r.watermark.seq)
        lag = 0 if r.active else max(0, r.watermark.seq - r.engine.seq)
        yield GaugeMetricFamily(
            "carbonx_cluster_standby_lag_commands",
            "Commands the active engine has applied and this standby not yet (0 on the active)",
            value=lag,
        )
        yield GaugeMetricFamily(
            "carbonx_cluster_engine_unpublished_batches", "Applied batches above the watermark", value=len(r.unpublished)
        )
        yield CounterMetricFamily("carbonx_cluster_lease_acquired", "Times this engine took the lease", value=r.lease.acquired)
        yield CounterMetricFamily("carbonx_cluster_events_published", "Events messages this engine published", value=r.events_published)


async def run_engine(settings: Settings, engine_id: str, stop: asyncio.Event | None = None, metrics_port: int | None = None) -> int:
    """The ``carbonx engine`` process: start, print the ready line, run until SIGTERM/SIGINT.
    ``metrics_port``: serve ``/metrics``, ``/healthz`` and ``/readyz`` (ready = caught up) there."""
    joined = await join(settings, f"carbonx-engine-{engine_id}")
    nc, js, kv, engine = joined.nc, joined.js, joined.kv, joined.engine
    role = EngineRole(settings, engine_id, nc, js, kv, engine, joined.anchor)
    if stop is not None:
        role.stop = stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, role.stop.set)
    http: HttpEndpoint | None = None
    if metrics_port is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EngineCollector(role))
        http = HttpEndpoint(lambda: registry, lambda: role.replica.caught_up.is_set() and role.fatal is None)
        metrics_port = await http.start(settings.server.metrics_host, metrics_port)
    await role.start()
    await role.replica.caught_up.wait()
    log.info("engine %s caught up at seq %d (snapshot %s)", engine_id, engine.seq, joined.snapshot or "none")
    where = f" metrics=http://{settings.server.metrics_host}:{metrics_port}" if http is not None else ""
    sys.stdout.write(f"carbonx engine ready id={engine_id} seq={engine.seq}{where}\n")
    sys.stdout.flush()
    await role.stop.wait()
    await role.close()
    await nc.close()
    if http is not None:
        await http.close()
    return 1 if role.fatal is not None else 0
