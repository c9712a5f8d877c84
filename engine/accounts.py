"""Accounts: cash and holdings, and the ledger moves that keep them conserved.

Cash is ``available`` + ``frozen`` fen. Holdings are kept per instrument and vintage
(vintage 0 for instruments without vintages) as ``tradable`` (sellable), ``frozen``
(held by a live sell order, block proposal or pending retirement), ``compliance_only``
(won at auction: can be surrendered or retired, never sold) and ``locked`` (bought
today on an instrument with T+1 resale: sellable from the next trading day).

Every function here moves amounts between those buckets or between accounts; none
creates or destroys value except ``deposit``/``withdraw`` (operator) and fees. Callers
emit the Balance/Holding events with ``cash_event``/``holding_event``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from carbonx.engine.schema import Balance, Holding


class Position(msgspec.Struct, array_like=True, gc=False):
    """Tonnes of one instrument and vintage in one account."""

    tradable: int = 0
    frozen: int = 0
    compliance_only: int = 0
    locked: int = 0

    def total(self) -> int:
        return self.tradable + self.frozen + self.compliance_only + self.locked


class Account(msgspec.Struct, kw_only=True):
    account: str
    member: str
    type: str
    blocked: bool = False
    available: int = 0  # fen
    frozen: int = 0  # fen
    holdings: dict[str, dict[int, Position]] = {}
    open_buy: dict[str, int] = {}  # instrument -> leaves of live buys (holding limits)


class Member(msgspec.Struct, kw_only=True):
    member: str
    key_id: str
    secret_hash: str
    blocked: bool = False


def position(acct: Account, instrument: str, vintage: int) -> Position:
    """The account's position, created empty on first touch."""
    by_vintage = acct.holdings.get(instrument)
    if by_vintage is None:
        by_vintage = acct.holdings[instrument] = {}
    pos = by_vintage.get(vintage)
    if pos is None:
        pos = by_vintage[vintage] = Position()
    return pos


def hold_cash(acct: Account, amount: int) -> None:
    """Move ``amount`` fen from available to frozen (an order, bid or block's hold)."""
    acct.available -= amount
    acct.frozen += amount


def release_cash(acct: Account, amount: int) -> None:
    """Move ``amount`` fen of a hold back from frozen to available."""
    acct.frozen -= amount
    acct.available += amount


def total_held(acct: Account, instrument: str) -> int:
    """All tonnes of an instrument the account holds, in every bucket and vintage."""
    by_vintage = acct.holdings.get(instrument)
    return sum(p.total() for p in by_vintage.values()) if by_vintage else 0


def tradable(acct: Account, instrument: str, vintage: int | None = None) -> int:
    by_vintage = acct.holdings.get(instrument)
    if not by_vintage:
        return 0
    if vintage is not None:
        pos = by_vintage.get(vintage)
        return pos.tradable if pos else 0
    if len(by_vintage) == 1:
        for pos in by_vintage.values():
            return pos.tradable
    return sum(p.tradable for p in by_vintage.values())


def freeze_tonnes(acct: Account, instrument: str, qty: int, vintage: int | None = None) -> list[list[int]] | None:
    """Freeze ``qty`` tradable tonnes, oldest vintage first (or only ``vintage``).

    Returns the allocation ``[[vintage, tonnes], ...]`` or None (nothing changed) when
    the account does not hold enough tradable tonnes.
    """
    by_vintage = acct.holdings.get(instrument)
    if not by_vintage:
        return None
    if vintage is not None:
        pos = by_vintage.get(vintage)
        if pos is None or pos.tradable < qty:
            return None
        pos.tradable -= qty
        pos.frozen += qty
        return [[vintage, qty]]
    if len(by_vintage) == 1:  # the common case: one vintage (or none)
        ((v, pos),) = by_vintage.items()
        if pos.tradable < qty:
            return None
        pos.tradable -= qty
        pos.frozen += qty
        return [[v, qty]]
    if sum(p.tradable for p in by_vintage.values()) < qty:
        return None
    alloc: list[list[int]] = []
    need = qty
    for v in sorted(by_vintage):
        pos = by_vintage[v]
        take = min(pos.tradable, need)
        if take:
            pos.tradable -= take
            pos.frozen += take
            alloc.append([v, take])
            need -= take
            if not need:
                break
    return alloc


Lots = tuple[tuple[int, int], ...]  # an order's frozen tonnes: ((vintage, tonnes), ...), oldest first


def take_from_alloc(alloc: Lots, qty: int) -> tuple[Lots, list[tuple[int, int]]]:
    """Consume ``qty`` tonnes of an order's frozen lots, oldest vintage first: returns
    (the lots left, the (vintage, tonnes) taken). Lots are immutable tuples, which the
    cyclic GC stops tracking once it has seen them (a list per resting sell stayed
    tracked and was rescanned by every full collection: docs/performance.md)."""
    v, n = alloc[0]
    if n > qty:  # the common case: the first lot covers it
        return ((v, n - qty), *alloc[1:]), [(v, qty)]
    taken: list[tuple[int, int]] = []
    i = 0
    while qty:
        v, n = alloc[i]
        if n > qty:
            taken.append((v, qty))
            return ((v, n - qty), *alloc[i + 1 :]), taken
        taken.append((v, n))
        qty -= n
        i += 1
    return alloc[i:], taken


def release_lots(acct: Account, instrument: str, alloc: Iterable[Sequence[int]]) -> list[int]:
    """Return every tonne of ``alloc`` ((vintage, tonnes) pairs) from frozen to tradable;
    returns the vintages touched. The caller drops the allocation."""
    by_vintage = acct.holdings[instrument]
    touched = []
    for v, n in alloc:
        if n:
            pos = by_vintage[v]
            pos.frozen -= n
            pos.tradable += n
            touched.append(v)
    return touched


def release_tonnes(acct: Account, instrument: str, alloc: list[list[int]]) -> list[int]:
    """Return every tonne still in ``alloc`` from frozen to tradable and empty it; returns vintages touched."""
    touched = release_lots(acct, instrument, alloc)
    alloc.clear()
    return touched


def settle_dvp(
    buyer: Account,
    seller: Account,
    instrument: str,
    delivered: list[tuple[int, int]],
    released: int,
    notional: int,
    fees: tuple[int, int],
    t1_resale: bool,
) -> None:
    """Delivery versus payment of one trade (listing fill or block): the buyer's hold
    shrinks by ``released`` and pays ``notional`` + its fee out of it; the seller's frozen
    tonnes ``delivered`` [(vintage, tonnes)] go to the buyer (``locked`` until the next
    trading day under T+1 resale) and the seller receives ``notional`` less its fee.
    ``fees`` = (buyer's, seller's); the caller books them as exchange revenue."""
    fee_b, fee_s = fees
    buyer.frozen -= released
    buyer.available += released - notional - fee_b
    for vintage, n in delivered:
        position(seller, instrument, vintage).frozen -= n
        pos = position(buyer, instrument, vintage)
        if t1_resale:
            pos.locked += n
        else:
            pos.tradable += n
    seller.available += notional - fee_s


def buy_hold(price: int, qty: int, rate_e8: int) -> int:
    """Cash a buy of ``qty`` at ``price`` must keep frozen: notional plus fee."""
    notional = price * qty
    return notional + (notional * rate_e8 // 100_000_000 if rate_e8 else 0)


def fee(notional: int, rate_e8: int) -> int:
    """Fee in fen on a notional in fen, rounded down (so per-fill fees never exceed the
    fee frozen for the whole order: floor is superadditive)."""
    return notional * rate_e8 // 100_000_000 if rate_e8 else 0


def cash_event(acct: Account, seq: int, ts: int) -> Balance:
    return Balance(seq, ts, acct.account, acct.member, acct.available, acct.frozen)


def holding_event(acct: Account, instrument: str, vintage: int, seq: int, ts: int) -> Holding:
    pos = acct.holdings[instrument][vintage]  # callers emit only for positions they touched
    return Holding(seq, ts, acct.account, acct.member, instrument, vintage, pos.tradable, pos.frozen, pos.compliance_only, pos.locked)
