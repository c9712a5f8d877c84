"""Secrets, token buckets, sessions, connection limits and the gateway settings."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from carbonx.gateway.passwords import hash_secret, verify_secret
from carbonx.gateway.sessions import ConnectionRegistry, Refused, Session, TokenBucket
from carbonx.gateway.settings import Limits, SettingsError, parse_settings, with_env_operator
from tests.gateway.support import DEMO_TEXT

GATEWAY_TABLES = "# ----------------------------------------------------------------------------- gateway"


def test_secret_hash_round_trip_and_salting() -> None:
    h1, h2 = hash_secret("s3cret"), hash_secret("s3cret")
    assert h1 != h2, "salted: the same secret hashes differently"
    assert h1.startswith("scrypt$") and "s3cret" not in h1
    assert verify_secret("s3cret", h1) and verify_secret("s3cret", h2)
    assert not verify_secret("s3cret!", h1)


@pytest.mark.parametrize("stored", ["", "scrypt$zz$00", "md5$00$00", "scrypt$$", "plain"])
def test_malformed_hashes_never_match(stored: str) -> None:
    assert not verify_secret("anything", stored)


def test_demo_hashes_match_the_documented_secrets() -> None:
    s = parse_settings(DEMO_TEXT)
    assert s.operator is not None and verify_secret("ops-secret", s.operator.secret_hash)
    members = {m.key_id: m for m in s.members}
    assert verify_secret("demo-a-secret", members["demo-a"].secret_hash)
    assert verify_secret("demo-b-secret", members["demo-b"].secret_hash)


def test_token_bucket_refills_at_rate_up_to_burst() -> None:
    b = TokenBucket(rate=10, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(0.05)  # half a token
    assert b.take(0.1)  # one token after 0.1 s
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False], "never more than burst saved up"


def test_session_counts_consecutive_violations_and_orders_separately() -> None:
    s = Session(Limits(requests_per_s=1000, request_burst=100, orders_per_s=1, order_burst=2, max_violations=3))
    assert s.allow(True, 0.0) and s.allow(True, 0.0)
    assert not s.allow(True, 0.0), "third order in the same instant is over the order budget"
    assert s.allow(False, 0.0), "non-order requests have their own budget"
    assert s.violations == 1, "allowed is not yet well formed: only a well-formed request resets the count"
    s.well_formed()
    assert s.violations == 0
    for _ in range(3):
        s.allow(True, 0.0)
    assert s.abusive


def test_malformed_requests_count_as_violations_until_a_well_formed_one() -> None:
    s = Session(Limits(max_violations=3))
    s.refused()
    s.refused()
    s.well_formed()
    assert s.violations == 0
    for _ in range(3):
        assert s.allow(False)
        s.refused()  # e.g. an unknown method: charged and counted
    assert s.abusive


def test_connection_registry_limits_per_member_and_total() -> None:
    limits = Limits(max_connections=3, max_connections_per_member=2)
    reg = ConnectionRegistry(limits)
    sessions = [Session(limits, address=f"10.0.0.{i}") for i in range(4)]
    for s in sessions[:3]:
        assert reg.admit(s) is None
    with pytest.raises(Refused, match="too many connections"):
        reg.admit(sessions[3])
    assert reg.bind_member(sessions[0], "m") and reg.bind_member(sessions[1], "m")
    assert not reg.bind_member(sessions[2], "m") and sessions[2].member is None
    reg.drop(sessions[0])
    assert reg.bind_member(sessions[2], "m"), "a dropped connection frees its slot"
    assert reg.per_member == {"m": 2}


def test_demo_settings_are_complete() -> None:
    s = parse_settings(DEMO_TEXT)
    assert s.server.auto_open_day and s.server.port == 8700 and s.server.admin_port == 8701 and s.server.metrics_port == 9100
    assert {a.account: (a.member, a.type) for a in s.accounts} == {
        "A-001": ("broker-a", "covered_entity"),
        "A-002": ("broker-a", "institution"),
        "B-001": ("broker-b", "covered_entity"),
        "B-002": ("broker-b", "individual"),
    }
    assert all(a.cash == 1_000_000_000 for a in s.accounts)
    assert all({h.instrument: h.quantity for h in a.holdings} == {"SHEA": 100_000, "CCER": 100_000, "SHCER": 100_000} for a in s.accounts)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[limits]\nmax_frame_byte = 10\n", r"^limits: unknown keys \['max_frame_byte'\]$"),
        ('[server]\nport = "8700"\n', r"^server.port: expected a whole number, got '8700'$"),
        ('[server]\nfsync_policy = "sometimes"\n', r"^server.fsync_policy: expected one of \[.*'fsync'.*\], got 'sometimes'$"),
        ("[limits]\nrequests_per_s = -1\n", r"^limits.requests_per_s: -1 is outside the range 0.001 to 1000000$"),
        ("[[member]]\nmember = 'm'\nkey_id = 'k'\nsecret_hash = 'scrypt$00$00'\nextra = 1\n", r"^member\[0\]: unknown keys \['extra'\]$"),
        ("[[member]]\nmember = ''\nkey_id = 'k'\nsecret_hash = 'scrypt$00$00'\n", r"^member\[0\].member: expected a non-empty string"),
        ("[[account]]\naccount = 'A'\nmember = 'm'\ntype = 'robot'\n", r"^account\[0\].type: expected one of \["),
        (
            "[[account]]\naccount = 'A'\nmember = 'm'\ntype = 'individual'\ncash = 1.5\n",
            r"^account\[0\].cash: expected an amount as a quoted decimal",
        ),
        (
            "[[account]]\naccount = 'A'\nmember = 'm'\ntype = 'individual'\nholdings = [{ instrument = 'SHEA', quantity = 0 }]\n",
            r"^account\[0\].holdings\[0\].quantity: 0 t is outside the range 1 t to 1000000000 t$",
        ),
        ("[operator]\nkey_id = 'ops'\n", r"^operator: secret_hash is required$"),
        ("[limts]\nmax_connections = 10\n", r"^top level: unknown keys \['limts'\]$"),
    ],
)
def test_bad_gateway_settings_are_named(extra: str, message: str) -> None:
    base = DEMO_TEXT.split(GATEWAY_TABLES)[0]
    with pytest.raises(SettingsError, match=message):
        parse_settings(base + extra)


def test_account_of_unknown_member_is_refused() -> None:
    base = DEMO_TEXT.split(GATEWAY_TABLES)[0]
    text = base + '[[account]]\naccount = "X"\nmember = "nobody"\ntype = "individual"\n'
    with pytest.raises(SettingsError, match="unknown member"):
        parse_settings(text)


def test_plaintext_secret_in_config_is_refused() -> None:
    text = DEMO_TEXT.replace('key_id = "ops"\nsecret_hash = "scrypt$', 'key_id = "ops"\nsecret_hash = "plain$')
    with pytest.raises(SettingsError, match="secret_hash"):
        parse_settings(text)


def test_environment_overrides_operator_credentials() -> None:
    s = parse_settings(DEMO_TEXT)
    same = with_env_operator(s, {})
    assert same.operator == s.operator
    both = with_env_operator(s, {"CARBONX_OPERATOR_KEY_ID": "root", "CARBONX_OPERATOR_SECRET": "hunter22"})
    assert both.operator is not None and both.operator.key_id == "root"
    assert verify_secret("hunter22", both.operator.secret_hash) and not verify_secret("ops-secret", both.operator.secret_hash)
    key_only = with_env_operator(s, {"CARBONX_OPERATOR_KEY_ID": "root"})
    assert key_only.operator is not None and key_only.operator.key_id == "root"
    assert key_only.operator.secret_hash == s.operator.secret_hash  # type: ignore[union-attr]
    with pytest.raises(SettingsError):
        with_env_operator(replace(s, operator=None), {"CARBONX_OPERATOR_SECRET": "x"})


def test_shanghai_configuration_has_real_hours_and_no_demo_credentials() -> None:
    from pathlib import Path

    from carbonx.gateway.settings import load_settings

    s = load_settings(Path(__file__).resolve().parents[2] / "deploy" / "shanghai.toml")
    cal = s.market.calendar
    assert cal.weekdays == frozenset(range(5)) and cal.sessions == ((10 * 3600 + 1800, 11 * 3600 + 1800), (13 * 3600, 15 * 3600))
    assert cal.holidays and not s.server.auto_open_day and s.server.fsync_policy == "fsync"
    assert s.operator is None and s.members == () and s.accounts == ()
    assert set(s.market.instruments) == {"SHEA", "CCER", "SHCER"}
