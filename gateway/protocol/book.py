"""The ``book.*`` channel's checksum, shared by the server (which sends it) and the client (which checks it).

CRC32 (``zlib.crc32``, unsigned) of the UTF-8 string ``"<bids>|<asks>"`` where each side is the
channel's top 10 levels, best first, each written ``<price>:<quantity>`` (price as the wire
decimal string, formatted from integer fen, never a float) and joined by ``,``. An empty book is
``"|"``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

from carbonx.engine.units import format_fen

CHECKSUM_LEVELS: Final = 10

Level = tuple[int, int]  # (price in fen, quantity in tonnes)


def checksum(bids: list[Level], asks: list[Level]) -> int:
    """See the module docstring. Levels are (price fen, quantity), best first."""
    b = ",".join(f"{format_fen(p)}:{q}" for p, q in bids[:CHECKSUM_LEVELS])
    a = ",".join(f"{format_fen(p)}:{q}" for p, q in asks[:CHECKSUM_LEVELS])
    return zlib.crc32(f"{b}|{a}".encode()) & 0xFFFFFFFF


def wire_levels(levels: Iterable[Level]) -> list[list[str | int]]:
    """Levels as the wire writes them: ``[["60.50", 100], ...]``."""
    return [[format_fen(p), q] for p, q in levels]
