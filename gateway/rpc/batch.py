"""``BatchReply``: the answers of one JSON-RPC batch, sent together as one array frame.

A batch's members are dispatched one by one, in order, like frames of their own (so
order-changing calls keep their order); each member that is owed an answer (a request with
an id, or a member that could not be decoded) gets a slot, filled whenever its answer is
ready (at once, or once durable). When the whole batch was dispatched (``seal``) and every
slot is filled, the array goes out in the members' order. A batch of notifications only
gets no reply at all (JSON-RPC 2.0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbonx.gateway.sessions import Session

if TYPE_CHECKING:
    from carbonx.gateway.outbound import Outbound

NO_SLOT = -1  # a notification: it is answered with nothing


class BatchReply:
    """Collects a batch's answers for one session; sends them once all are in."""

    __slots__ = ("missing", "outbound", "sealed", "session", "slots")

    def __init__(self, outbound: Outbound, session: Session) -> None:
        self.outbound = outbound
        self.session = session
        self.slots: list[Any] = []
        self.missing = 0
        self.sealed = False

    def slot(self) -> int:
        """Reserve the next answer's place (in member order); fill it with ``put``."""
        self.slots.append(None)
        self.missing += 1
        return len(self.slots) - 1

    def put(self, index: int, message: dict[str, Any]) -> None:
        """The answer for slot ``index`` (a reply or an error reply)."""
        self.slots[index] = message
        self.missing -= 1
        if self.sealed and not self.missing:
            self._send()

    def seal(self) -> None:
        """Every member was dispatched: send once every slot is filled (at once if they are)."""
        self.sealed = True
        if not self.missing:
            self._send()

    def _send(self) -> None:
        if self.slots:
            self.outbound.send_one(self.session, self.slots)
        self.slots = []
