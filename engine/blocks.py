"""Block trades (negotiated transfers, MARKET_RULES §4): propose, accept, decline, cancel.

State lives in ``BlockDesk`` (part of every engine snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from engine.engine import Engine


class BlockDesk(msgspec.Struct, kw_only=True):
    next_block_id: int = 1


def on_day_close(eng: Engine) -> None:
    """Proposals not accepted by day close expire (their holds are released)."""


HANDLERS: dict[type, Any] = {}
