"""Block trades (negotiated transfers, MARKET_RULES §4): propose, accept, decline, cancel.

A block is a bilateral trade of at least ``spec.block_min_qty`` tonnes at a price
within ``spec.block_band_bp`` of the reference price, agreed in the block session
(afternoon by default). The proposer names the counterparty *account*; the proposer's
side is frozen at once, exactly like a resting order's hold (cash: notional + buy fee;
tonnes: ``freeze_tonnes``, oldest vintage first unless a vintage is named). When the
counterparty's member accepts, its side is checked and the two sides settle atomically
as one ``Trade(block=True)`` with the same delivery-versus-payment arithmetic as a
listing fill. The trade reaches ``trade.list`` and the trade feed but never the book,
open/high/low/close, VWAP or the auction reserve price (``record_trade(listing=False)``).

Visibility: a proposal is known only to the two members involved. Anyone else naming
its id gets ``UNKNOWN_BLOCK``, the same answer as for an id that never existed.

State lives in ``BlockDesk`` (part of every engine snapshot). Proposals still open at
day close expire (holds released); finished proposals are then dropped, like finished
orders, so the desk only ever holds the current day.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carbonx.engine import reasons as R
from carbonx.engine.accounts import (
    Account,
    cash_event,
    fee,
    freeze_tonnes,
    hold_cash,
    holding_event,
    release_cash,
    release_tonnes,
    settle_dvp,
)
from carbonx.engine.checks import (
    Failure,
    blocked_failure,
    funds_failure,
    holding_limit_failure,
    price_failure,
    shortfall,
    vintage_failure,
)
from carbonx.engine.desks import BlockDesk, Proposal
from carbonx.engine.matching import buy_hold, record_trade
from carbonx.engine.schema import BlockAccept, BlockCancel, BlockDecline, BlockPropose, BlockUpdate, Trade
from carbonx.engine.state import ExchangeState, Handler, band

if TYPE_CHECKING:
    from carbonx.engine.config import InstrumentSpec

__all__ = ["HANDLERS", "BlockDesk", "Proposal", "block_view", "on_blocked", "on_day_close"]


# ---------------------------------------------------------------------- views


def _update(p: Proposal) -> BlockUpdate:
    return BlockUpdate(
        seq=p.seq,
        ts=p.ts,
        block_id=p.block_id,
        instrument=p.instrument,
        side=p.side,  # type: ignore[arg-type]
        price=p.price,
        quantity=p.quantity,
        proposer_account=p.proposer_account,
        proposer_member=p.proposer_member,
        counterparty_account=p.counterparty_account,
        counterparty_member=p.counterparty_member,
        state=p.state,  # type: ignore[arg-type]
        trade_id=p.trade_id,
        vintage=p.vintage,
    )


def block_view(eng: ExchangeState, member: str, account: str, block_id: int) -> BlockUpdate | None:
    """The block's current state if ``account`` is ``member``'s and one of the block's
    two parties; None otherwise (unknown id, another member's account, a third party),
    so a block id reveals nothing to anyone else: answer UNKNOWN_BLOCK for None."""
    p = eng.blocks.proposals.get(block_id)
    if p is None or account not in (p.proposer_account, p.counterparty_account) or eng.account_of(member, account) is None:
        return None
    return _update(p)


def _publish(eng: ExchangeState, p: Proposal, state: str) -> None:
    p.state = state
    p.seq, p.ts = eng.seq, eng.ts
    eng.out.append(_update(p))
    if state != "proposed":  # finished: kept for block.get within retention.finished_blocks
        eng.finished_blocks.append(p.block_id)


# ---------------------------------------------------------------------- shared checks


def _market_failure(eng: ExchangeState, spec: InstrumentSpec) -> Failure | None:
    """Blocks trade only while the day is open, in the block session, on a trading
    (not halted, not auction-suspended) instrument."""
    sym = spec.symbol
    st = eng.instruments[sym]
    if st.halted:
        return R.INSTRUMENT_HALTED, f"{sym} is halted", "instrument"
    if st.suspended_by:
        return R.MARKET_CLOSED, f"trading in {sym} is suspended for an auction", "instrument"
    if not eng.day_open:
        return R.MARKET_CLOSED, "no trading day is open", "instrument"
    if not eng.clock.in_session(spec, eng.ts, spec.block_sessions):
        return R.MARKET_CLOSED, f"{sym} is not in its block trading session", "instrument"
    return None


def _party_failure(eng: ExchangeState, spec: InstrumentSpec, acct: Account) -> Failure | None:
    failure = blocked_failure(eng, acct)
    if failure:
        return failure
    if acct.type not in spec.eligible:
        return R.NOT_ELIGIBLE, f"{acct.type} accounts may not trade {spec.symbol}", "account"
    return None


def _price_failure(eng: ExchangeState, spec: InstrumentSpec, price: int) -> Failure | None:
    """Positive, on the tick, and within the block band around today's reference."""
    lower, upper = band(eng.instruments[spec.symbol].reference, spec.block_band_bp, spec.tick)
    return price_failure(price, spec.tick, lower, upper, "block price")


def _size_failure(spec: InstrumentSpec, qty: int) -> Failure | None:
    if qty <= 0:
        return R.INVALID_QUANTITY, "quantity must be positive", "quantity"
    if qty < spec.block_min_qty:
        return R.BLOCK_TOO_SMALL, f"a block is at least {spec.block_min_qty} t (smaller orders go to the book)", "quantity"
    if qty % spec.lot:
        return R.INVALID_QUANTITY, f"quantity must be a multiple of the lot {spec.lot} t", "quantity"
    return None


def _reject(eng: ExchangeState, cmd: Any, failure: Failure, instrument: str = "") -> None:
    reason, message, field = failure
    eng.reject(cmd, reason, message, field, account=cmd.account, instrument=instrument)


# ---------------------------------------------------------------------- propose


def _propose_failure(eng: ExchangeState, spec: InstrumentSpec, acct: Account, cmd: BlockPropose) -> Failure | None:
    """Every rule a proposal can break except the proposer's holdings (checked by
    freezing them), in the order listing orders use: who, may trade, market open,
    the counterparty, shape (size, price, vintage), then the ability to pay."""
    failure = _party_failure(eng, spec, acct) or _market_failure(eng, spec)
    if failure:
        return failure
    if cmd.counterparty_account == cmd.account:
        return R.INVALID_ORDER, "the counterparty must be another account", "counterparty_account"
    if cmd.counterparty_account not in eng.accounts:
        return R.UNKNOWN_ACCOUNT, f"unknown counterparty account {cmd.counterparty_account!r}", "counterparty_account"
    failure = (
        _size_failure(spec, cmd.quantity) or _price_failure(eng, spec, cmd.price) or vintage_failure(spec, cmd.vintage, required=False)
    )
    if failure or cmd.side == "sell":
        return failure
    return holding_limit_failure(spec, acct, cmd.quantity, "account") or funds_failure(
        acct, buy_hold(cmd.price, cmd.quantity, spec.fee_buy_e8)
    )


def propose(eng: ExchangeState, cmd: BlockPropose) -> None:
    """Validate, freeze the proposer's side, and publish the proposal to both members."""
    acct = eng.owned_account(cmd, cmd.member, cmd.account)
    if acct is None or not eng.known_instrument(cmd, cmd.instrument):
        return
    spec = eng.specs[cmd.instrument]
    failure = _propose_failure(eng, spec, acct, cmd)
    if failure:
        _reject(eng, cmd, failure, cmd.instrument)
        return
    vintage = cmd.vintage or None
    p = Proposal(
        block_id=eng.blocks.next_block_id,
        instrument=cmd.instrument,
        side=cmd.side,
        price=cmd.price,
        quantity=cmd.quantity,
        vintage=vintage,
        proposer_account=acct.account,
        proposer_member=acct.member,
        counterparty_account=cmd.counterparty_account,
        counterparty_member=eng.accounts[cmd.counterparty_account].member,
    )
    if cmd.side == "buy":
        p.frozen_cash = buy_hold(cmd.price, cmd.quantity, spec.fee_buy_e8)
        hold_cash(acct, p.frozen_cash)
    else:
        alloc = freeze_tonnes(acct, cmd.instrument, cmd.quantity, vintage)
        if alloc is None:  # nothing was frozen
            _reject(eng, cmd, shortfall(acct, spec, cmd.quantity, vintage), cmd.instrument)
            return
        p.alloc = alloc
    eng.blocks.next_block_id += 1
    eng.blocks.proposals[p.block_id] = p
    _publish(eng, p, "proposed")
    _hold_events(eng, acct, p)


def _hold_events(eng: ExchangeState, acct: Account, p: Proposal) -> None:
    """Balance (buyer) or Holding events (seller) for the proposer's hold."""
    if p.side == "buy":
        eng.out.append(cash_event(acct, eng.seq, eng.ts))
    else:
        for v, _ in p.alloc:
            eng.out.append(holding_event(acct, p.instrument, v, eng.seq, eng.ts))


def _release(eng: ExchangeState, p: Proposal) -> None:
    """Give the proposer back exactly what the proposal froze."""
    acct = eng.accounts[p.proposer_account]
    if p.side == "buy":
        release_cash(acct, p.frozen_cash)
        p.frozen_cash = 0
        eng.out.append(cash_event(acct, eng.seq, eng.ts))
    else:
        for v in release_tonnes(acct, p.instrument, p.alloc):
            eng.out.append(holding_event(acct, p.instrument, v, eng.seq, eng.ts))


# ---------------------------------------------------------------------- find


def _find(eng: ExchangeState, cmd: BlockAccept | BlockDecline | BlockCancel, as_proposer: bool) -> Proposal | None:
    """The open proposal ``cmd`` may act on, or a reject. Whoever is not the right
    party (counterparty for accept/decline, proposer for cancel) sees UNKNOWN_BLOCK,
    exactly as for an id that does not exist."""
    if eng.owned_account(cmd, cmd.member, cmd.account) is None:
        return None
    p = eng.blocks.proposals.get(cmd.block_id)
    party = None if p is None else (p.proposer_account if as_proposer else p.counterparty_account)
    if p is None or party != cmd.account:
        eng.reject(cmd, R.UNKNOWN_BLOCK, f"no block {cmd.block_id} for this account", "block_id", account=cmd.account)
        return None
    if p.state != "proposed":
        eng.reject(cmd, R.UNKNOWN_BLOCK, f"block {cmd.block_id} is no longer open ({p.state})", "block_id", account=cmd.account)
        return None
    return p


def decline(eng: ExchangeState, cmd: BlockDecline) -> None:
    """The counterparty refuses: the proposer's hold is released. Allowed at any time."""
    p = _find(eng, cmd, as_proposer=False)
    if p is not None:
        _publish(eng, p, "declined")
        _release(eng, p)


def cancel(eng: ExchangeState, cmd: BlockCancel) -> None:
    """The proposer withdraws before acceptance: its hold is released. Allowed at any time."""
    p = _find(eng, cmd, as_proposer=True)
    if p is not None:
        _publish(eng, p, "cancelled")
        _release(eng, p)


# ---------------------------------------------------------------------- accept


def _accept_failure(eng: ExchangeState, spec: InstrumentSpec, acct: Account, p: Proposal) -> Failure | None:
    """Rules checked when the counterparty accepts: the market and the acceptor must
    still allow the trade (a blocked proposer's proposals were cancelled by the kill
    switch), the price must still be inside today's block band (the operator may have
    moved the reference), the buyer's holding limit, and the acceptor must be able to pay."""
    proposer = eng.accounts[p.proposer_account]
    failure = _party_failure(eng, spec, acct) or _market_failure(eng, spec)
    if failure:
        return failure
    failure = _price_failure(eng, spec, p.price)
    if failure:
        return failure
    if p.side == "buy":
        return holding_limit_failure(spec, proposer, p.quantity, "the proposing account")
    return holding_limit_failure(spec, acct, p.quantity, "account") or funds_failure(acct, buy_hold(p.price, p.quantity, spec.fee_buy_e8))


def accept(eng: ExchangeState, cmd: BlockAccept) -> None:
    """Check and freeze the counterparty's side, then settle both sides as one trade."""
    p = _find(eng, cmd, as_proposer=False)
    if p is None:
        return
    spec = eng.specs[p.instrument]
    acct = eng.accounts[cmd.account]
    failure = _accept_failure(eng, spec, acct, p)
    if failure:
        _reject(eng, cmd, failure, p.instrument)
        return
    proposer = eng.accounts[p.proposer_account]
    if p.side == "buy":  # the acceptor sells: its tonnes are the last thing checked
        alloc = freeze_tonnes(acct, p.instrument, p.quantity, p.vintage)
        if alloc is None:
            _reject(eng, cmd, shortfall(acct, spec, p.quantity, p.vintage), p.instrument)
            return
        hold, buyer, seller = p.frozen_cash, proposer, acct
        p.frozen_cash = 0
    else:
        alloc, p.alloc = p.alloc, []
        hold = buy_hold(p.price, p.quantity, spec.fee_buy_e8)
        hold_cash(acct, hold)
        buyer, seller = acct, proposer
    _settle(eng, spec, p, buyer, seller, hold, alloc)


def _settle(
    eng: ExchangeState, spec: InstrumentSpec, p: Proposal, buyer: Account, seller: Account, hold: int, alloc: list[list[int]]
) -> None:
    """Delivery versus payment, as ``matching.fill`` does for one listing fill: the
    buyer's hold pays notional + fee, the seller's frozen tonnes go to the buyer
    (``locked`` under T+1 resale) and it receives notional less fee."""
    sym = p.instrument
    notional = p.price * p.quantity
    fee_b = fee(notional, spec.fee_buy_e8)
    fee_s = fee(notional, spec.fee_sell_e8)
    delivered = [(v, n) for v, n in alloc if n]
    settle_dvp(buyer, seller, sym, delivered, hold, notional, (fee_b, fee_s), spec.t1_resale)
    eng.fees_collected += fee_b + fee_s
    p.trade_id = eng.next_trade_id
    eng.next_trade_id += 1
    acceptor_side = "sell" if p.side == "buy" else "buy"
    trade = Trade(
        seq=eng.seq,
        ts=eng.ts,
        trade_id=p.trade_id,
        instrument=sym,
        price=p.price,
        quantity=p.quantity,
        aggressor=acceptor_side,  # type: ignore[arg-type]
        buy_order_id=0,
        sell_order_id=0,
        buy_account=buyer.account,
        sell_account=seller.account,
        buy_member=buyer.member,
        sell_member=seller.member,
        buy_fee=fee_b,
        sell_fee=fee_s,
        block=True,
        vintages=delivered if delivered[0][0] else None,
    )
    out = eng.out
    out.append(trade)
    out.append(cash_event(buyer, eng.seq, eng.ts))
    out.append(cash_event(seller, eng.seq, eng.ts))
    for vintage, _ in delivered:
        out.append(holding_event(buyer, sym, vintage, eng.seq, eng.ts))
        out.append(holding_event(seller, sym, vintage, eng.seq, eng.ts))
    _publish(eng, p, "accepted")
    record_trade(eng, trade, listing=False)


# ---------------------------------------------------------------------- kill switch, day close


def on_blocked(eng: ExchangeState, member: str | None, account: str | None) -> None:
    """Kill switch: open proposals involving the blocked member or account (on either
    side) are cancelled and the proposer's hold released, as open orders are. Such a
    proposal could never be accepted anyway; this stops it holding cash or tonnes."""
    for p in eng.blocks.proposals.values():
        parties = ((p.proposer_member, p.proposer_account), (p.counterparty_member, p.counterparty_account))
        if p.state == "proposed" and any(m == member or a == account for m, a in parties):
            _publish(eng, p, "cancelled")
            _release(eng, p)


# ---------------------------------------------------------------------- day close


def on_day_close(eng: ExchangeState) -> None:
    """Proposals not accepted by day close expire (their holds are released); then
    the day's finished proposals are dropped so the desk does not grow forever."""
    desk = eng.blocks
    for p in desk.proposals.values():
        if p.state == "proposed":
            _publish(eng, p, "expired")
            _release(eng, p)
    desk.proposals = {}
    eng.finished_blocks.clear()


HANDLERS: dict[type, Handler] = {
    BlockPropose: propose,
    BlockAccept: accept,
    BlockDecline: decline,
    BlockCancel: cancel,
}
