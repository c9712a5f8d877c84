"""Session methods: log in and out, cancel-on-disconnect, ping, market-data subscriptions."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING

from carbonx.engine import reasons as R
from carbonx.engine.schema import SetCancelOnDisconnect
from carbonx.gateway.logins import Busy, Throttled
from carbonx.gateway.marketdata import ChannelError
from carbonx.gateway.passwords import verify_secret
from carbonx.gateway.protocol.errors import LOGIN_THROTTLED, TOO_MANY_CONNECTIONS, TOO_MANY_SUBSCRIPTIONS, RpcError
from carbonx.gateway.protocol.params import CancelOnDisconnectParams, ChannelsParams, LoginParams, NoParams
from carbonx.gateway.rpc.access import login_failure
from carbonx.gateway.rpc.call import Call
from carbonx.gateway.rpc.registry import method
from carbonx.gateway.sessions import Session

if TYPE_CHECKING:
    from carbonx.gateway.app import Gateway

# Verified against when the key id is unknown, so a wrong key id costs as long as a wrong secret.
_DUMMY_HASH = "scrypt$" + "00" * 16 + "$" + "00" * 32


@method("session.login", LoginParams, "public", listener="both", login=True)
async def login(call: Call, p: LoginParams) -> None:
    """Member keys log in on the trading listener, operator keys (and the bootstrap operator of
    the configuration/environment) on the admin listener. The secret is checked first (scrypt,
    against the key's current secret and, during a rotation's grace period, the previous one);
    only then are revocation, expiry and the allow-list checked, so their specific errors tell
    nothing to someone without the secret."""
    s, gw = call.session, call.gw
    if s.authenticated:
        raise RpcError.business(R.INVALID_STATE, "already logged in on this connection")
    key, hashes, role, identity = None, [], "", ""
    if s.admin:
        op = gw.settings.operator
        if op is not None and hmac.compare_digest(op.key_id.encode(), p.key_id.encode()):
            hashes, role, identity = [op.secret_hash], "admin", op.key_id  # the bootstrap operator: always admin
    if not hashes:
        found = gw.engine.keys.get(p.key_id)
        if found is not None and bool(found.operator) == s.admin:  # member keys trade, operator keys administer
            key, hashes = found, found.hashes_at(call.recv_ns)
            if found.operator:
                identity, role = found.operator, gw.engine.operators[found.operator].role
    secret, matched = p.secret, []

    def check() -> bool:
        for stored in hashes or [_DUMMY_HASH]:
            if verify_secret(secret, stored):
                matched.append(stored)
                return bool(hashes)
        return False

    try:
        ok = await gw.logins[s.admin].verify(p.key_id, s.address, check)
    except Throttled as throttled:
        _login_failed(gw, s)
        raise RpcError.business(
            LOGIN_THROTTLED, str(throttled), retry_after_ms=max(1, int(throttled.retry_after * 1000)), scope=throttled.scope
        ) from None
    except Busy as busy:
        gw.rate_limited += 1
        raise RpcError.business(R.RATE_LIMITED, f"{busy}", retry_after_ms=1000) from None
    if not ok:
        _login_failed(gw, s)
        raise RpcError.business(R.NOT_AUTHENTICATED, "invalid key id or secret", "secret")
    if key is not None:
        failure = login_failure(key, call.recv_ns, matched[0], s.ip)
        if failure is not None:
            _login_failed(gw, s)
            raise RpcError.business(*failure)
    if s.evicted:  # made room for another address's connection while the secret was checked
        raise RpcError.business(TOO_MANY_CONNECTIONS, "this connection was closed to make room for another")
    s.key_id, s.key_hash = p.key_id, matched[0]
    gw.key_last_used[p.key_id] = call.recv_ns
    if s.admin:
        gw.registry.logged_in(s)
        s.operator, s.identity, s.role = True, identity, role
        call.reply(
            {
                "member": None,
                "operator": True,
                "identity": identity,
                "role": role,
                "accounts": [],
                "session_id": s.session_id,
                "heartbeat_s": gw.settings.server.heartbeat_s,
            }
        )
        return
    assert key is not None
    member = key.member
    if not gw.registry.bind_member(s, member):
        raise RpcError.business(
            TOO_MANY_CONNECTIONS, f"member {member} is at its limit of {gw.limits.max_connections_per_member} connections"
        )
    s.scopes = frozenset(key.scopes)
    accounts = gw.engine.accounts_of(member)
    call.reply(
        {
            "member": member,
            "accounts": accounts,
            "scopes": sorted(key.scopes),
            "session_id": s.session_id,
            "heartbeat_s": gw.settings.server.heartbeat_s,
        }
    )


def _login_failed(gw: Gateway, s: Session) -> None:
    s.login_failures += 1
    if s.login_failures >= gw.limits.max_login_failures:
        s.violations = gw.limits.max_violations  # closes the connection after this reply


@method("session.logout", NoParams, "private", listener="both")
def logout(call: Call, p: NoParams) -> None:
    s = call.session
    if s.cancel_on_disconnect and s.member is not None:  # logout is deliberate: orders stay
        call.gw.seq.submit(SetCancelOnDisconnect(ts=call.recv_ns, member=s.member, session=s.session_id, enabled=False))
    s.cancel_on_disconnect = False
    call.gw.market.unsubscribe(s, "orders")
    s.subscriptions.discard("orders")
    call.gw.registry.unbind_member(s)
    s.operator = False
    s.key_id, s.key_hash, s.scopes, s.identity, s.role = "", "", frozenset(), "", ""
    call.gw.registry.logged_out(s)
    call.gw.connections.arm_login_timeout(s)
    call.reply({"logged_out": True})


@method("session.cancel_on_disconnect", CancelOnDisconnectParams, "private", scope="trade")
def cancel_on_disconnect(call: Call, p: CancelOnDisconnectParams) -> None:
    """Journaled (not just a session flag): if the exchange crashes, the restarted
    gateway cancels the orders of every session that had asked for it."""
    member = call.broker()
    call.session.cancel_on_disconnect = p.enabled
    cmd = SetCancelOnDisconnect(ts=call.recv_ns, member=member, session=call.session.session_id, enabled=p.enabled)
    call.command(cmd, lambda events: {"enabled": p.enabled})


@method("ping", NoParams, "public", listener="both")
def ping(call: Call, p: NoParams) -> None:
    call.reply({"ts": time.time_ns()})


@method("subscribe", ChannelsParams, "public", listener="both")
def subscribe(call: Call, p: ChannelsParams) -> None:
    s = call.session
    for name in p.channels:
        try:
            call.gw.market.parse_channel(name)
        except ChannelError as exc:
            raise RpcError.business(exc.reason, str(exc), "channels") from None
        if name == "orders" and not s.authenticated:
            raise RpcError.business(R.NOT_AUTHENTICATED, "the orders channel is private: log in first", "channels")
        if name == "surveillance" and not s.operator:  # alerts name accounts and members
            raise RpcError.business(R.NOT_AUTHORIZED, "the surveillance channel is for operators (admin listener)", "channels")
        if name == "orders" and s.member is not None and "read" not in s.scopes:
            raise RpcError.business(R.NOT_AUTHORIZED, "the orders channel needs a key with the read scope", "channels")
    wanted = s.subscriptions | set(p.channels)
    if len(wanted) > call.gw.limits.max_subscriptions:
        raise RpcError.business(
            TOO_MANY_SUBSCRIPTIONS, f"at most {call.gw.limits.max_subscriptions} subscriptions per connection", "channels"
        )
    s.subscriptions = wanted
    call.reply({"subscribed": sorted(wanted)})
    for name in dict.fromkeys(p.channels):
        call.gw.market.subscribe(s, name)


@method("unsubscribe", ChannelsParams, "public", listener="both")
def unsubscribe(call: Call, p: ChannelsParams) -> None:
    s = call.session
    for name in p.channels:
        if name in s.subscriptions:
            call.gw.market.unsubscribe(s, name)
            s.subscriptions.discard(name)
    call.reply({"subscribed": sorted(s.subscriptions)})
