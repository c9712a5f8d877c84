"""``carbonx report day DATE --data DIR --config FILE [--out DIR]``: regenerate a day report.

Replays the journal of the data directory (archived segments included) into an empty
engine, builds the reports exactly as the server does at each day close
(``carbonx.engine.supervision.disclosure``) and writes the report of trading date ``DATE``
as ``DATE.json`` and ``DATE.csv`` into ``--out`` (default: the data directory's
``reports/``, where the server writes them: the bytes are the same). Prints the two paths.
Read-only on the journal; safe while the server runs (it reads only durable records).
Exit status: 0 written, 1 no day with that date closed in the journal, 2 usage or
configuration problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from carbonx.engine.config import ConfigError
from carbonx.engine.schema import Event
from carbonx.engine.supervision.disclosure import DayReport, DayReports
from carbonx.gateway.journal import JournalError
from carbonx.gateway.settings import SettingsError, load_settings
from carbonx.gateway.supervision import REPORTS, derive, write_report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carbonx report", description="Regenerate disclosure reports from the journal.")
    sub = p.add_subparsers(dest="action", required=True)
    d = sub.add_parser("day", help="the market report of one trading day (JSON + CSV)")
    d.add_argument("date", metavar="YYYY-MM-DD", help="the trading date")
    d.add_argument("--data", type=Path, required=True, metavar="DIR", help="the data directory (journal/, archive/)")
    d.add_argument("--config", type=Path, required=True, metavar="FILE", help="the configuration the server runs with")
    d.add_argument("--out", type=Path, metavar="DIR", help="where to write (default DIR/reports)")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    if not args.data.is_dir():
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
        derive(args.data, settings.market, 2**63 - 1, feed)
    except JournalError as exc:
        print(f"carbonx report: the journal cannot be read: {exc}", file=sys.stderr)
        return 2
    if not found:
        print(f"carbonx report: no trading day {args.date} closed in the journal of {args.data}", file=sys.stderr)
        return 1
    for path in write_report(args.out or args.data / REPORTS, found[-1]):  # a date closed twice: the last close stands
        print(path)
    return 0
