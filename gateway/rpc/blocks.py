"""Negotiated block trades: propose, accept, decline, cancel, get."""

from __future__ import annotations

from typing import Any

from carbonx.engine import blocks
from carbonx.engine import reasons as R
from carbonx.engine.schema import BlockAccept, BlockCancel, BlockDecline, BlockPropose, BlockUpdate, Event, Trade
from carbonx.gateway.protocol.errors import RpcError
from carbonx.gateway.protocol.params import BlockProposeParams, BlockRefParams, parse_id, parse_price
from carbonx.gateway.protocol.views import account_trade, block_view
from carbonx.gateway.rpc.call import Call, first
from carbonx.gateway.rpc.registry import method


@method("block.propose", BlockProposeParams, "private", order=True)
def propose(call: Call, p: BlockProposeParams) -> None:
    cmd = BlockPropose(
        ts=call.recv_ns, member=call.broker(), account=p.account, instrument=p.instrument, side=p.side,
        price=parse_price(p.price), quantity=p.quantity, counterparty_account=p.counterparty_account, vintage=p.vintage,
    )  # fmt: skip
    call.command(cmd, lambda events: block_view(first(events, BlockUpdate)))


@method("block.accept", BlockRefParams, "private", order=True)
def accept(call: Call, p: BlockRefParams) -> None:
    block_id = parse_id(p.block_id)
    cmd = BlockAccept(ts=call.recv_ns, member=call.broker(), account=p.account, block_id=block_id)

    def build(events: list[Event]) -> dict[str, Any]:
        out = account_trade(first(events, Trade), p.account)
        out["block_id"] = p.block_id
        return out

    call.command(cmd, build)


@method("block.decline", BlockRefParams, "private", order=True)
def decline(call: Call, p: BlockRefParams) -> None:
    cmd = BlockDecline(ts=call.recv_ns, member=call.broker(), account=p.account, block_id=parse_id(p.block_id))
    call.command(cmd, lambda events: block_view(first(events, BlockUpdate)))


@method("block.cancel", BlockRefParams, "private", order=True)
def cancel(call: Call, p: BlockRefParams) -> None:
    cmd = BlockCancel(ts=call.recv_ns, member=call.broker(), account=p.account, block_id=parse_id(p.block_id))
    call.command(cmd, lambda events: block_view(first(events, BlockUpdate)))


@method("block.get", BlockRefParams, "private")
def get_block(call: Call, p: BlockRefParams) -> None:
    call.account(p.account)
    view = blocks.block_view(call.gw.engine, call.broker(), p.account, parse_id(p.block_id))
    if view is None:
        raise RpcError.business(R.UNKNOWN_BLOCK, f"no block {p.block_id!r} for this account", "block_id")
    call.read(block_view(view))
