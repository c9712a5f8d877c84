"""Each detector: a planted scenario raises exactly the expected alert; a near miss raises none."""

from __future__ import annotations

import msgspec
import pytest

from carbonx.engine import reasons as R
from carbonx.engine.schema import AckAlert, CancelOrder, DayClose, Deposit, Event, PlaceOrder, SetRelated
from carbonx.engine.supervision.surveillance import Surveillance
from carbonx.engine.supervision.thresholds import SurveillanceSpec
from carbonx.engine.testkit import MEMBER_OF, T0, oid, rejects, trades
from tests.supervision.kit import Watched, watched

S = 1_000_000_000


def order(eng: Watched, account: str, side: str, price: int, quantity: int, ts: int | None = None) -> list[Event]:
    return eng.apply(
        PlaceOrder(
            ts=ts if ts is not None else eng.ts + 1_000,
            member=MEMBER_OF[account],
            account=account,
            instrument="X",
            side=side,  # type: ignore[arg-type]
            price=price,
            quantity=quantity,
        )
    )


def cross(eng: Watched, buyer: str, seller: str, price: int, quantity: int, ts: int | None = None) -> int:
    """``seller`` rests, ``buyer`` takes it: one trade; returns its id."""
    order(eng, seller, "sell", price, quantity, ts)
    (t,) = trades(order(eng, buyer, "buy", price, quantity))
    return t.trade_id


# ---------------------------------------------------------------------- wash trades


def test_wash_trade_between_accounts_of_one_member() -> None:
    eng = watched()
    trade_id = cross(eng, "A2", "A1", 6000, 10)
    cross(eng, "A2", "A1", 6000, 5)  # the same pair again the same day: still one alert
    (alert,) = eng.raised
    assert (alert.detector, alert.severity, alert.instrument, alert.accounts, alert.members) == (
        "wash_trade",
        "low",
        "X",
        ["A1", "A2"],
        ["M1"],
    )
    assert alert.trade_ids == [trade_id] and alert.figures["day_volume"] == 10 and alert.alert_id == 1


def test_wash_trade_within_a_declared_related_group_is_high() -> None:
    eng = watched()
    assert not rejects(eng.apply(SetRelated(ts=T0, group="family-1", accounts=["B1", "A1"])))
    cross(eng, "B1", "A1", 6000, 10)
    (alert,) = eng.raised
    assert (alert.detector, alert.severity, alert.accounts, alert.members) == ("wash_trade", "high", ["A1", "B1"], ["M1", "M2"])
    assert "family-1" in alert.summary


def test_near_miss_unrelated_members_or_dissolved_group_or_same_member_disabled() -> None:
    eng = watched(SurveillanceSpec(wash_same_member=False))
    eng.apply(SetRelated(ts=T0, group="g", accounts=["A1", "B1"]))
    eng.apply(SetRelated(ts=T0, group="g", accounts=[]))  # dissolved
    cross(eng, "B1", "A1", 6000, 10)  # different members, no longer related
    cross(eng, "A2", "A1", 6000, 10)  # one member, but that is switched off
    assert eng.raised == []


def test_wash_min_quantity_counts_the_pair_day_volume() -> None:
    eng = watched(SurveillanceSpec(wash_min_quantity=15))
    cross(eng, "A2", "A1", 6000, 10)
    assert eng.raised == []  # 10 t < 15 t: near miss
    cross(eng, "A2", "A1", 6000, 5)
    assert [a.figures["day_volume"] for a in eng.raised] == [15]


@pytest.mark.parametrize(
    ("group", "accounts", "field"),
    [
        ("bad name", ["A1", "B1"], "group"),
        ("g", ["A1"], "accounts"),
        ("g", ["A1", "A1"], "accounts"),
        ("g", ["A1", "NOPE"], "accounts"),
        ("never-declared", [], "group"),
    ],
)
def test_related_groups_refuse_bad_declarations(group: str, accounts: list[str], field: str) -> None:
    eng = watched()
    (rej,) = rejects(eng.apply(SetRelated(ts=T0, group=group, accounts=accounts)))
    assert (rej.reason, rej.field) == (R.INVALID_GROUP, field)
    assert eng.related == {}


# ---------------------------------------------------------------------- layering / spoofing


def _spoof(eng: Watched, large_price: int, cancel_after_s: float, trade_opposite: bool = True) -> tuple[int, int | None]:
    """A1 rests a small bid at 60.00; B1 posts a large bid at ``large_price``, sells into
    A1's bid (if ``trade_opposite``), then cancels the large bid unfilled."""
    order(eng, "A1", "buy", 6000, 10)
    large = oid(order(eng, "B1", "buy", large_price, 5_000))
    placed = eng.ts
    trade_id = None
    if trade_opposite:
        (t,) = trades(order(eng, "B1", "sell", 6000, 10))
        trade_id = t.trade_id
    eng.apply(CancelOrder(ts=placed + int(cancel_after_s * S), member="M2", account="B1", order_id=large))
    return large, trade_id


def test_layering_large_bid_near_the_touch_cancelled_after_selling() -> None:
    eng = watched()
    large, trade_id = _spoof(eng, 5999, 30)
    (alert,) = eng.raised
    assert (alert.detector, alert.severity, alert.accounts, alert.members) == ("layering", "high", ["B1"], ["M2"])
    assert alert.order_ids == [large] and alert.trade_ids == [trade_id]
    assert alert.figures == {"quantity": 5_000, "price": 5999, "touch": 6000, "life_ms": 30_000}


@pytest.mark.parametrize(
    ("price", "after_s", "trade"),
    [
        (5900, 30, True),  # 1.7% below the touch: not near it
        (5999, 61, True),  # lived longer than layering_max_life_s
        (5999, 30, False),  # never traded on the other side
    ],
)
def test_layering_near_misses(price: int, after_s: float, trade: bool) -> None:
    eng = watched()
    _spoof(eng, price, after_s, trade)
    assert eng.raised == []


def test_a_small_order_is_not_layering() -> None:
    eng = watched(SurveillanceSpec(layering_min_quantity=5_001))
    _spoof(eng, 5999, 30)
    assert eng.raised == []


# ---------------------------------------------------------------------- marking the close


def _close_day(late_price: int) -> Watched:
    """100 t at 60.00 early, then 100 t at ``late_price`` in the last 10 minutes (A2 buying)."""
    eng = watched()
    cross(eng, "A1", "B1", 6000, 100, ts=T0 + 60 * S)
    cross(eng, "A2", "B2", late_price, 60, ts=T0 + 3_000 * S)
    cross(eng, "A1", "B2", late_price, 40, ts=T0 + 3_100 * S)
    eng.apply(DayClose(ts=T0 + 3_300 * S))
    return eng


def test_marking_the_close_late_buying_lifts_the_vwap_close() -> None:
    eng = _close_day(6300)  # close = (6000*100 + 6300*100) / 200 = 61.50: 250 bp above 60.00
    (alert,) = eng.raised
    assert (alert.detector, alert.severity, alert.instrument, alert.accounts, alert.members) == (
        "marking_close",
        "high",
        "X",
        ["A2"],
        ["M1"],
    )
    assert alert.figures == {
        "close": 6150,
        "base": 6000,
        "move_bp": 250,
        "late_volume": 100,
        "early_volume": 100,
        "account_late_volume": 60,
    }
    assert len(alert.trade_ids) == 2


def test_marking_the_close_near_miss() -> None:
    eng = _close_day(6200)  # close 61.00: 166 bp, below 200
    assert eng.raised == []


# ---------------------------------------------------------------------- abnormal price moves


def test_price_move_warns_at_7_percent_and_is_high_at_the_10_percent_limit() -> None:
    eng = watched()
    cross(eng, "B1", "A1", 6419, 1)  # 698 bp: near miss
    assert eng.raised == []
    warn = cross(eng, "B1", "A1", 6420, 1)  # 700 bp
    cross(eng, "B1", "A1", 6500, 1)  # still medium: one alert per level and direction a day
    high = cross(eng, "B2", "A1", 6600, 1)  # 1000 bp: the band's upper limit
    assert [(a.detector, a.severity, a.trade_ids, a.accounts, a.figures["move_bp"]) for a in eng.raised] == [
        ("price_move", "medium", [warn], ["B1"], 700),
        ("price_move", "high", [high], ["B2"], 1000),
    ]


# ---------------------------------------------------------------------- large holders


def test_large_holder_above_500000_t_once_per_crossing() -> None:
    eng = watched()
    eng.apply(Deposit(ts=T0, account="A1", instrument="X", quantity=490_000))  # exactly 500,000 t: near miss
    assert eng.raised == []
    eng.apply(Deposit(ts=T0, account="A1", instrument="X", quantity=1))
    eng.apply(Deposit(ts=T0, account="A1", instrument="X", quantity=1))  # still above: no new alert
    (alert,) = eng.raised
    assert (alert.detector, alert.accounts, alert.figures) == (
        "large_holder",
        ["A1"],
        {"holding": 500_001, "limit": 500_000, "allocation": 0},
    )


def test_a_covered_entity_may_hold_its_allocation_on_top() -> None:
    eng = watched(SurveillanceSpec(allocations={"A2": 1_000_000}))
    eng.apply(Deposit(ts=T0, account="A2", instrument="X", quantity=1_490_000))  # 1,500,000 t: at its limit
    assert eng.raised == []
    eng.apply(Deposit(ts=T0, account="A2", instrument="X", quantity=1))
    assert [(a.detector, a.figures["limit"]) for a in eng.raised] == [("large_holder", 1_500_000)]


# ---------------------------------------------------------------------- order-to-trade and message rate


def test_order_to_trade_ratio_at_the_day_close() -> None:
    eng = watched(SurveillanceSpec(otr_min_orders=20, otr_max=5))
    for i in range(30):
        order(eng, "A1", "buy", 5500 + i, 1, ts=T0 + i * S)
    eng.apply(DayClose(ts=T0 + 100 * S))
    (alert,) = eng.raised
    assert (alert.detector, alert.severity, alert.accounts, alert.figures) == (
        "order_to_trade",
        "low",
        ["A1"],
        {"messages": 30, "fills": 0, "limit": 5},
    )


def test_order_to_trade_near_miss() -> None:
    eng = watched(SurveillanceSpec(otr_min_orders=20, otr_max=5))
    for i in range(16):
        order(eng, "A1", "buy", 5500 + i, 1, ts=T0 + i * S)
    for i in range(4):  # 20 messages, 4 fills: 20 is not above 5 x 4
        order(eng, "B1", "sell", 6000, 1, ts=T0 + (20 + i) * S)
        order(eng, "A1", "buy", 6000, 1)
    eng.apply(DayClose(ts=T0 + 100 * S))
    assert eng.raised == []


def test_message_rate_above_the_limit_within_one_window() -> None:
    eng = watched(SurveillanceSpec(rate_max=10))
    for i in range(10):  # 10 in the first second: at the limit
        order(eng, "A1", "buy", 5500, 1, ts=T0 + S + i)
    for i in range(10):  # 10 in the next second
        order(eng, "A1", "buy", 5500, 1, ts=T0 + 2 * S + i)
    assert eng.raised == []
    order(eng, "A1", "buy", 5500, 1, ts=T0 + 2 * S + 100)
    (alert,) = eng.raised
    assert (alert.detector, alert.accounts, alert.figures) == ("message_rate", ["A1"], {"messages": 11, "window_s": 1, "limit": 10})


# ---------------------------------------------------------------------- acks and replay


def test_ack_marks_the_alert_and_replay_gives_the_same_alerts() -> None:
    eng = watched()
    cross(eng, "A2", "A1", 6000, 10)
    eng.apply(AckAlert(ts=T0, alert_id=1, operator="ops", note="broker's clients, checked"))
    eng.apply(AckAlert(ts=T0 + 1, alert_id=1, operator="other", note="second ack ignored"))
    eng.apply(AckAlert(ts=T0, alert_id=99))  # unknown: the engine echoes, surveillance ignores
    alert = eng.surv.alerts[1]
    assert (alert.acked, alert.ack_operator, alert.ack_note) == (True, "ops", "broker's clients, checked")
    again = Surveillance(eng.surv.spec)
    for events in eng.log:
        again.observe(events)
    assert msgspec.json.encode(list(again.alerts.values())) == msgspec.json.encode(list(eng.surv.alerts.values()))
    assert again.counts == eng.surv.counts == {("wash_trade", "low"): 1}
