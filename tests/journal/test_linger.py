"""Group-commit linger (``LocalJournal(linger_ms=...)``, ``[server] journal_linger_ms``).

What must hold: while batches are forming, commands appended in different event-loop
iterations within the linger go into one batch (one write, one fsync); a lone command after
a quiet spell is handed over at the end of its iteration, never held back; without a linger
every iteration's appends are their own batch; everything appended is durable and reads back
in order whatever the linger; ``close`` does not wait for a lingering batch's timer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carbonx.engine.schema import Tick
from carbonx.gateway.journal import LocalJournal, read_records

T = 1_764_043_200_000_000_000


async def iterations(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("policy", ["fsync", "os"])
async def test_appends_of_separate_iterations_share_a_batch_within_the_linger(tmp_path: Path, policy: str) -> None:
    j = LocalJournal(tmp_path, policy, linger_ms=1000)  # type: ignore[arg-type]
    await j.start()
    j.append(1, Tick(ts=T + 1))
    j.append(2, Tick(ts=T + 2))
    await j.wait_durable(2)  # the first batch: nothing formed before it, handed over at once
    assert (j.batches, j.last_batch_size) == (1, 2)
    for seq in range(3, 6):  # batches are forming (the last held 2): these three iterations linger
        j.append(seq, Tick(ts=T + seq))
        await iterations()
    assert j.batches == 1 and j.durable_seq == 2
    await j.close()  # flushes the lingering batch at once
    assert (j.batches, j.last_batch_size, j.durable_seq) == (2, 3, 5)
    assert [s for s, _ in read_records(tmp_path)] == [1, 2, 3, 4, 5]


async def test_without_a_linger_each_iteration_is_its_own_batch(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "os")
    await j.start()
    j.append(1, Tick(ts=T + 1))
    j.append(2, Tick(ts=T + 2))
    await j.wait_durable(2)
    for seq in range(3, 6):
        j.append(seq, Tick(ts=T + seq))
        await iterations()
    assert (j.batches, j.durable_seq) == (4, 5)
    await j.close()


async def test_a_lone_command_after_a_lone_command_is_never_held_back(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "os", linger_ms=1000)
    await j.start()
    for seq in range(1, 4):
        j.append(seq, Tick(ts=T + seq))
        await iterations()
        assert (j.batches, j.durable_seq) == (seq, seq)  # written at the end of its iteration
    await j.close()


async def test_a_lingering_batch_is_handed_over_by_its_timer(tmp_path: Path) -> None:
    j = LocalJournal(tmp_path, "fsync", linger_ms=20)
    await j.start()
    j.append(1, Tick(ts=T + 1))
    j.append(2, Tick(ts=T + 2))
    await j.wait_durable(2)
    j.append(3, Tick(ts=T + 3))
    await iterations()
    j.append(4, Tick(ts=T + 4))
    await asyncio.wait_for(j.wait_durable(4), 10)
    assert (j.batches, j.last_batch_size) == (2, 2)
    await j.close()


def test_linger_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="linger_ms"):
        LocalJournal(tmp_path, linger_ms=-1)
    with pytest.raises(ValueError, match="linger_ms"):
        LocalJournal(tmp_path, linger_ms=5000)
