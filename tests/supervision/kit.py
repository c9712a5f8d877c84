"""An engine whose every command also feeds a ``Surveillance`` and a ``DayReports`` (as the
gateway's sink does), with the four funded accounts of ``engine.testkit``."""

from __future__ import annotations

from carbonx.engine.config import MarketConfig
from carbonx.engine.engine import Engine
from carbonx.engine.schema import Command, CreateAccount, CreateMember, DayOpen, Deposit, Event
from carbonx.engine.supervision.alerts import Alert
from carbonx.engine.supervision.surveillance import Surveillance
from carbonx.engine.supervision.thresholds import SurveillanceSpec
from carbonx.engine.testkit import T0, instrument, make_config

ACCOUNTS = (("A1", "M1", "institution"), ("A2", "M1", "covered_entity"), ("B1", "M2", "covered_entity"), ("B2", "M2", "individual"))


class Watched(Engine):
    """``Engine`` whose ``apply`` also feeds ``surv``; ``raised`` collects new alerts."""

    def __init__(self, config: MarketConfig, spec: SurveillanceSpec) -> None:
        super().__init__(config)
        self.surv = Surveillance(spec)
        self.raised: list[Alert] = []
        self.log: list[list[Event]] = []
        self.commands: list[Command] = []

    def apply(self, cmd: Command) -> list[Event]:
        events = super().apply(cmd)
        self.commands.append(cmd)
        self.log.append(events)
        self.raised += [a for a in self.surv.observe(events) if not a.acked]
        return events


def watched(
    spec: SurveillanceSpec | None = None, config: MarketConfig | None = None, tonnes: int = 10_000, cash: int = 100_000_000
) -> Watched:
    """Members M1 (A1, A2), M2 (B1, B2), ``cash`` fen and ``tonnes`` of X each, the day open."""
    eng = Watched(config or make_config(instrument("X")), spec or SurveillanceSpec())
    for m in ("M1", "M2"):
        eng.apply(CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x"))
    for acct, member, kind in ACCOUNTS:
        eng.apply(CreateAccount(ts=T0, account=acct, member=member, type=kind))  # type: ignore[arg-type]
        eng.apply(Deposit(ts=T0, account=acct, cash=cash))
        eng.apply(Deposit(ts=T0, account=acct, instrument="X", quantity=tonnes))
    eng.apply(DayOpen(ts=T0))
    return eng
