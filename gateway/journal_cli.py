"""``carbonx journal verify|dump``: audit tools over a data directory.

* ``verify DIR --config FILE`` replays the whole journal (archived segments included)
  into an empty engine and compares the state digest with every snapshot. Prints one
  JSON object (the ``VerifyReport``); exit status 0 if everything matches, 1 if not.
* ``verify --cluster --config FILE [--full]`` verifies the cluster's command stream instead
  (``FILE`` is the gateway/engine configuration with its ``[cluster]`` table): the latest
  snapshot of the object store plus the stream's tail, or with ``--full`` the whole stream
  from empty compared with every snapshot (``gateway.cluster.verify``). Same output and
  exit statuses; 2 also when NATS cannot be reached.
* ``dump DIR [--from SEQ]`` prints every record as a JSON line
  ``{"seq": N, "cmd": {...}}`` (commands as in ``engine.schema``, tag field ``c``).
  Exit status 1 if the journal is corrupt (after printing the records before it).

Both are read-only. ``gateway/cli.py`` dispatches ``carbonx journal ...`` here; until
then: ``python -m gateway.journal_cli verify DIR --config deploy/demo.toml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from carbonx.engine.config import ConfigError, load_market_text
from carbonx.gateway.journal import JournalCorruption, JournalError, JournalReader
from carbonx.gateway.recovery import verify


class DumpLine(msgspec.Struct):
    seq: int
    cmd: object


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carbonx journal", description="Audit a carbonx journal (read-only).")
    sub = p.add_subparsers(dest="action", required=True)
    v = sub.add_parser("verify", help="replay from empty and compare state digests with the snapshots")
    v.add_argument("dir", type=Path, nargs="?", help="data directory (holds journal/, snapshots/, archive/); not with --cluster")
    v.add_argument("--config", type=Path, required=True, help="the market configuration (TOML) the journal was written under")
    v.add_argument("--cluster", action="store_true", help="verify the cluster's command stream ([cluster] of --config) instead of DIR")
    v.add_argument("--full", action="store_true", help="with --cluster: replay from the stream's start, check every snapshot")
    d = sub.add_parser("dump", help="print records as JSON lines")
    d.add_argument("dir", type=Path, help="data directory")
    d.add_argument("--from", dest="from_seq", type=int, default=1, metavar="SEQ", help="first seq to print (default 1)")
    return p


def main(argv: list[str]) -> int:
    """Run the tool; returns the process exit status (0 ok, 1 problems found, 2 usage)."""
    if argv and argv[0] == "journal":  # tolerate being handed the sub-command name too
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.action == "verify" and (args.cluster or args.full):
        if not args.cluster or args.dir is not None:
            print(
                "carbonx journal verify: --cluster takes no DIR (the stream is named in [cluster]); --full needs --cluster", file=sys.stderr
            )
            return 2
        return _verify_cluster(args.config, args.full)
    if args.dir is None:
        print("carbonx journal: DIR is required (or --cluster)", file=sys.stderr)
        return 2
    if not args.dir.is_dir():
        print(f"carbonx journal: {args.dir} is not a directory", file=sys.stderr)
        return 2
    if args.action == "verify":
        return _verify(args.dir, args.config)
    return _dump(args.dir, args.from_seq)


def _verify(directory: Path, config_path: Path) -> int:
    try:
        config = load_market_text(config_path.read_text())
    except (OSError, ConfigError) as exc:
        print(f"carbonx journal verify: cannot load config {config_path}: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify(directory, config)
    except JournalError as exc:
        print(f"carbonx journal verify: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(msgspec.json.encode(report.as_dict()).decode() + "\n")
    return 0 if report.ok else 1


def _verify_cluster(config_path: Path, full: bool) -> int:
    import asyncio

    from carbonx.gateway.cluster.verify import verify_cluster
    from carbonx.gateway.settings import SettingsError, load_settings

    try:
        settings = load_settings(config_path)
    except (OSError, ConfigError, SettingsError) as exc:
        print(f"carbonx journal verify: cannot load config {config_path}: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(verify_cluster(settings.cluster, settings.market, full=full))
    except (JournalError, TimeoutError) as exc:
        print(f"carbonx journal verify: {exc or 'NATS did not answer'}", file=sys.stderr)
        return 2
    sys.stdout.write(msgspec.json.encode(report.as_dict()).decode() + "\n")
    return 0 if report.ok else 1


def _dump(directory: Path, from_seq: int) -> int:
    reader = JournalReader(directory, after_seq=max(from_seq, 1) - 1, include_archive=True)
    out = sys.stdout
    encode = msgspec.json.encode
    try:
        for seq, cmd in reader:
            out.write(encode(DumpLine(seq, cmd)).decode())
            out.write("\n")
    except JournalCorruption as exc:
        out.flush()
        print(f"carbonx journal dump: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `dump ... | head` is a normal way to read it
        return 0
    if reader.torn is not None:
        t = reader.torn
        print(f"carbonx journal dump: torn final record at {t.path} offset {t.offset} ({t.why})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
