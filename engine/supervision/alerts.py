"""The surveillance alert: what an operator reads on the ``surveillance`` channel."""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["low", "medium", "high"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")
Detector = Literal["wash_trade", "layering", "marking_close", "price_move", "large_holder", "order_to_trade", "message_rate"]
DETECTORS: tuple[Detector, ...] = (
    "wash_trade",
    "layering",
    "marking_close",
    "price_move",
    "large_holder",
    "order_to_trade",
    "message_rate",
)
MAX_EVIDENCE_IDS = 50  # order/trade ids kept per alert (the first ones)


class Alert(msgspec.Struct, kw_only=True):
    """One finding. ``alert_id`` counts from 1 in journal order, so the same journal gives
    the same ids. ``seq``/``ts`` are those of the command whose events raised it;
    ``figures`` are integers (fen, tonnes, bp, counts: the key says which)."""

    alert_id: int
    detector: Detector
    severity: Severity
    trading_date: str
    instrument: str  # "" when not about one instrument
    accounts: list[str]
    members: list[str]
    summary: str
    order_ids: list[int] = []
    trade_ids: list[int] = []
    figures: dict[str, int] = {}
    seq: int = 0
    ts: int = 0
    acked: bool = False
    ack_seq: int = 0
    ack_ts: int = 0
    ack_operator: str = ""
    ack_note: str = ""
