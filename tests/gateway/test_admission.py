"""Connection budgets (per listener, anonymous per address and in total) and login throttling."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonx.gateway.logins import Backoff, Busy, LoginGuard, Throttled
from carbonx.gateway.sessions import ConnectionRegistry, Refused, Session, address_key
from carbonx.gateway.settings import Limits, SettingsError, parse_settings
from tests.gateway.support import DEMO_TEXT

LIMITS = Limits(max_connections=10, max_anonymous_connections=6, max_anonymous_per_address=3, max_admin_connections=2)


def _admit(reg: ConnectionRegistry, address: str, admin: bool = False) -> tuple[Session, Session | None]:
    s = Session(reg.limits, admin=admin, address=address)
    return s, reg.admit(s)


def test_address_key_groups_ipv6_by_64_and_unwraps_mapped_ipv4() -> None:
    assert address_key(("127.0.0.1", 5000)) == "127.0.0.1"
    assert address_key(("2001:db8:1:2:aaaa::1", 5000, 0, 0)) == address_key(("2001:db8:1:2:bbbb::2", 6000, 0, 0)) == "2001:db8:1:2::/64"
    assert address_key(("2001:db8:1:3::1", 1, 0, 0)) != "2001:db8:1:2::/64"
    assert address_key(("::ffff:10.1.2.3", 1, 0, 0)) == "10.1.2.3"
    assert address_key(None) == "local"


def test_anonymous_connections_are_bounded_per_address() -> None:
    reg = ConnectionRegistry(LIMITS)
    for _ in range(3):
        _admit(reg, "10.0.0.1")
    with pytest.raises(Refused) as refused:
        _admit(reg, "10.0.0.1")
    assert refused.value.kind == "address" and "this address" in str(refused.value)
    _, victim = _admit(reg, "10.0.0.2")  # another address is not affected
    assert victim is None and reg.anonymous_total == 4
    assert reg.refused == {"address": 1}


def test_logged_in_sessions_leave_the_anonymous_budget_and_logout_returns_to_it() -> None:
    reg = ConnectionRegistry(LIMITS)
    sessions = [_admit(reg, "10.0.0.1")[0] for _ in range(3)]
    assert reg.bind_member(sessions[0], "m")
    _admit(reg, "10.0.0.1")  # the slot the login freed
    assert reg.anonymous_total == 3 and reg.connections["trading"] == 4
    reg.unbind_member(sessions[0])
    reg.logged_out(sessions[0])
    assert reg.anonymous_total == 4, "a logged-out connection is anonymous again"
    for s in list(reg.sessions):
        reg.drop(s)
    assert reg.anonymous_total == 0 and reg.anonymous == {} and reg.connections == {"trading": 0, "admin": 0}


def test_full_anonymous_budget_evicts_the_oldest_of_the_heaviest_address_for_a_lighter_one() -> None:
    reg = ConnectionRegistry(LIMITS)
    heavy = [_admit(reg, "10.0.0.1")[0] for _ in range(3)]
    light = [_admit(reg, "10.0.0.2")[0] for _ in range(2)]
    _admit(reg, "10.0.0.3")
    assert reg.anonymous_total == 6
    _, victim = _admit(reg, "10.0.0.4")
    assert victim is heavy[0] and victim.evicted, "the oldest connection of the address holding the most"
    assert reg.anonymous_total == 6 and len(reg.anonymous["10.0.0.1"]) == 2
    assert not reg.bind_member(victim, "m"), "an evicted connection cannot log in any more"
    # now 10.0.0.1 and 10.0.0.2 hold 2 each: the oldest of them goes (10.0.0.1's second)
    _, victim2 = _admit(reg, "10.0.0.5")
    assert victim2 is heavy[1]
    # an address holding as many as the heaviest cannot evict: no churn between equals
    _admit(reg, "10.0.0.5")  # evicts 10.0.0.2's oldest (2 > 1)
    assert light[0].evicted
    with pytest.raises(Refused) as refused:
        _admit(reg, "10.0.0.5")  # every address holds 1 or 2, 10.0.0.5 already holds 2
    assert refused.value.kind == "anonymous"
    reg.drop(victim)  # the evicted connection's handler ends: its total slot is released once
    assert reg.connections["trading"] == 8 and reg.anonymous_total == 6
    assert reg.evictions == 3


def test_total_limit_leaves_room_for_logged_in_sessions_only() -> None:
    reg = ConnectionRegistry(LIMITS)
    for i in range(10):
        s, _ = _admit(reg, f"10.0.1.{i}")
        assert reg.bind_member(s, f"m{i}")
    with pytest.raises(Refused) as refused:
        _admit(reg, "10.0.2.1")
    assert refused.value.kind == "total"


def test_admin_listener_has_a_budget_of_its_own() -> None:
    reg = ConnectionRegistry(LIMITS)
    for i in range(6):  # the anonymous trading budget is full
        _admit(reg, f"10.0.0.{i}")
    ops = [_admit(reg, "127.0.0.1", admin=True)[0] for _ in range(2)]
    assert reg.anonymous_admin == 2 and reg.anonymous_total == 6
    with pytest.raises(Refused) as refused:
        _admit(reg, "127.0.0.1", admin=True)
    assert refused.value.kind == "admin" and "admin listener" in str(refused.value)
    assert reg.logged_in(ops[0])
    ops[0].operator = True
    assert reg.anonymous_admin == 1
    reg.drop(ops[0])
    _admit(reg, "127.0.0.1", admin=True)
    assert reg.connections["admin"] == 2


def test_backoff_doubles_up_to_the_cap_and_is_forgotten_after_it() -> None:
    b = Backoff(base=1.0, cap=8.0, entries=100)
    assert b.wait("k", 0.0) == 0
    waits = []
    for i in range(6):
        b.fail("k", float(i))
        waits.append(b.wait("k", float(i)))
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.wait("k", 5.0 + 7.5) == pytest.approx(0.5)
    assert b.wait("k", 5.0 + 8.0) == 0 and b.failures("k", 13.0) == 0, "forgotten cap seconds after the last failure"
    b.fail("k", 20.0)
    assert b.wait("k", 20.0) == 1.0, "starts over once forgotten"
    assert b.delay(10_000) == 8.0


def test_backoff_table_is_bounded() -> None:
    b = Backoff(base=1.0, cap=60.0, entries=3)
    for i in range(10):
        b.fail(f"k{i}", 0.0)
    assert list(b.table) == ["k7", "k8", "k9"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _guard(clock: Clock, concurrency: int = 2, queue: int = 4) -> LoginGuard:
    return LoginGuard(concurrency, queue, 1.0, 60.0, 1000, clock=clock)


async def test_failed_logins_back_off_per_key_id_and_per_address_before_hashing() -> None:
    clock, hashed = Clock(), []
    guard = _guard(clock)

    def wrong() -> bool:
        hashed.append(1)
        return False

    assert not await guard.verify("k1", "10.0.0.1", wrong)
    for key, address, scope in [("k1", "10.0.0.2", "key_id"), ("k2", "10.0.0.1", "address")]:
        with pytest.raises(Throttled) as throttled:
            await guard.verify(key, address, wrong)
        assert throttled.value.scope == scope and throttled.value.retry_after == pytest.approx(1.0)
        assert "retry in 1.0 s" in str(throttled.value)
    assert len(hashed) == 1, "throttled attempts are refused before any hashing"
    assert await guard.verify("k2", "10.0.0.2", lambda: True), "another key from another address is not affected"
    clock.now += 1.0
    assert not await guard.verify("k1", "10.0.0.3", wrong)
    with pytest.raises(Throttled) as twice:
        await guard.verify("k1", "10.0.0.4", wrong)
    assert twice.value.retry_after == pytest.approx(2.0), "back-off doubles"
    guard.close()


async def test_a_known_good_pair_is_not_locked_out_by_failures_from_elsewhere() -> None:
    clock = Clock()
    guard = _guard(clock)
    assert await guard.verify("broker", "10.0.0.1", lambda: True)
    for i in range(3):
        clock.now += 100
        assert not await guard.verify("broker", f"10.9.9.{i}", lambda: False)
        assert not await guard.verify(f"other{i}", "10.0.0.1", lambda: False)  # a neighbour mistyping
    with pytest.raises(Throttled):
        await guard.verify("broker", "10.9.9.99", lambda: True)
    assert await guard.verify("broker", "10.0.0.1", lambda: True), "the broker's own address still gets in"
    assert not await guard.verify("broker", "10.0.0.1", lambda: False)
    with pytest.raises(Throttled) as own:
        await guard.verify("broker", "10.0.0.1", lambda: True)
    assert own.value.scope == "key_id", "but guessing from a known-good address backs off too"
    guard.close()


async def test_hashing_is_bounded_and_the_queue_overflow_is_refused_at_once() -> None:
    clock = Clock()
    guard = _guard(clock, concurrency=2, queue=3)
    gate = threading.Event()
    running = []

    def slow() -> bool:
        running.append(1)
        gate.wait(5)
        return True

    tasks = [asyncio.create_task(guard.verify(f"k{i}", f"10.0.0.{i}", slow)) for i in range(5)]
    await asyncio.sleep(0.05)
    with pytest.raises(Busy):
        await guard.verify("late", "10.0.1.1", slow)
    assert guard.hashing == 2 and guard.pending == 5 and guard.busy == 1
    gate.set()
    assert all(await asyncio.gather(*tasks))
    assert guard.peak_hashing == 2 and len(running) == 5 and guard.pending == 0
    guard.close()


async def test_after_a_failure_only_one_attempt_at_a_time_is_verified() -> None:
    clock = Clock()
    guard = _guard(clock)
    assert not await guard.verify("k", "10.0.0.1", lambda: False)
    clock.now += 1.0  # back-off over
    gate = threading.Event()

    def slow() -> bool:
        gate.wait(5)
        return False

    first = asyncio.create_task(guard.verify("k", "10.0.0.2", slow))
    await asyncio.sleep(0.05)
    with pytest.raises(Throttled):
        await guard.verify("k", "10.0.0.3", slow)
    gate.set()
    assert not await first
    guard.close()


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("max_anonymous_connections = 4096", "max_anonymous_connections < max_connections"),
        ("max_anonymous_per_address = 2000", "max_anonymous_per_address <= max_anonymous_connections"),
        ("max_admin_connections = 0", "max_admin_connections"),
        ("login_timeout_s = 0", "login_timeout_s"),
        ("login_hash_concurrency = 0", "login_hash_concurrency"),
        ("login_backoff_base_s = 120.0", "login_backoff_base_s <= login_backoff_max_s"),
    ],
)
def test_admission_limits_are_validated(limits: str, message: str) -> None:
    name = limits.split(" = ")[0]
    text, n = re.subn(rf"^{name} = .*$", limits, DEMO_TEXT, count=1, flags=re.M)
    assert n == 1, f"the demo configuration lists {name}"
    with pytest.raises(SettingsError, match=message):
        parse_settings(text)


async def test_known_good_logins_wait_ahead_of_a_storm_and_are_never_busy() -> None:
    clock = Clock()
    guard = _guard(clock, concurrency=1, queue=2)
    assert await guard.verify("broker", "10.0.0.1", lambda: True)
    gate, order = threading.Event(), []

    def job(name: str, ok: bool) -> Callable[[], bool]:
        def run() -> bool:
            gate.wait(5)
            order.append(name)
            return ok

        return run

    storm = [asyncio.create_task(guard.verify(f"guess{i}", f"10.9.0.{i}", job(f"guess{i}", False))) for i in range(3)]
    await asyncio.sleep(0.05)
    with pytest.raises(Busy):
        await guard.verify("guess-late", "10.9.1.1", job("late", False))
    abandoned = asyncio.create_task(guard.run(job("abandoned", True), first=True))
    await asyncio.sleep(0.01)
    abandoned.cancel()  # a waiter that goes away must not keep its place or a lane
    broker = asyncio.create_task(guard.verify("broker", "10.0.0.1", job("broker", True)))
    await asyncio.sleep(0.05)
    gate.set()
    assert await broker
    assert [r for r in await asyncio.gather(*storm)] == [False, False, False]
    assert order[:2] == ["guess0", "broker"], "the known-good login goes right after the running hash"
    assert "abandoned" not in order and guard.hashing == 0 and guard.pending == 0 and guard._handed == 0
    assert guard.peak_hashing == 1
    guard.close()


_OPS = st.lists(
    st.tuples(st.sampled_from(["connect", "admin", "login", "logout", "drop"]), st.integers(0, 5), st.integers(0, 40)), max_size=120
)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_registry_counts_always_match_the_sessions_and_admission_respects_the_budgets(ops: list[tuple[str, int, int]]) -> None:
    """Random connects (from 6 addresses), logins, logouts and disconnects: the registry's
    counters always equal what its sessions say, admission never exceeds a budget, and the
    evictions it asks for only ever hit anonymous trading connections of a heavier address."""
    limits = Limits(max_connections=12, max_anonymous_connections=6, max_anonymous_per_address=3, max_admin_connections=3)
    reg = ConnectionRegistry(limits)
    live: list[Session] = []
    for op, addr, pick in ops:
        address = f"10.0.0.{addr}"
        if op in ("connect", "admin"):
            s = Session(limits, admin=op == "admin", address=address)
            before = {a: len(held) for a, held in reg.anonymous.items()}
            try:
                victim = reg.admit(s)
            except Refused:
                continue
            live.append(s)
            if victim is not None:
                assert not victim.admin and not victim.authenticated and victim.evicted
                assert before[victim.address] > before.get(address, 0)
                live.remove(victim)
                reg.drop(victim)  # its handler ends
            if not s.admin:
                assert len(reg.anonymous[address]) <= max(limits.max_anonymous_per_address, before.get(address, 0))
        elif live:
            s = live[pick % len(live)]
            if op == "login" and not s.authenticated:
                if s.admin:
                    assert reg.logged_in(s)
                    s.operator = True
                else:
                    reg.bind_member(s, f"m{pick % 3}")
            elif op == "logout" and s.authenticated:
                reg.unbind_member(s)
                s.operator = False
                reg.logged_out(s)
            elif op == "drop":
                live.remove(s)
                reg.drop(s)
        assert reg.sessions == set(live)
        for listener in ("trading", "admin"):
            assert reg.connections[listener] == sum(1 for s in live if s.admin == (listener == "admin"))
        assert reg.connections["trading"] <= limits.max_connections and reg.connections["admin"] <= limits.max_admin_connections
        anonymous = [s for s in live if not s.admin and not s.authenticated]
        assert reg.anonymous_total == len(anonymous) == sum(len(held) for held in reg.anonymous.values())
        assert all(held and all(s.address == a for s in held) for a, held in reg.anonymous.items())
        assert reg.anonymous_admin == sum(1 for s in live if s.admin and not s.authenticated)
        assert all(n <= limits.max_connections_per_member for n in reg.per_member.values())
        assert sum(reg.per_member.values()) == sum(1 for s in live if s.member is not None)
