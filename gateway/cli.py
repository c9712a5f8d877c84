"""The ``carbonx`` console script.

    carbonx serve --config deploy/demo.toml [--data-dir DIR] [--host H] [--port N]
                  [--admin-host H] [--admin-port N] [--metrics-port N] [--fsync-policy P]
    carbonx engine --config F [--id ID] [--metrics-port N]  # cluster mode: an engine (active or hot standby)
    carbonx gateway --config F [--id ID] [--host H] [--port N] [--admin-host H] [--admin-port N] [--metrics-port N]
    carbonx hash-secret SECRET        # prints scrypt$<salt-hex>$<hash-hex> for the config
    carbonx journal verify|dump ...   # see docs/journal.md (gateway.journal_cli)
    carbonx admin COMMAND ...         # the operator's CLI, see docs/operations.md (gateway.admin_cli)
    carbonx report day DATE --data DIR --config FILE   # regenerate a day report (docs/disclosure.md)

Flags override the configuration's ``[server]`` table; port 0 picks a free port (the
ready line printed on stdout tells which).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from msgspec.structs import replace

from carbonx.engine.config import ConfigError
from carbonx.gateway.settings import FSYNC_POLICIES, Settings, SettingsError, load_settings, with_env_operator

log = logging.getLogger("carbonx")


def _port(text: str) -> int:
    """A TCP port, 0-65535 (0 = any free port): like every number from outside, in range."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside the range 0 to 65535")
    return port


def _listener_args(p: argparse.ArgumentParser) -> None:
    """The listener, logging and TLS flags ``serve`` and ``gateway`` share (same listeners)."""
    p.add_argument("--host", help="trading listener address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, help="trading listener port (default 8700; 0 = any free port)")
    p.add_argument("--admin-host", help="admin listener address (default 127.0.0.1)")
    p.add_argument("--admin-port", type=_port, help="admin listener port (default 8701; 0 = any free port)")
    p.add_argument("--metrics-host", help="metrics/health HTTP address (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--metrics-port", type=_port, help="metrics/health HTTP port (default 9100; 0 = any free port)")
    p.add_argument("--log-level", default="INFO", help="logging level (stderr)")
    p.add_argument(
        "--allow-plaintext", action="store_true", help="serve plain text off loopback (a proxy terminates TLS): [server] allow_plaintext"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonx", description="carbonx exchange core")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the exchange: engine, journal, trading + admin listeners, metrics")
    serve.add_argument("--config", required=True, type=Path, help="TOML configuration (e.g. deploy/demo.toml)")
    serve.add_argument("--data-dir", help="journal and snapshots directory (default: [server] data_dir, ./data)")
    serve.add_argument("--fsync-policy", choices=FSYNC_POLICIES, help="journal durability policy (default fsync)")
    _listener_args(serve)
    eng = sub.add_parser("engine", help="cluster mode: an engine replica that takes the lead when it can (docs/cluster.md)")
    eng.add_argument("--config", required=True, type=Path, help="TOML configuration with a [cluster] table")
    eng.add_argument("--id", help="this engine's id, unique in the cluster (default: [cluster] engine_id)")
    eng.add_argument("--metrics-port", type=_port, help="serve /metrics, /healthz, /readyz on this port (default: none; 0 = any free port)")
    eng.add_argument("--log-level", default="INFO", help="logging level (stderr)")
    gw = sub.add_parser("gateway", help="cluster mode: a gateway (the trading, admin and metrics listeners of serve)")
    gw.add_argument("--config", required=True, type=Path, help="TOML configuration with a [cluster] table")
    gw.add_argument("--id", help="this gateway's id, unique in the cluster (default: [cluster] gateway_id)")
    _listener_args(gw)
    hs = sub.add_parser("hash-secret", help="print the salted hash of a secret for the configuration")
    hs.add_argument("secret")
    sub.add_parser("journal", help="journal tools: verify DIR --config FILE | dump DIR [--from SEQ]", add_help=False)
    sub.add_parser("admin", help="operate a running exchange over its admin listener (carbonx admin --help)", add_help=False)
    sub.add_parser("report", help="disclosure reports: day DATE --data DIR --config FILE [--out DIR]", add_help=False)
    return parser


_ROLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _logging_and_settings(args: argparse.Namespace) -> Settings | None:
    """What ``serve`` and the cluster roles start with: logging on stderr, then the
    configuration (``--allow-plaintext`` applied). None after printing a configuration error."""
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every connection's open and close (and every refused upgrade) at INFO:
    # a connection flood would flood the log. Per-connection lines only at DEBUG; the
    # counts are in the metrics (carbonx_sessions, carbonx_connections_refused_total).
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        settings = with_env_operator(load_settings(args.config))
    except (OSError, ConfigError, SettingsError) as exc:
        print(f"carbonx: configuration error in {args.config}: {exc}", file=sys.stderr)
        return None
    if getattr(args, "allow_plaintext", False):
        settings = replace(settings, server=replace(settings.server, allow_plaintext=True))
    return settings


def _role(args: argparse.Namespace) -> int:
    """``carbonx engine`` / ``carbonx gateway``: the cluster roles (gateway/cluster/)."""
    import uvloop

    from carbonx.gateway.app import ServeOptions

    settings = _logging_and_settings(args)
    if settings is None:
        return 2
    role_id = args.id or (settings.cluster.engine_id if args.command == "engine" else settings.cluster.gateway_id)
    if not _ROLE_ID.match(role_id):
        print(f"carbonx: --id {role_id!r} must be 1-32 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    from carbonx.gateway.journal import JournalError

    try:
        if args.command == "engine":
            from carbonx.gateway.cluster.engine_role import run_engine

            return uvloop.run(run_engine(settings, role_id, metrics_port=args.metrics_port))
        from carbonx.gateway.cluster.gateway_role import run_gateway

        opts = ServeOptions(
            host=args.host,
            port=args.port,
            admin_host=args.admin_host,
            admin_port=args.admin_port,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
        )
        return uvloop.run(run_gateway(settings, opts, role_id))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled inside
        return 130
    except JournalError as exc:  # the command stream is unusable (corrupt, misconfigured, unreachable)
        print(f"carbonx: cannot run the {args.command}: {exc}", file=sys.stderr)
        return 3
    except SettingsError as exc:  # e.g. plain text off loopback (gateway/tls.py)
        print(f"carbonx: cannot start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a port already in use
        print(f"carbonx: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from carbonx.gateway.app import ServeOptions, run

    settings = _logging_and_settings(args)
    if settings is None:
        return 2
    if settings.operator is None:
        log.warning(
            "no operator credentials configured: the admin listener will refuse every login "
            "(set CARBONX_OPERATOR_KEY_ID / CARBONX_OPERATOR_SECRET or add an [operator] table)"
        )
    opts = ServeOptions(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        admin_host=args.admin_host,
        admin_port=args.admin_port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        fsync_policy=args.fsync_policy,
    )
    from carbonx.gateway.journal import JournalError
    from carbonx.gateway.storage import StorageUnavailable

    try:
        return uvloop.run(run(settings, opts))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled inside run
        return 130
    except JournalError as exc:  # corruption found by recovery: never start on a guess
        print(f"carbonx: cannot start, the data directory needs attention: {exc}", file=sys.stderr)
        return 3
    except StorageUnavailable as exc:  # a full or read-only disk: the first write would stop the exchange
        print(f"carbonx: cannot start: {exc} (free space or fix the data directory, then start again)", file=sys.stderr)
        return 4
    except SettingsError as exc:  # e.g. plain text off loopback (gateway/tls.py)
        print(f"carbonx: cannot start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a port already in use
        print(f"carbonx: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "journal":
        from carbonx.gateway.journal_cli import main as journal_main

        return journal_main(argv[1:])
    if argv and argv[0] == "admin":
        from carbonx.gateway.admin_cli import main as admin_main

        return admin_main(argv[1:])
    if argv and argv[0] == "report":
        from carbonx.gateway.report_cli import main as report_main

        return report_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "hash-secret":
        from carbonx.gateway.passwords import hash_secret

        print(hash_secret(args.secret))
        return 0
    if args.command in ("engine", "gateway"):
        return _role(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
