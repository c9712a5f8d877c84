"""Connections (stage 1 of the data path): listeners, the socket loop, admission, abuse handling.

``Connections.listen`` starts a websockets listener on ``protocol.PATH``; each connection is
admitted by the ``ConnectionRegistry`` (``sessions.py``), watched by a login timeout, and
read frame by frame: ``on_frame`` charges the rate budgets, decodes the envelope
(``protocol.codec``), finds the method (``rpc.registry``), checks access, decodes the params
and calls the handler. A connection that keeps sending what is refused (rate limits,
malformed requests) is closed with 1008.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response
from websockets.typing import Subprotocol

from carbonx.engine import reasons as R
from carbonx.engine.reasons import AUDIT_UNAVAILABLE
from carbonx.engine.schema import CancelAll
from carbonx.gateway.audit import AuditUnavailable, redact
from carbonx.gateway.inbound import InboundConnection
from carbonx.gateway.protocol import codec as codecs
from carbonx.gateway.protocol import errors
from carbonx.gateway.protocol.errors import InvalidRequest, RpcError
from carbonx.gateway.protocol.names import MSGPACK_SUBPROTOCOL, PATH
from carbonx.gateway.rpc import Call, check_access, lookup
from carbonx.gateway.rpc.batch import BatchReply
from carbonx.gateway.sessions import Refused, Session, address_key, peer_ip
from carbonx.gateway.tls import ReloadableTls

if TYPE_CHECKING:
    from carbonx.gateway.app import Gateway

log = logging.getLogger("carbonx.gateway")

_ABUSE_REASON = "too many rejected requests (rate limit or malformed input)"  # the 1008 close after max_violations

# Admin-listener methods not written to the audit log (liveness only: no state, no data).
UNAUDITED = frozenset({"ping"})


def audited(session: Session, method: str, allowed: bool) -> bool:
    """Whether an admin-listener request goes to the audit log: every call of a logged-in
    operator and every login attempt, except ``ping`` and requests refused by the request
    rate limit (nothing is done for them, and auditing them would let a flood of refused
    frames, or of anonymous calls, grow the log on disk)."""
    return allowed and (session.operator or method == "session.login") and method not in UNAUDITED


def audit_params(codec: codecs.Codec, req: codecs.Request) -> Any:
    """The request's params as plain values for the audit log (None if absent or undecodable)."""
    if req.params is msgspec.UNSET:
        return None
    try:
        raw = bytes(req.params)
        return msgspec.msgpack.decode(raw) if codec.binary else msgspec.json.decode(raw)
    except (msgspec.DecodeError, TypeError, ValueError):
        return None


# Errors that say the request itself was malformed: each counts against max_violations.
_MALFORMED = frozenset({errors.PARSE_ERROR, errors.INVALID_REQUEST, errors.METHOD_NOT_FOUND, errors.INVALID_PARAMS})


def _select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """MessagePack if asked for; plain JSON (no subprotocol) otherwise."""
    return Subprotocol(MSGPACK_SUBPROTOCOL) if MSGPACK_SUBPROTOCOL in offered else None


def _only_v1(connection: ServerConnection, request: HttpRequest) -> Response | None:
    if request.path.split("?", 1)[0] != PATH:
        return connection.respond(404, f"carbonx speaks WebSocket on {PATH}\n")
    return None


class Connections:
    """The listeners and every connection's read loop, for one Gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._closers: set[asyncio.Task[None]] = set()

    def _ssl(self) -> ssl.SSLContext | None:
        """The listeners' one TLS context (``gw.tls``, reloaded on SIGHUP), made on first use."""
        server = self.gw.settings.server
        if not server.tls_cert:
            return None
        if self.gw.tls is None:
            self.gw.tls = ReloadableTls(server.tls_cert, server.tls_key)
        return self.gw.tls.context

    async def listen(self, host: str, port: int, admin: bool) -> str:
        """Start one listener; returns its ws(s):// URL with the actual port."""
        gw = self.gw
        server_settings = gw.settings.server
        tls = self._ssl()

        async def handler(ws: ServerConnection) -> None:
            await self.serve(ws, admin)

        server = await serve(
            handler,
            host,
            port,
            process_request=_only_v1,
            create_connection=InboundConnection,
            select_subprotocol=_select_subprotocol,
            subprotocols=[Subprotocol(MSGPACK_SUBPROTOCOL)],
            max_size=gw.limits.max_frame_bytes,
            max_queue=16,
            compression="deflate" if server_settings.compression else None,
            ping_interval=server_settings.keepalive_s or None,
            ping_timeout=server_settings.keepalive_s or None,
            close_timeout=5,
            ssl=tls,
        )
        gw.servers.append(server)
        bound = server.sockets[0].getsockname()
        return f"{'wss' if tls else 'ws'}://{host}:{bound[1]}{PATH}"

    async def serve(self, ws: ServerConnection, admin: bool) -> None:
        """One connection, from admission to disconnect."""
        gw = self.gw
        sock = ws.transport.get_extra_info("socket")
        if sock is not None and gw.limits.socket_send_buffer:  # so the slow-consumer guard sees backlog early
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, gw.limits.socket_send_buffer)
        session = Session(
            gw.limits,
            admin=admin,
            binary=ws.subprotocol == MSGPACK_SUBPROTOCOL,
            connection=ws,
            address=address_key(ws.remote_address),
            ip=peer_ip(ws.remote_address),
        )
        if gw.closing:
            await ws.close(1001, "server shutting down")
            return
        try:
            victim = gw.registry.admit(session)
        except Refused as refused:
            await ws.close(1013, str(refused))
            return
        if victim is not None and victim.connection is not None:
            self.close_later(victim, 1013, "anonymous connections are full: log in to keep a connection")
        self.arm_login_timeout(session)
        codec = codecs.MSGPACK if session.binary else codecs.JSON
        inbound = ws if isinstance(ws, InboundConnection) else None
        try:
            while True:
                if inbound is not None and inbound.on_message is None:  # frames queued before now are read first, in order
                    inbound.start_direct(functools.partial(self._direct, session, codec, inbound))
                # Once messages go to ``_direct``, this only returns for what websockets must refuse itself.
                frame = await ws.recv()  # str for a text frame (websockets closes with 1007 if it is not UTF-8), bytes for binary
                result = self.on_frame(session, codec, frame)
                if result is not None:
                    await result
                if session.abusive:
                    gw.abuse_disconnects += 1
                    await ws.close(1008, _ABUSE_REASON)
                    break
        except ConnectionClosed:
            pass
        finally:
            if inbound is not None:
                inbound.stopped = True
                await inbound.settled()  # an async method still running finishes before the session goes
            self.disconnect(session)

    def _direct(self, session: Session, codec: codecs.Codec, inbound: InboundConnection, frame: str | bytes) -> Awaitable[None] | None:
        """One message, straight from the socket (``InboundConnection``): as the read loop would
        handle it, closing an abusive connection with 1008."""
        result = self.on_frame(session, codec, frame)
        if result is not None:
            return self._then_check(session, inbound, result)
        if session.abusive:
            self._abusive(session, inbound)
        return None

    async def _then_check(self, session: Session, inbound: InboundConnection, pending: Awaitable[None]) -> None:
        await pending
        if session.abusive:
            self._abusive(session, inbound)

    def _abusive(self, session: Session, inbound: InboundConnection) -> None:
        if not inbound.stopped:
            inbound.stopped = True
            self.gw.abuse_disconnects += 1
            self.close_later(session, 1008, _ABUSE_REASON)

    def arm_login_timeout(self, session: Session) -> None:
        """Check ``login_timeout_s`` from now that the connection has logged in (see
        ``_login_deadline``)."""
        if session.login_timer is not None:
            session.login_timer.cancel()
        session.login_timer = asyncio.get_running_loop().call_later(self.gw.limits.login_timeout_s, self._login_deadline, session)

    def _login_deadline(self, session: Session) -> None:
        """Close a connection still anonymous after ``login_timeout_s`` (1008). On the trading
        listener with public market data, an anonymous connection holding subscriptions is a
        market-data subscriber: it stays (counted in the anonymous budget) and is checked again
        every ``login_timeout_s``."""
        gw = self.gw
        session.login_timer = None
        if session.authenticated or session not in gw.registry.sessions or session.connection is None:
            return
        if not session.admin and not gw.settings.server.market_data_requires_login and session.subscriptions:
            self.arm_login_timeout(session)
            return
        gw.login_timeouts += 1
        reason = f"login timeout: not logged in within {gw.limits.login_timeout_s:g} s"
        if not session.admin and not gw.settings.server.market_data_requires_login:
            reason += " (or subscribe to market data)"
        self.close_later(session, 1008, reason)

    def close_later(self, session: Session, code: int, reason: str) -> None:
        """Close another connection than the one being handled (its own handler cleans up)."""
        if session.connection is None:
            return
        task = asyncio.get_running_loop().create_task(session.connection.close(code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def disconnect(self, session: Session) -> None:
        if session.login_timer is not None:
            session.login_timer.cancel()
            session.login_timer = None
        self.cancel_on_disconnect(session)
        self.gw.market.drop(session)
        self.gw.registry.drop(session)

    def cancel_on_disconnect(self, session: Session) -> None:
        gw = self.gw
        if session.cancel_on_disconnect and session.member is not None and gw.journal_open and gw.fatal is None:
            session.cancel_on_disconnect = False
            gw.seq.submit(CancelAll(ts=time.time_ns(), member=session.member, session=session.session_id))

    def on_frame(self, session: Session, codec: codecs.Codec, frame: str | bytes) -> Awaitable[None] | None:
        """Handle one frame: a request, or a batch of them. Returns an awaitable only for the
        few async methods (the read loop awaits it before reading the next frame)."""
        gw = self.gw
        recv_ns = time.time_ns()
        allowed = session.allow(False)  # every frame is charged, before anything else (unparsable ones too)
        try:
            req = codec.frame(frame, gw.limits.max_batch)
        except RpcError as err:
            if allowed:  # a refused budget already counted this frame as a violation
                session.refused()
            gw.outbound.send_one(session, codecs.error_reply(err.req_id if isinstance(err, InvalidRequest) else None, err))
            return None
        if type(req) is list:
            return self._batch(session, codec, req, allowed, recv_ns)
        assert isinstance(req, codecs.Request)
        return self._route(session, codec, req, allowed, Call(gw, session, req.id, recv_ns))

    def _batch(
        self, session: Session, codec: codecs.Codec, members: list[codecs.Request | RpcError], allowed: bool, recv_ns: int
    ) -> Awaitable[None] | None:
        """Dispatch a batch's members in order, each charged to the rate budgets as a frame of
        its own (the frame's charge pays for the first); their answers go out together
        (``BatchReply``). Continues asynchronously from the first member that must wait."""
        replies = BatchReply(self.gw.outbound, session)
        for i, member in enumerate(members):
            pending = self._member(session, codec, member, allowed if i == 0 else session.allow(False), recv_ns, replies)
            if session.abusive:  # the read loop closes the connection: the rest is not executed
                return pending
            if pending is not None:
                return self._batch_rest(session, codec, members, i + 1, recv_ns, replies, pending)
        replies.seal()
        return None

    async def _batch_rest(
        self,
        session: Session,
        codec: codecs.Codec,
        members: list[codecs.Request | RpcError],
        start: int,
        recv_ns: int,
        replies: BatchReply,
        pending: Awaitable[None],
    ) -> None:
        await pending
        for member in members[start:]:
            if session.abusive:
                return
            more = self._member(session, codec, member, session.allow(False), recv_ns, replies)
            if more is not None:
                await more
        replies.seal()

    def _member(
        self, session: Session, codec: codecs.Codec, member: codecs.Request | RpcError, allowed: bool, recv_ns: int, replies: BatchReply
    ) -> Awaitable[None] | None:
        """One member of a batch: an undecodable one is answered with its error (always, like a
        frame of its own), a request is dispatched."""
        if isinstance(member, RpcError):
            if allowed:
                session.refused()
            replies.put(replies.slot(), codecs.error_reply(member.req_id if isinstance(member, InvalidRequest) else None, member))
            return None
        return self._route(session, codec, member, allowed, Call(self.gw, session, member.id, recv_ns, replies))

    def _route(self, session: Session, codec: codecs.Codec, req: codecs.Request, allowed: bool, call: Call) -> Awaitable[None] | None:
        """An admin-listener call that is audited goes through ``_audited``; others straight on."""
        if session.admin and self.gw.audit is not None and audited(session, req.method, allowed):
            return self._audited(session, codec, req, call, allowed)
        return self._dispatch(session, codec, req, allowed, call)

    def _dispatch(self, session: Session, codec: codecs.Codec, req: codecs.Request, allowed: bool, call: Call) -> Awaitable[None] | None:
        """Check and run one decoded request: budgets, method, access, params, handler."""
        gw = self.gw
        try:
            if not allowed:
                gw.rate_limited += 1
                raise RpcError.business(R.RATE_LIMITED, "request rate limit exceeded: slow down")
            method = lookup(session, req.method)
            if method.order and not session.allow_order():
                gw.rate_limited += 1
                raise RpcError.business(R.RATE_LIMITED, "order rate limit exceeded: slow down")
            check_access(session, method, gw.settings.server.market_data_requires_login)
            params = codec.params(req, method.params)
            session.well_formed()
            result = method.handler(call, params)
        except RpcError as err:
            if err.code in _MALFORMED:  # unknown method, invalid params: every malformed request counts
                session.refused()
            call.error(err)
            return None
        except Exception:
            log.exception("method %s failed", req.method)
            call.error(RpcError(errors.INTERNAL_ERROR, "internal error"))
            return None
        if result is not None:
            return self._finish(call, result)
        return None

    async def _audited(self, session: Session, codec: codecs.Codec, req: codecs.Request, call: Call, allowed: bool) -> None:
        """An admin-listener call: its request record is made durable first (else the call is
        refused with AUDIT_UNAVAILABLE and nothing is done), then it is dispatched as usual;
        its answer goes out once the result record is durable (``Call.reply``/``error``)."""
        audit = self.gw.audit
        assert audit is not None
        params = audit_params(codec, req)
        record = {
            "kind": "request",
            "id": audit.new_id(),
            "ts": call.recv_ns,
            "identity": session.identity if session.operator else None,
            "role": session.role if session.operator else None,
            "key_id": session.key_id or (params.get("key_id") if isinstance(params, dict) and req.method == "session.login" else None),
            "address": session.ip or session.address,
            "session_id": session.session_id,
            "method": req.method,
            "params": redact(params),
        }
        try:
            await audit.append(record)
        except AuditUnavailable as exc:
            log.error("admin call %s refused: %s", req.method, exc)
            call.error(RpcError.business(AUDIT_UNAVAILABLE, f"not carried out: {exc}"))
            return
        call.audit = record["id"]
        pending = self._dispatch(session, codec, req, allowed, call)
        if pending is not None:
            await pending

    async def _finish(self, call: Call, pending: Awaitable[None]) -> None:
        try:
            await pending
        except RpcError as err:
            call.error(err)
        except Exception:
            log.exception("async method failed")
            call.error(RpcError(errors.INTERNAL_ERROR, "internal error"))
