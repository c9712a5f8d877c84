"""``carbonx journal verify|dump``: audit tools over a data directory.

* ``verify DIR --config FILE`` replays the whole journal (archived segments included)
  into an empty engine and compares the state digest with every snapshot. Prints one
  JSON object (the ``VerifyReport``); exit status 0 if everything matches, 1 if not.
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
    v.add_argument("dir", type=Path, help="data directory (holds journal/, snapshots/, archive/)")
    v.add_argument("--config", type=Path, required=True, help="the market configuration (TOML) the journal was written under")
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
