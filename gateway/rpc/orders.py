"""Order entry and the account's reads: place, amend, cancel, mass cancel; orders, trades, account."""

from __future__ import annotations

from carbonx.engine import reasons as R
from carbonx.engine.schema import AmendOrder, CancelAll, CancelOrder, PlaceOrder
from carbonx.gateway.protocol.errors import INVALID_PARAMS, INVALID_PARAMS_REASON, RpcError
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
    price = 0 if p.price is None else parse_price(p.price)
    cmd = PlaceOrder(
        ts=call.recv_ns, member=call.broker(), account=p.account, instrument=p.instrument, side=p.side, type=p.type,
        price=price, quantity=p.quantity, tif=p.time_in_force, post_only=p.post_only, stp=p.stp,
        client_order_id=p.client_order_id, session=call.session.session_id,
    )  # fmt: skip
    if p.type == "market" and p.price is not None:
        cmd.price = price or -1  # the engine rejects a market order with a price (INVALID_ORDER)
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
    """(order_id, client_order_id) of an order reference; exactly one must be given."""
    if (p.order_id is None) == (p.client_order_id is None):
        raise RpcError(
            INVALID_PARAMS,
            "invalid params: give exactly one of order_id or client_order_id",
            {"reason": INVALID_PARAMS_REASON, "field": "order_id"},
        )
    if p.order_id is not None:
        return parse_id(p.order_id), ""
    if not p.client_order_id:
        raise RpcError(
            INVALID_PARAMS,
            "invalid params: client_order_id must not be empty",
            {"reason": INVALID_PARAMS_REASON, "field": "client_order_id"},
        )
    return 0, p.client_order_id
