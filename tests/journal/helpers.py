"""Shared helpers: write a journal the way the gateway does (apply, then append)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import AnyCommand
from carbonx.gateway.journal import LocalJournal, Policy, journal_dir, list_segments


async def write_journal_async(
    directory: Path,
    config: MarketConfig,
    cmds: Sequence[AnyCommand],
    *,
    engine: Engine | None = None,
    policy: Policy = "os",
    segment_bytes: int = 64 << 20,
    burst: int = 100,
) -> Engine:
    """Apply ``cmds`` to ``engine`` (a fresh one by default), journal each under the
    engine's seq in bursts, close the journal; return the engine."""
    eng = engine if engine is not None else Engine(config)
    journal = LocalJournal(directory, policy, segment_bytes=segment_bytes, next_seq=eng.seq + 1)
    await journal.start()
    for i, cmd in enumerate(cmds, 1):
        eng.apply(cmd)
        journal.append(eng.seq, cmd)
        if i % burst == 0:
            await asyncio.sleep(0)
    await journal.close()
    return eng


def write_journal(directory: Path, config: MarketConfig, cmds: Sequence[AnyCommand], **kw: object) -> Engine:
    return asyncio.run(write_journal_async(directory, config, cmds, **kw))  # type: ignore[arg-type]


def replay_from_empty(config: MarketConfig, cmds: Sequence[AnyCommand]) -> Engine:
    eng = Engine(config)
    for cmd in cmds:
        eng.apply(cmd)
    return eng


def segments(directory: Path) -> list[Path]:
    return [p for _, p in list_segments(journal_dir(directory))]
