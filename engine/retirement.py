"""Retirement (cancellation) of credits and large-event neutrality (MARKET_RULES §6).

State lives in ``Registry`` (part of every engine snapshot).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Registry(msgspec.Struct, kw_only=True):
    next_certificate_id: int = 1


HANDLERS: dict[type, Any] = {}
