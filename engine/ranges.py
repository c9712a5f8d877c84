"""The documented range of every integer that enters the exchange (wire, configuration, commands).

One place for the bounds, used by the wire parsers (``gateway.wire``), the configuration
loaders (``engine.config``, ``gateway.settings``), the gateway for every command it builds
(``command_failure``: refused before a seq is spent) and the engine itself (``CHECKERS``,
run by ``Engine.apply`` on every command, because cluster mode and replay feed it commands
that never passed the wire parser).

The bounds are realistic and keep every derived number far inside a signed 64-bit integer
(MessagePack, the journal and snapshots end there):

* a price is at most ``PRICE.hi`` = 10^8 fen (1,000,000.00 CNY per tonne, ~10,000 x
  today's carbon prices);
* a quantity is at most ``QUANTITY.hi`` = 10^9 t (more than the whole national market's
  yearly allowance);
* so a notional price x quantity is at most 10^17 fen, and with fees (rate < 1) below
  2 x 10^17 — 46 x inside 2^63;
* an amount of cash is at most ``CASH.hi`` = 10^15 fen (10 trillion CNY) per command and
  per account balance.

``Range.lo`` is the lowest *valid* value (a price of 0 is invalid). The engine's own rule
checks own the low end (they give the specific message, e.g. "a limit order needs a
positive price"); ``command_failure`` checks magnitudes (``-hi <= v <= hi``), which is
what keeps every command encodable and every product bounded.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carbonx.engine import reasons as R
from carbonx.engine.schema import AnyCommand, Command, Deposit, Withdraw
from carbonx.engine.units import format_fen

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Range:
    """An inclusive integer range ``lo..hi`` with the reason given when a value is outside it."""

    name: str
    lo: int
    hi: int
    reason: str
    unit: str = ""  # "fen" (shown as CNY with 2 decimals), "t", or "" (a plain number)

    def __contains__(self, value: int) -> bool:
        return self.lo <= value <= self.hi

    def show(self, value: int) -> str:
        if self.unit == "fen":
            return format_fen(value)
        return f"{value} t" if self.unit == "t" else str(value)

    def describe(self) -> str:
        """``"0.01 to 1000000.00"``: for messages and docs."""
        return f"{self.show(self.lo)} to {self.show(self.hi)}"

    def too_large(self, field: str) -> str:
        return f"{field} must be at most {self.show(self.hi)}"


# -- money and tonnes --
PRICE = Range("price", 1, 10**8, R.INVALID_PRICE, "fen")
QUANTITY = Range("quantity", 1, 10**9, R.INVALID_QUANTITY, "t")
CASH = Range("cash", 0, 10**15, R.INVALID_AMOUNT, "fen")
LOT = Range("min_lot", 1, QUANTITY.hi, R.INVALID_LOT, "t")
# -- identifiers and time --
ID = Range("id", 1, 10**18 - 1, R.INVALID_ORDER)  # wire ids: at most 18 digits (parse_id)
ID_DIGITS = 18
TS = Range("ts", 0, INT64_MAX, R.INVALID_ORDER)  # ns since the Unix epoch
SEED = Range("seed", 0, INT64_MAX, R.INVALID_ORDER)
VINTAGE = Range("vintage", 1, 9999, R.INVALID_ORDER)  # a year; 0 on the wire/in commands = none
LOOKBACK_DAYS = Range("reserve_lookback_days", 1, 365, R.INVALID_ORDER)
FACTOR_PCT = Range("reserve_factor_pct", 1, 1_000, R.INVALID_ORDER)
GRACE = Range("grace_ns", 0, 30 * 86_400 * 10**9, R.INVALID_KEY)  # a rotated-out secret works at most 30 days more

# The range of every integer field of every command, by field name. ``command_failure``
# refuses to load if a command has an integer field missing here, so a new field cannot
# skip its bound.
FIELDS: dict[str, Range] = {
    "ts": TS,
    "start_ts": TS,
    "end_ts": TS,
    "price": PRICE,
    "quantity": QUANTITY,
    "cash": CASH,
    "reserve_price": PRICE,
    "reserve_cap": PRICE,
    "caps": QUANTITY,
    "footprint": QUANTITY,
    "min_lot": LOT,
    "order_id": Range("order_id", ID.lo, INT64_MAX, R.UNKNOWN_ORDER),
    "auction_id": Range("auction_id", ID.lo, INT64_MAX, R.UNKNOWN_AUCTION),
    "bid_id": Range("bid_id", ID.lo, INT64_MAX, R.UNKNOWN_BID),
    "block_id": Range("block_id", ID.lo, INT64_MAX, R.UNKNOWN_BLOCK),
    "alert_id": Range("alert_id", ID.lo, INT64_MAX, R.UNKNOWN_ALERT),
    "vintage": VINTAGE,
    "seed": SEED,
    "reserve_lookback_days": LOOKBACK_DAYS,
    "reserve_factor_pct": FACTOR_PCT,
    "expires_ts": Range("expires_ts", 0, INT64_MAX, R.INVALID_KEY),  # an API key's expiry, 0 = never
    "grace_ns": GRACE,
}
# Operator money moves answer INVALID_AMOUNT for any of their numbers (as their rule checks do).
_REASON_OVERRIDE: dict[type, str] = {Deposit: R.INVALID_AMOUNT, Withdraw: R.INVALID_AMOUNT}

Failure = R.Failure  # (reason, message, field)
_Check = tuple[str, int, str, bool]  # (field, hi, reason, is a dict of ints)


def _int_kind(annotation: Any) -> str | None:
    """Kind of integer field: "scalar" for int / int | None, "dict" for dict[str, int] (| None), else None."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for arg in args:
        if arg is int:
            return "scalar"
        if typing.get_origin(arg) is dict and typing.get_args(arg)[1] is int:
            return "dict"
    return None


def _checks_for(cls: type) -> tuple[_Check, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        kind = _int_kind(hints[name])
        if kind is None:
            continue
        rng = FIELDS.get(name)
        if rng is None:
            raise TypeError(f"{cls.__name__}.{name} is an integer without a range: add it to engine.ranges.FIELDS")
        out.append((name, rng.hi, _REASON_OVERRIDE.get(cls, rng.reason), kind == "dict"))
    return tuple(out)


CHECKS: dict[type, tuple[_Check, ...]] = {cls: _checks_for(cls) for cls in typing.get_args(AnyCommand)}


def _failure(name: str, hi: int, reason: str) -> Failure:
    return reason, f"{name} is out of range (magnitude at most {FIELDS[name].show(hi)})", name


def _compile(cls: type, checks: tuple[_Check, ...]) -> Callable[[Any], Failure | None]:
    """One straight-line function per command type (this runs once per command: a generic
    loop over the fields cost ~0.35 us, ~7% of an order's time in the engine)."""
    lines = ["def check(cmd):"]
    for name, hi, reason, is_dict in checks:
        lines.append(f"    v = cmd.{name}")
        if is_dict:
            lines.append(f"    if v is not None and any(not -{hi} <= x <= {hi} for x in v.values()):")
        else:
            lines.append(f"    if v is not None and not -{hi} <= v <= {hi}:")
        lines.append(f"        return _failure({name!r}, {hi}, {reason!r})")
    lines.append("    return None")
    namespace: dict[str, Any] = {"_failure": _failure}
    exec("\n".join(lines), namespace)  # generated from the fixed tables above, never from input
    fn: Callable[[Any], Failure | None] = namespace["check"]
    fn.__qualname__ = f"range_check_{cls.__name__}"
    return fn


CHECKERS: dict[type, Callable[[Any], Failure | None]] = {cls: _compile(cls, checks) for cls, checks in CHECKS.items()}


def command_failure(cmd: Command) -> Failure | None:
    """(reason, message, field) if an integer of ``cmd`` is outside its range's magnitude."""
    return CHECKERS[type(cmd)](cmd)


def check_int(value: int, rng: Range, where: str) -> str | None:
    """For configuration loaders: a message naming ``where`` and the range, or None if in range."""
    if value in rng:
        return None
    return f"{where}: {rng.show(value)} is outside the range {rng.describe()}"
