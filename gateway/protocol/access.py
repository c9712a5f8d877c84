"""Params of the access methods (API keys, operator identities, the audit log) and the key view.

Wire values: times are integer ns since the Unix epoch (``expires_ts``, ``since_ts``), a
grace period is seconds (``grace_s``); key ids, member and operator ids are the same 1-64
character ids as elsewhere. Secrets never appear in params: the server generates them and
shows each once, in the reply of ``admin.key.create``, ``admin.key.rotate`` and
``admin.operator.create``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from carbonx.engine import ranges
from carbonx.engine.keys import MAX_ALLOW, MAX_LABEL, ApiKey
from carbonx.engine.schema import Role, Scope
from carbonx.gateway.protocol.params import AccountId, Params, Ts

Label = Annotated[str, msgspec.Meta(max_length=MAX_LABEL)]
Cidr = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AllowList = Annotated[list[Cidr], msgspec.Meta(max_length=MAX_ALLOW)]
GRACE_MAX_S = ranges.GRACE.hi // 10**9


class KeyCreateParams(Params):
    """Exactly one of ``member`` / ``operator``; ``key_id`` is generated when absent."""

    member: AccountId | None = None
    operator: AccountId | None = None
    key_id: AccountId | None = None
    label: Label = ""
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=2)] | None = None  # member keys: default both
    allow: AllowList = msgspec.field(default_factory=list)
    expires_ts: Ts | None = None


class KeyRotateParams(Params):
    key_id: AccountId
    grace_s: Annotated[int, msgspec.Meta(ge=0, le=GRACE_MAX_S)] = 0


class KeyRefParams(Params):
    key_id: AccountId


class KeyListParams(Params):
    member: AccountId | None = None
    operator: AccountId | None = None


class OperatorCreateParams(Params):
    operator: AccountId
    role: Role
    label: Label = ""
    allow: AllowList = msgspec.field(default_factory=list)
    expires_ts: Ts | None = None


class OperatorRoleParams(Params):
    operator: AccountId
    role: Role


class AuditListParams(Params):
    """Newest last; ``limit`` most recent entries matching the filters."""

    since_ts: Ts = 0
    operator: AccountId | None = None
    method: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


def key_view(key: ApiKey, now: int, last_used: int | None) -> dict[str, Any]:
    """An API key as ``admin.key.list`` shows it (never a hash). ``state``: active | revoked |
    expired; ``grace_until``: when a rotated-out secret stops working (null: none);
    ``last_used``: the last login on this gateway since it started (null: none)."""
    failure = key.usable(now)
    return {
        "key_id": key.key_id,
        "member": key.member or None,
        "operator": key.operator or None,
        "label": key.label,
        "scopes": list(key.scopes),
        "allow": list(key.allow),
        "expires_ts": key.expires_ts or None,
        "created_ts": key.created_ts or None,
        "rotated_ts": key.rotated_ts or None,
        "revoked_ts": key.revoked_ts or None,
        "grace_until": key.previous_until if key.previous_hash and now < key.previous_until else None,
        "state": "active" if failure is None else ("revoked" if key.revoked_ts else "expired"),
        "last_used": last_used,
    }
