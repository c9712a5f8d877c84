"""``carbonx admin ...``: the operator's command line over the admin protocol.

Every operator method of the admin listener (``gateway/rpc/admin.py``, the ``admin.*``
auction and event methods) and the reads operators use (accounts, orders, trades, auctions,
events, certificates) is one sub-command; ``carbonx admin --help`` lists them. Each command
opens one WebSocket to the admin listener (``carbonx.gateway.client.Client``), logs in with
the operator credentials, sends one request and prints its result; ``watch CHANNEL...``
subscribes instead and prints the notifications (an operator's ``orders`` carries every
member's) until Ctrl-C or ``--count N``.

Credentials never come from the command line (it shows in ``ps`` and shell history): the
environment (``CARBONX_OPERATOR_KEY_ID`` / ``CARBONX_OPERATOR_SECRET``, the names ``carbonx
serve`` reads) or ``--credentials FILE`` (TOML ``key_id = ".."`` / ``secret = ".."``, also
inside an ``[operator]`` table, or ``KEY=VALUE`` lines with the environment names), which
must not be readable by others nor writable by group or others (``chmod 600``).

Output: a human-readable table, or with ``--json`` the protocol's ``result`` exactly (one
JSON document on stdout). Money and prices are passed as the decimal strings given, never
converted to floats. Exit status (``EXIT_*``): 0 done, 1 the exchange refused the request
(its message and reason on stderr; with ``--json`` the JSON-RPC error object on stdout),
2 usage or credentials problem (nothing was sent), 3 cannot connect or the login was
refused, 4 outcome unknown (no reply in time or the connection dropped after sending:
check with a read before retrying).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import ssl
import stat
import sys
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from getpass import getpass
from pathlib import Path
from typing import Any, TextIO

from carbonx.gateway.client import Client, ClientClosed, ClientError, Notification, RequestTimeout, RpcError

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_UNKNOWN = 4

DEFAULT_URL = "ws://127.0.0.1:8701/v1"
ENV_KEY_ID = "CARBONX_OPERATOR_KEY_ID"
ENV_SECRET = "CARBONX_OPERATOR_SECRET"
ENV_URL = "CARBONX_ADMIN_URL"
PROG = "carbonx admin"


class UsageError(Exception):
    """A problem found before anything was sent (exit status 2)."""


class Unavailable(Exception):
    """Cannot connect, or the login was refused (exit status 3)."""


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str


def credentials_from_env(environ: Mapping[str, str]) -> Credentials:
    """The operator key from ``CARBONX_OPERATOR_KEY_ID`` / ``CARBONX_OPERATOR_SECRET`` (both)."""
    key_id, secret = environ.get(ENV_KEY_ID, ""), environ.get(ENV_SECRET, "")
    if not key_id or not secret:
        missing = " and ".join(n for n, v in ((ENV_KEY_ID, key_id), (ENV_SECRET, secret)) if not v)
        raise UsageError(
            f"no operator credentials: set {missing} in the environment, or pass --credentials FILE "
            "(credentials are never taken from the command line)"
        )
    return Credentials(key_id, secret)


def credentials_from_file(path: Path) -> Credentials:
    """Read a credentials file (TOML or ``KEY=VALUE`` lines); refuse one others may read or
    that group/others may write, as ssh does for private keys."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read credentials file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"credentials file {path} is not a regular file")
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        raise UsageError(f"credentials file {path} is accessible by others (mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read credentials file {path}: {exc}") from None
    values = _parse_credentials(text, path)
    key_id = values.get("key_id") or values.get(ENV_KEY_ID.lower()) or ""
    secret = values.get("secret") or values.get(ENV_SECRET.lower()) or ""
    if not key_id or not secret:
        raise UsageError(f"credentials file {path} needs both key_id and secret (or {ENV_KEY_ID} and {ENV_SECRET})")
    return Credentials(key_id, secret)


def _parse_credentials(text: str, path: Path) -> dict[str, str]:
    """Lower-cased keys to string values, from TOML (top level or ``[operator]``) or ``KEY=VALUE`` lines."""
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export ") :].lstrip()
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"credentials file {path} line {n}: expected KEY=VALUE or TOML") from None
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            doc[key.strip()] = value
    if isinstance(doc.get("operator"), dict):
        doc = doc["operator"]
    out: dict[str, str] = {}
    for key, value in doc.items():
        if not isinstance(value, str):
            raise UsageError(f"credentials file {path}: {key} must be a string")
        out[key.lower()] = value
    return out


# --------------------------------------------------------------------------- commands


Builder = Callable[[argparse.Namespace], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    """One sub-command: the method it calls and how its arguments become the params."""

    method: str
    build: Builder
    stdin_secret: bool = False  # the params need a secret read from stdin (admin.member.create)
    watch: bool = False  # subscribe, then print notifications (``watch``)


def _drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _no_params(a: argparse.Namespace) -> dict[str, Any]:
    return {}


def _auction_ref(a: argparse.Namespace) -> dict[str, Any]:
    return {"auction_id": a.auction_id}


def _money_params(a: argparse.Namespace, deposit: bool) -> dict[str, Any]:
    if a.cash is None and a.instrument is None:
        raise UsageError("give --cash AMOUNT and/or --instrument SYM --quantity N")
    if (a.instrument is None) != (a.quantity is None):
        raise UsageError("--instrument and --quantity go together")
    if a.vintage is not None and a.instrument is None:
        raise UsageError("--vintage needs --instrument")
    params = _drop_none(account=a.account, cash=a.cash, instrument=a.instrument, quantity=a.quantity, vintage=a.vintage)
    if deposit and a.compliance_only:
        params["compliance_only"] = True
    return params


def _target(a: argparse.Namespace) -> dict[str, Any]:
    return _drop_none(member=a.member, account=a.account)


def _order_ref(a: argparse.Namespace) -> dict[str, Any]:
    if (a.order_id is None) == (a.client_order_id is None):
        raise UsageError("give exactly one of --order-id and --client-order-id")
    return _drop_none(account=a.account, order_id=a.order_id, client_order_id=a.client_order_id)


def _auction_create(a: argparse.Namespace) -> dict[str, Any]:
    params = _drop_none(
        instrument=a.instrument, quantity=a.quantity, vintage=a.vintage, reserve_price=a.reserve_price,
        rule_set=a.rule_set, min_lot=a.min_lot, irrevocable=a.irrevocable, start_ts=a.start_ts, end_ts=a.end_ts, seed=a.seed,
    )  # fmt: skip
    if a.lookback_days is not None:
        params["reserve"] = _drop_none(lookback_days=a.lookback_days, factor=a.factor, cap=a.reserve_cap)
    elif a.factor is not None or a.reserve_cap is not None:
        raise UsageError("--factor and --reserve-cap need --lookback-days")
    if a.eligible is not None:
        params["eligible"] = [t for t in a.eligible.split(",") if t]
    if a.cap:
        caps: dict[str, int] = {}
        for item in a.cap:
            kind, sep, qty = item.partition("=")
            if not sep or not qty.strip().lstrip("-").isdigit():
                raise UsageError(f"--cap {item!r}: expected TYPE=TONNES, e.g. --cap institution=50000")
            caps[kind.strip()] = int(qty)
        params["caps"] = caps
    if a.suspend_trading:
        params["suspend_trading"] = True
    return params


def _raw_params(a: argparse.Namespace) -> dict[str, Any]:
    if a.params is None:
        return {}
    try:
        params = json.loads(a.params, parse_float=_refuse_float)
    except json.JSONDecodeError as exc:
        raise UsageError(f"params are not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise UsageError('params must be a JSON object, e.g. \'{"instrument": "SHEA"}\'')
    return params


def _refuse_float(text: str) -> Any:
    raise UsageError(f'{text} is a JSON float: give prices and money as decimal strings ("{text}")')


# --------------------------------------------------------------------------- argument parser

PARTICIPANT_TYPES = ("covered_entity", "institution", "individual")
RULE_SETS = ("shanghai", "eu", "quebec", "rggi")


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The connection options, accepted before or after the sub-command. Only the top level
    sets defaults (sub-parsers SUPPRESS theirs so they do not overwrite a value given first)."""
    d: Callable[[Any], Any] = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and output")
    g.add_argument("--url", default=d(None), help=f"admin listener (default: ${ENV_URL} or {DEFAULT_URL}); wss:// for TLS")
    g.add_argument(
        "--credentials", type=Path, default=d(None), metavar="FILE",
        help=f"operator credentials file (mode 600); default: ${ENV_KEY_ID} / ${ENV_SECRET}",
    )  # fmt: skip
    g.add_argument(
        "--cafile", type=Path, default=d(None), metavar="PEM", help="CA certificate(s) to trust for wss:// (default: the system store)"
    )
    g.add_argument(
        "--timeout", type=float, default=d(10.0), metavar="S", help="seconds to wait for connecting and for the reply (default 10)"
    )
    g.add_argument("--json", action="store_true", default=d(False), help="print the protocol result as JSON (for scripts)")
    return p


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The ``carbonx admin`` parser and the command table keyed by the leaf's ``cmd`` value."""
    top = argparse.ArgumentParser(
        prog=PROG,
        parents=[_common(True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operate a carbonx exchange over its admin listener (JSON-RPC over WebSocket).",
        epilog=(
            "credentials: $CARBONX_OPERATOR_KEY_ID and $CARBONX_OPERATOR_SECRET, or --credentials FILE\n"
            "             (never on the command line)\n"
            "money and prices: decimal strings as the protocol takes them, e.g. 1000000.00, 60.50\n"
            "exit status: 0 done, 1 refused by the exchange, 2 usage or credentials problem (nothing sent),\n"
            "             3 cannot connect or login refused, 4 outcome unknown (timeout / connection lost)\n"
            "'carbonx admin COMMAND --help' describes each command; see docs/operations.md (Admin CLI)."
        ),
    )
    common = _common(False)
    table: dict[str, Command] = {}
    sub = top.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def leaf(parent: Any, name: str, method: str, build: Builder, help: str, **kw: Any) -> argparse.ArgumentParser:
        key = f"{parent.dest}:{name}" if parent is not sub else name
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help, description=f"{help} ({method})")
        p.set_defaults(cmd=key)
        table[key] = Command(method, build, **kw)
        return p

    def group(name: str, help: str) -> Any:
        g = sub.add_parser(name, help=help, description=help)
        return g.add_subparsers(dest=name, required=True, metavar="ACTION")

    # -- exchange state
    leaf(sub, "status", "admin.status", _no_params, "journal seq, trading day and phases, sessions")
    leaf(sub, "ping", "ping", _no_params, "check the admin listener answers (server time)")
    leaf(sub, "snapshot", "admin.snapshot", _no_params, "write a snapshot now (and archive the segments it covers)")
    day = group("day", "open or close the trading day")
    leaf(day, "open", "admin.day.open", _no_params, "open the trading day")
    leaf(day, "close", "admin.day.close", _no_params, "close the day: DAY orders expire, closing prices, reference roll")
    schedule = group("schedule", "the scheduled trading day: the clock opens and closes the day by the calendar unless switched off")
    leaf(schedule, "on", "admin.schedule.set", lambda a: {"enabled": True}, "let the calendar open and close the day (journaled)")
    leaf(schedule, "off", "admin.schedule.set", lambda a: {"enabled": False}, "stop the calendar opening and closing the day (journaled)")
    leaf(schedule, "status", "admin.schedule.get", _no_params, "configured, switched on, what the calendar makes due now")

    # -- members and accounts
    members = group("member", "members (brokers)")
    p = leaf(
        members, "create", "admin.member.create",
        lambda a: {"member": a.member, "key_id": a.key_id},
        "create a member and its API key; the secret (>= 8 chars) is read from stdin, never from the command line",
        stdin_secret=True,
    )  # fmt: skip
    p.add_argument("member", help="member id, e.g. broker-c")
    p.add_argument("--key-id", required=True, help="the member's API key id")
    accounts = group("account", "accounts: create, show, deposit, withdraw")
    p = leaf(
        accounts, "create", "admin.account.create",
        lambda a: {"account": a.account, "member": a.member, "type": a.type}, "create an account for a member",
    )  # fmt: skip
    p.add_argument("account")
    p.add_argument("--member", required=True)
    p.add_argument("--type", required=True, choices=PARTICIPANT_TYPES)
    p = leaf(accounts, "get", "account.get", lambda a: {"account": a.account}, "an account's cash and holdings")
    p.add_argument("account")
    for verb, method, help in (
        ("deposit", "admin.account.deposit", "credit cash and/or allowances to an account"),
        ("withdraw", "admin.account.withdraw", "debit available cash and/or allowances from an account"),
    ):
        is_deposit = verb == "deposit"
        p = leaf(accounts, verb, method, functools.partial(_money_params, deposit=is_deposit), help)
        p.add_argument("account")
        p.add_argument("--cash", metavar="AMOUNT", help="CNY as a decimal string, e.g. 1000000.00")
        p.add_argument("--instrument", metavar="SYM")
        p.add_argument("--quantity", type=int, metavar="TONNES")
        p.add_argument("--vintage", type=int, metavar="YEAR")
        if is_deposit:
            p.add_argument("--compliance-only", action="store_true", help="tonnes that may be retired or surrendered, never sold")

    # -- market control
    for name, method, help in (
        ("halt", "admin.instrument.halt", "halt trading in an instrument"),
        ("resume", "admin.instrument.resume", "resume trading in a halted instrument"),
    ):
        p = leaf(sub, name, method, lambda a: {"instrument": a.instrument}, help)
        p.add_argument("instrument", metavar="SYM")
    p = leaf(
        sub, "reference", "admin.instrument.set_reference", lambda a: {"instrument": a.instrument, "price": a.price},
        "set an instrument's reference price (the price band follows)",
    )  # fmt: skip
    p.add_argument("instrument", metavar="SYM")
    p.add_argument("price", metavar="PRICE", help="decimal string, e.g. 61.50")
    for name, method, help in (
        ("block", "admin.block", "kill switch: block a member or an account (cancels its open orders)"),
        ("unblock", "admin.unblock", "lift a block"),
    ):
        p = leaf(sub, name, method, _target, help)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--member")
        who.add_argument("--account")
    p = leaf(
        sub, "cancel-all", "admin.order.cancel_all",
        lambda a: _drop_none(member=a.member, account=a.account, instrument=a.instrument, side=a.side),
        "cancel open orders (of a member, an account, an instrument, a side; none: every order)",
    )  # fmt: skip
    p.add_argument("--member")
    p.add_argument("--account")
    p.add_argument("--instrument", metavar="SYM")
    p.add_argument("--side", choices=("buy", "sell"))

    # -- reads
    orders = group("order", "read any account's orders")
    p = leaf(orders, "get", "order.get", _order_ref, "one order by exchange or client id")
    p.add_argument("account")
    p.add_argument("--order-id")
    p.add_argument("--client-order-id")
    p = leaf(
        orders, "list", "order.list",
        lambda a: _drop_none(account=a.account, instrument=a.instrument, open_only=True if a.open_only else None),
        "an account's orders",
    )  # fmt: skip
    p.add_argument("account")
    p.add_argument("--instrument", metavar="SYM")
    p.add_argument("--open-only", action="store_true")
    trades = group("trade", "read any account's trades")
    p = leaf(
        trades, "list", "trade.list", lambda a: _drop_none(account=a.account, instrument=a.instrument, since_ts=a.since_ts),
        "an account's trades",
    )  # fmt: skip
    p.add_argument("account")
    p.add_argument("--instrument", metavar="SYM")
    p.add_argument("--since-ts", type=int, metavar="NS", help="only trades at or after this time (ns since the epoch)")

    # -- auctions
    auctions = group("auction", "primary-market auctions: create, open, close, cancel, bids, list, get")
    p = leaf(auctions, "create", "admin.auction.create", _auction_create, "create an auction (state scheduled)")
    p.add_argument("instrument", metavar="SYM")
    p.add_argument("quantity", type=int, metavar="TONNES")
    p.add_argument("--vintage", type=int, metavar="YEAR")
    p.add_argument("--reserve-price", metavar="PRICE", help="fixed reserve price (decimal string)")
    p.add_argument("--lookback-days", type=int, metavar="N", help="computed reserve: VWAP of the last N days ...")
    p.add_argument("--factor", metavar="F", help='... times F ("1.2" or a percentage "120"; default 1.0)')
    p.add_argument("--reserve-cap", metavar="PRICE", help="... at most this price")
    p.add_argument("--rule-set", choices=RULE_SETS)
    p.add_argument("--eligible", metavar="TYPES", help="comma-separated participant types, e.g. covered_entity,institution")
    p.add_argument("--cap", action="append", metavar="TYPE=TONNES", help="per-type bid cap (repeatable)")
    p.add_argument("--min-lot", type=int, metavar="TONNES")
    rev = p.add_mutually_exclusive_group()
    rev.add_argument("--irrevocable", dest="irrevocable", action="store_const", const=True, help="bids cannot be amended/withdrawn")
    rev.add_argument("--revocable", dest="irrevocable", action="store_const", const=False, help="bids can be amended/withdrawn")
    p.add_argument("--suspend-trading", action="store_true", help="halt continuous trading while the window is open")
    p.add_argument("--start-ts", type=int, metavar="NS")
    p.add_argument("--end-ts", type=int, metavar="NS")
    p.add_argument("--seed", type=int, help="tie-break seed (default: drawn by the exchange and journaled)")
    for name, method, help in (
        ("open", "admin.auction.open", "open the bidding window"),
        ("close", "admin.auction.close", "close the window: clear, settle and publish the results"),
        ("cancel", "admin.auction.cancel", "cancel the auction (bids released)"),
        ("bids", "admin.auction.bids", "every bid with its member (also while the window is open)"),
        ("get", "auction.get", "one auction, with results once cleared"),
    ):
        p = leaf(auctions, name, method, _auction_ref, help)
        p.add_argument("auction_id", metavar="ID")
    leaf(auctions, "list", "auction.list", _no_params, "every auction")

    # -- neutrality events and certificates
    events = group("event", "carbon-neutrality events: create, get")
    p = leaf(
        events, "create", "admin.event.create",
        lambda a: {"event_id": a.event_id, "name": a.name, "footprint": a.footprint}, "register an event and its footprint",
    )  # fmt: skip
    p.add_argument("event_id", metavar="ID")
    p.add_argument("--name", required=True)
    p.add_argument("--footprint", type=int, required=True, metavar="TONNES")
    p = leaf(events, "get", "event.get", lambda a: {"event_id": a.event_id}, "an event: footprint, retired, certificate")
    p.add_argument("event_id", metavar="ID")
    certs = group("certificate", "retirement certificates")
    p = leaf(certs, "get", "retire.certificate", lambda a: {"certificate_id": a.certificate_id}, "one certificate")
    p.add_argument("certificate_id", metavar="ID")

    # -- supervision and disclosure (docs/supervision.md, docs/disclosure.md)
    related = group("related", "related-party groups that surveillance treats as one owner")
    p = leaf(
        related, "set", "admin.related.set", lambda a: {"group": a.group, "accounts": a.accounts},
        "declare or replace a group (no accounts: dissolve it)",
    )  # fmt: skip
    p.add_argument("group")
    p.add_argument("accounts", nargs="*", metavar="ACCOUNT")
    leaf(related, "list", "admin.related.list", _no_params, "every declared group")
    alerts = group("alerts", "surveillance alerts: list, ack")
    p = leaf(
        alerts, "list", "admin.surveillance.list",
        lambda a: _drop_none(detector=a.detector, unacked=True if a.unacked else None, after_id=a.after_id, limit=a.limit),
        "alerts, oldest first",
    )  # fmt: skip
    p.add_argument("--detector", help="only this detector, e.g. wash_trade")
    p.add_argument("--unacked", action="store_true", help="only alerts not acknowledged yet")
    p.add_argument("--after-id", type=int, metavar="ID", help="only alerts with a larger id (paging)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N (default 100, at most 1000)")
    p = leaf(alerts, "ack", "admin.surveillance.ack", lambda a: _drop_none(alert_id=a.alert_id, note=a.note), "acknowledge an alert")
    p.add_argument("alert_id", metavar="ID")
    p.add_argument("--note", help="why (kept with the alert, at most 500 characters)")
    p = leaf(sub, "report", "disclosure.get", lambda a: _drop_none(date=a.date), "the market report of a closed trading day")
    p.add_argument("date", nargs="?", metavar="YYYY-MM-DD", help="the trading date (default: the latest report)")
    # -- access: API keys, operator identities, the audit log (admin role; the audit log: any role)
    keys = group("key", "API keys: create, list, rotate, revoke (secrets are shown once, in the reply)")
    p = leaf(
        keys, "create", "admin.key.create",
        lambda a: _drop_none(member=a.member, operator=a.operator, key_id=a.key_id, label=a.label, scopes=a.scopes,
                             allow=a.allow or None, expires_ts=a.expires_ts),
        "a new key for a member (scopes read,trade by default) or an operator identity; prints its secret once",
    )  # fmt: skip
    owner = p.add_mutually_exclusive_group(required=True)
    owner.add_argument("--member")
    owner.add_argument("--operator")
    p.add_argument("--key-id", help="default: generated")
    p.add_argument("--label", default="")
    p.add_argument("--scopes", type=lambda v: v.split(","), metavar="read,trade", help="member keys: read, trade or both")
    p.add_argument("--allow", action="append", metavar="CIDR", help="source addresses allowed (repeat); default anywhere")
    p.add_argument("--expires-ts", type=int, metavar="NS", help="expiry, ns since the epoch; default never")
    p = leaf(keys, "list", "admin.key.list", lambda a: _drop_none(member=a.member, operator=a.operator), "keys (never secrets)")
    p.add_argument("--member")
    p.add_argument("--operator")
    p = leaf(
        keys, "rotate", "admin.key.rotate", lambda a: {"key_id": a.key_id, "grace_s": a.grace_s},
        "a new secret (printed once); the old one keeps working for --grace-s seconds",
    )  # fmt: skip
    p.add_argument("key_id")
    p.add_argument("--grace-s", type=int, default=0, metavar="S")
    p = leaf(keys, "revoke", "admin.key.revoke", lambda a: {"key_id": a.key_id}, "revoke a key: its sessions are closed at once")
    p.add_argument("key_id")
    ops = group("operator", "operator identities (people) and their roles")
    p = leaf(
        ops, "create", "admin.operator.create",
        lambda a: _drop_none(operator=a.operator, role=a.role, label=a.label, allow=a.allow or None, expires_ts=a.expires_ts),
        "a named operator with a role and a first key; prints its secret once",
    )  # fmt: skip
    p.add_argument("operator")
    p.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    p.add_argument("--label", default="")
    p.add_argument("--allow", action="append", metavar="CIDR")
    p.add_argument("--expires-ts", type=int, metavar="NS")
    p = leaf(
        ops, "role", "admin.operator.role", lambda a: {"operator": a.operator, "role": a.role},
        "give an operator another role (its live sessions get it within a second)",
    )  # fmt: skip
    p.add_argument("operator")
    p.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    leaf(ops, "list", "admin.operator.list", _no_params, "operator identities, roles and key ids")
    p = leaf(
        sub, "audit", "admin.audit.list",
        lambda a: _drop_none(since_ts=a.since_ts, operator=a.operator, method=a.method, limit=a.limit),
        "the audit log: every admin call (who, from where, when, what, result), newest last",
    )  # fmt: skip
    p.add_argument("--since-ts", type=int, metavar="NS")
    p.add_argument("--operator", metavar="IDENTITY")
    p.add_argument("--method", metavar="NAME", help="e.g. admin.instrument.halt")
    p.add_argument("--limit", type=int, metavar="N")

    # -- live notifications
    p = leaf(
        sub, "watch", "subscribe", lambda a: {"channels": a.channels},
        "print notifications as they arrive (e.g. orders: every member's; status.SHEA; auctions) until Ctrl-C or --count",
        watch=True,
    )  # fmt: skip
    p.add_argument(
        "channels",
        nargs="+",
        metavar="CHANNEL",
        help="orders, auctions, surveillance, disclosure, status.SYM, trades.SYM, ticker.SYM, book.SYM, heartbeat",
    )
    p.add_argument("--count", type=int, metavar="N", help="stop after N notifications")

    # -- anything else
    p = leaf(sub, "call", "", _raw_params, "call any admin-listener method with JSON params (escape hatch for scripts)")
    p.add_argument("method", help="e.g. admin.status")
    p.add_argument("params", nargs="?", help="a JSON object; prices and money as strings")
    return top, table


# --------------------------------------------------------------------------- output


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flatten(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            rows += _flatten(item, name + ".")
        else:
            rows.append((name, item))
    return rows


def _rows_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def render(result: Any, out: TextIO) -> None:
    """A result as people read it: lists of objects as tables (one row each), objects as
    ``key  value`` lines (nested objects flattened to dotted keys)."""
    if isinstance(result, list):
        if result and all(isinstance(r, dict) for r in result):
            _rows_table(result, out)
        else:
            out.write((_cell(result) if result else "(none)") + "\n")
        return
    if not isinstance(result, dict):
        out.write(_cell(result) + "\n")
        return
    scalars: list[tuple[str, Any]] = []
    tables: list[tuple[str, list[Any]]] = []
    for key, value in _flatten(result):
        is_rows = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        if is_rows and (value or len(result) == 1):  # an empty list alone is "(no KEY)"
            tables.append((key, value))
        else:
            scalars.append((key, value))
    if scalars:
        width = max(len(k) for k, _ in scalars)
        for key, value in scalars:
            out.write(f"{key.ljust(width)}  {_cell(value)}\n")
    for key, rows in tables:
        if scalars or len(tables) > 1:
            out.write(f"\n{key}:\n")
        if rows:
            _rows_table(rows, out)
        else:
            out.write(f"(no {key})\n")


def _error_line(err: RpcError) -> str:
    extra = [f"reason {err.reason}"] if err.reason else []
    if err.field:
        extra.append(f"field {err.field}")
    extra += [f"{k} {v}" for k, v in err.data.items() if k not in ("reason", "field")]
    extra.append(f"code {err.code}")
    return f"{err.message} ({', '.join(extra)})"


# --------------------------------------------------------------------------- running


def _read_secret(stdin: TextIO) -> str:
    """The new member's secret: prompted twice on a terminal, else the first line of stdin."""
    if stdin.isatty():
        secret = getpass("new member secret: ")
        if getpass("again: ") != secret:
            raise UsageError("the two secrets differ")
    else:
        secret = stdin.readline().rstrip("\r\n")
    if not secret:
        raise UsageError("no secret on stdin: pipe the member's secret (>= 8 characters), e.g. from a file")
    return secret


def _ssl_context(url: str, cafile: Path | None) -> ssl.SSLContext | None:
    if cafile is None:
        return None
    if not url.startswith("wss://"):
        raise UsageError("--cafile is for wss:// URLs")
    try:
        return ssl.create_default_context(cafile=str(cafile))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load --cafile {cafile}: {exc}") from None


def _note_line(note: Notification) -> str:
    """One notification on one line: ``KIND CHANNEL key=value ...``."""
    fields = " ".join(f"{k}={_cell(v)}" for k, v in note.params.items() if k != "channel")
    return f"{note.method} {note.channel or '-'} {fields}".rstrip()


async def _watch(client: Client, params: dict[str, Any], count: int | None, as_json: bool, out: TextIO, err: TextIO) -> Any:
    """Subscribe and print the notifications of those channels until ``count`` or the end."""
    wanted = set(params["channels"])
    result = await client.request("subscribe", params)
    err.write(f"{PROG}: watching {', '.join(result.get('subscribed', []))} (Ctrl-C to stop)\n")
    err.flush()  # scripts wait for this line to know the subscription is in place
    seen = 0
    if count is not None and count <= 0:
        return result
    async for note in client.notifications():
        if note.channel not in wanted and not (not note.channel and note.method in wanted):
            continue  # e.g. the heartbeat every connection gets
        if as_json:
            out.write(json.dumps({"method": note.method, "params": note.params}) + "\n")
        else:
            out.write(_note_line(note) + "\n")
        out.flush()
        seen += 1
        if count is not None and seen >= count:
            return result
    raise ClientClosed(client.close_code, client.close_reason or "closed by the server")


async def _run(
    url: str,
    ctx: ssl.SSLContext | None,
    timeout: float,
    creds: Credentials,
    method: str,
    params: dict[str, Any],
    watch: Callable[[Client], Awaitable[Any]] | None = None,
) -> Any:
    client = Client(url, timeout=timeout, open_timeout=timeout, ssl=ctx)
    try:
        await client.connect()
    except Exception as exc:  # OSError, TimeoutError, websockets' InvalidURI / InvalidStatus / InvalidHandshake, TLS
        raise Unavailable(f"cannot connect to {url}: {exc or type(exc).__name__}") from None
    try:
        try:
            await client.login(creds.key_id, creds.secret)
        except RpcError as err:
            raise Unavailable(f"login refused: {_error_line(err)}") from None
        except ClientError as exc:
            raise Unavailable(f"login failed: {exc}") from None
        if watch is not None:
            return await watch(client)
        return await client.request(method, params)
    finally:
        await client.close()


def main(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``carbonx admin ARGV``; returns the exit status (``EXIT_*``)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser, table = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    command = table[args.cmd]
    method = command.method or args.method
    as_json: bool = args.json

    def fail(status: int, message: str) -> int:
        stderr.write(f"{PROG}: {message}\n")
        return status

    try:
        params = command.build(args)
        url = args.url or os.environ.get(ENV_URL) or DEFAULT_URL
        if not url.startswith(("ws://", "wss://")):
            raise UsageError(f"--url {url!r}: expected ws://HOST:PORT/v1 or wss://HOST:PORT/v1")
        if not args.timeout > 0:
            raise UsageError("--timeout must be positive")
        ctx = _ssl_context(url, args.cafile)
        creds = credentials_from_file(args.credentials) if args.credentials is not None else credentials_from_env(os.environ)
        if command.stdin_secret:
            params["secret"] = _read_secret(stdin)
    except UsageError as exc:
        return fail(EXIT_USAGE, str(exc))
    watch: Callable[[Client], Awaitable[Any]] | None = None
    if command.watch:
        if args.count is not None and args.count < 0:
            return fail(EXIT_USAGE, "--count must be >= 0")
        watch = functools.partial(_watch, params=params, count=args.count, as_json=as_json, out=stdout, err=stderr)
    try:
        result = asyncio.run(_run(url, ctx, args.timeout, creds, method, params, watch))
    except KeyboardInterrupt:  # the normal end of ``watch``
        return EXIT_OK if command.watch else 130
    except Unavailable as exc:
        return fail(EXIT_UNAVAILABLE, str(exc))
    except RpcError as err:
        if as_json:
            stdout.write(json.dumps({"code": err.code, "message": err.message, "data": err.data}) + "\n")
        return fail(EXIT_REJECTED, f"{method} refused: {_error_line(err)}")
    except RequestTimeout as exc:
        return fail(EXIT_UNKNOWN, f"{exc}; the request may or may not have been applied: check before retrying")
    except ClientClosed as exc:
        if command.watch:
            return fail(EXIT_UNAVAILABLE, f"{exc} while watching")
        return fail(EXIT_UNKNOWN, f"{exc} before the reply; the request may or may not have been applied: check before retrying")
    if command.watch:
        return EXIT_OK  # the notifications were the output
    if as_json:
        stdout.write(json.dumps(result) + "\n")
    else:
        render(result, stdout)
    return EXIT_OK
