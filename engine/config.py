"""Market configuration: instruments and the trading calendar, parsed from TOML text.

Every number of MARKET_RULES.md is a setting here with the rules' default. The engine
takes a parsed ``MarketConfig``; reading the file is the caller's business (the engine
does no I/O). The gateway's own settings (listeners, members, keys, demo accounts)
live in other tables of the same file and are parsed by ``gateway.settings``.
"""

from __future__ import annotations

import datetime
import re
import tomllib
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from carbonx.engine import ranges
from carbonx.engine.ranges import Range
from carbonx.engine.schema import PARTICIPANT_TYPES, ParticipantType
from carbonx.engine.units import UnitError, format_fen, parse_decimal_scaled, parse_fen


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

RETENTION_MAX = 10_000_000  # ~ several GB of history: beyond that the cap no longer bounds anything useful
RETENTION = Range("retention", 0, RETENTION_MAX, "INVALID_CONFIG")


def bounded(rng: Range) -> msgspec.Meta:
    """The ``Meta`` constraint of ``rng`` for an ``Annotated[int, ...]`` field: msgspec
    refuses a value outside it and ``convert`` names the key, the value and the range."""
    return msgspec.Meta(ge=rng.lo, le=rng.hi, extra={"range": rng})


RetentionCap = Annotated[int, bounded(RETENTION)]


class RetentionSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Caps on the finished history the engine keeps in memory (live orders and open
    block proposals are never dropped). Each is a FIFO window, evicted as the command
    that overflows it is applied, so replaying the journal drops exactly what the live
    run dropped. What falls out is still in the journal (``carbonx journal dump``)
    but no longer answered by the queries: ``order.get`` of an evicted order is
    ``UNKNOWN_ORDER``, ``trade.list`` returns only trades still in the window,
    ``block.get`` of an evicted finished proposal is ``UNKNOWN_BLOCK``."""

    finished_orders: RetentionCap = 10_000  # filled/cancelled/expired orders kept for order.get / order.list
    trades: RetentionCap = 10_000  # recent trades kept for trade.list (all accounts together)
    finished_blocks: RetentionCap = 1_000  # accepted/declined/cancelled/expired block proposals kept for block.get


RETENTION_KEYS = tuple(RetentionSpec.__struct_fields__)


def parse_retention(raw: Any) -> RetentionSpec:
    """The ``[retention]`` table: every key optional, a whole number in [0, 10,000,000]."""
    return convert(raw, RetentionSpec, ConfigError, at="retention")


# ----------------------------------------------------------------------------- conversion
# Tables become Structs through ``msgspec.convert``: it checks types, ranges (``Meta``),
# required and unknown keys. ``convert`` turns its error into ours, naming the key path
# the way the file spells it (``limits.max_connections``, ``account[0].holdings[1].vintage``).

T = TypeVar("T")
Segment = str | int  # a key of a table, an index into an array, or "..." (msgspec's "some key of a dict")
_AT = re.compile(r"^(?P<msg>.*) - at `(?:key` in `)?\$(?P<path>[^`]*)`$", re.S)
_BOUND = re.compile(r"^Expected `\w+` [<>]=")  # a value of the right type outside a Meta range
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NOUNS: dict[type, str] = {
    mi.IntType: "a whole number",
    mi.FloatType: "a number",
    mi.StrType: "a string",
    mi.BoolType: "true or false",
    mi.ListType: "a list",
    mi.VarTupleType: "a list",
    mi.TupleType: "a list",
    mi.FrozenSetType: "a list",
    mi.StructType: "a table",
    mi.DictType: "a table",
}


def path_text(path: Sequence[Segment]) -> str:
    """``("account", 0, "cash")`` -> ``"account[0].cash"``."""
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) or seg == "..." else (f".{seg}" if out else seg)
    return out


def convert(
    data: Any,
    into: type[T],
    error: type[ValueError],
    *,
    at: str = "",
    where: Callable[[list[Segment]], str] = path_text,
) -> T:
    """``msgspec.convert(data, into)``; a ``msgspec.ValidationError`` becomes ``error`` with a
    message that names the key path (``at`` prefixed, ``where`` renders it), the offending
    value and what was expected (the range, the choices, the ``Meta`` description)."""
    try:
        return msgspec.convert(data, into)
    except msgspec.ValidationError as exc:
        raise error(explain(str(exc), data, into, at=at, where=where)) from None


def explain(message: str, data: Any, into: Any, *, at: str = "", where: Callable[[list[Segment]], str] = path_text) -> str:
    """Rewrite msgspec's ``Expected `int` <= 65535 - at `$.server.port``` as
    ``server.port: 70000 is outside the range 0 to 65535``: the value is looked up in
    ``data`` and the expectation in the type of ``into`` along the same path."""
    match = _AT.match(message)
    msg, raw_path = (match["msg"], match["path"]) if match else (message, "")
    path: list[Segment] = [int(i) if i.isdigit() else name or i for name, i in _SEGMENT.findall(raw_path)]
    info, meta, value = mi.type_info(into), None, data
    for seg in path:
        info, meta = _unwrap(info)
        if isinstance(info, mi.StructType) and isinstance(seg, str):
            info = next((f.type for f in info.fields if f.encode_name == seg), mi.AnyType())
        elif isinstance(info, mi.TupleType) and isinstance(seg, int):
            info = info.item_types[seg] if seg < len(info.item_types) else mi.AnyType()
        elif isinstance(info, (mi.ListType, mi.VarTupleType, mi.FrozenSetType, mi.SetType)):
            info = info.item_type
        elif isinstance(info, mi.DictType):
            info = info.value_type
        value = _child(value, seg)
    info, meta = _unwrap(info)
    rendered = where(path)
    if at:
        rendered = at + ("." if rendered and not rendered.startswith("[") else "") + rendered
    return f"{rendered or 'top level'}: {_what(msg, info, meta, value)}"


def _unwrap(info: Any) -> tuple[Any, Any]:
    """Strip ``Metadata`` and ``| None`` (absent keys are how TOML spells None)."""
    meta = None
    while True:
        if isinstance(info, mi.Metadata):
            meta, info = info, info.type
        elif isinstance(info, mi.UnionType) and sum(not isinstance(t, mi.NoneType) for t in info.types) == 1:
            info = next(t for t in info.types if not isinstance(t, mi.NoneType))
        else:
            return info, meta


def _child(value: Any, seg: Segment) -> Any:
    if isinstance(value, dict) and isinstance(seg, str):
        return value.get(seg)
    if isinstance(value, list) and isinstance(seg, int) and seg < len(value):
        return value[seg]
    return None


def _what(msg: str, info: Any, meta: Any, value: Any) -> str:
    if msg.startswith("Object contains unknown field") and isinstance(info, mi.StructType) and isinstance(value, dict):
        return f"unknown keys {sorted(set(value) - {f.encode_name for f in info.fields})}"
    if msg.startswith("Object missing required field"):
        return f"{msg.split('`')[1]} is required"
    lo, hi = getattr(info, "ge", None), getattr(info, "le", None)
    if lo is not None and hi is not None and _BOUND.match(msg) and isinstance(value, (int, float)):
        rng = (meta.extra or {}).get("range") if meta is not None else None
        if isinstance(rng, Range) and isinstance(value, int):
            return f"{rng.show(value)} is outside the range {rng.describe()}"
        return f"{value!r} is outside the range {_num(lo)} to {_num(hi)}"
    description = (meta.extra_json_schema or {}).get("description") if meta is not None else None
    if description:
        return f"expected {description}, got {value!r}"
    if isinstance(info, mi.LiteralType):
        return f"expected one of {list(info.values)}, got {value!r}"
    if type(info) in _NOUNS and msg.startswith("Expected `") and ", got `" in msg:
        return f"expected {_NOUNS[type(info)]}, got {value!r}"
    return msg[:1].lower() + msg[1:].replace("`", "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ----------------------------------------------------------------------------- values msgspec cannot check
# Money is a quoted decimal string (or a whole number of CNY), never a binary float: the
# type refuses floats, ``money`` parses the decimal. Times of day are "HH:MM" (24:00 ends a
# day), percentages and fee rates exact decimals.

Money = Annotated[str | int, msgspec.Meta(description='an amount as a quoted decimal string, e.g. "60.00"')]
Rate = str | int | float  # a rate or percentage: parsed exactly from its text (``parse_decimal_scaled``)
SessionPair = Annotated[tuple[str, str], msgspec.Meta(description='a ["HH:MM", "HH:MM"] pair')]
Holiday = Annotated[datetime.date, msgspec.Meta(description='a "YYYY-MM-DD" date')]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = typing.get_args(Weekday)


def money(value: str | int, where: str, rng: Range = ranges.PRICE, error: type[ValueError] = ConfigError) -> int:
    """A decimal amount of CNY as fen within ``rng`` (``Money`` already refused floats)."""
    try:
        fen = parse_fen(str(value))
    except UnitError as exc:
        raise error(f"{where}: {exc}") from None
    if (message := ranges.check_int(fen, rng, where)) is not None:
        raise error(message)
    return fen


def _scaled(value: Rate, scale: int, where: str) -> int:
    try:
        return parse_decimal_scaled(str(value), scale)
    except UnitError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _hhmm(value: str, where: str) -> int:
    try:
        h, m = value.split(":")
        secs = int(h) * 3600 + int(m) * 60
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not HH:MM") from None
    if not 0 <= secs <= 86400 or not 0 <= int(m) < 60:
        raise ConfigError(f"{where}: {value!r} is not a time of day")
    return secs


def _sessions(pairs: tuple[tuple[str, str], ...], where: str) -> tuple[tuple[int, int], ...]:
    out = []
    for i, (first, last) in enumerate(pairs):
        start, end = _hhmm(first, f"{where}[{i}]"), _hhmm(last, f"{where}[{i}]")
        if end <= start:
            raise ConfigError(f"{where}[{i}]: session ends before it starts")
        out.append((start, end))
    return tuple(sorted(out))


# ----------------------------------------------------------------------------- the file's tables
# Ranges of configuration integers that are not command fields (engine.ranges has those).
HOLDING_LIMIT = Range("holding limit", 0, ranges.QUANTITY.hi, "", "t")
UTC_OFFSET_MINUTES = Range("UTC offset", -12 * 60, 14 * 60, "")
Quantity = Annotated[int, bounded(ranges.QUANTITY)]
Vintage = Annotated[int, bounded(ranges.VINTAGE)]
Cap = Annotated[int, bounded(HOLDING_LIMIT)] | None
SYMBOL = r"^[^\W_]{1,16}$"  # str.isalnum(), 1 to 16 characters


class PerParticipantType(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A table keyed by participant type (holding limits, bidder caps); absent = no entry."""

    covered_entity: Cap = None
    institution: Cap = None
    individual: Cap = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k in PARTICIPANT_TYPES if (v := getattr(self, k)) is not None}


class _Instrument(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An ``[[instrument]]`` table as written (amounts and percentages still text)."""

    symbol: Annotated[str, msgspec.Meta(pattern=SYMBOL, description="1-16 letters/digits")]
    name: str = ""
    tick: Money = "0.01"
    lot: Quantity = 1
    band_pct: Rate = "10"
    min_qty: Quantity = 1
    max_qty: Quantity = 99_999
    reference_price: Money
    eligible: tuple[ParticipantType, ...] = typing.get_args(ParticipantType)
    fee_buy: Rate = "0"
    fee_sell: Rate = "0"
    t1_resale: bool = False
    holding_limits: PerParticipantType = msgspec.field(default_factory=PerParticipantType)
    vintages: tuple[Vintage, ...] = ()
    sessions: tuple[SessionPair, ...] | None = None  # None: the calendar's
    block_min_qty: Quantity = 100_000
    block_band_pct: Rate = "30"
    block_sessions: tuple[SessionPair, ...] = (("13:00", "15:00"),)


class _Calendar(msgspec.Struct, forbid_unknown_fields=True):
    utc_offset_minutes: Annotated[int, bounded(UTC_OFFSET_MINUTES)] = 480
    weekdays: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    sessions: tuple[SessionPair, ...] = (("10:30", "11:30"), ("13:00", "15:00"))
    holidays: tuple[Holiday, ...] = ()


class _Auction(msgspec.Struct, forbid_unknown_fields=True):
    bidder_caps: PerParticipantType = msgspec.field(default_factory=lambda: PerParticipantType(covered_entity=100_000, institution=50_000))


class _MarketFile(msgspec.Struct):
    """The market's tables; the gateway's tables of the same file are ``gateway.settings``'."""

    calendar: _Calendar = msgspec.field(default_factory=_Calendar)
    auction: _Auction = msgspec.field(default_factory=_Auction)
    instrument: tuple[_Instrument, ...] = ()
    retention: RetentionSpec = msgspec.field(default_factory=RetentionSpec)


def _instrument(raw: _Instrument) -> InstrumentSpec:
    """The checks msgspec cannot express: decimals, times of day, and the fields together."""
    where = f"instrument {raw.symbol}"
    spec = InstrumentSpec(
        symbol=raw.symbol,
        name=raw.name,
        tick=money(raw.tick, f"{where}.tick"),
        lot=raw.lot,
        band_bp=_scaled(raw.band_pct, 2, f"{where}.band_pct"),
        min_qty=raw.min_qty,
        max_qty=raw.max_qty,
        reference_price=money(raw.reference_price, f"{where}.reference_price"),
        eligible=raw.eligible,
        fee_buy_e8=_scaled(raw.fee_buy, 8, f"{where}.fee_buy"),
        fee_sell_e8=_scaled(raw.fee_sell, 8, f"{where}.fee_sell"),
        t1_resale=raw.t1_resale,
        holding_limits=raw.holding_limits.as_dict(),
        vintages=raw.vintages,
        sessions=_sessions(raw.sessions, f"{where}.sessions") if raw.sessions is not None else (),
        block_min_qty=raw.block_min_qty,
        block_band_bp=_scaled(raw.block_band_pct, 2, f"{where}.block_band_pct"),
        block_sessions=_sessions(raw.block_sessions, f"{where}.block_sessions"),
    )
    if spec.reference_price % spec.tick:
        raise ConfigError(f"{where}: reference_price {format_fen(spec.reference_price)} is not on the tick {format_fen(spec.tick)}")
    if spec.min_qty > spec.max_qty:
        raise ConfigError(f"{where}: need min_qty <= max_qty")
    if not 0 < spec.band_bp < 10_000 or not 0 < spec.block_band_bp < 10_000:
        raise ConfigError(f"{where}: band percentages must be between 0 and 100")
    if not 0 <= spec.fee_buy_e8 < 10**8 or not 0 <= spec.fee_sell_e8 < 10**8:
        raise ConfigError(f"{where}: fee rates must be in [0, 1)")
    return spec


def _market_where(data: Any) -> Callable[[list[Segment]], str]:
    """Name an instrument by its symbol once it has a valid one (``instrument SHEA.lot``)."""
    tables = data.get("instrument") if isinstance(data, dict) else None

    def where(path: list[Segment]) -> str:
        if len(path) >= 2 and path[0] == "instrument" and isinstance(path[1], int) and isinstance(tables, list):
            table = tables[path[1]] if path[1] < len(tables) else None
            symbol = table.get("symbol") if isinstance(table, dict) else None
            if isinstance(symbol, str) and re.match(SYMBOL, symbol):
                return path_text([f"instrument {symbol}", *path[2:]])
        return path_text(path)

    return where


def parse_market(data: dict[str, Any]) -> MarketConfig:
    """Build a MarketConfig from the parsed TOML document (tables ``calendar``, ``auction``,
    ``instrument``, ``retention``; other tables are the gateway's)."""
    doc = convert(data, _MarketFile, ConfigError, where=_market_where(data))
    if not doc.instrument:
        raise ConfigError("at least one [[instrument]] table is required")
    instruments: dict[str, InstrumentSpec] = {}
    for raw in doc.instrument:
        if raw.symbol in instruments:
            raise ConfigError(f"instrument {raw.symbol} is defined twice")
        instruments[raw.symbol] = _instrument(raw)
    cal = doc.calendar
    calendar = CalendarSpec(
        utc_offset_s=cal.utc_offset_minutes * 60,
        weekdays=frozenset(WEEKDAYS.index(d) for d in cal.weekdays),
        sessions=_sessions(cal.sessions, "calendar.sessions"),
        holidays=frozenset(d.isoformat() for d in cal.holidays),
    )
    return MarketConfig(instruments=instruments, calendar=calendar, bidder_caps=doc.auction.bidder_caps.as_dict(), retention=doc.retention)


def load_market_text(text: str) -> MarketConfig:
    """Parse TOML text (the caller read the file)."""
    try:
        return parse_market(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
