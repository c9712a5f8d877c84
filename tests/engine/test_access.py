"""API keys and operator identities in the engine: create, rotate, revoke, the one usability rule,
allow-lists, and snapshots (format 3, and format-2 snapshots deriving each member's first key)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonx.engine import reasons as R
from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine, EngineSnapshot
from carbonx.engine.keys import ApiKey, address_allowed, parse_allow
from carbonx.engine.schema import (
    KeyCreate,
    KeyRevoke,
    KeyRotate,
    KeyUpdate,
    OperatorCreate,
    OperatorCreated,
    OperatorRoleSet,
    OperatorSetRole,
    Reject,
)
from carbonx.engine.testkit import T0, funded_engine

S = 10**9


@pytest.fixture
def eng(demo_config: MarketConfig) -> Engine:
    return funded_engine(demo_config)


def only_reject(events: list[object]) -> Reject:
    assert len(events) == 1 and type(events[0]) is Reject, events
    return events[0]


def test_a_member_is_created_with_one_key_of_both_scopes(eng: Engine) -> None:
    key = eng.keys["key-M1"]
    assert (key.member, key.scopes, key.allow, key.expires_ts, key.usable(T0)) == ("M1", ["read", "trade"], [], 0, None)
    assert eng.member_of_key("key-M1").member == "M1"  # type: ignore[union-attr]


def test_create_key_normalises_the_allow_list_and_never_emits_the_hash(eng: Engine) -> None:
    (ev,) = eng.apply(KeyCreate(ts=T0, key_id="ro", secret_hash="h1", member="M1", scopes=["read"], allow=["127.0.0.1", "10.1.2.3/8"]))
    assert type(ev) is KeyUpdate and ev.change == "created" and ev.state == "active"
    assert ev.allow == ["127.0.0.1/32", "10.0.0.0/8"] and "h1" not in repr(ev)
    assert [k.key_id for k in eng.keys_of(member="M1")] == ["key-M1", "ro"]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"member": "M1", "operator": "x"}, R.INVALID_KEY, "member"),
        ({"member": "NOPE"}, R.UNKNOWN_MEMBER, "member"),
        ({"operator": "nobody"}, R.UNKNOWN_OPERATOR, "operator"),
        ({"member": "M1", "scopes": []}, R.INVALID_KEY, "scopes"),
        ({"member": "M1", "scopes": ["read", "read"]}, R.INVALID_KEY, "scopes"),
        ({"member": "M1", "scopes": ["admin"]}, R.INVALID_KEY, "scopes"),
        ({"member": "M1", "allow": ["10.0.0.300/8"]}, R.INVALID_KEY, "allow"),
        ({"member": "M1", "expires_ts": T0}, R.INVALID_KEY, "expires_ts"),
        ({"member": "M1", "expires_ts": -5}, R.INVALID_KEY, "expires_ts"),
        ({"member": "M1", "key_id": "key-M2"}, R.ALREADY_EXISTS, "key_id"),
        ({"member": "M1", "key_id": "has space"}, R.INVALID_KEY, "key_id"),
        ({"member": "M1", "label": "x" * 65}, R.INVALID_KEY, "label"),
    ],
)
def test_bad_keys_are_rejected_and_change_nothing(eng: Engine, fields: dict[str, object], reason: str, field: str) -> None:
    before = eng.digest()
    args: dict[str, object] = {"key_id": "k2", "secret_hash": "h", "scopes": ["read"]} | fields
    rej = only_reject(eng.apply(KeyCreate(ts=T0, **args)))  # type: ignore[arg-type]
    assert (rej.reason, rej.field) == (reason, field)
    eng2 = Engine.restore(eng.config, eng.snapshot())
    assert eng2.keys.keys() == eng.keys.keys() and before != eng.digest()  # only the seq moved
    assert "k2" not in eng.keys


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(eng: Engine) -> None:
    (ev,) = eng.apply(KeyRotate(ts=T0 + S, key_id="key-M1", secret_hash="new", grace_ns=5 * S))
    assert ev.change == "rotated" and ev.grace_until == T0 + 6 * S  # type: ignore[union-attr]
    key = eng.keys["key-M1"]
    assert key.hashes_at(T0 + 2 * S) == ["new", "x"] and key.hashes_at(T0 + 6 * S) == ["new"]
    assert key.usable(T0 + 2 * S, "x") is None and key.usable(T0 + 6 * S, "x") == R.KEY_EXPIRED
    assert key.usable(T0 + 6 * S, "new") is None
    eng.apply(KeyRotate(ts=T0 + 3 * S, key_id="key-M1", secret_hash="newer"))  # no grace: both older ones stop
    assert key.hashes_at(T0 + 3 * S) == ["newer"] and key.usable(T0 + 3 * S, "new") == R.KEY_EXPIRED


def test_revoked_and_expired_keys_cannot_be_rotated_and_revoke_is_once(eng: Engine) -> None:
    eng.apply(KeyCreate(ts=T0, key_id="tmp", secret_hash="h", member="M1", scopes=["trade"], expires_ts=T0 + S))
    assert only_reject(eng.apply(KeyRotate(ts=T0 + S, key_id="tmp", secret_hash="n"))).reason == R.KEY_EXPIRED
    assert eng.keys["tmp"].usable(T0 + S - 1) is None
    (ev,) = eng.apply(KeyRevoke(ts=T0, key_id="key-M2"))
    assert ev.state == "revoked" and eng.keys["key-M2"].usable(T0) == R.KEY_REVOKED  # type: ignore[union-attr]
    assert only_reject(eng.apply(KeyRevoke(ts=T0, key_id="key-M2"))).reason == R.KEY_REVOKED
    assert only_reject(eng.apply(KeyRotate(ts=T0, key_id="key-M2", secret_hash="n"))).reason == R.KEY_REVOKED
    assert only_reject(eng.apply(KeyRevoke(ts=T0, key_id="nope"))).reason == R.UNKNOWN_KEY
    rej = only_reject(eng.apply(KeyRotate(ts=T0, key_id="key-M1", secret_hash="n", grace_ns=31 * 86_400 * S)))
    assert (rej.reason, rej.field) == (R.INVALID_KEY, "grace_ns")


def test_operator_identities_have_a_role_and_keys(eng: Engine) -> None:
    evs = eng.apply(OperatorCreate(ts=T0, operator="alice", role="viewer", key_id="alice-1", secret_hash="h"))
    assert [type(e) for e in evs] == [OperatorCreated, KeyUpdate]
    assert eng.operators["alice"].role == "viewer" and eng.keys["alice-1"].operator == "alice"
    assert (
        only_reject(eng.apply(OperatorCreate(ts=T0, operator="alice", role="admin", key_id="a2", secret_hash="h"))).reason
        == R.ALREADY_EXISTS
    )
    assert only_reject(eng.apply(OperatorCreate(ts=T0, operator="bob", role="boss", key_id="b1", secret_hash="h"))).field == "role"  # type: ignore[arg-type]
    assert only_reject(eng.apply(KeyCreate(ts=T0, key_id="a3", secret_hash="h", operator="alice", scopes=["read"]))).field == "scopes"
    eng.apply(KeyCreate(ts=T0, key_id="a3", secret_hash="h", operator="alice"))
    assert [k.key_id for k in eng.keys_of(operator="alice")] == ["a3", "alice-1"]


def test_an_operator_gets_another_role_and_keeps_its_keys(eng: Engine) -> None:
    eng.apply(OperatorCreate(ts=T0, operator="alice", role="viewer", key_id="alice-1", secret_hash="h"))
    (ev,) = eng.apply(OperatorSetRole(ts=T0 + S, operator="alice", role="admin"))
    assert isinstance(ev, OperatorRoleSet) and (ev.operator, ev.role, ev.previous) == ("alice", "admin", "viewer")
    assert eng.operators["alice"].role == "admin" and eng.keys["alice-1"].usable(T0 + 2 * S, "h") is None
    (same,) = eng.apply(OperatorSetRole(ts=T0 + S, operator="alice", role="admin"))  # the same role: accepted, nothing changes
    assert isinstance(same, OperatorRoleSet) and same.previous == "admin"
    assert only_reject(eng.apply(OperatorSetRole(ts=T0, operator="nobody", role="admin"))).reason == R.UNKNOWN_OPERATOR
    bad = only_reject(eng.apply(OperatorSetRole(ts=T0, operator="alice", role="boss")))  # type: ignore[arg-type]
    assert (bad.reason, bad.field) == (R.INVALID_KEY, "role") and eng.operators["alice"].role == "admin"
    again = Engine.restore(eng.config, eng.snapshot())
    assert again.operators["alice"].role == "admin" and again.digest() == eng.digest()


def test_snapshots_keep_keys_and_operators(eng: Engine) -> None:
    eng.apply(OperatorCreate(ts=T0, operator="alice", role="admin", key_id="alice-1", secret_hash="h"))
    eng.apply(KeyRotate(ts=T0, key_id="key-M1", secret_hash="new", grace_ns=S))
    again = Engine.restore(eng.config, eng.snapshot())
    assert again.digest() == eng.digest() and again.keys["key-M1"].previous_hash == "x"


def test_a_format_2_snapshot_gives_each_member_its_first_key(eng: Engine) -> None:
    snap = msgspec.msgpack.decode(eng.snapshot(), type=EngineSnapshot)
    old = msgspec.structs.replace(snap, keys=None, operators=None, format=2)
    again = Engine.restore(eng.config, msgspec.msgpack.encode(old))
    assert sorted(again.keys) == ["key-M1", "key-M2"] and again.keys["key-M1"].scopes == ["read", "trade"]
    assert again.keys["key-M1"].secret_hash == "x" and again.operators == {}


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_the_allow_list_check_is_cidr_membership(ip: object, prefix: int) -> None:
    import ipaddress

    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    allow = parse_allow([str(net)])
    assert isinstance(allow, list)
    assert address_allowed(allow, str(ip))
    outside = int(net.network_address) - 1 if int(net.network_address) else int(net.broadcast_address) + 1
    if 0 <= outside < 2**32:
        assert not address_allowed(allow, str(ipaddress.IPv4Address(outside)))


def test_allow_list_edge_cases() -> None:
    assert address_allowed([], "anything") and not address_allowed(["127.0.0.1/32"], "local")
    assert address_allowed(["127.0.0.1/32"], "::ffff:127.0.0.1") and not address_allowed(["127.0.0.1/32"], "127.0.0.2")
    assert isinstance(parse_allow(["x"] * 33), str)
    assert ApiKey(key_id="k", secret_hash="h", revoked_ts=1, expires_ts=1).usable(5) == R.KEY_REVOKED
