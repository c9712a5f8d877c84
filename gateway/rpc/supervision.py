"""Supervision and disclosure methods: related-party groups and surveillance alerts
(operators, admin listener), the day's market report (everyone, trading listener too).
docs/supervision.md and docs/disclosure.md describe the values."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from carbonx.engine import reasons as R
from carbonx.engine.schema import AckAlert, AlertAcked, RelatedGroup, SetRelated
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import AlertAckParams, AlertListParams, DisclosureParams, NoParams, RelatedSetParams, parse_id
from carbonx.gateway.rpc.call import Call, first
from carbonx.gateway.rpc.registry import method
from carbonx.gateway.supervision import alert_view, report_view

if TYPE_CHECKING:
    from carbonx.engine.supervision.surveillance import Surveillance

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _surveillance(call: Call) -> Surveillance:
    surv = call.gw.supervision.surveillance
    if surv is None:
        raise RpcError.business(R.INVALID_STATE, "surveillance is disabled ([surveillance] enabled = false)")
    return surv


@method("admin.related.set", RelatedSetParams, "operator", role="operator")
def related_set(call: Call, p: RelatedSetParams) -> None:
    """Declare or replace a related-party group; an empty ``accounts`` dissolves it."""
    cmd = SetRelated(ts=call.recv_ns, group=p.group, accounts=list(p.accounts))

    def build(events: list[Any]) -> dict[str, Any]:
        ev = first(events, RelatedGroup)
        return {"group": ev.group, "accounts": ev.accounts, "seq": ev.seq}

    call.command(cmd, build)


@method("admin.related.list", NoParams, "operator", role="viewer")
def related_list(call: Call, p: NoParams) -> None:
    groups = [{"group": g, "accounts": list(accounts)} for g, accounts in sorted(call.gw.engine.related.items())]
    call.read({"groups": groups})


@method("admin.surveillance.list", AlertListParams, "operator", role="viewer")
def surveillance_list(call: Call, p: AlertListParams) -> None:
    """Alerts with an id above ``after_id``, oldest first, at most ``limit``; ``next_after_id``
    continues the listing (absent: nothing more)."""
    surv = _surveillance(call)
    out: list[dict[str, Any]] = []
    more = False
    for alert_id, alert in surv.alerts.items():
        if alert_id <= p.after_id or (p.unacked and alert.acked) or (p.detector is not None and alert.detector != p.detector):
            continue
        if len(out) == p.limit:
            more = True
            break
        out.append(alert_view(alert))
    result: dict[str, Any] = {"alerts": out}
    if more:
        result["next_after_id"] = out[-1]["alert_id"]
    call.read(result)


@method("admin.surveillance.ack", AlertAckParams, "operator", role="operator")
def surveillance_ack(call: Call, p: AlertAckParams) -> None:
    """Acknowledge an alert (journaled: the ack survives restarts)."""
    surv = _surveillance(call)
    alert_id = parse_id(p.alert_id)
    alert = surv.get(alert_id)
    if alert is None:
        raise RpcError.business(R.UNKNOWN_ALERT, f"no surveillance alert {p.alert_id!r}", "alert_id")
    if alert.acked:
        raise RpcError.business(R.INVALID_STATE, f"alert {alert_id} was acknowledged at seq {alert.ack_seq}", "alert_id")
    cmd = AckAlert(ts=call.recv_ns, alert_id=alert_id, operator=call.session.identity or "operator", note=p.note)

    def build(events: list[Any]) -> dict[str, Any]:
        ev = first(events, AlertAcked)
        return {"alert_id": str(ev.alert_id), "acked": True, "seq": ev.seq}

    call.command(cmd, build)


@method("disclosure.get", DisclosureParams, "public", listener="both")
def disclosure_get(call: Call, p: DisclosureParams) -> None:
    """The market report of trading date ``date`` (produced at that day's close); without
    ``date``, the latest one."""
    if p.date is not None and not DATE.match(p.date):
        raise RpcError.business(R.INVALID_ORDER, "date must be YYYY-MM-DD", "date")
    reports = call.gw.supervision.reports
    if reports is None:
        raise RpcError.business(R.INVALID_STATE, "disclosure is disabled ([disclosure] enabled = false)")
    if p.date is None:
        report = reports.reports[next(reversed(reports.reports))] if reports.reports else None
    else:
        report = reports.reports.get(p.date)
    if report is None:
        which = p.date or "any day"
        raise RpcError.business(R.UNKNOWN_REPORT, f"no market report for {which} (not closed yet, or older than the reports kept)", "date")
    call.read(report_view(report))
