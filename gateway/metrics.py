"""Prometheus metrics, collected at scrape time from plain counters.

The hot path never calls prometheus-client: the engine keeps plain integers
(``stat_orders``, ``stat_trades``, ``stat_rejects``, ...), the journal plain attributes,
and the gateway the two latency histograms below, which are a bisect and two integer
increments per command (~0.3 µs instead of ~1.5 µs for ``Histogram.observe``). The
custom collector turns all of them into metric families when ``/metrics`` is scraped.

Also here: the event-loop lag monitor. The metrics port's HTTP (``/metrics``, ``/healthz``,
``/readyz``, the live page) is ``carbonx.gateway.http``; ``HttpEndpoint`` is its old name.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from carbonx.engine.calendar import is_trading_day, local_day_and_second
from carbonx.gateway.dashboard_metrics import DashboardCollector
from carbonx.gateway.http import HttpServer

if TYPE_CHECKING:
    from carbonx.engine.engine import Engine
    from carbonx.gateway.app import Gateway
    from carbonx.gateway.journal import Journal

log = logging.getLogger("carbonx.metrics")

HttpEndpoint = HttpServer  # the metrics port's old name, kept for callers written before gateway/http.py

# Seconds. Fine at the bottom (group commit makes ~1-5 ms typical) and coarse above.
LATENCY_BOUNDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
    0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BOUNDS)


class LatencyHistogram:
    """Bucket counts kept as plain ints; exported cumulatively at scrape time."""

    __slots__ = ("counts", "sum_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_NS) + 1)
        self.sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self.counts[bisect.bisect_left(_BOUNDS_NS, ns)] += 1
        self.sum_ns += ns

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*LATENCY_BOUNDS, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out

    def count(self) -> int:
        return sum(self.counts)


class LoopLag:
    """Measures how late the event loop wakes a sleeper: the loop's responsiveness."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.last = 0.0
        self.max = 0.0  # since the last scrape
        self.histogram = LatencyHistogram()

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.perf_counter() - t0 - self.interval)
            self.last = lag
            self.max = max(self.max, lag)
            self.histogram.observe_ns(int(lag * 1e9))


def _histogram(name: str, doc: str, hist: LatencyHistogram, labels: dict[str, str] | None = None) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=list(labels) if labels else None)
    fam.add_metric(list(labels.values()) if labels else [], hist.buckets(), hist.sum_ns / 1e9)
    return fam


class GatewayCollector:
    """Reads the gateway's live objects at scrape time (see the module docstring)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        yield from self._engine(gw.engine)
        if gw.journal is not None:
            yield from self._journal(gw.journal)
        yield from self._gateway(gw)

    def _engine(self, eng: Engine) -> Iterator[Metric]:
        orders = CounterMetricFamily("carbonx_orders", "Orders accepted by the engine", labels=["instrument"])
        trades = CounterMetricFamily("carbonx_trades", "Trades executed", labels=["instrument"])
        volume = CounterMetricFamily("carbonx_traded_tonnes", "Tonnes traded", labels=["instrument"])
        for sym in eng.specs:
            orders.add_metric([sym], eng.stat_orders.get(sym, 0))
            trades.add_metric([sym], eng.stat_trades.get(sym, 0))
            volume.add_metric([sym], eng.stat_volume.get(sym, 0))
        rejects = CounterMetricFamily("carbonx_rejects", "Commands rejected", labels=["instrument", "reason"])
        for (sym, reason), n in sorted(eng.stat_rejects.items()):
            rejects.add_metric([sym, reason], n)
        yield from (orders, trades, volume, rejects)
        yield CounterMetricFamily("carbonx_commands", "Commands applied by the engine", value=eng.stat_commands)
        yield GaugeMetricFamily("carbonx_engine_seq", "Sequence number of the last applied command", value=eng.seq)
        yield from _market(eng, time.time_ns())

    def _journal(self, j: Journal) -> Iterator[Metric]:
        yield GaugeMetricFamily("carbonx_journal_durable_seq", "Highest durable sequence number", value=j.durable_seq)
        yield CounterMetricFamily("carbonx_journal_batches", "Group-commit batches written", value=j.batches)
        yield CounterMetricFamily("carbonx_journal_records", "Records written", value=j.records)
        yield CounterMetricFamily("carbonx_journal_bytes", "Bytes written", value=j.bytes_written)
        yield GaugeMetricFamily("carbonx_journal_last_batch_size", "Records in the last batch", value=j.last_batch_size)
        yield CounterMetricFamily("carbonx_journal_fsync_seconds", "Time spent in fsync", value=j.fsync_seconds_total)
        yield GaugeMetricFamily("carbonx_journal_last_fsync_seconds", "Duration of the last fsync", value=j.last_fsync_seconds)

    def _gateway(self, gw: Gateway) -> Iterator[Metric]:
        yield _histogram("carbonx_command_latency_seconds", "Receive -> durable", gw.latency_durable, {"stage": "durable"})
        yield _histogram("carbonx_command_reply_latency_seconds", "Receive -> reply written", gw.latency_reply, {"stage": "reply"})
        yield from self._admission(gw)
        subs = GaugeMetricFamily("carbonx_subscriptions", "Subscriptions by channel kind", labels=["kind"])
        for kind, n in sorted(gw.market.subscription_count().items()):
            subs.add_metric([kind], n)
        yield subs
        yield CounterMetricFamily(
            "carbonx_slow_consumer_disconnects", "Connections cut off as slow consumers", value=gw.outbound.slow_disconnects
        )
        yield CounterMetricFamily(
            "carbonx_notifications_sent", "Notification deliveries (message x subscriber)", value=gw.outbound.messages
        )
        yield CounterMetricFamily(
            "carbonx_socket_writes",
            "Socket writes of outgoing messages (what one connection was sent in an event-loop iteration goes in one)",
            value=gw.outbound.writes,
        )
        yield CounterMetricFamily("carbonx_rate_limited", "Requests refused by rate limits", value=gw.rate_limited)
        depth = GaugeMetricFamily("carbonx_book_levels", "Price levels in the published book", labels=["instrument", "side"])
        spread = GaugeMetricFamily("carbonx_book_spread", "Best ask - best bid (CNY); absent when a side is empty", labels=["instrument"])
        for sym, (nb, na, sp) in gw.market.book_stats().items():
            depth.add_metric([sym, "buy"], nb)
            depth.add_metric([sym, "sell"], na)
            if sp is not None:
                spread.add_metric([sym], sp / 100)
        yield depth
        yield spread
        lag = gw.loop_lag
        yield GaugeMetricFamily("carbonx_event_loop_lag_seconds", "Last measured event-loop lag", value=lag.last)
        yield GaugeMetricFamily("carbonx_event_loop_lag_max_seconds", "Max event-loop lag since the last scrape", value=lag.max)
        lag.max = 0.0
        yield _histogram("carbonx_event_loop_lag", "Event-loop lag samples", lag.histogram)
        storage = getattr(gw, "storage", None)  # gateway/storage.py, refreshed every storage_check_s
        ready = bool(gw.ready) and (storage is None or storage.ok)
        yield GaugeMetricFamily("carbonx_ready", "1 when /readyz answers 200 (serving, storage usable)", value=int(ready))
        if storage is not None:
            yield GaugeMetricFamily(
                "carbonx_data_dir_free_bytes", "Free bytes in the data directory's file system", value=storage.free_bytes
            )
            yield GaugeMetricFamily(
                "carbonx_storage_ok", "1 if the data directory is writable with min_free_bytes free", value=int(storage.ok)
            )

    def _admission(self, gw: Gateway) -> Iterator[Metric]:
        """Connection budgets and login throttling (plain integers of the registry and guards)."""
        reg = gw.registry
        anonymous = {"trading": reg.anonymous_total, "admin": reg.anonymous_admin}
        sessions = GaugeMetricFamily("carbonx_sessions", "Open connections", labels=["listener", "state"])
        for listener, n in sorted(reg.connections.items()):
            sessions.add_metric([listener, "anonymous"], anonymous[listener])
            sessions.add_metric([listener, "authenticated"], n - anonymous[listener])
        yield sessions
        yield GaugeMetricFamily(
            "carbonx_anonymous_addresses", "Source addresses holding anonymous trading connections", value=len(reg.anonymous)
        )
        refused = CounterMetricFamily("carbonx_connections_refused", "Connections refused at connect (close 1013)", labels=["budget"])
        # Every budget from the start (0 until one refuses), so rate() and dashboards see the series.
        for kind, n in sorted((dict.fromkeys(("address", "admin", "anonymous", "total"), 0) | reg.refused).items()):
            refused.add_metric([kind], n)
        yield refused
        yield CounterMetricFamily(
            "carbonx_anonymous_evictions", "Anonymous connections closed to make room for another address", value=reg.evictions
        )
        yield CounterMetricFamily("carbonx_login_timeouts", "Connections closed for not logging in in time (1008)", value=gw.login_timeouts)
        yield CounterMetricFamily(
            "carbonx_abuse_disconnects", "Connections closed for too many refused requests (1008)", value=gw.abuse_disconnects
        )
        logins = CounterMetricFamily("carbonx_logins", "Login attempts by outcome", labels=["listener", "outcome"])
        throttled = CounterMetricFamily(
            "carbonx_logins_throttled", "Logins refused unhashed (LOGIN_THROTTLED)", labels=["listener", "scope"]
        )
        hashing = GaugeMetricFamily("carbonx_login_hashing", "Password verifications running / admitted", labels=["listener", "state"])
        for admin, guard in sorted(gw.logins.items()):
            listener = "admin" if admin else "trading"
            logins.add_metric([listener, "success"], guard.succeeded)
            logins.add_metric([listener, "failure"], guard.failed)
            logins.add_metric([listener, "busy"], guard.busy)
            for scope, n in sorted(guard.throttled.items()):
                throttled.add_metric([listener, scope], n)
            hashing.add_metric([listener, "running"], guard.hashing)
            hashing.add_metric([listener, "admitted"], guard.pending)
            hashing.add_metric([listener, "peak"], guard.peak_hashing)
        yield from (logins, throttled, hashing)


def _market(eng: Engine, now: int) -> Iterator[Metric]:
    """The trading day, prices, auctions and frozen cash, read from engine state at scrape
    time (no per-command work). Prices are CNY; a price gauge is absent until the day's
    first listing trade. The calendar is evaluated at ``now`` (ns, the wall clock of the scrape)."""
    yield GaugeMetricFamily("carbonx_day_open", "1 while the trading day is open (day_open .. day_close)", value=int(eng.day_open))
    yield GaugeMetricFamily(
        "carbonx_day_schedule_enabled",
        "1 unless the operator switched the scheduled day off (admin.schedule.set)",
        value=int(eng.schedule_enabled),
    )
    cal = eng.config.calendar
    day, _ = local_day_and_second(cal, now)
    yield GaugeMetricFamily(
        "carbonx_calendar_trading_day", "1 if today (exchange-local) is a trading day per the calendar", value=int(is_trading_day(cal, day))
    )
    in_session = GaugeMetricFamily(
        "carbonx_calendar_in_session", "1 if the calendar has the instrument's continuous session open now", labels=["instrument"]
    )
    halted = GaugeMetricFamily("carbonx_instrument_halted", "1 while the instrument is halted", labels=["instrument"])
    last = GaugeMetricFamily("carbonx_last_price", "Last listing trade price today (CNY)", labels=["instrument"])
    vwap = GaugeMetricFamily("carbonx_vwap", "Volume-weighted average listing price today (CNY)", labels=["instrument"])
    high = GaugeMetricFamily("carbonx_day_high", "Highest listing trade price today (CNY)", labels=["instrument"])
    low = GaugeMetricFamily("carbonx_day_low", "Lowest listing trade price today (CNY)", labels=["instrument"])
    ref = GaugeMetricFamily("carbonx_reference_price", "Reference price: centre of the price band (CNY)", labels=["instrument"])
    day_volume = GaugeMetricFamily("carbonx_day_volume_tonnes", "Listing tonnes traded today", labels=["instrument"])
    for sym, st in eng.instruments.items():
        in_session.add_metric([sym], int(eng.clock.in_session(eng.specs[sym], now)))
        halted.add_metric([sym], int(st.halted))
        ref.add_metric([sym], st.reference / 100)
        day_volume.add_metric([sym], st.volume)
        if st.trades:
            last.add_metric([sym], st.last / 100)
            high.add_metric([sym], st.high / 100)
            low.add_metric([sym], st.low / 100)
            if st.volume:
                vwap.add_metric([sym], st.notional / st.volume / 100)
    yield from (in_session, halted, last, vwap, high, low, ref, day_volume)
    # Only auctions still in play (scheduled/open): finished ones would grow the series forever.
    state = GaugeMetricFamily(
        "carbonx_auction_state", "1 for the live auction's current state (scheduled|open)", labels=["auction", "instrument", "state"]
    )
    bids = GaugeMetricFamily("carbonx_auction_bids", "Live bids in a scheduled or open auction", labels=["auction", "instrument"])
    for aid, auction in eng.auctions.auctions.items():
        info = auction.info
        if info.state in ("scheduled", "open"):
            state.add_metric([str(aid), info.instrument, info.state], 1)
            bids.add_metric([str(aid), info.instrument], len(auction.bids))
    yield from (state, bids)
    yield GaugeMetricFamily(
        "carbonx_frozen_cash", "Cash frozen (CNY), summed over all accounts",
        value=sum(a.frozen for a in eng.accounts.values()) / 100,
    )  # fmt: skip


def make_registry(gateway: Gateway) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway))
    registry.register(DashboardCollector(gateway))  # what deploy/grafana's dashboards add
    return registry
