"""Paid competitive allocation: sealed-bid, uniform-price allowance auctions (MARKET_RULES §5).

An auction round lives in ``AuctionDesk.auctions`` (part of every engine snapshot) from
creation to its final state. Its life is driven by operator commands carrying their own
time: create (``scheduled``) -> open (bids accepted) -> close, which clears, settles and
publishes in the same command (``cleared``), or cancel at any point before that
(``cancelled``, every frozen fen released).

The four rule sets (``PRESETS``) are settings of one clearing algorithm (``clear``),
copied into the auction at creation so a later change of a preset never rewrites
history. Random tie-breaking orders the tied bids by a keyed hash of (seed, bid id)
(``draw_key``), with the seed carried by ``AuctionCreate`` (chosen and journaled by the
gateway), so a replay reproduces every draw on any Python version.

The *bidder* is the account: eligibility, caps and the ``bidders``/``winners`` counts
are per account. Bids are sealed: their events are private to the bidder's member and
nothing public (``AuctionUpdate``) carries counts, totals or prices until results are
published.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import TYPE_CHECKING

import msgspec

from carbonx.engine import reasons as R
from carbonx.engine.accounts import Account, cash_event, hold_cash, holding_event, position, release_cash
from carbonx.engine.checks import (
    Failure,
    blocked_failure,
    funds_failure,
    holding_limit_failure,
    tick_failure,
    valid_client_id,
    vintage_failure,
)
from carbonx.engine.desks import Auction, AuctionDesk, Bid, Rules, TieRule
from carbonx.engine.schema import (
    PARTICIPANT_TYPES,
    AuctionAmendBid,
    AuctionBid,
    AuctionCancel,
    AuctionClose,
    AuctionCreate,
    AuctionInfo,
    AuctionOpen,
    AuctionResults,
    AuctionUpdate,
    AuctionWithdrawBid,
    BidUpdate,
    Command,
)
from carbonx.engine.state import ExchangeState, Handler

if TYPE_CHECKING:
    from carbonx.engine.config import InstrumentSpec

__all__ = ["DEFAULT_RULE_SET", "HANDLERS", "PRESETS", "Auction", "AuctionDesk", "Bid", "Outcome", "Rules", "clear", "seeded_order"]

MAX_FACTOR_PCT = 1_000
LIVE = ("active", "amended")


PRESETS: dict[str, Rules] = {
    "shanghai": Rules(ties="time", price="lowest_filled", undersubscribed="fill"),
    "eu": Rules(ties="random", price="lowest_filled", undersubscribed="cancel"),
    "quebec": Rules(ties="pro_rata", price="lowest_filled", undersubscribed="fill"),
    "rggi": Rules(ties="time", price="highest_rejected", undersubscribed="fill"),
}
DEFAULT_RULE_SET = "shanghai"


class Outcome(msgspec.Struct, kw_only=True):
    """What ``clear`` decided: the uniform price and tonnes per winning bid id, or
    that the auction is cancelled (undersubscribed under a ``cancel`` rule set)."""

    price: int
    allocations: dict[int, int]
    cancelled: bool = False


# ---------------------------------------------------------------------- clearing


def clear(bids: list[Bid], offer: int, lot: int, reserve: int, rules: Rules, seed: int) -> Outcome:
    """The one clearing algorithm; ``bids`` are the valid bids, any order.

    Bids are ranked by price (high first) then time; they fill in that order until the
    offer is used up. Only the *marginal* price level (where the offer runs out) is
    rationed, by ``rules.ties``: ``time`` (earliest first, the last one partly),
    ``random`` (a seeded draw, the last one partly) or ``pro_rata`` (whole lots in
    proportion to the quantity bid, leftover lots one each by the seeded draw).
    The uniform price is the lowest filled bid, or the highest (partly) rejected bid
    under ``highest_rejected`` — the reserve price when nothing is rejected. Total
    demand below the offer fills every bid (``fill``) or cancels (``cancel``).
    Sorting makes it O(n log n); every quantity stays a multiple of ``lot``.
    """
    total = sum(b.quantity for b in bids)
    if total <= offer:
        if total < offer and rules.undersubscribed == "cancel":
            return Outcome(price=0, allocations={}, cancelled=True)
        if not bids:
            return Outcome(price=0, allocations={})
        price = min(b.price for b in bids) if rules.price == "lowest_filled" else reserve
        return Outcome(price=price, allocations={b.bid_id: b.quantity for b in bids})
    ranked = sorted(bids, key=_by_prio)  # nearly sorted already: timsort is close to linear
    ranked.sort(key=_by_price, reverse=True)  # stable, so time order survives within a price
    start, cum = 0, 0
    while True:  # find the marginal level [start, end): the offer runs out inside it
        level_price, end, level_qty = ranked[start].price, start, 0
        while end < len(ranked) and ranked[end].price == level_price:
            level_qty += ranked[end].quantity
            end += 1
        if cum + level_qty >= offer:
            break
        cum += level_qty
        start = end
    allocations = {b.bid_id: b.quantity for b in ranked[:start]}
    allocations.update(_ration(ranked[start:end], offer - cum, lot, rules.ties, seed))
    price = level_price
    if rules.price == "highest_rejected" and cum + level_qty == offer:
        price = ranked[end].price  # the level filled exactly: the next one down is rejected
    return Outcome(price=price, allocations=allocations)


_by_prio = attrgetter("prio")
_by_price = attrgetter("price")


def _ration(level: list[Bid], remaining: int, lot: int, ties: TieRule, seed: int) -> dict[int, int]:
    """Share ``remaining`` tonnes among the bids of the marginal level (in time order)."""
    if ties == "time":
        return _fill_in_order(level, remaining)
    drawn = seeded_order(level, seed)
    if ties == "random":
        return _fill_in_order(drawn, remaining)
    lots, level_lots = remaining // lot, sum(b.quantity for b in level) // lot
    shares = {b.bid_id: (b.quantity // lot) * lots // level_lots for b in level}
    leftover = lots - sum(shares.values())  # < len(level): each floor loses under one lot
    for b in drawn[:leftover]:
        shares[b.bid_id] += 1
    return {bid_id: n * lot for bid_id, n in shares.items() if n}


def _fill_in_order(level: list[Bid], remaining: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for b in level:
        if not remaining:
            break
        n = min(b.quantity, remaining)
        out[b.bid_id] = n
        remaining -= n
    return out


def draw_key(seed: int, bid_id: int) -> bytes:
    """A bid's place in the seeded draw: BLAKE2b of its id keyed with the auction's seed.
    Both are fixed by the journal and the hash is fixed by its specification, so every
    Python version and machine draws the same order (``random.Random`` guarantees that
    only for ``random()``, not for ``shuffle``)."""
    key = seed.to_bytes(8, "big")  # ranges.SEED: 0 .. 2**63-1
    return hashlib.blake2b(bid_id.to_bytes(8, "big"), digest_size=16, key=key).digest()


def seeded_order(level: list[Bid], seed: int) -> list[Bid]:
    """The seeded draw: the tied bids sorted by ``draw_key(seed, bid_id)`` (a bid id is
    unique, so the order is total)."""
    return sorted(level, key=lambda b: draw_key(seed, b.bid_id))


# ---------------------------------------------------------------------- creation


def reserve_from_history(eng: ExchangeState, cmd: AuctionCreate, spec: InstrumentSpec) -> tuple[int, dict[str, int]] | None:
    """Reserve = VWAP of listing trades of the last ``lookback`` closed days x factor,
    capped, rounded half up to the tick; returns (price, inputs) or rejects.
    Block trades never reach ``history`` (``matching.record_trade(listing=False)``)."""
    days = cmd.reserve_lookback_days or 0
    if days <= 0:
        eng.reject(cmd, R.INVALID_ORDER, "reserve_lookback_days must be a positive number of days", "reserve_lookback_days")
        return None
    if not 0 < cmd.reserve_factor_pct <= MAX_FACTOR_PCT:
        eng.reject(cmd, R.INVALID_ORDER, f"reserve_factor_pct must be 1 to {MAX_FACTOR_PCT}", "reserve_factor_pct")
        return None
    if cmd.reserve_cap is not None and not _price_ok(eng, cmd, spec, cmd.reserve_cap, "reserve_cap"):
        return None
    window = eng.instruments[cmd.instrument].history[-days:]
    notional = sum(n for _, n, _ in window)
    volume = sum(v for _, _, v in window)
    if not volume:
        eng.reject(
            cmd, R.NO_REFERENCE_DATA, f"no listing trades in {cmd.instrument} in the last {days} closed days", "reserve_lookback_days"
        )
        return None
    tick, factor = spec.tick, cmd.reserve_factor_pct
    unit = volume * 100 * tick  # raw price in ticks = notional * factor / unit
    computed = max(tick, (2 * notional * factor + unit) // (2 * unit) * tick)
    reserve = computed if cmd.reserve_cap is None else min(computed, cmd.reserve_cap)
    inputs = {
        "lookback_days": days,
        "days_used": len(window),
        "notional": notional,
        "volume": volume,
        "vwap": (2 * notional + volume) // (2 * volume),
        "factor_pct": factor,
        "tick": tick,
        "computed": computed,
    }
    if cmd.reserve_cap is not None:
        inputs["cap"] = cmd.reserve_cap
    return reserve, inputs


def _price_ok(eng: ExchangeState, cmd: Command, spec: InstrumentSpec, price: int, field: str) -> bool:
    failure = tick_failure(price, spec.tick, field, field)
    if failure is not None:
        eng.reject(cmd, *failure)
    return failure is None


def _reserve(eng: ExchangeState, cmd: AuctionCreate, spec: InstrumentSpec) -> tuple[int, dict[str, int] | None] | None:
    if cmd.reserve_price is not None:
        if cmd.reserve_lookback_days is not None:
            eng.reject(cmd, R.INVALID_ORDER, "give reserve_price or reserve_lookback_days, not both", "reserve_price")
            return None
        return (cmd.reserve_price, None) if _price_ok(eng, cmd, spec, cmd.reserve_price, "reserve_price") else None
    if cmd.reserve_lookback_days is None:
        eng.reject(cmd, R.INVALID_ORDER, "a reserve price is required: give reserve_price or reserve_lookback_days", "reserve_price")
        return None
    return reserve_from_history(eng, cmd, spec)


def _vintage_ok(eng: ExchangeState, cmd: AuctionCreate, spec: InstrumentSpec) -> bool:
    failure = vintage_failure(spec, cmd.vintage, required=True)
    if failure is not None:
        eng.reject(cmd, *failure)
    return failure is None


def _shape_ok(eng: ExchangeState, cmd: AuctionCreate) -> bool:
    """Quantities, rule set and window; the offer must be whole lots so every
    allocation under every rule set is whole lots too."""
    if cmd.rule_set not in PRESETS:
        eng.reject(cmd, R.INVALID_ORDER, f"rule_set must be one of {sorted(PRESETS)}", "rule_set")
    elif cmd.min_lot <= 0:
        eng.reject(cmd, R.INVALID_LOT, "min_lot must be a positive number of tonnes", "min_lot")
    elif cmd.quantity <= 0:
        eng.reject(cmd, R.INVALID_QUANTITY, "quantity offered must be positive", "quantity")
    elif cmd.quantity % cmd.min_lot:
        eng.reject(cmd, R.INVALID_LOT, f"quantity offered must be a multiple of min_lot {cmd.min_lot} t", "quantity")
    elif cmd.start_ts is not None and cmd.end_ts is not None and cmd.end_ts <= cmd.start_ts:
        eng.reject(cmd, R.INVALID_ORDER, "the bidding window ends before it starts", "end_ts")
    else:
        return True
    return False


def _eligibility(eng: ExchangeState, cmd: AuctionCreate, spec: InstrumentSpec) -> tuple[list[str], dict[str, int]] | None:
    """(eligible types, caps): caps are the market's ``bidder_caps`` overridden per type
    by ``cmd.caps``; by default the eligible types are those with a cap that may hold
    the instrument. A type listed in ``eligible`` without a cap has no cap."""
    caps = dict(eng.config.bidder_caps)
    for kind, cap in (cmd.caps or {}).items():
        if kind not in PARTICIPANT_TYPES or cap <= 0:
            eng.reject(cmd, R.INVALID_ORDER, f"caps: {kind!r} must be a participant type with a positive cap", "caps")
            return None
        caps[kind] = cap
    if cmd.eligible is None:
        eligible = [t for t in PARTICIPANT_TYPES if t in caps and t in spec.eligible]
    else:
        bad = [t for t in cmd.eligible if t not in spec.eligible]
        if bad or not cmd.eligible or len(set(cmd.eligible)) != len(cmd.eligible):
            eng.reject(cmd, R.NOT_ELIGIBLE, f"eligible must be distinct types among {list(spec.eligible)}", "eligible")
            return None
        eligible = [t for t in PARTICIPANT_TYPES if t in cmd.eligible]
    return eligible, {t: caps[t] for t in eligible if t in caps}


def create(eng: ExchangeState, cmd: AuctionCreate) -> None:
    if not eng.known_instrument(cmd, cmd.instrument):
        return
    spec = eng.specs[cmd.instrument]
    if not _vintage_ok(eng, cmd, spec) or not _shape_ok(eng, cmd):
        return
    who = _eligibility(eng, cmd, spec)
    reserve = _reserve(eng, cmd, spec) if who is not None else None
    if who is None or reserve is None:
        return
    rules = PRESETS[cmd.rule_set]
    if cmd.irrevocable is not None:
        rules = msgspec.structs.replace(rules, irrevocable=cmd.irrevocable)
    desk = eng.auctions
    info = AuctionInfo(
        auction_id=desk.next_auction_id,
        instrument=cmd.instrument,
        vintage=cmd.vintage or None,
        quantity=cmd.quantity,
        reserve_price=reserve[0],
        reserve_inputs=reserve[1],
        rule_set=cmd.rule_set,
        eligible=who[0],
        caps=who[1],
        min_lot=cmd.min_lot,
        irrevocable=rules.irrevocable,
        suspend_trading=cmd.suspend_trading,
        start_ts=cmd.start_ts,
        end_ts=cmd.end_ts,
        state="scheduled",
        created_ts=cmd.ts,
    )
    desk.auctions[info.auction_id] = Auction(info=info, rules=rules, seed=cmd.seed)
    desk.next_auction_id += 1
    _publish(eng, desk.auctions[info.auction_id])


def _publish(eng: ExchangeState, auction: Auction) -> None:
    """Public AuctionUpdate: settings and state only — never counts or totals until
    ``results`` exist. The info is copied so the event never changes afterwards."""
    eng.out.append(AuctionUpdate(seq=eng.seq, ts=eng.ts, auction=msgspec.structs.replace(auction.info), results=auction.results))


# ---------------------------------------------------------------------- operator lifecycle


def _auction(eng: ExchangeState, cmd: Command, auction_id: int) -> Auction | None:
    auction = eng.auctions.auctions.get(auction_id)
    if auction is None:
        eng.reject(cmd, R.UNKNOWN_AUCTION, f"no auction {auction_id}", "auction_id")
    return auction


def open_auction(eng: ExchangeState, cmd: AuctionOpen) -> None:
    """Open the bidding window; suspend listing trading in the instrument if asked."""
    auction = _auction(eng, cmd, cmd.auction_id)
    if auction is None:
        return
    info = auction.info
    if info.state != "scheduled":
        eng.reject(cmd, R.INVALID_STATE, f"auction {info.auction_id} is {info.state}, not scheduled", "auction_id")
        return
    st = eng.instruments[info.instrument]
    if info.suspend_trading and st.suspended_by:
        eng.reject(cmd, R.INVALID_STATE, f"{info.instrument} is already suspended by auction {st.suspended_by}", "auction_id")
        return
    info.state = "open"
    _publish(eng, auction)
    if info.suspend_trading:
        st.suspended_by = info.auction_id
        eng.publish_phases()


def _lift_suspension(eng: ExchangeState, info: AuctionInfo) -> None:
    st = eng.instruments[info.instrument]
    if st.suspended_by == info.auction_id:
        st.suspended_by = 0
        eng.publish_phases()


def cancel_auction(eng: ExchangeState, cmd: AuctionCancel) -> None:
    """Cancel before settlement: every live bid is cancelled and its cash released."""
    auction = _auction(eng, cmd, cmd.auction_id)
    if auction is None:
        return
    if auction.info.state not in ("scheduled", "open"):
        eng.reject(cmd, R.INVALID_STATE, f"auction {cmd.auction_id} is {auction.info.state}: too late to cancel", "auction_id")
        return
    _cancel(eng, auction)


def _cancel(eng: ExchangeState, auction: Auction) -> None:
    touched: dict[str, Account] = {}
    for bid in auction.bids.values():
        if bid.status in LIVE:
            acct = touched.setdefault(bid.account, eng.accounts[bid.account])
            _release(acct, bid)
            bid.status = "cancelled"
            _stamp(eng, bid)
            eng.out.append(bid_update(bid))
    auction.declared.clear()
    auction.client_ids.clear()
    for acct in touched.values():
        eng.out.append(cash_event(acct, eng.seq, eng.ts))
    auction.info.state = "cancelled"
    _publish(eng, auction)
    _lift_suspension(eng, auction.info)


def close_auction(eng: ExchangeState, cmd: AuctionClose) -> None:
    """Close the window, clear, settle and publish, all in this one command."""
    auction = _auction(eng, cmd, cmd.auction_id)
    if auction is None:
        return
    info = auction.info
    if info.state != "open":
        eng.reject(cmd, R.AUCTION_NOT_OPEN, f"auction {info.auction_id} is {info.state}, not open", "auction_id")
        return
    info.state = "closed"
    _publish(eng, auction)
    live = [b for b in auction.bids.values() if b.status in LIVE]
    outcome = clear(live, info.quantity, info.min_lot, info.reserve_price, auction.rules, auction.seed)
    auction.results = _results(info.quantity, live, outcome)
    if outcome.cancelled:
        _cancel(eng, auction)
        return
    _settle(eng, auction, live, outcome)
    info.state = "cleared"
    _publish(eng, auction)
    _lift_suspension(eng, info)


def _results(offer: int, live: list[Bid], outcome: Outcome) -> AuctionResults:
    valid = sum(b.quantity for b in live)
    sold = sum(outcome.allocations.values())
    winners = {b.account for b in live if b.bid_id in outcome.allocations}
    return AuctionResults(
        quantity_offered=offer,
        valid_bid_quantity=valid,
        bidders=len({b.account for b in live}),
        winners=len(winners),
        quantity_sold=sold,
        clearing_price=outcome.price if sold else 0,
        total_amount=outcome.price * sold,
        cover_ratio_bp=valid * 10_000 // offer,
    )


def _settle(eng: ExchangeState, auction: Auction, live: list[Bid], outcome: Outcome) -> None:
    """Winners pay price x allocated from their frozen cash; the rest is released;
    allocated tonnes are credited compliance-only (never sellable) in the vintage.
    One tight loop over the bids (the benchmark's hot path), then one Balance per
    bidder and one Holding per winner."""
    info, price, allocations = auction.info, outcome.price, outcome.allocations
    seq, ts, out, accounts = eng.seq, eng.ts, eng.out, eng.accounts
    won: dict[str, int] = {}
    touched: dict[str, Account] = {}
    for bid in live:
        n = allocations.get(bid.bid_id, 0)
        amount = n * price
        acct = touched.get(bid.account)
        if acct is None:
            acct = touched[bid.account] = accounts[bid.account]
        acct.frozen -= bid.frozen  # release_cash(acct, bid.frozen) and pay amount, inline (hot loop)
        acct.available += bid.frozen - amount
        bid.frozen, bid.allocated, bid.amount, bid.seq, bid.ts = 0, n, amount, seq, ts
        if n:
            bid.status = "won" if n == bid.quantity else "partially_won"
            won[bid.account] = won.get(bid.account, 0) + n
        else:
            bid.status = "lost"
        out.append(bid_update(bid))
    for acct in touched.values():
        out.append(cash_event(acct, seq, ts))
    sym, vintage = info.instrument, info.vintage or 0
    for account, n in won.items():
        acct = touched[account]
        position(acct, sym, vintage).compliance_only += n
        out.append(holding_event(acct, sym, vintage, seq, ts))
    assert auction.results is not None
    eng.auctions.proceeds += auction.results.total_amount
    eng.auctions.issued += auction.results.quantity_sold
    auction.declared.clear()
    auction.client_ids.clear()


def _release(acct: Account, bid: Bid) -> None:
    release_cash(acct, bid.frozen)
    bid.frozen = 0


def _stamp(eng: ExchangeState, bid: Bid) -> None:
    bid.seq, bid.ts = eng.seq, eng.ts


def bid_update(bid: Bid) -> BidUpdate:
    return BidUpdate(
        seq=bid.seq,
        ts=bid.ts,
        auction_id=bid.auction_id,
        bid_id=bid.bid_id,
        client_bid_id=bid.client_bid_id,
        member=bid.member,
        account=bid.account,
        price=bid.price,
        quantity=bid.quantity,
        status=bid.status,  # type: ignore[arg-type]
        allocated=bid.allocated,
        amount=bid.amount,
    )


# ---------------------------------------------------------------------- bidders


def _bidder(eng: ExchangeState, cmd: AuctionBid) -> tuple[Auction, Account] | None:
    """Who may bid now: a known auction, an own unblocked account of an eligible type,
    and an open window (state ``open`` and, if set, start_ts <= ts < end_ts)."""
    auction = _auction(eng, cmd, cmd.auction_id)
    if auction is None:
        return None
    acct = eng.owned_account(cmd, cmd.member, cmd.account)
    if acct is None:
        return None
    info = auction.info
    blocked = blocked_failure(eng, acct)
    if blocked is not None:
        eng.reject(cmd, *blocked, account=cmd.account)
    elif not _window_open(info, eng.ts):
        eng.reject(
            cmd, R.AUCTION_NOT_OPEN, f"auction {info.auction_id} is not accepting bids ({info.state})", "auction_id", account=cmd.account
        )
    elif acct.type not in info.eligible:
        eng.reject(cmd, R.NOT_ELIGIBLE, f"{acct.type} accounts may not bid in auction {info.auction_id}", "account", account=cmd.account)
    else:
        return auction, acct
    return None


def _window_open(info: AuctionInfo, ts: int) -> bool:
    return info.state == "open" and (info.start_ts is None or ts >= info.start_ts) and (info.end_ts is None or ts < info.end_ts)


def _terms_failure(eng: ExchangeState, auction: Auction, acct: Account, price: int, qty: int, old: Bid | None) -> Failure | None:
    """The first rule a bid's terms break (price, lot, cap, holding limit, cash), or None. ``old`` is
    the bid being amended: its declared tonnes and frozen cash count as available."""
    info = auction.info
    failure = tick_failure(price, eng.specs[info.instrument].tick)
    if failure is not None:
        return failure
    if price < info.reserve_price:
        return R.BELOW_RESERVE, f"price is below the reserve price {info.reserve_price / 100:.2f}", "price"
    if qty <= 0:
        return R.INVALID_QUANTITY, "quantity must be positive", "quantity"
    if qty % info.min_lot:
        return R.INVALID_LOT, f"quantity must be a multiple of the minimum lot {info.min_lot} t", "quantity"
    cap = info.caps.get(acct.type)
    declared = auction.declared.get(acct.account, 0) - (old.quantity if old else 0) + qty
    if cap is not None and declared > cap:
        return R.BIDDER_CAP, f"would declare {declared} t in total, cap for {acct.type} is {cap} t", "quantity"
    # won tonnes count as held: winning every live bid must stay within the limit
    return holding_limit_failure(eng.specs[info.instrument], acct, declared) or funds_failure(
        acct, price * qty - (old.frozen if old else 0)
    )


def _client_id_failure(auction: Auction, account: str, client_bid_id: str) -> Failure | None:
    if not client_bid_id:
        return None
    if not valid_client_id(client_bid_id):
        return R.INVALID_ORDER, "client_bid_id must be 1-36 printable ASCII characters", "client_bid_id"
    if client_bid_id in auction.client_ids.get(account, {}):
        return R.DUPLICATE_CLIENT_ORDER_ID, f"client_bid_id {client_bid_id!r} is already used by a live bid", "client_bid_id"
    return None


def place_bid(eng: ExchangeState, cmd: AuctionBid) -> None:
    """Accept a sealed bid and freeze price x quantity of the account's cash."""
    found = _bidder(eng, cmd)
    if found is None:
        return
    auction, acct = found
    failure = _client_id_failure(auction, acct.account, cmd.client_bid_id) or _terms_failure(
        eng, auction, acct, cmd.price, cmd.quantity, None
    )
    if failure is not None:
        eng.reject(cmd, *failure, account=cmd.account, instrument=auction.info.instrument)
        return
    desk = eng.auctions
    bid = Bid(
        bid_id=desk.next_bid_id,
        auction_id=cmd.auction_id,
        client_bid_id=cmd.client_bid_id,
        member=cmd.member,
        account=cmd.account,
        price=cmd.price,
        quantity=cmd.quantity,
        prio=eng.seq,
        frozen=cmd.price * cmd.quantity,
        seq=eng.seq,
        ts=eng.ts,
    )
    desk.next_bid_id += 1
    auction.bids[bid.bid_id] = bid
    auction.declared[acct.account] = auction.declared.get(acct.account, 0) + bid.quantity
    if bid.client_bid_id:
        auction.client_ids.setdefault(acct.account, {})[bid.client_bid_id] = bid.bid_id
    hold_cash(acct, bid.frozen)
    eng.out.append(bid_update(bid))
    eng.out.append(cash_event(acct, eng.seq, eng.ts))


def _own_live_bid(eng: ExchangeState, cmd: AuctionAmendBid | AuctionWithdrawBid) -> tuple[Auction, Bid] | None:
    """The member's live bid in an auction that still takes changes, or a reject.
    Another member's bid id gets exactly the answer an unknown one gets (UNKNOWN_BID)."""
    auction = _auction(eng, cmd, cmd.auction_id)
    if auction is None:
        return None
    bid = auction.bids.get(cmd.bid_id)
    if bid is None or bid.member != cmd.member:
        eng.reject(cmd, R.UNKNOWN_BID, f"no bid {cmd.bid_id} in auction {cmd.auction_id}", "bid_id")
        return None
    info = auction.info
    if not _window_open(info, eng.ts):
        eng.reject(
            cmd, R.AUCTION_NOT_OPEN, f"auction {info.auction_id} is not accepting changes ({info.state})", "auction_id", account=bid.account
        )
    elif bid.status not in LIVE:
        eng.reject(cmd, R.UNKNOWN_BID, f"bid {bid.bid_id} is {bid.status}, no longer live", "bid_id", account=bid.account)
    elif auction.rules.irrevocable:
        eng.reject(
            cmd, R.BIDS_IRREVOCABLE, f"bids in auction {info.auction_id} cannot be changed or withdrawn", "bid_id", account=bid.account
        )
    else:
        return auction, bid
    return None


def amend_bid(eng: ExchangeState, cmd: AuctionAmendBid) -> None:
    """Change a live bid's price and/or quantity; the frozen cash follows. A pure
    reduction keeps the bid's time priority; a price change or an increase loses it."""
    found = _own_live_bid(eng, cmd)
    if found is None:
        return
    auction, bid = found
    acct = eng.accounts[bid.account]
    price = bid.price if cmd.price is None else cmd.price
    qty = bid.quantity if cmd.quantity is None else cmd.quantity
    failure: Failure | None = None
    if cmd.price is None and cmd.quantity is None:
        failure = R.INVALID_ORDER, "amend needs a new price or quantity", "price"
    else:
        failure = blocked_failure(eng, acct) or _terms_failure(eng, auction, acct, price, qty, bid)
    if failure is not None:
        eng.reject(cmd, *failure, account=bid.account, instrument=auction.info.instrument)
        return
    if price != bid.price or qty > bid.quantity:
        bid.prio = eng.seq
    auction.declared[acct.account] += qty - bid.quantity
    frozen = price * qty
    hold_cash(acct, frozen - bid.frozen)
    bid.price, bid.quantity, bid.frozen, bid.status = price, qty, frozen, "amended"
    _stamp(eng, bid)
    eng.out.append(bid_update(bid))
    eng.out.append(cash_event(acct, eng.seq, eng.ts))


def withdraw_bid(eng: ExchangeState, cmd: AuctionWithdrawBid) -> None:
    """Withdraw a live bid and release its cash (allowed for a blocked account too,
    like a cancel)."""
    found = _own_live_bid(eng, cmd)
    if found is None:
        return
    auction, bid = found
    acct = eng.accounts[bid.account]
    _release(acct, bid)
    _forget(auction, bid)
    bid.status = "withdrawn"
    _stamp(eng, bid)
    eng.out.append(bid_update(bid))
    eng.out.append(cash_event(acct, eng.seq, eng.ts))


def _forget(auction: Auction, bid: Bid) -> None:
    """Drop a bid that stops being live from the cap total and the client id index."""
    left = auction.declared[bid.account] - bid.quantity
    if left:
        auction.declared[bid.account] = left
    else:
        del auction.declared[bid.account]
    ids = auction.client_ids.get(bid.account)
    if ids is not None and bid.client_bid_id:
        ids.pop(bid.client_bid_id, None)
        if not ids:
            del auction.client_ids[bid.account]


# ---------------------------------------------------------------------- queries (not journaled)


def due(eng: ExchangeState, ts: int) -> list[Command]:
    """The window edges that have come by ``ts``: open a scheduled auction whose
    ``start_ts`` has come (unless its instrument is already suspended by another
    round, which the operator must sort out), close — clear, settle, publish — an open
    auction whose ``end_ts`` has passed. The gateway's clock applies these as ordinary
    journaled commands, so the engine itself stays clock-free and replay is exact."""
    out: list[Command] = []
    for auction in eng.auctions.auctions.values():
        info = auction.info
        if info.state == "scheduled" and info.start_ts is not None and ts >= info.start_ts:
            if not (info.suspend_trading and eng.instruments[info.instrument].suspended_by):
                out.append(AuctionOpen(ts=ts, auction_id=info.auction_id))
        elif info.state == "open" and info.end_ts is not None and ts >= info.end_ts:
            out.append(AuctionClose(ts=ts, auction_id=info.auction_id))
    return out


def list_auctions(eng: ExchangeState) -> list[AuctionInfo]:
    """Every auction's public record, by id."""
    return [a.info for a in eng.auctions.auctions.values()]


def auction_view(eng: ExchangeState, auction_id: int) -> tuple[AuctionInfo, AuctionResults | None] | None:
    """(public record, results once published) or None for an unknown auction."""
    auction = eng.auctions.auctions.get(auction_id)
    return None if auction is None else (auction.info, auction.results)


def bids_of(eng: ExchangeState, member: str, auction_id: int, account: str) -> list[BidUpdate] | None:
    """The account's own bids (every state); None when the auction is unknown or the
    member does not own the account — sealed: nobody else's bids are reachable."""
    auction = eng.auctions.auctions.get(auction_id)
    if auction is None or eng.account_of(member, account) is None:
        return None
    return [bid_update(b) for b in auction.bids.values() if b.account == account]


def all_bids(eng: ExchangeState, auction_id: int) -> list[BidUpdate] | None:
    """Every bid of the auction, for operators (``admin.auction.bids``) only."""
    auction = eng.auctions.auctions.get(auction_id)
    return None if auction is None else [bid_update(b) for b in auction.bids.values()]


HANDLERS: dict[type, Handler] = {
    AuctionCreate: create,
    AuctionOpen: open_auction,
    AuctionClose: close_auction,
    AuctionCancel: cancel_auction,
    AuctionBid: place_bid,
    AuctionAmendBid: amend_bid,
    AuctionWithdrawBid: withdraw_bid,
}
