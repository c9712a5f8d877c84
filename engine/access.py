"""Operator commands on access: API keys (create, rotate, revoke) and operator identities.

Each handler checks everything first and changes nothing on a reject (like every rule
module). Secrets arrive only as salted hashes; the events (``KeyUpdate``,
``OperatorCreated``) never carry them. The gateway closes a revoked key's sessions when the
``KeyUpdate`` (change ``revoked``) is durable, and sweeps sessions of expired keys and of
rotated-out secrets past their grace period (``ApiKey.usable``).
"""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine.checks import valid_id
from carbonx.engine.keys import ROLES, ApiKey, OperatorIdentity, label_failure, parse_allow, scopes_failure
from carbonx.engine.schema import (
    Command,
    KeyCreate,
    KeyRevoke,
    KeyRotate,
    KeyUpdate,
    OperatorCreate,
    OperatorCreated,
    OperatorRoleSet,
    OperatorSetRole,
)
from carbonx.engine.state import ExchangeState, Handler


def key_event(eng: ExchangeState, key: ApiKey, change: str) -> KeyUpdate:
    return KeyUpdate(
        seq=eng.seq,
        ts=eng.ts,
        key_id=key.key_id,
        member=key.member,
        operator=key.operator,
        label=key.label,
        scopes=list(key.scopes),
        allow=list(key.allow),
        expires_ts=key.expires_ts,
        created_ts=key.created_ts,
        state="revoked" if key.revoked_ts else "active",
        change=change,
        grace_until=key.previous_until if key.previous_hash else 0,
    )


def _new_key_failure(
    eng: ExchangeState, cmd: Command, key_id: str, secret_hash: str, label: str, allow: list[str], expires_ts: int
) -> list[str] | None:
    """The normalised allow-list if a new key with these settings may be created; else rejects."""
    if not valid_id(key_id):
        eng.reject(cmd, R.INVALID_KEY, "key_id must be 1-64 printable ASCII, no spaces", "key_id")
        return None
    if key_id in eng.keys:
        eng.reject(cmd, R.ALREADY_EXISTS, f"key id {key_id!r} is in use", "key_id")
        return None
    if not secret_hash:
        eng.reject(cmd, R.INVALID_KEY, "a key needs a secret hash", "secret_hash")
        return None
    failure = label_failure(label)
    if failure is not None:
        eng.reject(cmd, R.INVALID_KEY, failure, "label")
        return None
    parsed = parse_allow(allow)
    if isinstance(parsed, str):
        eng.reject(cmd, R.INVALID_KEY, parsed, "allow")
        return None
    if expires_ts < 0 or (expires_ts and expires_ts <= cmd.ts):
        eng.reject(cmd, R.INVALID_KEY, "expires_ts must be in the future (or 0: never)", "expires_ts")
        return None
    return parsed


def create_key(eng: ExchangeState, cmd: KeyCreate) -> None:
    if bool(cmd.member) == bool(cmd.operator):
        eng.reject(cmd, R.INVALID_KEY, "give exactly one of member or operator", "member")
        return
    if cmd.member and cmd.member not in eng.members:
        eng.reject(cmd, R.UNKNOWN_MEMBER, f"unknown member {cmd.member!r}", "member")
        return
    if cmd.operator and cmd.operator not in eng.operators:
        eng.reject(cmd, R.UNKNOWN_OPERATOR, f"unknown operator {cmd.operator!r}", "operator")
        return
    if cmd.member:
        failure = scopes_failure(cmd.scopes)
        if failure is not None:
            eng.reject(cmd, R.INVALID_KEY, failure, "scopes")
            return
    elif cmd.scopes:
        eng.reject(cmd, R.INVALID_KEY, "an operator key takes its rights from the operator's role: no scopes", "scopes")
        return
    allow = _new_key_failure(eng, cmd, cmd.key_id, cmd.secret_hash, cmd.label, cmd.allow, cmd.expires_ts)
    if allow is None:
        return
    key = ApiKey(
        key_id=cmd.key_id,
        member=cmd.member,
        operator=cmd.operator,
        secret_hash=cmd.secret_hash,
        label=cmd.label,
        scopes=list(cmd.scopes),
        allow=allow,
        expires_ts=cmd.expires_ts,
        created_ts=cmd.ts,
    )
    eng.keys[key.key_id] = key
    eng.out.append(key_event(eng, key, "created"))


def _live_key(eng: ExchangeState, cmd: KeyRotate | KeyRevoke) -> ApiKey | None:
    key = eng.keys.get(cmd.key_id)
    if key is None:
        eng.reject(cmd, R.UNKNOWN_KEY, f"unknown key {cmd.key_id!r}", "key_id")
        return None
    failure = key.usable(cmd.ts)
    if failure is not None:
        eng.reject(cmd, failure, f"key {cmd.key_id!r} is {'revoked' if failure == R.KEY_REVOKED else 'expired'}", "key_id")
        return None
    return key


def rotate_key(eng: ExchangeState, cmd: KeyRotate) -> None:
    """New secret; the current one becomes the previous one for ``grace_ns`` (an older
    previous secret, still in its grace, stops working now)."""
    if cmd.grace_ns < 0:
        eng.reject(cmd, R.INVALID_KEY, "grace_ns must not be negative", "grace_ns")
        return
    if not cmd.secret_hash:
        eng.reject(cmd, R.INVALID_KEY, "a key needs a secret hash", "secret_hash")
        return
    key = _live_key(eng, cmd)
    if key is None:
        return
    if cmd.grace_ns:
        key.previous_hash, key.previous_until = key.secret_hash, cmd.ts + cmd.grace_ns
    else:
        key.previous_hash, key.previous_until = "", 0
    key.secret_hash = cmd.secret_hash
    key.rotated_ts = cmd.ts
    eng.out.append(key_event(eng, key, "rotated"))


def revoke_key(eng: ExchangeState, cmd: KeyRevoke) -> None:
    key = eng.keys.get(cmd.key_id)
    if key is None:
        eng.reject(cmd, R.UNKNOWN_KEY, f"unknown key {cmd.key_id!r}", "key_id")
        return
    if key.revoked_ts:
        eng.reject(cmd, R.KEY_REVOKED, f"key {cmd.key_id!r} is already revoked", "key_id")
        return
    key.revoked_ts = cmd.ts
    key.previous_hash, key.previous_until = "", 0
    eng.out.append(key_event(eng, key, "revoked"))


def create_operator(eng: ExchangeState, cmd: OperatorCreate) -> None:
    if not valid_id(cmd.operator):
        eng.reject(cmd, R.INVALID_KEY, "operator must be 1-64 printable ASCII, no spaces", "operator")
        return
    if cmd.operator in eng.operators:
        eng.reject(cmd, R.ALREADY_EXISTS, f"operator {cmd.operator!r} exists", "operator")
        return
    if cmd.role not in ROLES:
        eng.reject(cmd, R.INVALID_KEY, f"role must be one of {', '.join(ROLES)}", "role")
        return
    allow = _new_key_failure(eng, cmd, cmd.key_id, cmd.secret_hash, cmd.label, cmd.allow, cmd.expires_ts)
    if allow is None:
        return
    eng.operators[cmd.operator] = OperatorIdentity(operator=cmd.operator, role=cmd.role, created_ts=cmd.ts)
    key = ApiKey(
        key_id=cmd.key_id,
        operator=cmd.operator,
        secret_hash=cmd.secret_hash,
        label=cmd.label,
        allow=allow,
        expires_ts=cmd.expires_ts,
        created_ts=cmd.ts,
    )
    eng.keys[key.key_id] = key
    eng.out.append(OperatorCreated(seq=eng.seq, ts=eng.ts, operator=cmd.operator, role=cmd.role, key_id=cmd.key_id))
    eng.out.append(key_event(eng, key, "created"))


def set_operator_role(eng: ExchangeState, cmd: OperatorSetRole) -> None:
    """Another role for an existing identity (the same role again is accepted: nothing changes
    but the event says so). Its keys stay as they are; the gateway gives their live sessions
    the new role."""
    op = eng.operators.get(cmd.operator)
    if op is None:
        eng.reject(cmd, R.UNKNOWN_OPERATOR, f"no operator {cmd.operator!r}", "operator")
        return
    if cmd.role not in ROLES:
        eng.reject(cmd, R.INVALID_KEY, f"role must be one of {', '.join(ROLES)}", "role")
        return
    previous, op.role = op.role, cmd.role
    eng.out.append(OperatorRoleSet(seq=eng.seq, ts=eng.ts, operator=cmd.operator, role=cmd.role, previous=previous))


HANDLERS: dict[type, Handler] = {
    KeyCreate: create_key,
    KeyRotate: rotate_key,
    KeyRevoke: revoke_key,
    OperatorCreate: create_operator,
    OperatorSetRole: set_operator_role,
}
