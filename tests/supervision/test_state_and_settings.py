"""Related-party groups in the engine state (format 3), the [surveillance]/[disclosure]
tables, and the supervision consumers as pure functions of the events (property test)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonx.engine.engine import STATE_FORMAT, Engine, EngineSnapshot
from carbonx.engine.schema import CancelOrder, DayClose, PlaceOrder, SetRelated
from carbonx.engine.supervision.disclosure import DayReports, report_json
from carbonx.engine.supervision.surveillance import Surveillance
from carbonx.engine.supervision.thresholds import DisclosureSpec, SurveillanceSpec
from carbonx.engine.testkit import MEMBER_OF, T0, instrument, make_config
from carbonx.gateway.settings import SettingsError, parse_settings
from carbonx.gateway.testkit import DEMO
from tests.supervision.kit import watched


def test_related_groups_snapshot_restore_and_digest() -> None:
    eng = watched()
    eng.apply(SetRelated(ts=T0, group="g1", accounts=["B1", "A1"]))
    eng.apply(SetRelated(ts=T0, group="g2", accounts=["A2", "B2"]))
    back = Engine.restore(eng.config, eng.snapshot())
    assert back.related == {"g1": ["A1", "B1"], "g2": ["A2", "B2"]} and back.digest() == eng.digest()
    assert msgspec.msgpack.decode(eng.snapshot(), type=EngineSnapshot).format == STATE_FORMAT == 3


def test_a_format_2_snapshot_restores_with_no_groups() -> None:
    eng = watched()
    old = msgspec.msgpack.decode(eng.snapshot())
    del old["related"]
    old["format"] = 2
    back = Engine.restore(eng.config, msgspec.msgpack.encode(old))
    assert (back.related, back.restored_format) == ({}, 2)


def _settings(extra: str) -> str:
    return DEMO.read_text() + "\n" + extra


def test_the_tables_are_read_with_their_ranges() -> None:
    s = parse_settings(
        _settings('[surveillance]\nlarge_holder_t = 600000\nallocations = { "A-001" = 1000 }\n[disclosure]\nholders_public = true\n')
    )
    assert (s.surveillance.large_holder_t, s.surveillance.allocations, s.disclosure.holders_public) == (600_000, {"A-001": 1000}, True)
    assert parse_settings(DEMO.read_text()).surveillance == SurveillanceSpec()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("[surveillance]\nclose_move_bp = 0\n", "close_move_bp"),
        ("[surveillance]\nlayering_max_life_s = 100000\n", "layering_max_life_s"),
        ("[surveillance]\nwash_minimum = 3\n", "wash_minimum"),
        ("[surveillance]\nprice_move_bp = 1200\n", "price_move_bp <= price_move_high_bp"),
        ("[disclosure]\nlarge_holder_t = -5\n", "large_holder_t"),
    ],
)
def test_bad_values_are_refused_naming_the_key(extra: str, words: str) -> None:
    with pytest.raises((SettingsError, ValueError)) as err:
        parse_settings(_settings(extra))
    assert words in str(err.value)


orders = st.lists(
    st.tuples(
        st.sampled_from(["A1", "A2", "B1", "B2"]),
        st.sampled_from(["buy", "sell"]),
        st.integers(5_500, 6_600),
        st.sampled_from([1, 10, 100, 6_000]),
        st.integers(0, 120),  # seconds after the previous command
        st.booleans(),  # cancel the previous order of this account instead
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(flow=orders, related=st.booleans())
def test_supervision_is_a_pure_function_of_the_events_and_never_changes_trading(
    flow: list[tuple[str, str, int, int, int, bool]], related: bool
) -> None:
    config = make_config(instrument("X"))
    spec = SurveillanceSpec(rate_max=5, otr_min_orders=5, otr_max=2)
    eng = watched(spec, config, tonnes=20_000)
    if related:
        eng.apply(SetRelated(ts=T0, group="g", accounts=["A1", "B2"]))
    ts, last = T0, {}
    for account, side, price, qty, gap, cancel in flow:
        ts += gap * 1_000_000_000
        if cancel and account in last:
            cmd: object = CancelOrder(ts=ts, member=MEMBER_OF[account], account=account, order_id=last[account])
        else:
            cmd = PlaceOrder(ts=ts, member=MEMBER_OF[account], account=account, instrument="X", side=side, price=price, quantity=qty)  # type: ignore[arg-type]
        for e in eng.apply(cmd):  # type: ignore[arg-type]
            if type(e).__name__ == "ExecReport" and e.exec_type == "new":  # type: ignore[attr-defined]
                last[account] = e.order_id  # type: ignore[attr-defined]
    eng.apply(DayClose(ts=ts + 1))
    plain = Engine(config)  # the same commands, nobody watching
    for c in eng.commands:
        plain.apply(c)
    assert eng.digest() == plain.digest()  # watching changed nothing
    again = Surveillance(spec)
    first_reports, reports = DayReports(DisclosureSpec()), DayReports(DisclosureSpec())
    produced = [r for events in eng.log for r in first_reports.observe(events)]
    regenerated = []
    for events in eng.log:
        again.observe(events)
        regenerated += reports.observe(events)
    assert msgspec.json.encode(list(again.alerts.values())) == msgspec.json.encode(list(eng.surv.alerts.values()))
    assert [report_json(r) for r in regenerated] == [report_json(r) for r in produced] and len(produced) == 1
    assert [a.alert_id for a in eng.surv.alerts.values()] == list(range(1, len(eng.surv.alerts) + 1))
    for alert in eng.surv.alerts.values():  # every alert names known accounts and their members
        assert alert.accounts and set(alert.members) <= {"M1", "M2"} and alert.trading_date == eng.trading_date


def test_a_failing_consumer_never_reaches_the_sequencer(caplog: pytest.LogCaptureFixture) -> None:
    """The sink swallows (and logs) a detector's exception: replies released after it go on."""
    from carbonx.gateway.supervision import Supervision

    sup = Supervision(SurveillanceSpec(), DisclosureSpec(), market=None, outbound=None)  # type: ignore[arg-type]

    def broken(events: object) -> list[object]:
        raise RuntimeError("detector bug")

    sup.surveillance.observe = broken  # type: ignore[method-assign,union-attr,assignment]
    sup.publish(7, [])
    assert sup.errors == 1 and "seq 7" in caplog.text
