"""Order entry over the wire: a trade between two brokers, amends, cancels, and the order book."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from carbonx.gateway.client import Notification, RpcError
from carbonx.gateway.testkit import Server
from tests.e2e.conftest import broker


def _is_report(order_id: str, exec_type: str) -> object:
    return lambda n: n.method == "orders" and n.params.get("order_id") == order_id and n.params.get("exec_type") == exec_type


def _fen(text: str) -> int:
    return int(Decimal(text) * 100)


async def test_trade_between_two_brokers(clean_books: Server) -> None:
    """B rests an ask, A lifts it: both get FIX execution reports (reply and ``orders``
    channel), everyone on ``trades.SHEA`` sees the print, cash and tonnes move with fees."""
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b, broker(clean_books, "b") as watcher:
        await a.subscribe(["orders"])
        await b.subscribe(["orders"])
        await watcher.subscribe(["trades.SHEA"])
        a_before, b_before = await a.account("A-001"), await b.account("B-001")
        b_reports = b.execution_reports()

        ask = await b.place("B-001", "SHEA", "sell", 100, "60.50", client_order_id="ask-1")
        assert (ask["exec_type"], ask["status"], ask["cum_qty"], ask["leaves_qty"]) == ("new", "new", 0, 100)
        assert ask["avg_price"] in (None, "") or "avg_price" not in ask
        assert isinstance(ask["order_id"], str) and isinstance(ask["seq"], int) and isinstance(ask["ts"], int)

        bid = await a.place("A-001", "SHEA", "buy", 40, "61.00", client_order_id="bid-1")
        # the taker's reply already shows the fill at the resting price
        assert bid["status"] == "filled" and bid["cum_qty"] == 40 and bid["leaves_qty"] == 0
        assert bid["avg_price"] == "60.50"

        taker = await a.wait_for(_is_report(bid["order_id"], "trade"), 5)  # type: ignore[arg-type]
        maker = await b.wait_for(_is_report(ask["order_id"], "trade"), 5)  # type: ignore[arg-type]
        assert (taker.params["last_qty"], taker.params["last_price"], taker.params["status"]) == (40, "60.50", "filled")
        assert (maker.params["last_qty"], maker.params["last_price"], maker.params["status"]) == (40, "60.50", "partially_filled")
        assert (maker.params["cum_qty"], maker.params["leaves_qty"], maker.params["avg_price"]) == (40, 60, "60.50")
        assert maker.params["client_order_id"] == "ask-1"
        stream = [await asyncio.wait_for(anext(b_reports), 5) for _ in range(2)]
        assert [(r["order_id"], r["exec_type"]) for r in stream] == [(ask["order_id"], "new"), (ask["order_id"], "trade")]
        trade_id = taker.params["trade_id"]
        assert trade_id == maker.params["trade_id"] and isinstance(trade_id, str)

        def is_print(n: Notification) -> bool:
            return n.method == "trades" and n.params.get("trade_id") == trade_id

        public = await watcher.wait_for(is_print, 5)
        assert public.channel == "trades.SHEA"
        assert (public.params["price"], public.params["quantity"], public.params["aggressor"]) == ("60.50", 40, "buy")
        for private in ("account", "member", "buy_account", "sell_account", "order_id", "client_order_id"):
            assert private not in public.params, f"public trade print leaks {private}"

        # settlement: 40 t at 60.50 = 2,420.00 CNY, 0.05 % fee each side = 1.21 CNY
        a_after, b_after = await a.account("A-001"), await b.account("B-001")
        assert _fen(a_after["cash"]["available"]) == _fen(a_before["cash"]["available"]) - 242_000 - 121
        assert _fen(b_after["cash"]["available"]) == _fen(b_before["cash"]["available"]) + 242_000 - 121
        assert a_after["holdings"]["SHEA"]["tradable"] == a_before["holdings"]["SHEA"]["tradable"] + 40
        assert b_after["holdings"]["SHEA"]["frozen"] == b_before["holdings"]["SHEA"]["frozen"] + 60

        mine = await a.trades("A-001", "SHEA")
        assert [t["trade_id"] for t in mine if t["trade_id"] == trade_id]
        theirs = await b.get_order("B-001", client_order_id="ask-1")
        assert (theirs["status"], theirs["cum_qty"], theirs["leaves_qty"]) == ("partially_filled", 40, 60)


async def test_amend_and_cancel_reports(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a:
        placed = await a.place("A-001", "SHEA", "buy", 30, "58.00", client_order_id="amend-me", time_in_force="gtc")
        smaller = await a.amend("A-001", placed["order_id"], quantity=20)
        assert (smaller["exec_type"], smaller["quantity"], smaller["leaves_qty"], smaller["price"]) == ("replaced", 20, 20, "58.00")
        repriced = await a.amend("A-001", client_order_id="amend-me", price="58.10")
        assert (repriced["exec_type"], repriced["price"], repriced["order_id"]) == ("replaced", "58.10", placed["order_id"])
        listed = await a.list_orders("A-001", "SHEA", open_only=True)
        assert [o["order_id"] for o in listed] == [placed["order_id"]]
        done = await a.cancel("A-001", client_order_id="amend-me")
        assert (done["exec_type"], done["status"], done["leaves_qty"], done["cum_qty"]) == ("cancelled", "cancelled", 0, 0)
        assert await a.list_orders("A-001", "SHEA", open_only=True) == []
        assert (await a.get_order("A-001", placed["order_id"]))["status"] == "cancelled"


async def test_reducing_quantity_keeps_priority_repricing_loses_it(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        first = await a.place("A-001", "SHEA", "buy", 10, "57.00")
        second = await a.place("A-002", "SHEA", "buy", 10, "57.00")
        await a.amend("A-001", first["order_id"], quantity=5)  # still first in the queue
        hit = await b.place("B-001", "SHEA", "sell", 5, "57.00")
        assert hit["status"] == "filled"
        assert (await a.get_order("A-001", first["order_id"]))["status"] == "filled"
        assert (await a.get_order("A-002", second["order_id"]))["cum_qty"] == 0


async def test_cancel_all_by_account_and_instrument(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a:
        for price in ("56.00", "56.01", "56.02"):
            await a.place("A-001", "SHEA", "buy", 1, price)
        await a.place("A-001", "SHCER", "buy", 1, "19.50")
        await a.place("A-002", "SHEA", "buy", 1, "56.00")
        assert await a.cancel_all(account="A-001", instrument="SHEA") == 3
        assert len(await a.list_orders("A-001", open_only=True)) == 1
        assert await a.cancel_all() == 2
        assert await a.list_orders("A-002", open_only=True) == []


async def test_ioc_fok_and_market_orders(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        await b.place("B-001", "SHCER", "sell", 10, "20.10")
        fok = await a.place("A-001", "SHCER", "buy", 11, "20.10", time_in_force="fok")
        assert fok["status"] in ("cancelled", "expired") and fok["cum_qty"] == 0 and fok["leaves_qty"] == 0
        ioc = await a.place("A-001", "SHCER", "buy", 6, "20.10", time_in_force="ioc")
        assert (ioc["status"], ioc["cum_qty"]) == ("filled", 6)
        market = await a.place("A-001", "SHCER", "buy", 10, type="market")
        assert market["cum_qty"] == 4 and market["leaves_qty"] == 0
        assert market["status"] in ("cancelled", "expired", "partially_filled")
        assert market["avg_price"] == "20.10"


def _state(report: dict[str, object]) -> dict[str, object]:
    """A report without ``seq``/``ts``: ``order.get`` stamps the engine sequence number the
    view is current as of, which moves with every command (rejected ones included)."""
    return {k: v for k, v in report.items() if k not in ("seq", "ts")}


async def test_avg_price_rounds_half_up(clean_books: Server) -> None:
    """Two fills at 60.00 and 60.01: cum_notional / cum_qty = 60.005, on the wire "60.01"."""
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        await b.place("B-001", "SHEA", "sell", 1, "60.00")
        await b.place("B-002", "SHEA", "sell", 1, "60.01")
        report = await a.place("A-001", "SHEA", "buy", 2, "60.01")
        assert (report["status"], report["cum_qty"], report["avg_price"]) == ("filled", 2, "60.01")


async def test_self_trade_prevention_cancels_the_newest_by_default(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a:
        resting = await a.place("A-001", "SHEA", "sell", 5, "60.20")
        crossing = await a.place("A-001", "SHEA", "buy", 5, "60.20")
        assert crossing["cum_qty"] == 0 and crossing["status"] == "cancelled", crossing
        assert (await a.get_order("A-001", resting["order_id"]))["status"] == "new"
        # another account of the same member is a different party and does trade
        other = await a.place("A-002", "SHEA", "buy", 5, "60.20")
        assert other["status"] == "filled"


async def test_amend_rejects_leave_the_order_as_it_was(clean_books: Server) -> None:
    async with broker(clean_books, "a") as a, broker(clean_books, "b") as b:
        order = await a.place("A-002", "SHEA", "buy", 10, "59.00", time_in_force="gtc")
        await b.place("B-001", "SHEA", "sell", 4, "59.00")  # partly fills it
        before = await a.get_order("A-002", order["order_id"])
        assert (before["cum_qty"], before["leaves_qty"]) == (4, 6)
        await a.place("A-002", "SHEA", "buy", 99_999, "54.00")  # ties up ~5.4 M of the 10 M
        for change, reason in (
            ({"quantity": 4}, "INVALID_QUANTITY"),  # not above what is already filled
            ({"price": "70.00"}, "PRICE_OUT_OF_BAND"),
            ({"quantity": 99_999, "price": "65.00"}, "INSUFFICIENT_FUNDS"),
        ):
            try:
                await a.amend("A-002", order["order_id"], **change)  # type: ignore[arg-type]
            except RpcError as err:
                assert err.reason == reason, (change, err)
            else:
                raise AssertionError(f"amend {change} was accepted")
            assert _state(await a.get_order("A-002", order["order_id"])) == _state(before)
