"""Retirement (voluntary cancellation of allowances) and neutrality events."""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine import retirement
from carbonx.engine.schema import Certificate, EventCreate, NeutralityEvent, Retire
from carbonx.gateway.protocol.errors import UNKNOWN_CERTIFICATE, RpcError
from carbonx.gateway.protocol.params import CertificateParams, EventCreateParams, EventParams, RetireParams, parse_id
from carbonx.gateway.protocol.views import certificate_view, neutrality_view
from carbonx.gateway.rpc.call import Call, first
from carbonx.gateway.rpc.registry import method


@method("retire", RetireParams, "private", order=True)
def retire(call: Call, p: RetireParams) -> None:
    cmd = Retire(
        ts=call.recv_ns, member=call.broker(), account=p.account, instrument=p.instrument, quantity=p.quantity,
        purpose=p.purpose, beneficiary=p.beneficiary, vintage=p.vintage, event_id=p.event_id,
    )  # fmt: skip
    call.command(cmd, lambda events: certificate_view(first(events, Certificate)))


@method("retire.certificate", CertificateParams, "public", listener="both")
def certificate(call: Call, p: CertificateParams) -> None:
    cert = retirement.certificate(call.gw.engine, parse_id(p.certificate_id))
    if cert is None:
        raise RpcError.business(UNKNOWN_CERTIFICATE, f"no certificate {p.certificate_id!r}", "certificate_id")
    call.read(certificate_view(cert))


@method("event.get", EventParams, "public", listener="both")
def event_get(call: Call, p: EventParams) -> None:
    ev = retirement.event_view(call.gw.engine, p.event_id)
    if ev is None:
        raise RpcError.business(R.UNKNOWN_EVENT, f"no event {p.event_id!r}", "event_id")
    call.read(neutrality_view(ev))


@method("admin.event.create", EventCreateParams, "operator", role="operator")
def event_create(call: Call, p: EventCreateParams) -> None:
    cmd = EventCreate(ts=call.recv_ns, event_id=p.event_id, name=p.name, footprint=p.footprint)
    call.command(cmd, lambda events: neutrality_view(first(events, NeutralityEvent)))
