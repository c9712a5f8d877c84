"""The journal's writer thread under irregular load (policy fsync, with and without a linger).

What must hold whatever the timing between appends, the writer's batches and the loop:
every appended command becomes durable exactly once and in order (listeners see a strictly
increasing ``durable_seq``, waiters resolve only once their seq is durable), the batches add
up to the commands appended, the segment reads back as appended, and ``close`` returns with
everything written whether a batch is in flight, lingering or pending. Schedules are seeded
random mixes of bursts, loop iterations, short sleeps and waits for durability.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from carbonx.engine.schema import Tick
from carbonx.gateway.journal import LocalJournal, read_records

T = 1_764_043_200_000_000_000


@pytest.mark.parametrize("linger_ms", [0.0, 3.0])
@pytest.mark.parametrize("seed", range(6))
async def test_irregular_appends_become_durable_once_in_order(tmp_path: Path, seed: int, linger_ms: float) -> None:
    rng = random.Random(seed)
    j = LocalJournal(tmp_path, "fsync", linger_ms=linger_ms)
    seen: list[int] = []
    j.add_listener(seen.append)
    await j.start()
    waiters: list[tuple[int, asyncio.Task[None]]] = []
    seq = 0
    for _ in range(120):
        for _ in range(rng.choice((0, 1, 1, 2, 5, 17))):
            seq += 1
            j.append(seq, Tick(ts=T + seq))
        if seq and rng.random() < 0.2:
            waiters.append((seq, asyncio.create_task(j.wait_durable(seq))))
        step = rng.random()
        if step < 0.5:
            await asyncio.sleep(0)
        elif step < 0.8:
            await asyncio.sleep(rng.random() / 500)  # up to 2 ms: fsyncs finish at random points
        elif seq:
            await j.wait_durable(seq)
            assert j.durable_seq >= seq
        for wanted, task in waiters:
            if task.done():
                assert j.durable_seq >= wanted
    if rng.random() < 0.5:  # close with a batch pending (and maybe in flight or lingering)
        seq += 1
        j.append(seq, Tick(ts=T + seq))
    await j.close()
    await asyncio.gather(*(task for _, task in waiters))
    assert j.durable_seq == seq and j.records == seq
    assert seen == sorted(set(seen)) and seen[-1] == seq  # strictly increasing, ends at the last
    assert j.batches <= seq and j.batches == len(seen)
    assert [s for s, _ in read_records(tmp_path)] == list(range(1, seq + 1))


async def test_close_while_a_batch_is_in_flight_and_another_lingers(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "fsync", linger_ms=1000)
    await j.start()
    j.append(1, Tick(ts=T + 1))
    j.append(2, Tick(ts=T + 2))
    await j.wait_durable(2)  # batches are forming now: the next one lingers for a second
    for seq in range(3, 40):
        j.append(seq, Tick(ts=T + seq))
        if seq % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(j.close(), 5)  # does not wait for the linger
    assert j.durable_seq == 39
    assert [s for s, _ in read_records(tmp_path)] == list(range(1, 40))
