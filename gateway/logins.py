"""Login admission: bounded password hashing and back-off after failed logins.

A login costs one scrypt verification (~50 ms of CPU and 16 MiB of memory, by design), so
without bounds a few anonymous connections guessing secrets take the exchange's CPU and
memory. ``LoginGuard`` bounds both:

- **Concurrency.** At most ``concurrency`` verifications run at once, each on a thread of
  the guard's own pool (so scrypt never occupies the default executor that snapshots use,
  and the memory scrypt holds, including what the allocator keeps per thread, is bounded
  by ``concurrency`` x 16 MiB). At most ``queue`` more wait; beyond that the attempt is
  refused at once (``Busy``) instead of queueing behind an attacker.
- **Back-off.** Failed logins are counted in a row per key id, per source address and per
  (key id, address) pair. After the n-th failure the next attempt for it is refused before
  any hashing (``Throttled``, with the seconds to wait) for ``base * 2^(n-1)`` seconds, at
  most ``cap``; counts are forgotten ``cap`` seconds after the last failure. While a key or
  address has failures, only one attempt for it is verified at a time, so a burst of
  connections gets one guess per back-off, not one each.
- **Known-good pairs.** A (key id, address) pair that has logged in successfully is not
  held back by the key's or the address's back-off (only by its own): an attacker guessing
  a broker's key from elsewhere, or a mistyping neighbour behind the same NAT, does not lock
  the broker out. Its logins also wait for a hashing lane ahead of all others and are never
  refused as busy, so a storm of guesses from many addresses does not slow them down.

Unknown key ids are counted exactly like known ones (they are verified against a dummy
hash), so throttling reveals nothing about which key ids exist. All tables are bounded
(``entries``, least recently failed dropped first).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Too many logins are being verified; try again in a moment."""


class Throttled(Exception):
    """Failed logins for this key id / address: the next attempt must wait ``retry_after`` s."""

    def __init__(self, scope: str, retry_after: float) -> None:
        super().__init__(f"too many failed logins for this {scope.replace('_', ' ')}: retry in {retry_after:.1f} s")
        self.scope = scope  # "key_id" | "address"
        self.retry_after = retry_after


class Backoff:
    """Failures in a row per key, with exponential back-off; bounded, oldest dropped first."""

    def __init__(self, base: float, cap: float, entries: int) -> None:
        self.base, self.cap, self.entries = base, cap, entries
        self.table: OrderedDict[Hashable, tuple[int, float]] = OrderedDict()  # key -> (failures, last failure)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row."""
        return min(self.cap, self.base * 2.0 ** min(failures - 1, 64))

    def failures(self, key: Hashable, now: float) -> int:
        entry = self.table.get(key)
        if entry is None:
            return 0
        if now - entry[1] >= self.cap:  # forgotten
            del self.table[key]
            return 0
        return entry[0]

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        n = self.failures(key, now)
        return max(0.0, self.table[key][1] + self.delay(n) - now) if n else 0.0

    def fail(self, key: Hashable, now: float) -> None:
        n = self.failures(key, now) + 1
        self.table.pop(key, None)
        self.table[key] = (n, now)
        while len(self.table) > self.entries:
            self.table.popitem(last=False)

    def clear(self, key: Hashable) -> None:
        self.table.pop(key, None)


class LoginGuard:
    """Verifies login secrets under the bounds described in the module docstring.

    ``verify`` is the one entry point for logins; ``run`` runs another scrypt job (hashing a
    new member's secret) under the same concurrency bound. Counters are plain integers for
    the metrics."""

    def __init__(
        self,
        concurrency: int,
        queue: int,
        backoff_base_s: float,
        backoff_max_s: float,
        entries: int,
        clock: Callable[[], float] = time.monotonic,
        name: str = "carbonx-scrypt",
    ) -> None:
        self.concurrency, self.queue, self.clock = concurrency, queue, clock
        self.by_key = Backoff(backoff_base_s, backoff_max_s, entries)
        self.by_address = Backoff(backoff_base_s, backoff_max_s, entries)
        self.by_pair = Backoff(backoff_base_s, backoff_max_s, entries)
        self.known_good: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.entries = entries
        self.in_flight: dict[tuple[int, Hashable], int] = {}  # (table, key) -> attempts being verified
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
        # Waiting for a lane: known-good pairs first (a storm of new guesses never delays a
        # broker logging in from where it logged in before), then everyone else, in order.
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())
        self._handed = 0  # lanes handed to woken waiters that have not started yet
        self.pending = 0  # admitted: waiting for a slot or hashing
        self.hashing = 0
        self.peak_hashing = 0  # highest number of concurrent verifications seen
        self.throttled = {"key_id": 0, "address": 0}
        self.busy = 0
        self.failed = 0
        self.succeeded = 0

    def _tables(self, key_id: str, address: str) -> list[tuple[str, Backoff, Hashable]]:
        """The back-offs that apply to an attempt: (scope, table, key in that table)."""
        pair = (key_id, address)
        tables: list[tuple[str, Backoff, Hashable]] = [("key_id", self.by_pair, pair)]
        if pair not in self.known_good:
            tables += [("key_id", self.by_key, key_id), ("address", self.by_address, address)]
        return tables

    def check(self, key_id: str, address: str) -> None:
        """Raise ``Throttled`` if an attempt for ``key_id`` from ``address`` must wait."""
        now = self.clock()
        tables = self._tables(key_id, address)
        scope, wait = "key_id", 0.0
        for s, table, key in tables:
            w = table.wait(key, now)
            if w > wait:
                scope, wait = s, w
        if wait <= 0:  # out of back-off; still, one attempt at a time for whatever has failed
            for s, table, key in tables:
                if self.in_flight.get((id(table), key)) and table.failures(key, now):
                    scope, wait = s, table.base
                    break
            else:
                return
        self.throttled[scope] += 1
        raise Throttled(scope, wait)

    async def verify(self, key_id: str, address: str, check: Callable[[], bool]) -> bool:
        """Run ``check()`` (the scrypt comparison) for a login of ``key_id`` from ``address``
        unless throttled (``Throttled``) or overloaded (``Busy``); record the outcome."""
        self.check(key_id, address)
        flights = [(id(table), key) for _, table, key in self._tables(key_id, address)]
        for f in flights:
            self.in_flight[f] = self.in_flight.get(f, 0) + 1
        try:
            ok = await self.run(check, first=(key_id, address) in self.known_good)
        finally:
            for f in flights:
                left = self.in_flight[f] - 1
                if left:
                    self.in_flight[f] = left
                else:
                    del self.in_flight[f]
        now, pair = self.clock(), (key_id, address)
        if ok:
            self.succeeded += 1
            self.by_pair.clear(pair)
            self.known_good.pop(pair, None)
            self.known_good[pair] = None
            while len(self.known_good) > self.entries:
                self.known_good.popitem(last=False)
        else:
            self.failed += 1
            self.by_key.fail(key_id, now)
            self.by_address.fail(address, now)
            self.by_pair.fail(pair, now)
        return ok

    async def run(self, fn: Callable[[], T], first: bool = False) -> T:
        """Run the scrypt job ``fn`` on the guard's threads, at most ``concurrency`` at once;
        ``Busy`` at once if ``queue`` jobs are already waiting (``first``: a known-good login,
        which waits ahead of the others and is never refused as busy)."""
        if not first and self.pending >= self.concurrency + self.queue:
            self.busy += 1
            raise Busy("too many logins being verified: retry in a moment")
        self.pending += 1
        try:
            await self._lane(first)
            self.hashing += 1
            self.peak_hashing = max(self.peak_hashing, self.hashing)
            try:
                return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
            finally:
                self.hashing -= 1
                self._wake()
        finally:
            self.pending -= 1

    async def _lane(self, first: bool) -> None:
        """Wait until a hashing lane is free (it is then this caller's)."""
        if self.hashing + self._handed < self.concurrency and not any(self._waiting):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if first else 1]
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # woken, then cancelled: pass the lane on
                self._handed -= 1
                self._wake()
            elif fut in queue:
                queue.remove(fut)
            raise
        self._handed -= 1

    def _wake(self) -> None:
        """Hand free lanes to the next waiters (known-good first)."""
        for queue in self._waiting:
            while queue and self.hashing + self._handed < self.concurrency:
                fut = queue.popleft()
                if not fut.done():
                    self._handed += 1
                    fut.set_result(None)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
