"""Admission over the wire: connection budgets, the login timeout, login throttling and
every frame charged (issue 9, items 2, 4 and 5).

All clients run on loopback; other source addresses are other 127.0.0.0/8 addresses
(``Client(local_addr=...)``), which is what the gateway's per-address limits count."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbonx.gateway.client import Client, ClientClosed, RpcError
from carbonx.gateway.testkit import BROKERS, OPERATOR, Server, write_config
from tests.e2e.conftest import running_server


@contextlib.contextmanager
def server_with(tmp_path: Path, **limits: Any) -> Iterator[Server]:
    config = write_config(tmp_path / "limits.toml", limits=limits)
    with running_server(tmp_path / "data", config=config) as server:
        yield server


def _client(url: str, address: str = "127.0.0.1") -> Client:
    return Client(url, local_addr=(address, 0), timeout=15)


def _metrics(server: Server) -> dict[str, float]:
    """``name{labels}`` -> value of every sample on the metrics endpoint."""
    with urllib.request.urlopen(server.metrics + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def _closed(c: Client) -> tuple[int | None, str]:
    with contextlib.suppress(TimeoutError):
        await c.wait_closed(10)
    assert c.closed, "the server should have closed this connection"
    return c.close_code, c.close_reason


async def test_full_anonymous_budget_never_locks_out_operators_or_brokers_from_other_addresses(tmp_path: Path) -> None:
    with server_with(
        tmp_path, max_anonymous_per_address=3, max_anonymous_connections=6, max_connections=20, login_timeout_s=60.0
    ) as server:
        idle = [await _client(server.trading, "127.0.0.1").connect() for _ in range(3)]
        extra = await _client(server.trading, "127.0.0.1").connect()
        assert await _closed(extra) == (1013, "too many anonymous connections from this address: log in on the ones you have")
        idle += [await _client(server.trading, "127.0.0.2").connect() for _ in range(3)]
        assert all(not c.closed for c in idle), "6 anonymous connections: the budget is full, nobody evicted yet"

        async with _client(server.admin, "127.0.0.1") as op:  # the admin listener has a budget of its own
            assert (await op.login(*OPERATOR))["operator"] is True
            async with _client(server.trading, "127.0.0.3") as b:  # a broker from another address
                assert (await b.login(*BROKERS["b"]))["member"] == "broker-b"
                assert await b.ping()
            code, reason = await _closed(idle[0])  # the oldest connection of the heaviest address made room
            assert code == 1013 and reason == "anonymous connections are full: log in to keep a connection"
            assert not any(c.closed for c in idle[1:])
            stats = _metrics(server)
            assert stats['carbonx_connections_refused_total{budget="address"}'] == 1
            assert stats["carbonx_anonymous_evictions_total"] == 1
            assert stats['carbonx_sessions{listener="admin",state="authenticated"}'] == 1
            assert stats['carbonx_sessions{listener="trading",state="anonymous"}'] == 5
            assert stats["carbonx_anonymous_addresses"] == 2
        for c in idle:
            await c.close()


async def test_idle_anonymous_connections_are_closed_after_the_login_timeout(tmp_path: Path) -> None:
    """Market data is public in the demo: an anonymous subscriber stays, an anonymous
    connection doing nothing is closed with 1008; on the admin listener everyone must log in."""
    with server_with(tmp_path, login_timeout_s=1.0) as server:
        idle = await _client(server.trading).connect()
        admin_idle = await _client(server.admin).connect()
        subscriber = await _client(server.trading).connect()
        await subscriber.subscribe(["trades.SHEA"])
        async with _client(server.trading) as broker:
            await broker.login(*BROKERS["a"])
            code, reason = await _closed(idle)
            assert code == 1008 and reason == "login timeout: not logged in within 1 s (or subscribe to market data)"
            assert await _closed(admin_idle) == (1008, "login timeout: not logged in within 1 s")
            await asyncio.sleep(1.5)  # past a second check
            assert not subscriber.closed and await subscriber.ping()
            assert not broker.closed and await broker.ping()
            await subscriber.unsubscribe(["trades.SHEA"])
            assert (await _closed(subscriber))[0] == 1008, "without a subscription it is idle again"
            await broker.logout()
            assert (await _closed(broker))[0] == 1008, "a logged-out connection is anonymous again"
        assert _metrics(server)["carbonx_login_timeouts_total"] == 4


async def test_wrong_password_storm_is_throttled_and_a_legit_login_still_succeeds(tmp_path: Path) -> None:
    with server_with(tmp_path, login_backoff_base_s=5.0, login_backoff_max_s=60.0) as server:
        outcomes: list[str] = []

        async def guess(n: int) -> None:
            """One attacker connection from 127.0.0.5 guessing broker-a's secret."""
            c = await _client(server.trading, "127.0.0.5").connect()
            try:
                for i in range(10):
                    try:
                        await c.login("demo-a", f"guess-{n}-{i}")
                    except RpcError as err:
                        outcomes.append(err.reason or "")
                        if err.reason == "LOGIN_THROTTLED":
                            assert err.data["retry_after_ms"] > 0 and err.data["scope"] in ("key_id", "address")
                            assert "retry in" in err.message
            except (ClientClosed, ConnectionError):
                outcomes.append("closed")
            finally:
                await c.close()

        attack = [asyncio.create_task(guess(n)) for n in range(8)]
        async with _client(server.trading, "127.0.0.1") as legit:
            assert (await legit.login(*BROKERS["b"]))["member"] == "broker-b"
        await asyncio.gather(*attack)
        assert "LOGIN_THROTTLED" in outcomes, outcomes
        assert outcomes.count("NOT_AUTHENTICATED") <= 8, "after the first wave, guesses are refused before hashing"
        # per key id: the same key from a fresh address waits; per address: another key from there waits
        async with _client(server.trading, "127.0.0.6") as other:
            with pytest.raises(RpcError) as by_key:
                await other.login("demo-a", "demo-a-secret")
            assert by_key.value.reason == "LOGIN_THROTTLED" and by_key.value.data["scope"] == "key_id"
        async with _client(server.trading, "127.0.0.5") as same:
            with pytest.raises(RpcError) as by_address:
                await same.login("demo-b", "demo-b-secret")
            assert by_address.value.reason == "LOGIN_THROTTLED" and by_address.value.data["scope"] == "address"
        async with _client(server.trading, "127.0.0.1") as legit:  # the legitimate broker is unaffected
            await legit.login(*BROKERS["b"])
        async with _client(server.admin, "127.0.0.5") as op:  # the admin listener's back-off is its own
            assert (await op.login(*OPERATOR))["operator"] is True
        stats = _metrics(server)
        assert stats['carbonx_logins_throttled_total{listener="trading",scope="key_id"}'] >= 1
        assert stats['carbonx_logins_throttled_total{listener="trading",scope="address"}'] >= 1
        assert stats['carbonx_login_hashing{listener="trading",state="peak"}'] <= 2, "scrypt never runs more than twice at once"


async def test_concurrent_hashing_is_bounded_and_overflow_is_refused_quickly(tmp_path: Path) -> None:
    with server_with(tmp_path, login_hash_concurrency=1, login_hash_queue=1) as server:
        clients = [await _client(server.trading).connect() for _ in range(12)]
        try:
            results = await asyncio.gather(*(c.login(*BROKERS["a"]) for c in clients), return_exceptions=True)
            busy = [r for r in results if isinstance(r, RpcError)]
            assert any(isinstance(r, dict) for r in results), results
            assert busy and all(r.reason == "RATE_LIMITED" and r.data["retry_after_ms"] > 0 for r in busy), results
            stats = _metrics(server)
            assert stats['carbonx_login_hashing{listener="trading",state="peak"}'] == 1
            assert stats['carbonx_logins_total{listener="trading",outcome="busy"}'] == len(busy)
        finally:
            for c in clients:
                await c.close()


async def test_unknown_methods_count_against_the_rate_limit_and_close_the_connection(tmp_path: Path) -> None:
    with server_with(tmp_path, requests_per_s=0.001, request_burst=40, max_violations=15) as server:
        async with _client(server.trading) as c:  # budget: unknown methods spend it like any request
            for _ in range(10):
                with pytest.raises(RpcError) as unknown:
                    await c.request("no.such.method")
                assert unknown.value.code == -32601
                assert await c.ping()  # a well-formed request: the violation count starts over
            for _ in range(20):
                await c.ping()
            with pytest.raises(RpcError) as limited:
                await c.ping()
            assert limited.value.reason == "RATE_LIMITED", "40 frames spent the burst of 40, unknown methods included"
        async with _client(server.trading) as spammer:
            replies = await asyncio.gather(*(spammer.request(f"spam.{i}") for i in range(30)), return_exceptions=True)
            codes = [r.code for r in replies if isinstance(r, RpcError)]
            assert codes.count(-32601) == 15, codes
            assert await _closed(spammer) == (1008, "too many rejected requests (rate limit or malformed input)")
        assert _metrics(server)["carbonx_abuse_disconnects_total"] >= 1
