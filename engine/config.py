"""Market configuration: instruments and the trading calendar, parsed from TOML text.

Every number of MARKET_RULES.md is a setting here with the rules' default. The engine
takes a parsed ``MarketConfig``; reading the file is the caller's business (the engine
does no I/O). The gateway's own settings (listeners, members, keys, demo accounts)
live in other tables of the same file and are parsed by ``gateway.settings``.
"""

from __future__ import annotations

import datetime
import tomllib
from typing import Any

import msgspec

from carbonx.engine import ranges
from carbonx.engine.ranges import Range
from carbonx.engine.schema import PARTICIPANT_TYPES
from carbonx.engine.units import UnitError, parse_decimal_scaled, parse_fen


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


class InstrumentSpec(msgspec.Struct, kw_only=True):
    symbol: str
    name: str = ""
    tick: int = 1  # fen
    lot: int = 1  # tonnes
    band_bp: int = 1000  # ±10.00 %
    min_qty: int = 1
    max_qty: int = 99_999
    reference_price: int  # fen: the initial reference (previous close)
    eligible: tuple[str, ...] = PARTICIPANT_TYPES
    fee_buy_e8: int = 0  # fee rate on notional, in units of 1e-8
    fee_sell_e8: int = 0
    t1_resale: bool = False
    holding_limits: dict[str, int] = {}  # participant type -> max tonnes held
    vintages: tuple[int, ...] = ()  # empty: the instrument has no vintages (vintage 0)
    sessions: tuple[tuple[int, int], ...] = ()  # seconds of local day; () = calendar's
    block_min_qty: int = 100_000
    block_band_bp: int = 3000
    block_sessions: tuple[tuple[int, int], ...] = ((13 * 3600, 15 * 3600),)


class CalendarSpec(msgspec.Struct, kw_only=True):
    utc_offset_s: int = 8 * 3600
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    sessions: tuple[tuple[int, int], ...] = ((10 * 3600 + 1800, 11 * 3600 + 1800), (13 * 3600, 15 * 3600))
    holidays: frozenset[str] = frozenset()  # "YYYY-MM-DD"


class MarketConfig(msgspec.Struct, kw_only=True):
    instruments: dict[str, InstrumentSpec]
    calendar: CalendarSpec
    bidder_caps: dict[str, int] = msgspec.field(default_factory=lambda: {"covered_entity": 100_000, "institution": 50_000})
    retention: RetentionSpec = msgspec.field(default_factory=lambda: RetentionSpec())


# ----------------------------------------------------------------------------- retention
# How much finished history the engine keeps in memory ([retention] table). Separate from
# the market rules above: these caps bound memory, they change no trading rule.


class RetentionSpec(msgspec.Struct, kw_only=True, frozen=True):
    """Caps on the finished history the engine keeps in memory (live orders and open
    block proposals are never dropped). Each is a FIFO window, evicted as the command
    that overflows it is applied, so replaying the journal drops exactly what the live
    run dropped. What falls out is still in the journal (``carbonx journal dump``)
    but no longer answered by the queries: ``order.get`` of an evicted order is
    ``UNKNOWN_ORDER``, ``trade.list`` returns only trades still in the window,
    ``block.get`` of an evicted finished proposal is ``UNKNOWN_BLOCK``."""

    finished_orders: int = 10_000  # filled/cancelled/expired orders kept for order.get / order.list
    trades: int = 10_000  # recent trades kept for trade.list (all accounts together)
    finished_blocks: int = 1_000  # accepted/declined/cancelled/expired block proposals kept for block.get


RETENTION_KEYS = ("finished_orders", "trades", "finished_blocks")
RETENTION_MAX = 10_000_000  # ~ several GB of history: beyond that the cap no longer bounds anything useful
RETENTION = Range("retention", 0, RETENTION_MAX, "INVALID_CONFIG")


def parse_retention(raw: Any) -> RetentionSpec:
    """The ``[retention]`` table: every key optional, a whole number in [0, 10,000,000]."""
    if not isinstance(raw, dict):
        raise ConfigError("retention: expected a table")
    unknown = set(raw) - set(RETENTION_KEYS)
    if unknown:
        raise ConfigError(f"retention: unknown keys {sorted(unknown)}")
    values = {k: _int(v, f"retention.{k}", RETENTION) for k, v in raw.items()}
    return RetentionSpec(**values)


def _hhmm(value: Any, where: str) -> int:
    try:
        h, m = str(value).split(":")
        secs = int(h) * 3600 + int(m) * 60
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not HH:MM") from None
    if not 0 <= secs <= 86400 or not 0 <= int(m) < 60:
        raise ConfigError(f"{where}: {value!r} is not a time of day")
    return secs


def _sessions(value: Any, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of [start, end] pairs")
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(f'{where}[{i}]: expected ["HH:MM", "HH:MM"]')
        start, end = _hhmm(pair[0], f"{where}[{i}]"), _hhmm(pair[1], f"{where}[{i}]")
        if end <= start:
            raise ConfigError(f"{where}[{i}]: session ends before it starts")
        out.append((start, end))
    return tuple(sorted(out))


def _types(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(v in PARTICIPANT_TYPES for v in value):
        raise ConfigError(f"{where}: expected a list drawn from {list(PARTICIPANT_TYPES)}")
    return tuple(value)


# Ranges of configuration integers that are not command fields (engine.ranges has those).
HOLDING_LIMIT = Range("holding limit", 0, ranges.QUANTITY.hi, "", "t")
UTC_OFFSET_MINUTES = Range("UTC offset", -12 * 60, 14 * 60, "")


def _in_range(value: int, rng: Range, where: str) -> int:
    message = ranges.check_int(value, rng, where)
    if message is not None:
        raise ConfigError(message)
    return value


def _money(value: Any, where: str, rng: Range = ranges.PRICE) -> int:
    """A quoted decimal amount of CNY, as fen within ``rng``."""
    if isinstance(value, float):  # a binary float is not an amount: make the author write "60.00"
        raise ConfigError(f'{where}: write amounts as quoted decimal strings, e.g. "60.00", not {value!r}')
    try:
        fen = parse_fen(str(value))
    except UnitError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return _in_range(fen, rng, where)


def _scaled(value: Any, scale: int, where: str) -> int:
    try:
        return parse_decimal_scaled(value, scale)
    except UnitError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _int(value: Any, where: str, rng: Range) -> int:
    """A whole number within ``rng``: TOML floats, strings and booleans are refused, never truncated."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return _in_range(value, rng, where)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list")
    return value


def _holidays(value: Any) -> frozenset[str]:
    """ISO dates only: a malformed date (or a bare string) would silently match no day."""
    if not isinstance(value, list) or not all(isinstance(d, str) and _is_iso_date(d) for d in value):
        raise ConfigError('calendar.holidays: expected a list of "YYYY-MM-DD" dates')
    return frozenset(value)


def _is_iso_date(text: str) -> bool:
    try:
        return datetime.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


_INSTRUMENT_KEYS = {
    "symbol", "name", "tick", "lot", "band_pct", "min_qty", "max_qty", "reference_price",
    "eligible", "fee_buy", "fee_sell", "t1_resale", "holding_limits", "vintages", "sessions",
    "block_min_qty", "block_band_pct", "block_sessions",
}  # fmt: skip


def _instrument(raw: dict[str, Any], i: int) -> InstrumentSpec:
    where = f"instrument[{i}]"
    unknown = set(raw) - _INSTRUMENT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not symbol.isalnum() or len(symbol) > 16:
        raise ConfigError(f"{where}.symbol: expected 1-16 letters/digits")
    where = f"instrument {symbol}"
    if "reference_price" not in raw:
        raise ConfigError(f"{where}: reference_price is required")
    limits = raw.get("holding_limits", {})
    if not isinstance(limits, dict) or not all(k in PARTICIPANT_TYPES for k in limits):
        raise ConfigError(f"{where}.holding_limits: keys must be participant types")
    spec = InstrumentSpec(
        symbol=symbol,
        name=str(raw.get("name", "")),
        tick=_money(raw.get("tick", "0.01"), f"{where}.tick"),
        lot=_int(raw.get("lot", 1), f"{where}.lot", ranges.QUANTITY),
        band_bp=_scaled(raw.get("band_pct", "10"), 2, f"{where}.band_pct"),
        min_qty=_int(raw.get("min_qty", 1), f"{where}.min_qty", ranges.QUANTITY),
        max_qty=_int(raw.get("max_qty", 99_999), f"{where}.max_qty", ranges.QUANTITY),
        reference_price=_money(raw["reference_price"], f"{where}.reference_price"),
        eligible=_types(raw.get("eligible", list(PARTICIPANT_TYPES)), f"{where}.eligible"),
        fee_buy_e8=_scaled(raw.get("fee_buy", "0"), 8, f"{where}.fee_buy"),
        fee_sell_e8=_scaled(raw.get("fee_sell", "0"), 8, f"{where}.fee_sell"),
        t1_resale=bool(raw.get("t1_resale", False)),
        holding_limits={k: _int(v, f"{where}.holding_limits.{k}", HOLDING_LIMIT) for k, v in limits.items()},
        vintages=tuple(_int(v, f"{where}.vintages", ranges.VINTAGE) for v in _list(raw.get("vintages", []), f"{where}.vintages")),
        sessions=_sessions(raw["sessions"], f"{where}.sessions") if "sessions" in raw else (),
        block_min_qty=_int(raw.get("block_min_qty", 100_000), f"{where}.block_min_qty", ranges.QUANTITY),
        block_band_bp=_scaled(raw.get("block_band_pct", "30"), 2, f"{where}.block_band_pct"),
        block_sessions=_sessions(raw.get("block_sessions", [["13:00", "15:00"]]), f"{where}.block_sessions"),
    )
    if spec.tick <= 0 or spec.reference_price <= 0 or spec.reference_price % spec.tick:
        raise ConfigError(f"{where}: tick and reference_price must be positive, price on the tick")
    if spec.lot <= 0 or not 0 < spec.min_qty <= spec.max_qty:
        raise ConfigError(f"{where}: need lot > 0 and 0 < min_qty <= max_qty")
    if not 0 < spec.band_bp < 10_000 or not 0 < spec.block_band_bp < 10_000:
        raise ConfigError(f"{where}: band percentages must be between 0 and 100")
    if not 0 <= spec.fee_buy_e8 < 10**8 or not 0 <= spec.fee_sell_e8 < 10**8:
        raise ConfigError(f"{where}: fee rates must be in [0, 1)")
    if spec.vintages and 0 in spec.vintages:
        raise ConfigError(f"{where}.vintages: 0 is not a vintage year")
    return spec


def parse_market(data: dict[str, Any]) -> MarketConfig:
    """Build a MarketConfig from the parsed TOML document (tables ``calendar``, ``instrument``)."""
    cal_raw = data.get("calendar", {})
    weekday_names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    days = cal_raw.get("weekdays", weekday_names[:5])
    if not isinstance(days, list) or not all(d in weekday_names for d in days):
        raise ConfigError(f"calendar.weekdays: expected names from {weekday_names}")
    calendar = CalendarSpec(
        utc_offset_s=_int(cal_raw.get("utc_offset_minutes", 480), "calendar.utc_offset_minutes", UTC_OFFSET_MINUTES) * 60,
        weekdays=frozenset(weekday_names.index(d) for d in days),
        sessions=_sessions(cal_raw.get("sessions", [["10:30", "11:30"], ["13:00", "15:00"]]), "calendar.sessions"),
        holidays=_holidays(cal_raw.get("holidays", [])),
    )
    raw_instruments = data.get("instrument", [])
    if not isinstance(raw_instruments, list) or not raw_instruments:
        raise ConfigError("at least one [[instrument]] table is required")
    instruments: dict[str, InstrumentSpec] = {}
    for i, raw in enumerate(raw_instruments):
        spec = _instrument(raw, i)
        if spec.symbol in instruments:
            raise ConfigError(f"instrument {spec.symbol} is defined twice")
        instruments[spec.symbol] = spec
    caps_raw = data.get("auction", {}).get("bidder_caps", {"covered_entity": 100_000, "institution": 50_000})
    if not isinstance(caps_raw, dict) or not all(k in PARTICIPANT_TYPES for k in caps_raw):
        raise ConfigError("auction.bidder_caps: keys must be participant types")
    caps = {k: _int(v, f"auction.bidder_caps.{k}", HOLDING_LIMIT) for k, v in caps_raw.items()}
    return MarketConfig(instruments=instruments, calendar=calendar, bidder_caps=caps, retention=parse_retention(data.get("retention", {})))


def load_market_text(text: str) -> MarketConfig:
    """Parse TOML text (the caller read the file)."""
    try:
        return parse_market(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
