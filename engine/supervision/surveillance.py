"""``Surveillance``: the detectors, fed the engine's events in journal order.

``observe(events)`` takes the events of one command (or of several, in order) and returns
the alerts they raised or changed (an ack). Each event costs O(1) amortised, except a
large order (layering: the best price of its side, O(levels)) and the day close (the
day's per-account and per-instrument summaries). State is bounded: per-day tables are
dropped at the next day open, recent fills and late trades are trailing windows, and at
most ``max_alerts`` alerts are kept. No clock: time is the events' ``ts``.

Every detector raises at most one alert per *key* per trading day (the key is in each
``_raise`` call: e.g. one wash-trade alert per pair of accounts and instrument), so a
misbehaving account cannot flood the operator; the evidence names the first order/trade
ids. docs/supervision.md describes each detector and threshold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from carbonx.engine.schema import (
    AccountCreated,
    AlertAcked,
    BookLevel,
    DayClosed,
    DayOpened,
    Event,
    ExecReport,
    Holding,
    ReferencePrice,
    Reject,
    RelatedGroup,
    Trade,
)
from carbonx.engine.supervision.alerts import MAX_EVIDENCE_IDS, Alert, Detector, Severity
from carbonx.engine.supervision.thresholds import SurveillanceSpec

NS = 1_000_000_000
BP = 10_000
# Commands whose rejects count as order messages of the account (message rate, OTR).
ORDER_COMMANDS = frozenset({"place", "amend", "cancel", "cancel_all"})


def move_bp(price: int, base: int) -> int:
    """|price - base| in basis points of ``base`` (rounded down)."""
    return abs(price - base) * BP // base


class Surveillance:
    """The detectors and the alerts they raised (see the module docstring).

    Feed it every event of the journal in order; read ``alerts`` (id -> alert, oldest
    first), ``counts`` ((detector, severity) -> raised since the start of the journal) and
    ``related`` (group -> accounts)."""

    def __init__(self, spec: SurveillanceSpec) -> None:
        self.spec = spec
        self.alerts: dict[int, Alert] = {}
        self.next_id = 1
        self.counts: dict[tuple[str, str], int] = {}
        self.out: list[Alert] = []
        # who is who
        self.member_of: dict[str, str] = {}
        self.related: dict[str, list[str]] = {}
        self.groups_of: dict[str, set[str]] = {}
        # the trading day
        self.date = ""
        self.raised: set[Hashable] = set()
        self.reference: dict[str, int] = {}
        self.day_reference: dict[str, int] = {}  # the reference when the day's first trade printed
        self.levels: dict[tuple[str, str], dict[int, int]] = {}  # (instrument, side) -> price -> tonnes
        # wash trades: (instrument, account, account) -> tonnes today
        self.pairs: dict[tuple[str, str, str], int] = {}
        # layering: large near-touch orders, and each account's recent fills
        self.large: dict[int, tuple[int, int]] = {}  # order id -> (placed ts, best price then)
        self.fills: dict[tuple[str, str], deque[tuple[int, str, int]]] = {}  # (account, instrument) -> (ts, side, trade id)
        # marking the close: listing trades of the trailing window, and what left it
        self.late: dict[str, deque[Trade]] = {}
        self.early: dict[str, list[int]] = {}  # instrument -> [notional, volume]
        # large holders
        self.positions: dict[tuple[str, str, int], int] = {}
        self.totals: dict[tuple[str, str], int] = {}
        self.over: set[tuple[str, str]] = set()
        # order messages and fills per account today; message-rate window
        self.messages: dict[str, int] = {}
        self.filled: dict[str, int] = {}
        self.last_message: dict[str, int] = {}  # account -> seq of its last counted command
        self.window: dict[str, tuple[int, int]] = {}  # account -> (window number, messages in it)
        self._handlers: dict[type, Callable[[Any], None]] = {
            Trade: self._trade,
            ExecReport: self._exec,
            BookLevel: self._level,
            Holding: self._holding,
            Reject: self._reject,
            ReferencePrice: self._reference,
            AccountCreated: self._account,
            RelatedGroup: self._related,
            DayOpened: self._day_open,
            DayClosed: self._day_close,
            AlertAcked: self._ack,
        }

    # ------------------------------------------------------------------ entry point

    def observe(self, events: list[Event]) -> list[Alert]:
        """Take the next events in journal order; return the alerts raised or acked by them."""
        out: list[Alert] = []
        self.out = out
        handlers = self._handlers
        for ev in events:
            handler = handlers.get(type(ev))
            if handler is not None:
                handler(ev)
        return out

    def get(self, alert_id: int) -> Alert | None:
        return self.alerts.get(alert_id)

    def _raise(
        self,
        key: Hashable,
        detector: Detector,
        severity: Severity,
        ev: Event,
        instrument: str,
        accounts: list[str],
        summary: str,
        *,
        order_ids: list[int] | None = None,
        trade_ids: list[int] | None = None,
        figures: dict[str, int] | None = None,
    ) -> None:
        if key in self.raised:
            return
        self.raised.add(key)
        accounts = sorted(set(accounts))
        alert = Alert(
            alert_id=self.next_id,
            detector=detector,
            severity=severity,
            trading_date=self.date,
            instrument=instrument,
            accounts=accounts,
            members=sorted({self.member_of.get(a, "") for a in accounts} - {""}),
            summary=summary,
            order_ids=(order_ids or [])[:MAX_EVIDENCE_IDS],
            trade_ids=(trade_ids or [])[:MAX_EVIDENCE_IDS],
            figures=figures or {},
            seq=ev.seq,
            ts=ev.ts,
        )
        self.next_id += 1
        self.alerts[alert.alert_id] = alert
        if len(self.alerts) > self.spec.max_alerts:
            del self.alerts[next(iter(self.alerts))]
        self.counts[(detector, severity)] = self.counts.get((detector, severity), 0) + 1
        self.out.append(alert)

    # ------------------------------------------------------------------ who is who, the day

    def _account(self, ev: AccountCreated) -> None:
        self.member_of[ev.account] = ev.member

    def _related(self, ev: RelatedGroup) -> None:
        for account in self.related.pop(ev.group, []):
            self.groups_of[account].discard(ev.group)
        if ev.accounts:
            self.related[ev.group] = list(ev.accounts)
            for account in ev.accounts:
                self.groups_of.setdefault(account, set()).add(ev.group)

    def _reference(self, ev: ReferencePrice) -> None:
        self.reference[ev.instrument] = ev.price

    def _level(self, ev: BookLevel) -> None:
        book = self.levels.setdefault((ev.instrument, ev.side), {})
        if ev.quantity:
            book[ev.price] = ev.quantity
        else:
            book.pop(ev.price, None)

    def _day_open(self, ev: DayOpened) -> None:
        self.date = ev.trading_date
        self.raised.clear()
        self.pairs.clear()
        self.day_reference.clear()
        self.large.clear()
        self.fills.clear()
        self.late.clear()
        self.early.clear()
        self.messages.clear()
        self.filled.clear()

    def _ack(self, ev: AlertAcked) -> None:
        alert = self.alerts.get(ev.alert_id)
        if alert is None or alert.acked:  # evicted, or acked twice: the first ack stands
            return
        alert.acked, alert.ack_seq, alert.ack_ts = True, ev.seq, ev.ts
        alert.ack_operator, alert.ack_note = ev.operator, ev.note
        self.out.append(alert)

    # ------------------------------------------------------------------ trades

    def _trade(self, t: Trade) -> None:
        self._wash(t)
        if t.block:
            return
        sym = t.instrument
        self.day_reference.setdefault(sym, self.reference.get(sym, 0))
        self._price_move(t, self.reference.get(sym, 0))
        late = self.late.get(sym)
        if late is None:
            late = self.late[sym] = deque()
            self.early[sym] = [0, 0]
        late.append(t)
        self._trim_late(sym, t.ts - self.spec.close_window_s * NS)

    def _wash(self, t: Trade) -> None:
        buyer, seller = t.buy_account, t.sell_account
        if buyer == seller:
            return
        groups = self.groups_of.get(buyer, set()) & self.groups_of.get(seller, set())
        if not groups and not (self.spec.wash_same_member and t.buy_member == t.sell_member):
            return
        pair = (t.instrument, min(buyer, seller), max(buyer, seller))
        volume = self.pairs[pair] = self.pairs.get(pair, 0) + t.quantity
        if volume < self.spec.wash_min_quantity:
            return
        if groups:
            severity: Severity = "high"
            why = f"related-party group {', '.join(sorted(groups))}"
        else:
            severity, why = "low", f"the same member {t.buy_member}"
        self._raise(
            ("wash", *pair),
            "wash_trade",
            severity,
            t,
            t.instrument,
            [buyer, seller],
            f"{buyer} bought from {seller} ({why}): {volume} t today",
            order_ids=[t.buy_order_id, t.sell_order_id],
            trade_ids=[t.trade_id],
            figures={"quantity": t.quantity, "price": t.price, "day_volume": volume, "block": int(t.block)},
        )

    def _price_move(self, t: Trade, ref: int) -> None:
        if ref <= 0:
            return
        moved = move_bp(t.price, ref)
        spec = self.spec
        if moved < spec.price_move_bp:
            return
        severity: Severity = "high" if moved >= spec.price_move_high_bp else "medium"
        direction = "up" if t.price > ref else "down"
        aggressor = t.buy_account if t.aggressor == "buy" else t.sell_account
        self._raise(
            ("move", t.instrument, direction, severity),
            "price_move",
            severity,
            t,
            t.instrument,
            [aggressor],
            f"{t.instrument} traded {moved} bp {direction} from the reference",
            order_ids=[t.buy_order_id if t.aggressor == "buy" else t.sell_order_id],
            trade_ids=[t.trade_id],
            figures={"price": t.price, "reference": ref, "move_bp": moved},
        )

    def _trim_late(self, sym: str, cutoff: int) -> None:
        late, early = self.late[sym], self.early[sym]
        while late and late[0].ts < cutoff:
            old = late.popleft()
            early[0] += old.price * old.quantity
            early[1] += old.quantity

    # ------------------------------------------------------------------ orders

    def _message(self, account: str, seq: int, ts: int, ev: Event) -> None:
        if self.last_message.get(account) == seq:  # one command = one message (a mass cancel too)
            return
        self.last_message[account] = seq
        self.messages[account] = self.messages.get(account, 0) + 1
        spec = self.spec
        number = ts // (spec.rate_window_s * NS)
        current, count = self.window.get(account, (number, 0))
        count = count + 1 if current == number else 1
        self.window[account] = (number, count)
        if count == spec.rate_max + 1:  # the first message over the limit (once a day: see _raise)
            self._raise(
                ("rate", account),
                "message_rate",
                "medium",
                ev,
                "",
                [account],
                f"{account} sent more than {spec.rate_max} order messages within {spec.rate_window_s} s",
                figures={"messages": count, "window_s": spec.rate_window_s, "limit": spec.rate_max},
            )

    def _reject(self, ev: Reject) -> None:
        if ev.account and ev.command in ORDER_COMMANDS:
            self._message(ev.account, ev.seq, ev.ts, ev)

    def _exec(self, r: ExecReport) -> None:
        kind = r.exec_type
        if kind == "trade":
            self.filled[r.account] = self.filled.get(r.account, 0) + 1
            key = (r.account, r.instrument)
            fills = self.fills.get(key)
            if fills is None:
                fills = self.fills[key] = deque()
            fills.append((r.ts, r.side, r.trade_id))
            cutoff = r.ts - self.spec.layering_max_life_s * NS
            while fills[0][0] < cutoff:
                fills.popleft()
        elif kind == "new" or kind == "replaced" or (kind == "cancelled" and not r.reason):
            self._message(r.account, r.seq, r.ts, r)
            if kind == "new" and r.type == "limit" and r.quantity >= self.spec.layering_min_quantity:
                self._maybe_large(r)
            elif kind == "cancelled":
                self._maybe_layering(r)
        if not r.leaves_qty:
            self.large.pop(r.order_id, None)

    def _maybe_large(self, r: ExecReport) -> None:
        """Remember a large order placed near the touch (its own side's best price, or
        the opposite best when its side is empty)."""
        sym = r.instrument
        own = self.levels.get((sym, r.side))
        other = self.levels.get((sym, "sell" if r.side == "buy" else "buy"))
        if own:
            touch = max(own) if r.side == "buy" else min(own)
        elif other:
            touch = min(other) if r.side == "buy" else max(other)
        else:
            return
        # near: at most touch_bp worse than the touch (or better)
        if r.side == "buy" and r.price * BP < touch * (BP - self.spec.layering_touch_bp):
            return
        if r.side == "sell" and r.price * BP > touch * (BP + self.spec.layering_touch_bp):
            return
        self.large[r.order_id] = (r.ts, touch)

    def _maybe_layering(self, r: ExecReport) -> None:
        placed = self.large.get(r.order_id)
        if placed is None or r.cum_qty:
            return
        placed_ts, touch = placed
        life = r.ts - placed_ts
        if life > self.spec.layering_max_life_s * NS:
            return
        fills = self.fills.get((r.account, r.instrument), ())
        opposite = [trade_id for ts, side, trade_id in fills if side != r.side and ts >= placed_ts]
        if not opposite:
            return
        other = "sell" if r.side == "buy" else "buy"
        self._raise(
            ("layering", r.account, r.instrument),
            "layering",
            "high",
            r,
            r.instrument,
            [r.account],
            f"{r.account} cancelled a {r.quantity} t {r.side} near the touch unfilled after {life // 1_000_000} ms "
            f"while trading on the {other} side",
            order_ids=[r.order_id],
            trade_ids=opposite,
            figures={"quantity": r.quantity, "price": r.price, "touch": touch, "life_ms": life // 1_000_000},
        )

    # ------------------------------------------------------------------ holdings

    def _holding(self, h: Holding) -> None:
        key = (h.account, h.instrument, h.vintage)
        total = h.tradable + h.frozen + h.compliance_only + h.locked
        old = self.positions.get(key, 0)
        if total == old:
            return
        self.positions[key] = total
        pos = (h.account, h.instrument)
        held = self.totals[pos] = self.totals.get(pos, 0) + total - old
        allocation = self.spec.allocations.get(h.account, 0)
        limit = self.spec.large_holder_t + allocation
        if held <= limit:
            self.over.discard(pos)
            return
        if pos in self.over:
            return
        self.over.add(pos)
        self.raised.discard(("holder", *pos))  # once per crossing, not once per day
        self._raise(
            ("holder", *pos),
            "large_holder",
            "medium",
            h,
            h.instrument,
            [h.account],
            f"{h.account} holds {held} t of {h.instrument}, above {limit} t",
            figures={"holding": held, "limit": limit, "allocation": allocation},
        )

    # ------------------------------------------------------------------ the day close

    def _day_close(self, ev: DayClosed) -> None:
        for sym, stats in ev.closes.items():
            if sym in self.late:
                self._marking_close(ev, sym, stats.close)
        spec = self.spec
        for account, messages in self.messages.items():
            fills = self.filled.get(account, 0)
            if messages >= spec.otr_min_orders and messages > spec.otr_max * max(fills, 1):
                self._raise(
                    ("otr", account),
                    "order_to_trade",
                    "low",
                    ev,
                    "",
                    [account],
                    f"{account} sent {messages} order messages for {fills} fills today",
                    figures={"messages": messages, "fills": fills, "limit": spec.otr_max},
                )

    def _marking_close(self, ev: DayClosed, sym: str, close: int) -> None:
        self._trim_late(sym, ev.ts - self.spec.close_window_s * NS)
        late = self.late[sym]
        if not late:
            return
        notional, volume = self.early[sym]
        base = notional // volume if volume else self.day_reference.get(sym, 0)
        if base <= 0:
            return
        moved = move_bp(close, base)
        if moved <= self.spec.close_move_bp:
            return
        up = close > base
        by_account: dict[str, int] = {}
        for t in late:
            account = t.buy_account if up else t.sell_account
            by_account[account] = by_account.get(account, 0) + t.quantity
        top = min(by_account, key=lambda a: (-by_account[a], a))
        late_volume = sum(t.quantity for t in late)
        self._raise(
            ("close", sym),
            "marking_close",
            "high",
            ev,
            sym,
            [top],
            f"late trades moved the {sym} close {moved} bp {'up' if up else 'down'}; largest late {'buyer' if up else 'seller'} {top}",
            trade_ids=[t.trade_id for t in late],
            figures={
                "close": close,
                "base": base,
                "move_bp": moved,
                "late_volume": late_volume,
                "early_volume": volume,
                "account_late_volume": by_account[top],
            },
        )
