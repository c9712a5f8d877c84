"""``Call``: one request being answered, and the helpers every handler shares.

A handler turns its params into an engine command (``call.command``) or a read
(``call.read``); both reply through ``carbonx.gateway.outbound`` once everything they depend
on is durable (``carbonx.gateway.sequencer``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from carbonx.engine import ranges
from carbonx.engine import reasons as R
from carbonx.engine.accounts import Account
from carbonx.engine.schema import CancelAll, CancelOrder, Command, Event, ExecReport, Reject
from carbonx.gateway.protocol import codec, errors, views
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.sessions import Session

if TYPE_CHECKING:
    from carbonx.gateway.app import Gateway

E = TypeVar("E", bound=Event)


class Call:
    """One request being answered: who asked, with which id, when it arrived."""

    __slots__ = ("gw", "recv_ns", "req_id", "session")

    def __init__(self, gw: Gateway, session: Session, req_id: int | str | None, recv_ns: int) -> None:
        self.gw, self.session, self.req_id, self.recv_ns = gw, session, req_id, recv_ns

    def reply(self, result: Any) -> None:
        if self.req_id is not None:
            self.gw.outbound.send_one(self.session, codec.reply(self.req_id, result))

    def error(self, err: RpcError) -> None:
        if self.req_id is not None:
            self.gw.outbound.send_one(self.session, codec.error_reply(self.req_id, err))

    def read(self, result: Any) -> None:
        """Reply with a read result once everything applied before it is durable."""
        self.gw.seq.after_durable(lambda: self.reply(result))

    def command(self, cmd: Command, build: Callable[[list[Event]], Any]) -> int:
        """Submit ``cmd``; reply with ``build(events)`` (or the Reject) once durable.
        Returns the command's seq (known before ``build`` runs)."""
        gw = self.gw
        if gw.closing:
            raise RpcError.business(errors.SHUTTING_DOWN, "the exchange is shutting down")
        failure = ranges.command_failure(cmd)  # the engine's own range check, before a seq is spent
        if failure is not None:
            raise RpcError.business(failure[0], failure[1], failure[2])
        if not gw.storage.ok and not self.session.operator and type(cmd) not in (CancelOrder, CancelAll):
            raise RpcError.business(errors.STORAGE_FULL, f"not accepting new commands: {gw.storage.problem} (cancels still work)")

        def done(events: list[Event]) -> None:
            for ev in events:
                if type(ev) is Reject:
                    self.error(views.reject_error(ev))
                    return
            try:
                self.reply(build(events))
            except RpcError as err:
                self.error(err)

        return gw.seq.submit(cmd, done, self.recv_ns)

    # -- who is asking

    def member(self) -> str | None:
        """The acting member (None for an operator on the admin listener: any account)."""
        return None if self.session.operator else self.session.member

    def broker(self) -> str:
        """The member placing a command (operators do not trade)."""
        if self.session.member is None:
            raise RpcError.business(R.NOT_AUTHORIZED, "operators do not trade; log in as a member")
        return self.session.member

    def account(self, account: str) -> Account:
        """The account, if the acting member may see it (else NOT_AUTHORIZED)."""
        acct = self.gw.engine.account_of(self.member(), account)
        if acct is None:
            raise RpcError.business(R.NOT_AUTHORIZED, f"no account {account!r} for this member", "account")
        return acct


def first(events: list[Event], kind: type[E]) -> E:
    """The first event of ``kind`` (a command's result must contain one)."""
    for ev in events:
        if type(ev) is kind:
            return ev
    raise RpcError(errors.INTERNAL_ERROR, f"internal error: no {kind.__name__} event")


def order_result(events: list[Event]) -> dict[str, Any]:
    """The final execution report of the order the command was about (the first
    report's order; later reports may be for resting orders it traded with)."""
    head = first(events, ExecReport)
    last = head
    for ev in events:
        if type(ev) is ExecReport and ev.order_id == head.order_id:
            last = ev
    return views.exec_report(last)


def pick(ev: object, *names: str) -> dict[str, Any]:
    return {n: getattr(ev, n) for n in names}


def cancel_all(call: Call, cmd: CancelAll) -> None:
    """Mass cancel; the reply's ``seq`` is the command's even when nothing was cancelled
    (the command was journaled and used its sequence number all the same)."""
    seq = 0

    def build(events: list[Event]) -> dict[str, Any]:
        n = sum(1 for ev in events if type(ev) is ExecReport and ev.exec_type == "cancelled")
        return {"cancelled": n, "seq": seq or call.gw.seq.releasing}  # cluster mode: submit returns 0

    seq = call.command(cmd, build)
