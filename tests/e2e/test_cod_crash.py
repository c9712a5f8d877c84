"""Cancel-on-disconnect survives a crash: ``kill -9`` drops every connection without the
gateway seeing it, so the restarted exchange must cancel the orders of every session
that had asked for it — and only those."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import broker, running_server


async def test_kill9_cancels_orders_of_cancel_on_disconnect_sessions_at_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data, fsync="fsync") as server:
        async with broker(server, "b") as guarded, broker(server, "b") as plain, broker(server, "b") as changed_mind:
            await guarded.cancel_on_disconnect(True)
            await changed_mind.cancel_on_disconnect(True)
            await changed_mind.cancel_on_disconnect(False)
            doomed = await guarded.place("B-001", "SHEA", "sell", 3, "65.00")
            kept = await plain.place("B-001", "SHEA", "sell", 4, "65.00")
            also_kept = await changed_mind.place("B-001", "SHEA", "sell", 5, "65.00")
            server.kill9()
    with running_server(data) as again:
        async with broker(again, "b") as b:
            assert (await b.get_order("B-001", doomed["order_id"]))["status"] == "cancelled"
            assert (await b.get_order("B-001", kept["order_id"]))["status"] == "new"
            assert (await b.get_order("B-001", also_kept["order_id"]))["status"] == "new"
            assert (await b.account("B-001"))["holdings"]["SHEA"]["frozen"] == 9, "the cancelled order's tonnes were released"
    with running_server(data) as third:  # and it happens once: a second restart changes nothing
        async with broker(third, "b") as b:
            assert (await b.get_order("B-001", kept["order_id"]))["status"] == "new"
