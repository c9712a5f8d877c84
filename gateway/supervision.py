"""Supervision in the gateway: the surveillance and disclosure consumers behind the event seam.

``Supervision`` is an ``EventSink``: the sequencer hands it each command's events once they
are durable (after the market-data sink, through ``Sinks``), in journal order. It feeds
``carbonx.engine.supervision``'s pure consumers and

* sends each new or acknowledged alert on the operator-only ``surveillance`` channel;
* at each day close writes the day report to ``DATA/reports/DATE.json`` and ``.csv``
  (a worker thread: never on the event loop) and sends it on the ``disclosure`` channel.

Neither changes trading: they only read events. Alerts and reports are functions of the
journal: at start-up ``Supervision.derive`` rebuilds them, giving the alerts, acks and reports
the server had (docs/supervision.md, "Where it runs"). After every snapshot the gateway writes
a checkpoint of the consumers (``checkpoint``, ``gateway.supervision_checkpoint``), so start-up
replays only the journal since a snapshot; without a usable one it replays the whole journal
(archived segments included) into a scratch engine (``derive``, which ``carbonx report day``
uses too). ``SupervisionCollector`` exports ``carbonx_surveillance_alerts_total{detector,severity}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.core import CounterMetricFamily, Metric

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Event
from carbonx.engine.supervision.alerts import DETECTORS, SEVERITIES, Alert
from carbonx.engine.supervision.disclosure import DayReport, DayReports, report_csv, report_json
from carbonx.engine.supervision.surveillance import Surveillance
from carbonx.engine.supervision.thresholds import DisclosureSpec, SurveillanceSpec
from carbonx.engine.units import format_fen
from carbonx.gateway import protocol
from carbonx.gateway import supervision_checkpoint as checkpoints
from carbonx.gateway.journal import JournalError, JournalReader
from carbonx.gateway.marketdata import MarketData
from carbonx.gateway.outbound import Outbound
from carbonx.gateway.sequencer import EventSink, replay_events
from carbonx.gateway.snapshots import SnapshotStore

log = logging.getLogger("carbonx.gateway")

REPORTS = "reports"  # the data directory's folder for day reports
FEN_FIGURES = frozenset({"price", "reference", "close", "base", "touch"})  # figures in fen: decimal strings on the wire


class Sinks(EventSink):
    """Several sinks behind the sequencer's one seam, called in order."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def publish(self, seq: int, events: list[Event]) -> None:
        for sink in self.sinks:
            sink.publish(seq, events)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def alert_view(alert: Alert) -> dict[str, Any]:
    """An alert on the wire: ids as strings, prices as decimal strings (docs/supervision.md)."""
    out: dict[str, Any] = msgspec.to_builtins(alert)
    out["alert_id"] = str(alert.alert_id)
    out["order_ids"] = [str(i) for i in alert.order_ids]
    out["trade_ids"] = [str(i) for i in alert.trade_ids]
    out["figures"] = {k: format_fen(v) if k in FEN_FIGURES else v for k, v in alert.figures.items()}
    return out


def report_view(report: DayReport) -> dict[str, Any]:
    """A day report on the wire: exactly the JSON file's content."""
    out: dict[str, Any] = msgspec.to_builtins(report)
    return out


def report_paths(folder: Path, trading_date: str) -> tuple[Path, Path]:
    return folder / f"{trading_date}.json", folder / f"{trading_date}.csv"


def write_report(folder: Path, report: DayReport) -> tuple[Path, Path]:
    """Write the report's JSON and CSV files (each atomically: temporary file, rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = report_paths(folder, report.trading_date)
    for path, data in zip(paths, (report_json(report), report_csv(report)), strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return paths


class Supervision(EventSink):
    """The consumers, their channels and the report files (see the module docstring).

    ``surveillance`` / ``reports`` are None when ``[surveillance]`` / ``[disclosure]`` say
    ``enabled = false``; ``reports_dir`` None writes no files (in-process tests)."""

    def __init__(
        self,
        surveillance: SurveillanceSpec,
        disclosure: DisclosureSpec,
        market: MarketData,
        outbound: Outbound,
        reports_dir: Path | None = None,
    ) -> None:
        self.surveillance_spec = surveillance
        self.disclosure_spec = disclosure
        self.surveillance: Surveillance | None = None
        self.reports: DayReports | None = None
        self._fresh()
        self.fed_seq = 0  # the seq of the last command whose events the consumers took
        self.market = market
        self.outbound = outbound
        self.reports_dir = reports_dir
        self.pending_writes: set[asyncio.Future[Any]] = set()
        self.write_failures = 0
        self.errors = 0  # events the consumers raised on (a bug: logged, trading unaffected)

    def _fresh(self) -> None:
        """Consumers as at the journal's start."""
        self.surveillance, self.reports = self._new_consumers()

    def _new_consumers(self) -> tuple[Surveillance | None, DayReports | None]:
        s, d = self.surveillance_spec, self.disclosure_spec
        return (Surveillance(s) if s.enabled else None), (DayReports(d) if d.enabled else None)

    @property
    def fingerprint(self) -> str:
        return checkpoints.fingerprint(self.surveillance_spec, self.disclosure_spec)

    def feed(self, events: list[Event]) -> tuple[list[Alert], list[DayReport]]:
        """Both consumers take ``events``; returns what they produced (no I/O)."""
        return observe(self.surveillance, self.reports, events)

    def _restored(self, data: dict[str, Any]) -> tuple[Surveillance | None, DayReports | None]:
        """Fresh consumers holding a decoded checkpoint's state (``supervision_checkpoint.decode``)."""
        surveillance, reports = self._new_consumers()
        checkpoints.restore_into(surveillance, data["surveillance"])
        checkpoints.restore_into(reports, data["reports"])
        return surveillance, reports

    def publish(self, seq: int, events: list[Event]) -> None:
        try:
            alerts, reports = self.feed(events)
        except Exception:  # a bug in a detector must not stall the replies released after market data
            self.errors += 1
            log.exception("supervision failed on the events of seq %d (trading is unaffected; restart re-derives)", seq)
            return
        self.fed_seq = seq
        if alerts:
            subs = self.market.channels.get("surveillance")
            if subs:
                for alert in alerts:
                    body = alert_view(alert)
                    body["channel"] = "surveillance"
                    self.outbound.send(subs, protocol.notification("surveillance", body))
        for report in reports:
            self._write(report)
            subs = self.market.channels.get("disclosure")
            if subs:
                body = report_view(report)
                body["channel"] = "disclosure"
                self.outbound.send(subs, protocol.notification("disclosure", body))

    def _write(self, report: DayReport) -> None:
        folder = self.reports_dir
        if folder is None:
            return
        future = asyncio.get_running_loop().run_in_executor(None, write_report, folder, report)
        self.pending_writes.add(future)
        future.add_done_callback(lambda f: self._written(f, report.trading_date))

    def _written(self, future: asyncio.Future[Any], trading_date: str) -> None:
        self.pending_writes.discard(future)
        exc = future.exception()
        if exc is not None:  # the journal still has everything: `carbonx report day` rewrites it
            self.write_failures += 1
            log.error("day report %s not written (regenerate with `carbonx report day %s`): %r", trading_date, trading_date, exc)

    async def drain(self) -> None:
        """Wait for report files being written (shutdown, tests)."""
        if self.pending_writes:
            await asyncio.gather(*self.pending_writes, return_exceptions=True)

    def checkpoint(self) -> tuple[int, bytes] | None:
        """``(seq, bytes)`` of a checkpoint of the consumers as fed so far, for
        ``supervision_checkpoint.save`` (call it on the thread that feeds them; write the
        bytes from a worker thread). None when there is nothing to keep, or when a consumer
        raised since start-up (its state may be half-updated: the next start re-derives)."""
        if self.errors or not self.fed_seq or (self.surveillance is None and self.reports is None):
            return None
        return self.fed_seq, checkpoints.encode(self.fed_seq, self.fingerprint, self.surveillance, self.reports)

    def checkpoint_through(self, found: tuple[int, bytes], later: list[tuple[int, list[Event]]], upto: int) -> tuple[int, bytes]:
        """The checkpoint ``found`` (``checkpoint()``) carried through ``later``, the events of
        the commands applied after it and not yet released to this sink (in seq order), to
        ``upto``, the engine's seq when both were taken: so it sits at a snapshot's own seq.
        Works on fresh consumers restored from ``found``, never the live ones: call it from a
        worker thread (or a snapshot's forked child)."""
        seq, blob = found
        if seq == upto:
            return found
        surveillance, reports = self._restored(checkpoints.decode(blob, self.fingerprint))
        for _, events in later:
            observe(surveillance, reports, events)
        return upto, checkpoints.encode(upto, self.fingerprint, surveillance, reports)

    def derive(self, directory: Path, config: MarketConfig, upto: int) -> int:
        """Rebuild the consumers' state from the journal up to seq ``upto`` (start-up, in a
        worker thread, before serving). From the newest usable checkpoint and the snapshot at
        or below it when there is one, else from the journal's start (``derive``). Returns
        the records replayed."""
        checkpoints.remove_leftovers(directory)
        if upto <= 0 or (self.surveillance is None and self.reports is None):
            return 0
        data = checkpoints.load_latest(directory, self.fingerprint, upto)
        if data is not None:
            try:
                return self._derive_from(data, directory, config, upto)
            except (ValueError, JournalError) as exc:
                log.warning("supervision: checkpoint at seq %d not used (%s): replaying the whole journal", data["seq"], exc)
                self._fresh()
        n = derive(directory, config, upto, self.feed)
        self.fed_seq = upto if n else 0
        return n

    def _derive_from(self, data: dict[str, Any], directory: Path, config: MarketConfig, upto: int) -> int:
        """The checkpoint's consumers, then the events of the commands after it, replayed from
        the newest snapshot at or below it. ``ValueError``/``JournalError``: not usable."""
        at = int(data["seq"])
        found = SnapshotStore(directory).latest(max_seq=at)
        if found is None:
            raise ValueError("no snapshot at or below it")
        snap_seq, blob, _ = found  # the file's CRC and SHA-256 are checked by ``latest``
        engine = Engine.restore(config, blob)
        self.surveillance, self.reports = self._restored(data)
        n = derive(directory, config, upto, self.feed, start=engine, feed_after=at)
        if engine.seq != upto:  # recovery reached upto on this journal: the replay must too
            raise ValueError(f"the journal replayed from snapshot {snap_seq} ends at seq {engine.seq}, not {upto}")
        self.fed_seq = upto
        log.info("supervision: checkpoint at seq %d, snapshot %d, %d records replayed", at, snap_seq, n)
        return n


def observe(surveillance: Surveillance | None, reports: DayReports | None, events: list[Event]) -> tuple[list[Alert], list[DayReport]]:
    """Both consumers (those switched on) take ``events``; returns what they produced."""
    return (surveillance.observe(events) if surveillance is not None else []), (reports.observe(events) if reports is not None else [])


def derive(
    directory: Path,
    config: MarketConfig,
    upto: int,
    feed: Callable[[list[Event]], object],
    start: Engine | None = None,
    feed_after: int = 0,
) -> int:
    """Replay the journal of ``directory`` (archived segments included) up to ``upto`` into
    ``start`` (an engine restored from a snapshot; default a scratch engine, from seq 1),
    handing the events of each command after seq ``feed_after`` to ``feed``. Returns the
    records replayed. A journal that does not continue at the engine's next seq (its early
    segments were deleted) cannot be replayed from there: logged, and nothing is fed (the
    journal reader refuses a gap further on). Blocking: run it in a worker thread."""
    engine = start if start is not None else Engine(config)
    first = engine.seq + 1
    n = 0
    if upto < first:
        return 0
    for seq, cmd in JournalReader(directory, after_seq=engine.seq, include_archive=True):
        if n == 0 and seq != first:
            log.error("supervision: the journal starts at seq %d, not %d: alerts and reports before it cannot be derived", seq, first)
            return 0
        events = replay_events(engine, cmd)
        if seq > feed_after:
            feed(events)
        n += 1
        if seq >= upto:
            break
    return n


class SupervisionCollector:
    """Prometheus: ``carbonx_surveillance_alerts_total{detector,severity}`` (every pair
    exported, zeros included, so alert rules can use ``increase``)."""

    def __init__(self, supervision: Supervision) -> None:
        self.supervision = supervision

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "carbonx_surveillance_alerts", "Surveillance alerts raised (derived from the journal)", labels=["detector", "severity"]
        )
        surv = self.supervision.surveillance
        counts = surv.counts if surv is not None else {}
        for detector in DETECTORS:
            for severity in SEVERITIES:
                family.add_metric([detector, severity], counts.get((detector, severity), 0))
        yield family
