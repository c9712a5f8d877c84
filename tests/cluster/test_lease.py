"""The leadership lease on a real 3-node cluster's KV: one holder, compare-and-set renewal, the
local deadline a frozen holder finds passed on waking, takeover after the TTL."""

from __future__ import annotations

import asyncio

import pytest
from msgspec.structs import replace

from carbonx.gateway.cluster.journal import connect
from carbonx.gateway.cluster.lease import LEASE_KEY, Lease, ensure_kv
from carbonx.gateway.settings import ClusterSettings

pytestmark = pytest.mark.cluster


async def test_one_holder_renewal_by_revision_and_takeover_after_the_ttl(cluster_settings: ClusterSettings) -> None:
    settings = replace(cluster_settings, kv_bucket=f"KV_{cluster_settings.command_stream}", lease_ttl_s=1.0)
    nc = await connect(settings.nats_urls)
    try:
        kv = await ensure_kv(nc.jetstream(), settings)
        a, b = Lease(kv, "e-a", settings.lease_ttl_s), Lease(kv, "e-b", settings.lease_ttl_s)
        assert await a.try_acquire() and a.held()
        assert not await b.try_acquire() and not b.held()  # held by a: create-if-absent fails
        first = a.token
        assert await a.renew() and a.token is not None and first is not None and a.token > first
        assert (await kv.get(LEASE_KEY)).value == b"e-a"

        a.deadline = 0.0  # a was frozen (SIGSTOP) past its local deadline: it knows without asking
        assert not a.held() and a.token is None
        assert not await a.renew()
        await asyncio.sleep(settings.lease_ttl_s * 1.5)  # the entry expires on the server
        assert await b.try_acquire() and b.held()
        assert (await kv.get(LEASE_KEY)).value == b"e-b"

        stale = Lease(kv, "e-a", settings.lease_ttl_s)  # an old token after the takeover: the CAS fails
        stale.token, stale.deadline = first, float("inf")
        assert not await stale.renew() and stale.token is None
        assert b.held() and await b.renew()

        await b.release()  # a clean shutdown hands over at once
        assert await a.try_acquire()
    finally:
        await nc.close()
