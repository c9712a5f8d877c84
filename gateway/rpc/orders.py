"""Order entry and the account's reads: place, amend, cancel, mass cancel; orders, trades, account."""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine.checks import order_ref_failure
from carbonx.engine.schema import AmendOrder, CancelAll, CancelOrder, PlaceOrder
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import (
    AccountParams,
    AmendParams,
    CancelAllParams,
    OrderListParams,
    OrderRefParams,
    PlaceParams,
    TradeListParams,
    parse_id,
    parse_price,
)
from carbonx.gateway.protocol.views import account_trade, account_view, order_view
from carbonx.gateway.rpc.call import Call, cancel_all, order_result
from carbonx.gateway.rpc.registry import method


@method("order.place", PlaceParams, "private", order=True)
def place(call: Call, p: PlaceParams) -> None:
    cmd = PlaceOrder(
        ts=call.recv_ns, member=call.broker(), account=p.account, instrument=p.instrument, side=p.side, type=p.type,
        price=None if p.price is None else parse_price(p.price), quantity=p.quantity, tif=p.time_in_force, post_only=p.post_only, stp=p.stp,
        client_order_id=p.client_order_id, session=call.session.session_id,
    )  # fmt: skip
    call.command(cmd, order_result)


@method("order.amend", AmendParams, "private", order=True)
def amend(call: Call, p: AmendParams) -> None:
    oid, coid = _ref(p)
    price = None if p.price is None else parse_price(p.price)
    cmd = AmendOrder(
        ts=call.recv_ns,
        member=call.broker(),
        account=p.account,
        order_id=oid,
        client_order_id=coid,
        price=price,
        quantity=p.quantity,
    )
    call.command(cmd, order_result)


@method("order.cancel", OrderRefParams, "private", order=True)
def cancel(call: Call, p: OrderRefParams) -> None:
    oid, coid = _ref(p)
    cmd = CancelOrder(ts=call.recv_ns, member=call.broker(), account=p.account, order_id=oid, client_order_id=coid)
    call.command(cmd, order_result)


@method("order.cancel_all", CancelAllParams, "private", order=True)
def cancel_mine(call: Call, p: CancelAllParams) -> None:
    cmd = CancelAll(ts=call.recv_ns, member=call.broker(), account=p.account, instrument=p.instrument, side=p.side)
    cancel_all(call, cmd)


@method("order.get", OrderRefParams, "private", listener="both")
def get_order(call: Call, p: OrderRefParams) -> None:
    oid, coid = _ref(p)
    failure = order_ref_failure(oid, coid)  # the engine's rule, applied to the read as to amend/cancel
    if failure is not None:
        raise RpcError.business(*failure)
    call.account(p.account)
    order = call.gw.engine.order_of(call.member(), p.account, oid, coid)
    if order is None:
        raise RpcError.business(
            R.UNKNOWN_ORDER, "no such order in this account", "order_id" if p.order_id is not None else "client_order_id"
        )
    call.read(order_view(order, call.gw.engine.seq))


@method("order.list", OrderListParams, "private", listener="both")
def list_orders(call: Call, p: OrderListParams) -> None:
    call.account(p.account)
    orders = call.gw.engine.orders_of(call.member(), p.account, p.instrument, p.open_only)
    seq = call.gw.engine.seq
    call.read({"orders": [order_view(o, seq) for o in orders]})


@method("trade.list", TradeListParams, "private", listener="both")
def list_trades(call: Call, p: TradeListParams) -> None:
    call.account(p.account)
    trades = call.gw.engine.trades_of(call.member(), p.account, p.instrument, p.since_ts)
    call.read({"trades": [account_trade(t, p.account) for t in trades]})


@method("account.get", AccountParams, "private", listener="both")
def get_account(call: Call, p: AccountParams) -> None:
    call.read(account_view(call.account(p.account)))


def _ref(p: OrderRefParams) -> tuple[int, str]:
    """(order_id, client_order_id) of an order reference as the engine takes them (0 / "" for
    none): whether exactly one is given is the engine's rule (``checks.order_ref_failure``)."""
    return (0 if p.order_id is None else parse_id(p.order_id)), (p.client_order_id or "")
