"""Retirement (cancellation) of credits and large-event neutrality (MARKET_RULES §6).

``Retire`` takes tonnes out of an account's *tradable* holding for good (a named
vintage, or oldest vintage first) and issues a public ``Certificate``. Retired tonnes
are not moved anywhere: they leave every account, and ``Registry.retired_total``
counts them per instrument so the ledger still balances (deposits = holdings +
retired + withdrawals). Compliance-only (auction) and T+1-locked tonnes cannot be
retired: only tradable tonnes, the ones the account could otherwise sell.

Large events: an operator registers an event with its declared footprint
(``EventCreate``). Retirements with purpose ``event_neutrality`` name the event and
accumulate; the moment they cover the footprint the exchange issues the event's
neutrality certificate (a ``Certificate`` with empty account and instrument, purpose
``event_neutrality``, the event's name as beneficiary, the covered quantity, and
``covers`` = the retirement certificates it sums up), and the event carries its id.
Later retirements naming the event still count towards ``retired``; the neutrality
certificate is issued once and never changes.

Retirement is a registry act, not trading: it needs no open day or session and is
allowed on halted instruments, but not for a blocked account (kill switch).

State lives in ``Registry`` (part of every engine snapshot): certificates and events
are kept for good, so ``retire.certificate`` and ``event.get`` can always verify a
claim, including after restart or replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from carbonx.engine import reasons as R
from carbonx.engine.accounts import freeze_tonnes, holding_event, position
from carbonx.engine.checks import MAX_ID, Failure, blocked_failure, shortfall, valid_id, vintage_failure
from carbonx.engine.desks import Registry
from carbonx.engine.schema import Certificate, EventCreate, NeutralityEvent, Retire
from carbonx.engine.state import ExchangeState, Handler

if TYPE_CHECKING:
    from carbonx.engine.config import InstrumentSpec

__all__ = ["HANDLERS", "PURPOSES", "Registry", "certificate", "event_view"]

PURPOSES = ("public_welfare", "event_neutrality", "compliance_offset")
MAX_TEXT = 200  # beneficiary and event name


# ---------------------------------------------------------------------- public reads


def certificate(eng: ExchangeState, certificate_id: int) -> Certificate | None:
    """Any certificate by id: public, so anyone can verify a retirement claim."""
    return eng.registry.certificates.get(certificate_id)


def event_view(eng: ExchangeState, event_id: str) -> NeutralityEvent | None:
    """A registered event's footprint, coverage and neutrality certificate id: public."""
    return eng.registry.events.get(event_id)


# ---------------------------------------------------------------------- validation


def _valid_text(value: str, limit: int) -> bool:
    """1..limit printable characters (any script) with something besides blanks."""
    return 0 < len(value) <= limit and value.isprintable() and not value.isspace()


def _purpose_failure(eng: ExchangeState, cmd: Retire) -> Failure | None:
    """Purpose is one of three; only ``event_neutrality`` names an event, and always
    a registered one (so nobody can claim neutrality for an undeclared footprint)."""
    if cmd.purpose not in PURPOSES:
        return R.INVALID_PURPOSE, f"purpose must be one of {list(PURPOSES)}", "purpose"
    if not _valid_text(cmd.beneficiary, MAX_TEXT):
        return R.INVALID_ORDER, f"beneficiary must be 1-{MAX_TEXT} printable characters", "beneficiary"
    if cmd.purpose != "event_neutrality":
        if cmd.event_id is not None:
            return R.INVALID_PURPOSE, "event_id is only given with purpose event_neutrality", "event_id"
        return None
    if cmd.event_id is None:
        return R.INVALID_PURPOSE, "purpose event_neutrality needs the event_id of a registered event", "event_id"
    if cmd.event_id not in eng.registry.events:
        return R.UNKNOWN_EVENT, f"unknown event {cmd.event_id!r}", "event_id"
    return None


def _amount_failure(spec: InstrumentSpec, cmd: Retire) -> Failure | None:
    if cmd.quantity <= 0:
        return R.INVALID_QUANTITY, "quantity must be a positive number of tonnes", "quantity"
    return vintage_failure(spec, cmd.vintage, required=False)


# ---------------------------------------------------------------------- retire


def retire(eng: ExchangeState, cmd: Retire) -> None:
    """Validate, take the tonnes out of the account for good, issue the certificate,
    and update (and possibly certify) the named event."""
    acct = eng.owned_account(cmd, cmd.member, cmd.account)
    if acct is None or not eng.known_instrument(cmd, cmd.instrument):
        return
    spec = eng.specs[cmd.instrument]
    failure = blocked_failure(eng, acct) or _purpose_failure(eng, cmd) or _amount_failure(spec, cmd)
    vintage = cmd.vintage or None
    # freeze_tonnes is the last check: it changes nothing when it cannot cover qty
    alloc = None if failure else freeze_tonnes(acct, cmd.instrument, cmd.quantity, vintage)
    if alloc is None:
        reason, message, field = failure or shortfall(acct, spec, cmd.quantity, vintage, resale=False)
        eng.reject(cmd, reason, message, field, account=cmd.account, instrument=cmd.instrument)
        return
    for v, n in alloc:  # frozen -> gone
        position(acct, cmd.instrument, v).frozen -= n
        eng.out.append(holding_event(acct, cmd.instrument, v, eng.seq, eng.ts))
    reg = eng.registry
    reg.retired_total[cmd.instrument] = reg.retired_total.get(cmd.instrument, 0) + cmd.quantity
    cert = _issue(
        eng,
        account=acct.account,
        member=acct.member,
        instrument=cmd.instrument,
        vintage=alloc[0][0] if len(alloc) == 1 and alloc[0][0] else None,
        vintages=[(v, n) for v, n in alloc] if spec.vintages else None,
        quantity=cmd.quantity,
        purpose=cmd.purpose,
        beneficiary=cmd.beneficiary,
        event_id=cmd.event_id,
    )
    if cmd.event_id is not None:
        _cover(eng, cmd.event_id, cert)


def _issue(eng: ExchangeState, **fields: Any) -> Certificate:
    """Number, store and publish a certificate stamped with this command's seq and ts."""
    reg = eng.registry
    cert = Certificate(seq=eng.seq, ts=eng.ts, certificate_id=reg.next_certificate_id, **fields)
    reg.next_certificate_id += 1
    reg.certificates[cert.certificate_id] = cert
    eng.out.append(cert)
    return cert


def _cover(eng: ExchangeState, event_id: str, cert: Certificate) -> None:
    """Count a retirement towards its event; issue the neutrality certificate the first
    time the retired tonnes reach the declared footprint."""
    reg = eng.registry
    ev = reg.events[event_id]
    ids = reg.event_retirements.setdefault(event_id, [])
    ids.append(cert.certificate_id)
    retired = ev.retired + cert.quantity
    certificate_id = ev.certificate_id
    if certificate_id is None and retired >= ev.footprint:
        neutral = _issue(
            eng,
            account="",
            member="",
            instrument="",
            vintage=None,
            quantity=retired,
            purpose="event_neutrality",
            beneficiary=ev.name,
            event_id=event_id,
            covers=list(ids),
        )
        certificate_id = neutral.certificate_id
    _publish_event(eng, msgspec.structs.replace(ev, retired=retired, certificate_id=certificate_id))


def _publish_event(eng: ExchangeState, ev: NeutralityEvent) -> None:
    """Events are replaced, never mutated: a published NeutralityEvent stays as it was."""
    ev = msgspec.structs.replace(ev, seq=eng.seq, ts=eng.ts)
    eng.registry.events[ev.event_id] = ev
    eng.out.append(ev)


# ---------------------------------------------------------------------- events (operator)


def create_event(eng: ExchangeState, cmd: EventCreate) -> None:
    """Register a large event and its declared footprint (operator only)."""
    if not valid_id(cmd.event_id):
        eng.reject(cmd, R.INVALID_ORDER, f"event_id must be 1-{MAX_ID} printable ASCII characters, no spaces", "event_id")
    elif cmd.event_id in eng.registry.events:
        eng.reject(cmd, R.ALREADY_EXISTS, f"event {cmd.event_id!r} exists", "event_id")
    elif not _valid_text(cmd.name, MAX_TEXT):
        eng.reject(cmd, R.INVALID_ORDER, f"name must be 1-{MAX_TEXT} printable characters", "name")
    elif cmd.footprint <= 0:
        eng.reject(cmd, R.INVALID_QUANTITY, "footprint must be a positive number of tonnes", "footprint")
    else:
        _publish_event(
            eng, NeutralityEvent(seq=eng.seq, ts=eng.ts, event_id=cmd.event_id, name=cmd.name, footprint=cmd.footprint, retired=0)
        )


HANDLERS: dict[type, Handler] = {
    Retire: retire,
    EventCreate: create_event,
}
