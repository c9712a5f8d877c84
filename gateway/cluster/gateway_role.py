"""``carbonx gateway --config F --id ID``: the trading, admin and metrics listeners of ``carbonx
serve`` (same protocol, handlers, market data, sessions) on top of the cluster.

The seam is the sequencer (docs/architecture.md, stage 3): ``ClusterSequencer`` is a second
implementation of ``Sequencer`` for the rpc layer, which does not change. ``submit(cmd, done)``
publishes ``[origin, cmd]`` into the command stream (``CommandPublisher``: batched, idempotent
retries); the gateway's own ``Replica`` applies the whole stream (every gateway's commands, in
stream order) and hands each applied batch to ``on_batch``, which matches this gateway's
commands by origin. A reply (and every event, to market data) is released strictly in seq order
once (i) the stream stored the command on a quorum (the replica only ever sees stored
messages), (ii) the local replica applied it and (iii) the active engine applied it: the events
stream's ``Watermark`` is at or past its seq. Reads (queries, login key hashes, account
ownership) come from the local replica.

Session ids are ``<gateway id>.<boot nonce>.<16 hex>``, unique cluster-wide; the gateway's
liveness key ``gw-<id>`` holds the boot nonce, rewritten every ``lease_ttl_s / 3``, so the active
engine can cancel the cancel-on-disconnect sessions of a gateway life that ended
(``GatewayLost``). The clock-driven commands and the configured bootstrap are the active
engine's: a gateway produces none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from nats.js.kv import KeyValue
from prometheus_client.core import GaugeMetricFamily, Metric

from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command
from carbonx.gateway.app import Gateway, ProcessHttp, ServeOptions, refuse_plaintext
from carbonx.gateway.audit import AuditLog
from carbonx.gateway.cluster.commands import CommandPublisher
from carbonx.gateway.cluster.events import Watermark
from carbonx.gateway.cluster.join import join
from carbonx.gateway.cluster.lease import liveness_key
from carbonx.gateway.cluster.replica import AppliedBatch, Replica
from carbonx.gateway.http import page_config
from carbonx.gateway.journal import Journal, JournalError, UnencodableCommand
from carbonx.gateway.metrics import LatencyHistogram, make_registry
from carbonx.gateway.protocol import errors
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.sequencer import Done, EventSink, Sequencer, Then
from carbonx.gateway.sessions import ConnectionRegistry, Session
from carbonx.gateway.settings import Limits, Settings
from carbonx.gateway.supervision import Sinks, SupervisionCollector

log = logging.getLogger("carbonx.gateway")

# Shutdown waits this long for the active engine to release the replies still owed (after this
# gateway's own commands are stored in the stream); see ``ClusterGateway.flush_for_shutdown``.
SHUTDOWN_RELEASE_S = 2.0


class ClusterJournal(Journal):
    """What the gateway's stages read as "the journal" in cluster mode: the publisher's figures
    and the release watermark (``durable_seq``: replies and events released up to here)."""

    def __init__(self, publisher: CommandPublisher, released: int) -> None:
        self.publisher = publisher
        self.durable_seq = released
        self._listeners: list[Callable[[int], None]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def batches(self) -> int:  # type: ignore[override]
        return self.publisher.batches

    @property
    def records(self) -> int:  # type: ignore[override]
        return self.publisher.records

    @property
    def last_batch_size(self) -> int:  # type: ignore[override]
        return self.publisher.last_batch_size

    @property
    def bytes_written(self) -> int:  # type: ignore[override]
        return self.publisher.bytes_written

    @property
    def fsync_seconds_total(self) -> float:  # type: ignore[override]
        return self.publisher.publish_seconds_total

    @property
    def last_fsync_seconds(self) -> float:  # type: ignore[override]
        return self.publisher.last_publish_seconds

    def append(self, seq: int, cmd: Command) -> None:
        raise JournalError("cluster mode: commands go through ClusterSequencer.submit")

    async def wait_durable(self, seq: int) -> None:
        """Wait until everything up to ``seq`` is released (at most ``publish_retry_s``)."""
        if self.durable_seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        try:
            await asyncio.wait_for(fut, self.publisher.settings.publish_retry_s)
        except TimeoutError:
            raise JournalError(f"seq {seq} not released (no active engine?) within {self.publisher.settings.publish_retry_s}s") from None

    def add_listener(self, fn: Callable[[int], None]) -> None:
        self._listeners.append(fn)

    def released(self, seq: int) -> None:
        self.durable_seq = seq
        if self._waiters:
            keep = []
            for s, fut in self._waiters:
                if s <= seq:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((s, fut))
            self._waiters = keep
        for fn in self._listeners:
            fn(seq)

    async def start(self) -> None:
        self.publisher.start()

    async def close(self) -> None:
        await self.publisher.close()


class ClusterSequencer(Sequencer):
    """The cluster implementation of the sequencer seam (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        journal: ClusterJournal,
        sink: EventSink,
        latency_durable: LatencyHistogram,
        latency_reply: LatencyHistogram,
        life: str,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_fatal = on_fatal
        self.journal = journal
        self.cluster_journal = journal
        self.sink = sink
        self.latency_durable = latency_durable
        self.latency_reply = latency_reply
        self.pending = deque()
        self.life = life
        self.requests = 0
        self.waiting: dict[str, tuple[Done | None, int]] = {}  # origin -> (done, recv_ns): published, not applied yet
        self.watermark = 0  # the active engine's applied seq (events stream)
        self.applied = engine.seq  # the local replica's position
        self.releasing = 0

    def submit(self, cmd: Command, done: Done | None = None, recv_ns: int = 0) -> int:
        """Publish ``cmd``; ``done(events)`` runs once it is stored, applied here and applied by
        the active engine. Returns 0: the seq is only known once the stream ordered it (the
        reply's ``seq`` comes from ``releasing``)."""
        publisher = self.cluster_journal.publisher
        if publisher.failure is not None:
            self._stop(publisher.failure)
        self.requests += 1
        origin = f"{self.life}/{self.requests}"
        try:
            publisher.add(origin, cmd)
        except UnencodableCommand as exc:
            log.warning("refused a command that cannot be published: %s", exc)
            raise RpcError(
                errors.INVALID_PARAMS, "invalid params: a value is out of range", {"reason": errors.INVALID_PARAMS_REASON}
            ) from None
        except JournalError as exc:
            self._stop(exc)
        self.waiting[origin] = (done, recv_ns)
        return 0

    def after_durable(self, fn: Then) -> None:
        """Run ``fn`` once everything the local replica applied so far is released."""
        if not self.pending:
            fn()
        else:
            self.pending.append((self.engine.seq, None, lambda _: fn(), 0))

    def on_batch(self, batch: AppliedBatch) -> None:
        """The replica applied a batch: queue every command's result (ours matched by origin)."""
        waiting = self.waiting
        pending = self.pending
        seq = batch.first
        for origin, events in batch.items:
            entry = waiting.pop(origin, None) if origin.startswith(self.life) else None
            if entry is not None:
                pending.append((seq, events, entry[0], entry[1]))
            elif events:
                pending.append((seq, events, None, 0))
            seq += 1
        self.applied = batch.last
        self.on_durable(self.watermark)

    def on_watermark(self, seq: int) -> None:
        self.watermark = seq
        self.on_durable(seq)

    def _released(self, durable: int) -> None:
        """Everything up to here is released (``durable_seq`` for heartbeats, metrics, waiters)."""
        upto = min(durable, self.applied)
        if upto > self.cluster_journal.durable_seq:
            self.cluster_journal.released(upto)


class ClusterRegistry(ConnectionRegistry):
    """Sessions get cluster-wide ids: ``<gateway id>.<boot nonce>.<random>``."""

    def __init__(self, limits: Limits, prefix: str) -> None:
        super().__init__(limits)
        self.prefix = prefix

    def admit(self, session: Session) -> Session | None:
        if not session.session_id.startswith(self.prefix):
            session.session_id = self.prefix + session.session_id
        return super().admit(session)


class ClusterCollector:
    """The gateway's cluster figures at scrape time (added to its ``/metrics``)."""

    def __init__(self, seq: ClusterSequencer) -> None:
        self.seq = seq

    def collect(self) -> Iterator[Metric]:
        s = self.seq
        yield GaugeMetricFamily("carbonx_cluster_gateway_applied_seq", "Engine seq this gateway's replica has applied", value=s.applied)
        yield GaugeMetricFamily("carbonx_cluster_events_watermark", "Highest seq the active engine has applied", value=s.watermark)
        yield GaugeMetricFamily("carbonx_cluster_gateway_waiting", "Commands published, not yet applied here", value=len(s.waiting))
        yield GaugeMetricFamily(
            "carbonx_cluster_gateway_unreleased", "Results applied here, waiting for the active engine", value=len(s.pending)
        )


class ClusterGateway(Gateway):
    """A ``Gateway`` whose sequencer is the cluster's (no local journal, no clock, no bootstrap)."""

    def __init__(self, settings: Settings, engine: Engine, journal: ClusterJournal, life: str, kv: KeyValue, gateway_id: str) -> None:
        super().__init__(settings, engine, journal)
        self.life = life
        self.kv = kv
        self.gateway_id = gateway_id
        # Market data, then surveillance and disclosure, from this gateway's replica (as in serve).
        sink = Sinks(self.market, self.supervision)
        self.seq = ClusterSequencer(engine, journal, sink, self.latency_durable, self.latency_reply, life, self._fatal)
        self.registry = ClusterRegistry(self.limits, life + ".")

    async def bootstrap(self) -> int:
        return 0  # the active engine bootstraps the configured members and accounts

    def start_background(self) -> None:
        loop = asyncio.get_running_loop()
        for coro in (self._heartbeats(), self.loop_lag.run(), self._liveness(), self._access_sweep()):
            self.tasks.append(loop.create_task(coro))

    async def _liveness(self) -> None:
        """Rewrite this gateway's liveness key (its boot nonce) every TTL/3."""
        period = self.settings.cluster.lease_ttl_s / 3
        nonce = self.life.split(".", 1)[1].encode()
        while True:
            try:
                await self.kv.put(liveness_key(self.gateway_id), nonce)
            except Exception as exc:
                log.warning("liveness key not renewed: %r", exc)
            await asyncio.sleep(period)

    async def flush_for_shutdown(self) -> None:
        """Shutdown in cluster mode: publish every command this gateway accepted (the cancel-on-
        disconnect cancels ``shutdown`` just submitted included) until the stream stored it on a
        quorum, then give the active engine ``SHUTDOWN_RELEASE_S`` to release the replies still
        owed. Not longer: the engines may be stopping too (a whole-cluster stop), and what the
        stream stored is safe there whatever happens next; waiting for a release that cannot
        come (``ClusterJournal.wait_durable``'s ``publish_retry_s``, 30 s by default) would only
        hold the stop until a supervisor's SIGKILL."""
        journal = self.journal
        assert isinstance(journal, ClusterJournal)
        await journal.publisher.close()  # raises JournalError when the stream never stored them
        try:
            await asyncio.wait_for(journal.wait_durable(self.engine.seq), SHUTDOWN_RELEASE_S)
        except TimeoutError:
            log.warning(
                "shutdown: seq %d not released within %.0f s (no active engine?): stopping anyway", self.engine.seq, SHUTDOWN_RELEASE_S
            )

    async def wait_engine(self, caught_up_seq: int) -> None:
        """Ready once the active engine has applied everything this gateway found in the stream
        at start (its events watermark got there), and anything at all (a fresh cluster: the
        engine's bootstrap)."""
        seq = self.seq
        assert isinstance(seq, ClusterSequencer)
        while seq.watermark < max(1, caught_up_seq):
            await asyncio.sleep(0.05)


async def run_gateway(settings: Settings, opts: ServeOptions, gateway_id: str, stop: asyncio.Event | None = None) -> int:
    """The ``carbonx gateway`` process: listeners as ``serve``, the cluster behind them."""
    cs = settings.cluster
    srv = settings.server
    refuse_plaintext(settings, opts)
    http = ProcessHttp()
    metrics_url = await http.start(settings, opts)
    joined = await join(settings, f"carbonx-gateway-{gateway_id}")
    nc, js, kv, engine, anchor = joined.nc, joined.js, joined.kv, joined.engine, joined.anchor
    nonce = secrets.token_hex(4)
    life = f"{gateway_id}.{nonce}"
    await kv.put(liveness_key(gateway_id), nonce.encode())
    gw_box: list[ClusterGateway] = []

    def fatal(exc: BaseException) -> None:
        journal.failure = exc
        if gw_box:
            gw_box[0]._fatal(exc)

    publisher = CommandPublisher(js, cs, life, fatal)
    journal = ClusterJournal(publisher, engine.seq)
    gw = ClusterGateway(settings, engine, journal, life, kv, gateway_id)
    gw_box.append(gw)
    seq = gw.seq
    assert isinstance(seq, ClusterSequencer)
    gw.registry_metrics = make_registry(gw)
    gw.registry_metrics.register(ClusterCollector(seq))
    gw.registry_metrics.register(SupervisionCollector(gw.supervision))
    # The admin audit log is this gateway's own (the admin calls it answered), in the data directory.
    data_dir = Path(opts.data_dir or srv.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    gw.audit = AuditLog(data_dir / f"audit-{gateway_id}", fsync=(opts.fsync_policy or srv.fsync_policy) == "fsync")
    gw.audit.open()
    http.gw = gw
    await journal.start()
    watermark = Watermark(js, cs, seq.on_watermark)
    replica = Replica(js, cs, engine, seq.on_batch, anchor=anchor, on_fatal=fatal)
    await watermark.start()
    await replica.start()
    await replica.caught_up.wait()
    trading = await gw.listen(opts.host or srv.host, srv.port if opts.port is None else opts.port, admin=False)
    admin = await gw.listen(opts.admin_host or srv.admin_host, srv.admin_port if opts.admin_port is None else opts.admin_port, admin=True)
    http.page.update(page_config(trading, srv.public_url, list(engine.specs)))
    gw.start_background()
    log.info("gateway %s (life %s) caught up at seq %d", gateway_id, life, engine.seq)
    sys.stdout.write(f"carbonx ready trading={trading} admin={admin} metrics={metrics_url}\n")
    sys.stdout.flush()
    stop = stop or asyncio.Event()
    gw.stop_event = stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gw.reload_tls)
    waiter = loop.create_task(gw.wait_engine(engine.seq))
    stopper = loop.create_task(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    if waiter.done() and not stop.is_set():
        gw.ready = True
        log.info("gateway %s ready: an active engine is there", gateway_id)
    await stopper
    waiter.cancel()
    log.info("shutting down")
    await gw.shutdown()
    await replica.close()
    await watermark.close()
    with contextlib.suppress(Exception):
        await kv.delete(liveness_key(gateway_id))
    await nc.close()
    await http.http.close()
    return 1 if gw.fatal is not None else 0
