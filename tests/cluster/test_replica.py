"""The cluster batch format (many writers, engine seq = position) and the replica, on a real 3-node cluster.

Two writers whose clocks disagree publish into one command stream; two replicas follow it: they
reach the same state (digest) at the same seq, engine time never goes back (the timestamp rule
``ts = max(engine.ts, cmd.ts)``), and ``read_stream`` + ``replay`` (recovery, ``journal verify``)
rebuild that same state from the stream alone.
"""

from __future__ import annotations

import asyncio

import pytest

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command, CreateAccount, CreateMember, DayOpen, Deposit, PlaceOrder, Trade
from carbonx.engine.testkit import T0
from carbonx.gateway.cluster.commands import CommandPublisher
from carbonx.gateway.cluster.journal import connect, ensure_command_stream, read_stream
from carbonx.gateway.cluster.replica import AppliedBatch, Replica
from carbonx.gateway.journal import UnencodableCommand
from carbonx.gateway.sequencer import replay
from carbonx.gateway.settings import ClusterSettings

pytestmark = pytest.mark.cluster

SKEW = 5_000_000_000  # writer B's clock is 5 s behind writer A's


def setup_commands(config: MarketConfig) -> list[Command]:
    cmds: list[Command] = [CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x") for m in ("M1", "M2")]
    for acct, member in (("A1", "M1"), ("B1", "M2")):
        cmds.append(CreateAccount(ts=T0, account=acct, member=member, type="institution"))
        cmds.append(Deposit(ts=T0, account=acct, cash=10**9))
        for sym, spec in config.instruments.items():
            cmds.append(Deposit(ts=T0, account=acct, instrument=sym, quantity=10_000, vintage=2025 if spec.vintages else None))
    cmds.append(DayOpen(ts=T0))
    return cmds


async def wait_for(pred: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_writers_with_disagreeing_clocks_two_replicas_one_state(
    cluster_settings: ClusterSettings, demo_config: MarketConfig
) -> None:
    nc = await connect(cluster_settings.nats_urls)
    js = nc.jetstream()
    await ensure_command_stream(js, cluster_settings)
    fatal: list[BaseException] = []
    a = CommandPublisher(js, cluster_settings, "gwA.n1", fatal.append)
    b = CommandPublisher(js, cluster_settings, "gwB.n2", fatal.append)
    a.start()
    b.start()
    for i, cmd in enumerate(setup_commands(demo_config)):
        a.add(f"gwA.n1/{i}", cmd)
    n = 200
    for i in range(n):  # interleaved: A sells at its clock, B buys at a clock 5 s behind; they cross
        t = T0 + 1_000_000_000 + i * 1_000_000
        a.add(f"gwA.n1/s{i}", PlaceOrder(ts=t, member="M1", account="A1", instrument="SHEA", side="sell", price=6000, quantity=1))
        b.add(f"gwB.n2/b{i}", PlaceOrder(ts=t - SKEW, member="M2", account="B1", instrument="SHEA", side="buy", price=6000, quantity=1))
        if i % 50 == 0:
            await asyncio.sleep(0)
    with pytest.raises(UnencodableCommand):  # a value MessagePack cannot hold: refused, nothing added
        a.add("gwA.n1/x", PlaceOrder(ts=T0, member="M1", account="A1", instrument="SHEA", side="buy", price=2**70, quantity=1))
    await a.close()
    await b.close()
    total = len(setup_commands(demo_config)) + 2 * n
    assert not fatal and a.records + b.records == total

    seen: list[list[AppliedBatch]] = [[], []]
    replicas = [Replica(js, cluster_settings, Engine(demo_config), seen[k].append) for k in range(2)]
    for r in replicas:
        await r.start()
    await wait_for(lambda: all(r.engine.seq == total for r in replicas))
    e0, e1 = replicas[0].engine, replicas[1].engine
    assert e0.digest() == e1.digest()
    assert [b.first for b in seen[0]] == [b.first for b in seen[1]]
    origins = [o for batch in seen[0] for o, _ in batch.items]
    assert len(origins) == total and len(set(origins)) == total  # every command once, origin routed
    trades = [ev for batch in seen[0] for _, events in batch.items for ev in events if isinstance(ev, Trade)]
    assert len(trades) == n
    stamps = [t.ts for t in trades]
    assert stamps == sorted(stamps)  # engine time never went back, whoever's clock was behind
    # seqs are positions: contiguous over every writer's batches
    assert [b.first for b in seen[0]] == sorted(b.first for b in seen[0])
    assert sum(len(b.items) for b in seen[0]) == total

    fresh = Engine(demo_config)
    async for seq, cmd in read_stream(js, cluster_settings.command_stream):
        assert seq == fresh.seq + 1
        assert replay(fresh, cmd) is None
    assert fresh.seq == total and fresh.digest() == e0.digest()

    # a replica started from a mid-stream anchor (a snapshot) reaches the same state
    anchor = replicas[0].anchor
    restored = Engine.restore(demo_config, e0.snapshot())
    late = Replica(js, cluster_settings, restored, lambda _: None, anchor=anchor)
    await late.start()
    await asyncio.wait_for(late.caught_up.wait(), 10)
    c = CommandPublisher(js, cluster_settings, "gwC.n3", fatal.append)
    c.start()
    c.add("gwC.n3/1", PlaceOrder(ts=T0, member="M1", account="A1", instrument="SHEA", side="buy", price=5000, quantity=1))
    await c.close()
    await wait_for(lambda: all(r.engine.seq == total + 1 for r in (*replicas, late)))
    assert late.engine.digest() == e0.digest() == e1.digest()
    for r in (*replicas, late):
        await r.close()
    await nc.close()
