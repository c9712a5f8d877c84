"""Conversions between wire decimal strings and the engine's integers.

Prices and money are integer fen (0.01 CNY) inside; decimal strings with at most two
decimals on the wire. Floats never appear: a float on the wire is refused.
"""

from __future__ import annotations

from carbonx.engine import reasons as R


class UnitError(ValueError):
    """A decimal string that is not a valid amount. ``str(exc)`` says why (to append to
    the field name); ``reason`` is the reject reason for a price: INVALID_TICK for more
    than two decimals (off the 0.01 tick), INVALID_PRICE for anything else. Callers
    answer with ``exc.reason``, never by matching the message."""

    def __init__(self, message: str, reason: str = R.INVALID_PRICE) -> None:
        super().__init__(message)
        self.reason = reason


_DIGITS = frozenset("0123456789")


def parse_fen(text: str, *, allow_negative: bool = False) -> int:
    """``"60.5"`` -> 6050. At most 2 decimals, no exponent, no spaces, no float."""
    if not isinstance(text, str):
        raise UnitError('must be a decimal string such as "60.00"')
    s = text
    neg = False
    if s.startswith("-"):
        if not allow_negative:
            raise UnitError("must not be negative")
        neg, s = True, s[1:]
    if not s or len(s) > 20:
        raise UnitError('must be a decimal string such as "60.00"')
    whole, dot, frac = s.partition(".")
    if not whole or not set(whole) <= _DIGITS or (dot and (not frac or not set(frac) <= _DIGITS)):
        raise UnitError('must be a decimal string such as "60.00"')
    if len(frac) > 2:
        raise UnitError("has more than 2 decimals", R.INVALID_TICK)
    value = int(whole) * 100 + int((frac + "00")[:2])
    return -value if neg else value


def format_fen(value: int) -> str:
    """6050 -> ``"60.50"``."""
    sign = "-" if value < 0 else ""
    v = -value if value < 0 else value
    return f"{sign}{v // 100}.{v % 100:02d}"


def parse_decimal_scaled(text: str | int, scale: int) -> int:
    """Exact decimal -> integer scaled by 10**scale (for config rates and percentages)."""
    s = str(text).strip()
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    whole, _, frac = s.partition(".")
    if not (whole or frac) or not set(whole + frac) <= _DIGITS:
        raise UnitError(f"{text!r} is not a decimal number")
    if len(frac) > scale:
        if set(frac[scale:]) - {"0"}:
            raise UnitError(f"{text!r} has more than {scale} decimals", R.INVALID_TICK)
        frac = frac[:scale]
    unit: int = 10**scale
    value = int(whole or "0") * unit + int((frac + "0" * scale)[:scale] or "0")
    return -value if neg else value
