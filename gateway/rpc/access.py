"""Access: API keys and operator identities (admin methods), the login checks after the
secret, and closing the sessions of keys that stopped being usable.

Rights (docs/operations.md, Access): only the ``admin`` role manages keys, operators and
members. Secrets are generated here (``secrets.token_urlsafe``), hashed with scrypt on the
admin hashing lane and journaled only as hashes; the reply shows the secret once.

``close_unusable`` is the one place sessions are cut off for their key: it runs when a
revocation or rotation is durable (at once, on the gateway that took it) and on every access
sweep (``Gateway._access_sweep``, each ``tick_s``, on every gateway: expiry, the end of a
rotation's grace period, a revocation another gateway of a cluster took): each affected
session loses its rights immediately (so nothing more is served while the close frame goes
out) and is closed with 1008. ``refresh_roles`` is the same for an operator's role: a role
change applies to that identity's live sessions at once on the gateway that took it, on the
next sweep everywhere else.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from carbonx.engine import reasons as R
from carbonx.engine.keys import ApiKey, address_allowed
from carbonx.engine.schema import Event, KeyCreate, KeyRevoke, KeyRotate, KeyUpdate, OperatorCreate, OperatorRoleSet, OperatorSetRole
from carbonx.gateway.audit import read_entries
from carbonx.gateway.logins import Busy
from carbonx.gateway.passwords import hash_secret
from carbonx.gateway.protocol.access import (
    AuditListParams,
    KeyCreateParams,
    KeyListParams,
    KeyRefParams,
    KeyRotateParams,
    OperatorCreateParams,
    OperatorRoleParams,
    key_view,
)
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import NoParams
from carbonx.gateway.rpc.call import Call, first
from carbonx.gateway.rpc.registry import method

if TYPE_CHECKING:
    from carbonx.gateway.app import Gateway

SECRET_BYTES = 32  # token_urlsafe(32): 43 characters, 256 bits


def login_failure(key: ApiKey, now: int, used: str, ip: str) -> tuple[str, str, str] | None:
    """(reason, message, field) if a login with ``key`` (secret hash ``used`` matched) from
    ``ip`` must be refused although the secret was right: revoked, expired (or a rotated-out
    secret past its grace period), or an address outside the allow-list."""
    failure = key.usable(now, used)
    if failure == R.KEY_REVOKED:
        return R.KEY_REVOKED, f"key {key.key_id} was revoked", "key_id"
    if failure is not None:
        return R.KEY_EXPIRED, f"key {key.key_id} has expired (or its previous secret's grace period is over)", "key_id"
    if not address_allowed(key.allow, ip):
        return R.ADDRESS_NOT_ALLOWED, f"key {key.key_id} may not be used from {ip or 'this address'}", "key_id"
    return None


def close_unusable(gw: Gateway, now: int, key_id: str | None = None) -> int:
    """Cut off every session whose key is no longer usable at ``now`` (only ``key_id``'s, if
    given). Returns how many were closed."""
    closed = 0
    for s in list(gw.registry.sessions):
        if not s.key_id or (key_id is not None and s.key_id != key_id) or s.connection is None:
            continue
        key = gw.engine.keys.get(s.key_id)
        if key is None:  # the bootstrap operator: configuration, not an engine key
            continue
        failure = key.usable(now, s.key_hash)
        if failure is None:
            continue
        why = "revoked" if failure == R.KEY_REVOKED else "expired (or its previous secret's grace period ended)"
        s.scopes, s.role, s.key_id = frozenset(), "", ""  # no rights left while the close goes out
        gw.connections.close_later(s, 1008, f"key {key.key_id} {why}")
        closed += 1
    return closed


def refresh_roles(gw: Gateway, identity: str | None = None) -> int:
    """Give each live operator session (only ``identity``'s, if given) its identity's role as
    the engine has it now. Returns how many sessions changed role."""
    changed = 0
    operators, keys = gw.engine.operators, gw.engine.keys
    for s in gw.registry.sessions:
        if not s.operator or not s.role or (identity is not None and s.identity != identity):
            continue  # not an operator, or a session being closed (rights emptied)
        if s.key_id not in keys:
            continue  # the bootstrap operator (configuration, not an identity): always admin
        op = operators.get(s.identity)
        if op is not None and op.role != s.role:
            s.role = op.role
            changed += 1
    return changed


async def _hash(call: Call, secret: str) -> str:
    try:
        return await call.gw.logins[True].run(lambda: hash_secret(secret))
    except Busy as busy:
        raise RpcError.business(R.RATE_LIMITED, str(busy), retry_after_ms=1000) from None


def _new_key_id(call: Call, wanted: str | None, prefix: str) -> str:
    op = call.gw.settings.operator
    if wanted is not None and op is not None and wanted == op.key_id:
        raise RpcError.business(R.ALREADY_EXISTS, f"key id {wanted!r} is in use (the bootstrap operator's)", "key_id")
    return wanted or f"{prefix}-{secrets.token_hex(6)}"


def _key_reply(events: list[Event], secret: str | None) -> dict[str, Any]:
    ev = first(events, KeyUpdate)
    out = {
        "key_id": ev.key_id,
        "member": ev.member or None,
        "operator": ev.operator or None,
        "label": ev.label,
        "scopes": ev.scopes,
        "allow": ev.allow,
        "expires_ts": ev.expires_ts or None,
        "state": ev.state,
        "grace_until": ev.grace_until or None,
        "seq": ev.seq,
    }
    if secret is not None:
        out["secret"] = secret  # shown once: only its hash is kept
    return out


@method("admin.key.create", KeyCreateParams, "operator", role="admin")
async def key_create(call: Call, p: KeyCreateParams) -> None:
    """A new key for a member (scopes default to read and trade) or an operator identity."""
    key_id = _new_key_id(call, p.key_id, "k")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    secret_hash = await _hash(call, secret)
    scopes = list(dict.fromkeys(p.scopes)) if p.scopes is not None else (["read", "trade"] if p.member else [])
    if p.scopes is not None and len(scopes) != len(p.scopes):
        raise RpcError.business(R.INVALID_KEY, "scopes must be distinct", "scopes")
    cmd = KeyCreate(
        ts=call.recv_ns,
        key_id=key_id,
        secret_hash=secret_hash,
        member=p.member or "",
        operator=p.operator or "",
        label=p.label,
        scopes=list(scopes),
        allow=list(p.allow),
        expires_ts=p.expires_ts or 0,
    )
    call.command(cmd, lambda events: _key_reply(events, secret))


@method("admin.key.rotate", KeyRotateParams, "operator", role="admin")
async def key_rotate(call: Call, p: KeyRotateParams) -> None:
    """A new secret (in the reply); the old one works ``grace_s`` more seconds. Sessions on the
    old secret are closed when the grace period ends (at once with ``grace_s`` 0)."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    secret_hash = await _hash(call, secret)
    gw = call.gw

    def build(events: list[Event]) -> dict[str, Any]:
        close_unusable(gw, events[0].ts, p.key_id)
        return _key_reply(events, secret)

    call.command(KeyRotate(ts=call.recv_ns, key_id=p.key_id, secret_hash=secret_hash, grace_ns=p.grace_s * 10**9), build)


@method("admin.key.revoke", KeyRefParams, "operator", role="admin")
def key_revoke(call: Call, p: KeyRefParams) -> None:
    """The key stops working; its open sessions are closed (1008) as soon as the revocation is durable."""
    gw = call.gw

    def build(events: list[Event]) -> dict[str, Any]:
        reply = _key_reply(events, None)
        reply["sessions_closed"] = close_unusable(gw, events[0].ts, p.key_id)
        return reply

    call.command(KeyRevoke(ts=call.recv_ns, key_id=p.key_id), build)


@method("admin.key.list", KeyListParams, "operator", role="admin")
def key_list(call: Call, p: KeyListParams) -> None:
    gw, now = call.gw, call.recv_ns
    keys = gw.engine.keys_of(member=p.member or "", operator=p.operator or "")
    call.read({"keys": [key_view(k, now, gw.key_last_used.get(k.key_id)) for k in keys]})


@method("admin.operator.create", OperatorCreateParams, "operator", role="admin")
async def operator_create(call: Call, p: OperatorCreateParams) -> None:
    """A named operator identity with a role, and its first key (secret shown once)."""
    key_id = _new_key_id(call, None, f"op-{p.operator}"[:50])
    secret = secrets.token_urlsafe(SECRET_BYTES)
    secret_hash = await _hash(call, secret)
    cmd = OperatorCreate(
        ts=call.recv_ns,
        operator=p.operator,
        role=p.role,
        key_id=key_id,
        secret_hash=secret_hash,
        label=p.label,
        allow=list(p.allow),
        expires_ts=p.expires_ts or 0,
    )
    call.command(cmd, lambda events: _key_reply(events, secret) | {"role": p.role})


@method("admin.operator.role", OperatorRoleParams, "operator", role="admin")
def operator_role(call: Call, p: OperatorRoleParams) -> None:
    """Another role for an identity: its live sessions on this gateway get it at once, on the
    other gateways of a cluster at their next access sweep (``refresh_roles``)."""
    gw = call.gw

    def build(events: list[Event]) -> dict[str, Any]:
        ev = first(events, OperatorRoleSet)
        changed = refresh_roles(gw, ev.operator)
        return {"operator": ev.operator, "role": ev.role, "previous": ev.previous, "sessions_changed": changed}

    call.command(OperatorSetRole(ts=call.recv_ns, operator=p.operator, role=p.role), build)


@method("admin.audit.list", AuditListParams, "operator", role="viewer")
async def audit_list(call: Call, p: AuditListParams) -> None:
    """The audit log, newest last (gateway/audit.py): any role may read who did what."""
    audit = call.gw.audit
    if audit is None:
        raise RpcError.business(R.INVALID_STATE, "this gateway keeps no audit log")

    def keep(e: dict[str, Any]) -> bool:
        return (
            (e.get("ts") or 0) >= p.since_ts
            and (p.operator is None or e.get("identity") == p.operator)
            and (p.method is None or e.get("method") == p.method)
        )

    entries = await asyncio.get_running_loop().run_in_executor(None, read_entries, audit.path, keep, p.limit)
    call.reply({"entries": entries})


@method("admin.operator.list", NoParams, "operator", role="admin")
def operator_list(call: Call, p: NoParams) -> None:
    eng = call.gw.engine
    out = [
        {"operator": o.operator, "role": o.role, "created_ts": o.created_ts, "keys": [k.key_id for k in eng.keys_of(operator=o.operator)]}
        for o in sorted(eng.operators.values(), key=lambda o: o.operator)
    ]
    boot = call.gw.settings.operator
    if boot is not None:
        out.insert(0, {"operator": boot.key_id, "role": "admin", "created_ts": None, "keys": [boot.key_id], "bootstrap": True})
    call.read({"operators": out})
