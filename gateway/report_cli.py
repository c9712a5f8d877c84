"""``carbonx report day DATE --data DIR --config FILE [--out DIR]``: regenerate a day report.

Replays the journal of the data directory (archived segments included) into an empty
engine, builds the reports exactly as the server does at each day close
(``carbonx.engine.supervision.disclosure``) and writes the report of trading date ``DATE``
as ``DATE.json`` and ``DATE.csv`` into ``--out`` (default: the data directory's
``reports/``, where the server writes them: the bytes are the same). Prints the two paths.
Read-only on the journal; safe while the server runs (it reads only durable records).

``--cluster`` (instead of ``--data``; ``--out`` required): the same from the cluster's command
stream (``[cluster]`` of ``--config``), replayed from its first command - the authoritative
report in cluster mode, where a gateway serves reports from memory and, restarted, covers only
what its replica applied since the engine snapshot it started from.

Exit status: 0 written, 1 no day with that date closed in the journal, 2 usage or
configuration problem (or the journal or stream cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from carbonx.engine.config import ConfigError
from carbonx.engine.schema import Event
from carbonx.engine.supervision.disclosure import DayReport, DayReports
from carbonx.gateway.journal import JournalError
from carbonx.gateway.settings import Settings, SettingsError, load_settings
from carbonx.gateway.supervision import REPORTS, derive, write_report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carbonx report", description="Regenerate disclosure reports from the journal.")
    sub = p.add_subparsers(dest="action", required=True)
    d = sub.add_parser("day", help="the market report of one trading day (JSON + CSV)")
    d.add_argument("date", metavar="YYYY-MM-DD", help="the trading date")
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="DIR", help="the data directory (journal/, archive/)")
    source.add_argument("--cluster", action="store_true", help="replay the cluster's command stream ([cluster] of --config) instead")
    d.add_argument("--config", type=Path, required=True, metavar="FILE", help="the configuration the server runs with")
    d.add_argument("--out", type=Path, metavar="DIR", help="where to write (default DIR/reports; required with --cluster)")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.cluster and args.out is None:
        print("carbonx report: --cluster needs --out DIR (there is no data directory to write into)", file=sys.stderr)
        return 2
    if not args.cluster and not args.data.is_dir():
        print(f"carbonx report: {args.data} is not a directory", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
    except (OSError, ConfigError, SettingsError) as exc:
        print(f"carbonx report: configuration error in {args.config}: {exc}", file=sys.stderr)
        return 2
    reports = DayReports(settings.disclosure)
    found: list[DayReport] = []

    def feed(events: list[Event]) -> None:
        found.extend(r for r in reports.observe(events) if r.trading_date == args.date)

    try:
        if args.cluster:
            asyncio.run(_replay_stream(settings, feed))
        else:
            derive(args.data, settings.market, 2**63 - 1, feed)
    except (JournalError, TimeoutError) as exc:
        print(
            f"carbonx report: the {'command stream' if args.cluster else 'journal'} cannot be read: {exc or 'NATS did not answer'}",
            file=sys.stderr,
        )
        return 2
    if not found:
        where = f"the command stream {settings.cluster.command_stream}" if args.cluster else f"the journal of {args.data}"
        print(f"carbonx report: no trading day {args.date} closed in {where}", file=sys.stderr)
        return 1
    for path in write_report(args.out or args.data / REPORTS, found[-1]):  # a date closed twice: the last close stands
        print(path)
    return 0


async def _replay_stream(settings: Settings, feed: Callable[[list[Event]], None]) -> None:
    """Every command of the cluster's command stream, from its first, through an empty engine,
    each command's events to ``feed`` (as ``supervision.derive`` does with a local journal)."""
    import nats.js.errors

    from carbonx.engine.engine import Engine
    from carbonx.gateway.cluster.journal import read_stream
    from carbonx.gateway.cluster.verify import open_connection
    from carbonx.gateway.sequencer import replay_events

    cluster = settings.cluster
    nc = await asyncio.wait_for(open_connection(cluster), 30)
    try:
        engine = Engine(settings.market)
        async for seq, cmd in read_stream(nc.jetstream(timeout=cluster.publish_timeout_s), cluster.command_stream, retry_s=10):
            if seq != engine.seq + 1:
                raise JournalError(f"{cluster.command_stream} resumes at seq {seq} but the replay is at {engine.seq}: commands are missing")
            feed(replay_events(engine, cmd))
    except nats.js.errors.NotFoundError:
        raise JournalError(f"there is no stream {cluster.command_stream} on NATS at {', '.join(cluster.nats_urls)}") from None
    finally:
        await nc.close()
