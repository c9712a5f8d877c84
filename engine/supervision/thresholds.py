"""The ``[surveillance]`` and ``[disclosure]`` tables of the configuration file.

Every number has a range (msgspec ``Meta``: a value outside it is refused with the key and
the range) and a default whose rationale docs/supervision.md gives. Basis points (bp) are
1/10,000: 1000 bp = 10%. Durations are whole seconds (the detectors compare event
timestamps, in ns, against them).
"""

from __future__ import annotations

from typing import Annotated

import msgspec


def _within(lo: int, hi: int) -> msgspec.Meta:
    return msgspec.Meta(ge=lo, le=hi)


Bp = Annotated[int, _within(1, 100_000)]
Tonnes = Annotated[int, _within(1, 10**9)]
Seconds = Annotated[int, _within(1, 86_400)]
Count = Annotated[int, _within(1, 10_000_000)]


class SurveillanceSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Detector thresholds (docs/supervision.md has each one's rationale)."""

    enabled: bool = True
    # wash trades: trades between two accounts of one member, or of one related-party group
    wash_same_member: bool = True  # a broker's clients trading with each other count (low severity)
    wash_min_quantity: Tonnes = 1  # day volume between a pair at which the alert is raised
    # layering / spoofing
    layering_min_quantity: Tonnes = 5_000  # a "large" order
    layering_touch_bp: Bp = 50  # "near the touch": within 0.5% of the best price on its side
    layering_max_life_s: Seconds = 60  # placed and cancelled unfilled within this
    # marking the close
    close_window_s: Seconds = 600  # "late": the last 10 minutes before the day close
    close_move_bp: Bp = 200  # late trades moved the VWAP close by more than 2%
    # abnormal price moves against the day's reference (previous close)
    price_move_bp: Bp = 700  # early warning (medium)
    price_move_high_bp: Bp = 1_000  # MARKET_RULES §2: the ±10% band; stabilising measures (high)
    # concentration and large holders
    large_holder_t: Tonnes = 500_000  # reporting threshold per account and instrument
    # covered entities: allocation + large_holder_t; allocations per account, in tonnes
    allocations: dict[str, Annotated[int, _within(0, 10**9)]] = {}
    # order-to-trade ratio (at the day close) and message rate
    otr_min_orders: Count = 200  # only accounts with at least this many order messages in the day
    otr_max: Annotated[int, _within(1, 1_000_000)] = 50  # order messages per fill above this: alert
    rate_window_s: Seconds = 1
    rate_max: Count = 200  # order messages of one account within one window
    max_alerts: Count = 100_000  # alerts kept in memory (the oldest leave first)


class DisclosureSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What the day report publishes about holders (docs/disclosure.md)."""

    enabled: bool = True
    large_holder_t: Tonnes = 500_000  # published threshold per account and instrument
    holders_public: bool = False  # name the accounts (else they are numbered per report)


def surveillance_problem(spec: SurveillanceSpec) -> str | None:
    """What ties keys of ``[surveillance]`` together (each key's range msgspec checks)."""
    if spec.price_move_bp > spec.price_move_high_bp:
        return "surveillance: need price_move_bp <= price_move_high_bp"
    return None
