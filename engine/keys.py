"""API keys and operator identities: what the engine keeps, and the checks every caller shares.

A member has any number of API keys; an operator identity (a person) has a role and keys of
its own. A key holds only salted hashes of its secret (the gateway hashes; the secret is shown
once at creation or rotation). ``ApiKey.usable`` answers "may a session on this key act at
``ts``, having logged in with secret hash ``used``": the gateway's login, its session sweep
and the admin listing all call it, so there is one rule:

* a revoked key is refused (``KEY_REVOKED``), an expired one too (``KEY_EXPIRED``);
* after a rotation the old secret keeps working until ``previous_until`` (the grace period),
  then a session that logged in with it is refused as expired.

``address_allowed`` is the one CIDR allow-list check (empty list = any address). Scopes:
``read`` (queries, private channels) and ``trade`` (orders, amends, cancels, blocks, bids,
retirements). Roles: ``viewer`` < ``operator`` < ``admin`` (``ROLE_RANK``).
"""

from __future__ import annotations

import ipaddress

import msgspec

from carbonx.engine import reasons as R

SCOPES: tuple[str, ...] = ("read", "trade")
ROLES: tuple[str, ...] = ("viewer", "operator", "admin")
ROLE_RANK: dict[str, int] = {role: i for i, role in enumerate(ROLES)}
MAX_ALLOW = 32  # CIDR entries per key
MAX_LABEL = 64


class ApiKey(msgspec.Struct, kw_only=True):
    """One API key of a member (``member``) or of an operator identity (``operator``)."""

    key_id: str
    member: str = ""
    operator: str = ""
    secret_hash: str
    label: str = ""
    scopes: list[str] = []
    allow: list[str] = []  # CIDR networks, normalised; empty = any address
    expires_ts: int = 0  # ns; 0 = never
    created_ts: int = 0
    revoked_ts: int = 0  # 0 = not revoked
    rotated_ts: int = 0
    previous_hash: str = ""  # the rotated-out secret, valid until previous_until
    previous_until: int = 0

    def usable(self, ts: int, used: str | None = None) -> str | None:
        """``None`` if the key may act at ``ts`` (``used``: the secret hash a session logged in
        with; ``None`` = the current one), else the reason (KEY_REVOKED / KEY_EXPIRED)."""
        if self.revoked_ts:
            return R.KEY_REVOKED
        if self.expires_ts and ts >= self.expires_ts:
            return R.KEY_EXPIRED
        if used is not None and used != self.secret_hash and not (used == self.previous_hash and ts < self.previous_until):
            return R.KEY_EXPIRED
        return None

    def hashes_at(self, ts: int) -> list[str]:
        """The secret hashes a login may match at ``ts``: the current one, then the
        rotated-out one during its grace period."""
        out = [self.secret_hash]
        if self.previous_hash and ts < self.previous_until:
            out.append(self.previous_hash)
        return out


class OperatorIdentity(msgspec.Struct, kw_only=True):
    """A person who operates the exchange: a name, a role, and keys (``ApiKey.operator``)."""

    operator: str
    role: str
    created_ts: int = 0


def initial_key(member: str, key_id: str, secret_hash: str) -> ApiKey:
    """The key a member is created with (``CreateMember``): both scopes, any address, no
    expiry, ``created_ts`` 0 (= with the member: snapshots from before keys existed derive the
    same key from the member, so replaying and restoring agree)."""
    return ApiKey(key_id=key_id, member=member, secret_hash=secret_hash, label="initial", scopes=list(SCOPES))


def parse_allow(entries: list[str]) -> list[str] | str:
    """The normalised CIDR list, or an error message naming the first bad entry."""
    if len(entries) > MAX_ALLOW:
        return f"at most {MAX_ALLOW} allow-list entries"
    out = []
    for entry in entries:
        try:
            out.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            return f"allow-list entry {entry!r} is not an IP address or CIDR network (e.g. 192.0.2.0/24)"
    return out


def address_allowed(allow: list[str], address: str) -> bool:
    """True if ``address`` (an IP address string) is inside one of the ``allow`` networks, or
    the list is empty. A non-IP address (e.g. a Unix socket) matches only an empty list."""
    if not allow:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(net) for net in allow)


def scopes_failure(scopes: list[str]) -> str | None:
    """An error message unless ``scopes`` is a non-empty list of distinct known scopes."""
    if not scopes:
        return "a member key needs at least one scope (read, trade)"
    if len(set(scopes)) != len(scopes) or any(s not in SCOPES for s in scopes):
        return f"scopes must be distinct values of {', '.join(SCOPES)}"
    return None


def label_failure(label: str) -> str | None:
    if len(label) > MAX_LABEL or not label.isprintable():
        return f"a label is at most {MAX_LABEL} printable characters"
    return None
