"""Order flow for the cluster kill tests: crossing orders through several gateways, and the
checks that nothing acknowledged was lost and nothing executed twice.

``OrderFlow(urls)`` opens one ``FailoverClient`` per (gateway, demo broker), each preferring its
own gateway, subscribed to ``book.SHEA``, and sends small SHEA limit orders around 60.00 (they
cross often) at ``rate`` orders/s in total, each with a unique ``client_order_id``. It records
what was acknowledged (``acked``: client order id -> reply), what was refused (``rejected``) and
what has an unknown fate (``unknown``: the connection dropped or the reply timed out), with the
time of every acknowledgement (``ack_times``, and ``sent_acked`` pairs) so a test can see how long writes paused.

``await check_flow(flow, url)`` then asserts, through the gateway at ``url``: every acknowledged
order exists with the acknowledged order id; per account, no trade appears twice; per order,
``cum_qty`` equals the sum of its trades; and every client saw contiguous book ``seq``s (no gap,
no checksum failure) on every connection. Returns a summary for the test to print.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from carbonx.gateway.client import ClientError, RpcError
from carbonx.gateway.failover import FailoverClient
from carbonx.gateway.testkit import ACCOUNTS, BROKERS


@dataclass
class OrderFlow:
    urls: list[str]
    rate: float = 200.0
    seed: int = 1
    reconnect_s: float = 30.0
    clients: list[tuple[FailoverClient, str]] = field(default_factory=list)
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    ack_times: list[float] = field(default_factory=list)
    sent_acked: list[tuple[float, float]] = field(default_factory=list)  # (sent, acknowledged) of each ack
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> OrderFlow:
        for g in range(len(self.urls)):
            preferred = self.urls[g:] + self.urls[:g]
            for who in ("a", "b"):
                fc = FailoverClient(preferred, *BROKERS[who], reconnect_s=self.reconnect_s, timeout=self.reconnect_s)
                await fc.connect()
                await fc.subscribe(["book.SHEA"])
                self.clients.append((fc, ACCOUNTS[who][g % 2]))
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        await self.stop()
        for fc, _ in self.clients:
            await fc.close()

    async def _run(self) -> None:
        interval = len(self.clients) / self.rate
        inflight: set[asyncio.Task[None]] = set()

        async def sender(i: int, fc: FailoverClient, account: str) -> None:
            rng = random.Random(self.seed * 1000 + i)
            n = 0
            next_at = time.monotonic() + interval * i / len(self.clients)
            while not self._stop.is_set():
                await asyncio.sleep(max(next_at - time.monotonic(), 0))
                next_at += interval
                n += 1
                coid = f"s{self.seed}-c{i}-{n}"
                task = asyncio.create_task(self._place(fc, account, coid, rng))
                inflight.add(task)
                task.add_done_callback(inflight.discard)

        await asyncio.gather(*(sender(i, fc, a) for i, (fc, a) in enumerate(self.clients)))
        if inflight:
            await asyncio.wait(inflight)

    async def _place(self, fc: FailoverClient, account: str, coid: str, rng: random.Random) -> None:
        price = 6000 + rng.randint(-5, 5)
        params = {
            "account": account,
            "instrument": "SHEA",
            "side": "buy" if rng.random() < 0.5 else "sell",
            "price": f"{price // 100}.{price % 100:02d}",
            "quantity": rng.randint(1, 5),
            "client_order_id": coid,
        }
        sent = time.monotonic()
        try:
            reply = await fc.call("order.place", **params)
        except RpcError as exc:
            self.rejected[coid] = exc.reason or str(exc.code)
        except (ClientError, TimeoutError, OSError):
            self.unknown.add(coid)
        else:
            self.acked[coid] = {**reply, "account": account}
            self.ack_times.append(time.monotonic())
            self.sent_acked.append((sent, self.ack_times[-1]))

    def longest_pause(self, after: float = 0.0) -> float:
        """The longest gap between consecutive acknowledgements after ``after`` (monotonic time)."""
        times = sorted(t for t in self.ack_times if t >= after)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def first_ack_after(self, t: float) -> float | None:
        """When the first order *sent* after ``t`` was acknowledged (None: none was)."""
        later = [acked for sent, acked in self.sent_acked if sent > t]
        return min(later) if later else None


async def check_flow(flow: OrderFlow, url: str) -> dict[str, int]:
    """The checks of the module docstring, through the gateway at ``url``; returns counts."""
    trades_by_order: dict[str, int] = defaultdict(int)
    seen: Counter[tuple[str, str, str]] = Counter()
    accounts = {a for _, a in flow.clients}
    by_who = {acct: who for who, accts in ACCOUNTS.items() for acct in accts}
    trades = 0
    for account in sorted(accounts):
        async with FailoverClient([url], *BROKERS[by_who[account]], reconnect_s=10) as fc:
            for t in await fc.client.trades(account, "SHEA"):
                seen[(account, t["trade_id"], t["side"])] += 1
                trades_by_order[t["order_id"]] += int(t["quantity"])
                trades += 1
            for coid, reply in flow.acked.items():
                if reply["account"] != account:
                    continue
                order = await fc.client.get_order(account, client_order_id=coid)
                assert order["order_id"] == reply["order_id"], f"acknowledged order {coid} is {order} now, was {reply}"
                assert order["cum_qty"] == trades_by_order.get(order["order_id"], 0), f"order {coid}: cum_qty vs its trades"
    twice = [k for k, n in seen.items() if n > 1]
    assert not twice, f"trades listed more than once: {twice[:5]}"
    gaps = sum(fc.gaps for fc, _ in flow.clients)
    failures = sum(fc.checksum_failures for fc, _ in flow.clients)
    assert gaps == 0 and failures == 0, f"book seq gaps {gaps}, checksum failures {failures}"
    return {"acked": len(flow.acked), "rejected": len(flow.rejected), "unknown": len(flow.unknown), "trades": trades}
