"""Engine structs -> wire values: execution reports, accounts, auctions, blocks, certificates."""

from __future__ import annotations

from typing import Any

from carbonx.engine.accounts import Account
from carbonx.engine.book import Order
from carbonx.engine.schema import (
    AuctionInfo,
    AuctionResults,
    BidUpdate,
    BlockUpdate,
    Certificate,
    DailyStats,
    ExecReport,
    NeutralityEvent,
    Reject,
    Trade,
)
from carbonx.engine.units import format_fen
from carbonx.gateway.protocol.errors import RpcError

__all__ = ["format_fen"]  # re-exported: callers format money through this module


def avg_price(cum_notional: int, cum_qty: int) -> str | None:
    """cum_notional / cum_qty in fen, rounded half-up, as a decimal string (None if no fills)."""
    if cum_qty <= 0:
        return None
    return format_fen((2 * cum_notional + cum_qty) // (2 * cum_qty))


def fen_or_none(value: int | None) -> str | None:
    return None if value is None else format_fen(value)


def exec_report(ev: ExecReport) -> dict[str, Any]:
    """An ExecReport event (or a book Order) as the protocol's execution report."""
    market = ev.type == "market"
    out: dict[str, Any] = {
        "order_id": str(ev.order_id),
        "client_order_id": ev.client_order_id or None,
        "account": ev.account,
        "instrument": ev.instrument,
        "side": ev.side,
        "type": ev.type,
        "price": None if market else format_fen(ev.price),
        "quantity": ev.quantity,
        "time_in_force": ev.tif,
        "exec_type": ev.exec_type,
        "status": ev.status,
        "cum_qty": ev.cum_qty,
        "leaves_qty": ev.leaves_qty,
        "avg_price": avg_price(ev.cum_notional, ev.cum_qty),
        "seq": ev.seq,
        "ts": ev.ts,
    }
    if ev.last_qty:
        out["last_qty"] = ev.last_qty
        out["last_price"] = format_fen(ev.last_price)
    if ev.trade_id:
        out["trade_id"] = str(ev.trade_id)
    if ev.reason:
        out["reason"] = ev.reason
    return out


def order_view(order: Order, seq: int) -> dict[str, Any]:
    """A book Order (read path) as an execution report of its current state."""
    market = order.type == "market"
    out: dict[str, Any] = {
        "order_id": str(order.order_id),
        "client_order_id": order.client_order_id or None,
        "account": order.account,
        "instrument": order.instrument,
        "side": order.side,
        "type": order.type,
        "price": None if market else format_fen(order.price),
        "quantity": order.quantity,
        "time_in_force": order.tif,
        "exec_type": "new" if order.status == "new" else _status_exec(order.status),
        "status": order.status,
        "cum_qty": order.cum_qty,
        "leaves_qty": order.leaves_qty,
        "avg_price": avg_price(order.cum_notional, order.cum_qty),
        "seq": seq,
        "ts": order.ts,
    }
    return out


def _status_exec(status: str) -> str:
    return {"partially_filled": "trade", "filled": "trade", "cancelled": "cancelled", "expired": "expired"}.get(status, "new")


def public_trade(t: Trade) -> dict[str, Any]:
    out = {
        "trade_id": str(t.trade_id),
        "instrument": t.instrument,
        "price": format_fen(t.price),
        "quantity": t.quantity,
        "aggressor": t.aggressor,
        "seq": t.seq,
        "ts": t.ts,
    }
    if t.block:
        out["block"] = True
    return out


def account_trade(t: Trade, account: str) -> dict[str, Any]:
    """A trade from one account's point of view (its side, order and fee)."""
    is_buy = t.buy_account == account
    out = public_trade(t)
    out["account"] = account
    out["side"] = "buy" if is_buy else "sell"
    out["order_id"] = str(t.buy_order_id if is_buy else t.sell_order_id) if (t.buy_order_id if is_buy else t.sell_order_id) else None
    out["fee"] = format_fen(t.buy_fee if is_buy else t.sell_fee)
    if t.vintages:
        out["vintages"] = {str(v): n for v, n in t.vintages}
    return out


def account_view(acct: Account) -> dict[str, Any]:
    holdings: dict[str, Any] = {}
    for symbol, by_vintage in acct.holdings.items():
        total = {"tradable": 0, "frozen": 0, "compliance_only": 0, "locked": 0}
        vintages: dict[str, Any] = {}
        for vintage, pos in sorted(by_vintage.items()):
            bucket = {"tradable": pos.tradable, "frozen": pos.frozen, "compliance_only": pos.compliance_only, "locked": pos.locked}
            for k, v in bucket.items():
                total[k] += v
            if vintage:
                vintages[str(vintage)] = bucket
        if vintages:
            total["vintages"] = vintages  # type: ignore[assignment]
        holdings[symbol] = total
    return {
        "account": acct.account,
        "member": acct.member,
        "type": acct.type,
        "blocked": acct.blocked,
        "cash": {"available": format_fen(acct.available), "frozen": format_fen(acct.frozen)},
        "holdings": holdings,
    }


def auction_view(info: AuctionInfo, results: AuctionResults | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "auction_id": str(info.auction_id),
        "instrument": info.instrument,
        "vintage": info.vintage,
        "quantity": info.quantity,
        "reserve_price": format_fen(info.reserve_price),
        "rule_set": info.rule_set,
        "eligible": list(info.eligible),
        "caps": dict(info.caps),
        "min_lot": info.min_lot,
        "irrevocable": info.irrevocable,
        "suspend_trading": info.suspend_trading,
        "start_ts": info.start_ts,
        "end_ts": info.end_ts,
        "state": info.state,
        "created_ts": info.created_ts,
    }
    if info.reserve_inputs:
        out["reserve_inputs"] = dict(info.reserve_inputs)
    if results is not None:
        out["results"] = {
            "quantity_offered": results.quantity_offered,
            "valid_bid_quantity": results.valid_bid_quantity,
            "bidders": results.bidders,
            "winners": results.winners,
            "quantity_sold": results.quantity_sold,
            "clearing_price": format_fen(results.clearing_price),
            "total_amount": format_fen(results.total_amount),
            "cover_ratio": f"{results.cover_ratio_bp / 10_000:.4f}",
        }
    return out


def bid_view(b: BidUpdate) -> dict[str, Any]:
    return {
        "auction_id": str(b.auction_id),
        "bid_id": str(b.bid_id),
        "client_bid_id": b.client_bid_id or None,
        "account": b.account,
        "price": format_fen(b.price),
        "quantity": b.quantity,
        "status": b.status,
        "allocated": b.allocated,
        "amount": format_fen(b.amount),
        "seq": b.seq,
        "ts": b.ts,
    }


def block_view(b: BlockUpdate) -> dict[str, Any]:
    return {
        "block_id": str(b.block_id),
        "instrument": b.instrument,
        "side": b.side,
        "price": format_fen(b.price),
        "quantity": b.quantity,
        "vintage": b.vintage,
        "proposer_account": b.proposer_account,
        "counterparty_account": b.counterparty_account,
        "state": b.state,
        "trade_id": str(b.trade_id) if b.trade_id else None,
        "seq": b.seq,
        "ts": b.ts,
    }


def certificate_view(c: Certificate) -> dict[str, Any]:
    return {
        "certificate_id": str(c.certificate_id),
        "account": c.account,
        "instrument": c.instrument,
        "vintage": c.vintage,
        "quantity": c.quantity,
        "purpose": c.purpose,
        "beneficiary": c.beneficiary,
        "event_id": c.event_id,
        "vintages": [{"vintage": v, "quantity": n} for v, n in c.vintages] if c.vintages else None,
        "covers": [str(i) for i in c.covers] if c.covers else None,  # neutrality certificate: its retirements
        "seq": c.seq,
        "ts": c.ts,
    }


def neutrality_view(ev: NeutralityEvent) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "name": ev.name,
        "footprint": ev.footprint,
        "retired": ev.retired,
        "certificate_id": str(ev.certificate_id) if ev.certificate_id else None,
    }


def daily_stats(stats: DailyStats) -> dict[str, Any]:
    return {
        "open": format_fen(stats.open),
        "close": format_fen(stats.close),
        "high": format_fen(stats.high),
        "low": format_fen(stats.low),
        "volume": stats.volume,
    }


def reject_error(rej: Reject) -> RpcError:
    """An engine Reject as the JSON-RPC error the requester receives."""
    extra: dict[str, Any] = {}
    if rej.order_id:
        extra["order_id"] = str(rej.order_id)
    if rej.client_order_id:
        extra["client_order_id"] = rej.client_order_id
    return RpcError.business(rej.reason, rej.message, rej.field, seq=rej.seq, **extra)
