"""The history windows as a client sees them: an evicted finished order is UNKNOWN_ORDER
to order.get (by id and by client order id), trade.list returns at most the window."""

from __future__ import annotations

from pathlib import Path

import msgspec
from msgspec.structs import replace

from carbonx.engine import reasons as R
from carbonx.engine.config import RetentionSpec
from tests.gateway.support import demo_settings, start


async def test_order_get_and_trade_list_answer_within_the_window(tmp_path: Path) -> None:
    settings = demo_settings()
    market = msgspec.structs.replace(settings.market, retention=RetentionSpec(finished_orders=4, trades=2))
    h = await start(tmp_path, replace(settings, market=market))
    a, b = await h.broker("a"), await h.broker("b")
    ids = []
    for i in range(3):
        sell = {"account": "A-001", "instrument": "SHCER", "side": "sell", "price": "20.00", "quantity": 1}
        ids.append((await a.ok("order.place", **sell, client_order_id=f"s{i}"))["order_id"])
        await b.ok("order.place", account="B-001", instrument="SHCER", side="buy", price="20.00", quantity=1)
    # 6 finished orders, window 4: the first pair is gone
    gone = await a.fail("order.get", account="A-001", order_id=ids[0])
    assert gone.reason == R.UNKNOWN_ORDER
    assert (await a.fail("order.get", account="A-001", client_order_id="s0")).reason == R.UNKNOWN_ORDER
    assert (await a.ok("order.get", account="A-001", client_order_id="s2"))["status"] == "filled"
    trades = (await a.ok("trade.list", account="A-001"))["trades"]
    assert len(trades) == 2 and [t["order_id"] for t in trades] == ids[1:]
    await h.gw.shutdown()
