"""Start-up derivation: the consumers rebuilt from the journal equal the live ones; a journal
that no longer starts at seq 1 is refused (logged), never half-derived."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from carbonx.engine.schema import Event
from carbonx.engine.supervision.surveillance import Surveillance
from carbonx.gateway.journal import LocalJournal
from carbonx.gateway.supervision import derive
from tests.journal.helpers import segments, write_journal
from tests.supervision.kit import watched
from tests.supervision.test_detectors import cross
from tests.supervision.test_disclosure import scripted_day


def test_derive_gives_the_live_alerts_and_stops_at_upto(tmp_path: Path) -> None:
    eng = watched()
    cross(eng, "A2", "A1", 6000, 1)  # a wash trade inside member M1
    cross(eng, "B1", "A1", 6420, 1)  # a 7% move
    write_journal(tmp_path, eng.config, eng.commands)
    surv = Surveillance(eng.surv.spec)
    assert derive(tmp_path, eng.config, eng.seq, surv.observe) == eng.seq
    assert surv.alerts and msgspec.json.encode(list(surv.alerts.values())) == msgspec.json.encode(list(eng.surv.alerts.values()))
    seen: list[list[Event]] = []
    assert derive(tmp_path, eng.config, 5, seen.append) == 5 and seen == eng.log[:5]


def test_a_journal_missing_its_start_is_not_derived(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eng = scripted_day()
    write_journal(tmp_path, eng.config, eng.commands[:10], segment_bytes=4096)
    rest = eng.commands[10:]

    # a second segment starting at seq 11, then the first one deleted (an operator "cleaned up")
    async def more() -> None:
        journal = LocalJournal(tmp_path, "os", next_seq=11)
        await journal.start()
        for seq, cmd in enumerate(rest, 11):
            journal.append(seq, cmd)
        await journal.close()

    asyncio.run(more())
    first, *later = segments(tmp_path)
    assert later, "the journal has a second segment"
    first.unlink()
    fed: list[list[Event]] = []
    assert derive(tmp_path, eng.config, eng.seq, fed.append) == 0
    assert fed == [] and "starts at seq 11, not 1" in caplog.text
