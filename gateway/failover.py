"""A broker session that survives the loss of its gateway (cluster mode: several gateways).

``FailoverClient(urls, key_id, secret)`` holds one :class:`~carbonx.gateway.client.Client` at a
time, connected to one of ``urls``. When that connection drops (the gateway was killed, the
network broke), it connects to the next URL in turn — retrying round the list with a short
back-off for up to ``reconnect_s`` — and restores the session: logs in again, re-enables
cancel-on-disconnect if it was on, re-subscribes every channel (book channels start again from
a fresh snapshot, so the local books resync by ``seq``) and re-registers notification callbacks.

What a caller must know:

* A request in flight when the connection dropped fails with ``ClientClosed``: its fate is
  unknown (the old gateway may have published it). Re-send orders with the same
  ``client_order_id`` — a duplicate is rejected, never executed twice — or look the order up
  (``order.list``) after ``await fc.wait_connected()``.
* Calls made while reconnecting wait for the new connection (up to ``reconnect_s``).
* ``last_seq[channel]`` is the highest ``seq`` seen per channel, across connections; a book
  snapshot after a reconnect that is *older* than what was already seen is counted in
  ``seq_regressions`` (a gateway behind the one before it); the book is still rebuilt from it
  and moves on with the updates that follow.
* Cancel-on-disconnect is per session: the old session's orders are cancelled by the exchange
  when it sees that session lost (that is the point); the new session's COD covers orders placed
  from now on.

The client module's rule holds here too: nothing from the server side is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from carbonx.gateway.client import Book, Client, ClientClosed, ClientError, Notification

log = logging.getLogger("carbonx.client.failover")


class FailoverClient:
    """See the module docstring. ``client_kw`` are passed to every :class:`Client`."""

    def __init__(
        self,
        urls: Sequence[str],
        key_id: str,
        secret: str,
        *,
        subprotocol: str | None = None,
        reconnect_s: float = 30.0,
        **client_kw: Any,
    ) -> None:
        if not urls:
            raise ValueError("FailoverClient needs at least one URL")
        self.urls = list(urls)
        self.key_id, self._secret = key_id, secret
        self.subprotocol = subprotocol
        self.reconnect_s = reconnect_s
        self.client_kw = client_kw
        self.index = 0  # urls[index] is the current (or last) gateway
        self.reconnects = 0  # successful reconnections after a lost connection
        self.seq_regressions = 0
        self._old_gaps = self._old_checksum_failures = 0  # of connections before the current one
        self.last_seq: dict[str, int] = {}
        self.channels: list[str] = []
        self.cod = False
        self._client: Client | None = None
        self._callbacks: list[tuple[Callable[[Notification], None], str]] = []
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: ClientError | None = None
        self._closing = False

    # ------------------------------------------------------------------ connection

    @property
    def client(self) -> Client:
        """The current connection (raises ``ClientClosed`` while there is none)."""
        if self._client is None or self._client.closed:
            raise ClientClosed(None, "reconnecting")
        return self._client

    @property
    def url(self) -> str:
        return self.urls[self.index]

    @property
    def books(self) -> dict[str, Book]:
        return self._client.books if self._client is not None else {}

    @property
    def gaps(self) -> int:
        """Book ``seq`` gaps seen, over every connection (0: every book update followed the one before)."""
        return self._old_gaps + (self._client.gaps if self._client is not None else 0)

    @property
    def checksum_failures(self) -> int:
        return self._old_checksum_failures + (self._client.checksum_failures if self._client is not None else 0)

    @property
    def session_id(self) -> str | None:
        return self._client.session_id if self._client is not None else None

    async def connect(self) -> FailoverClient:
        """Connect to the first URL that answers (in order) and log in; start watching the connection."""
        self._client = await self._establish(time.monotonic() + self.reconnect_s, first=True)
        self._connected.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="carbonx-failover")
        return self

    async def _establish(self, deadline: float, first: bool) -> Client:
        pause = 0.05
        tried = 0
        while True:
            if not (first and tried == 0):
                self.index = (self.index + 1) % len(self.urls)
            tried += 1
            url = self.urls[self.index]
            client = Client(url, self.subprotocol, **self.client_kw)
            try:
                await client.connect()
                await self._restore(client)
                return client
            except (OSError, ClientError, TimeoutError) as exc:
                with contextlib.suppress(Exception):
                    await client.close()
                if time.monotonic() + pause > deadline:
                    raise ClientClosed(None, f"no gateway of {self.urls} took the session within {self.reconnect_s}s: {exc!r}") from exc
                log.info("gateway %s unavailable (%r); trying the next", url, exc)
            if tried % len(self.urls) == 0:  # went round the list: back off
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _restore(self, client: Client) -> None:
        """Log in, re-enable COD, re-register callbacks, re-subscribe: the session as it was."""
        await client.login(self.key_id, self._secret)
        if self.cod:
            await client.cancel_on_disconnect(True)
        client.on_notification(self._track_seq)
        for callback, prefix in self._callbacks:
            client.on_notification(callback, prefix)
        if self.channels:
            await client.subscribe(self.channels)

    def _track_seq(self, note: Notification) -> None:
        seq = note.params.get("seq")
        if not isinstance(seq, int) or not note.channel:
            return
        last = self.last_seq.get(note.channel)
        if last is not None and seq < last and note.params.get("type") == "snapshot":
            self.seq_regressions += 1
            log.warning("%s: snapshot at seq %d after seq %d was seen (gateway %s is behind)", note.channel, seq, last, self.url)
        if last is None or seq > last:
            self.last_seq[note.channel] = seq

    async def _supervise(self) -> None:
        while not self._closing:
            client = self._client
            assert client is not None
            with contextlib.suppress(Exception):
                await client.wait_closed()
            if self._closing:
                return
            self._connected.clear()
            self._old_gaps += client.gaps
            self._old_checksum_failures += client.checksum_failures
            log.warning("connection to %s lost (%s %s); failing over", self.url, client.close_code, client.close_reason)
            try:
                self._client = await self._establish(time.monotonic() + self.reconnect_s, first=False)
            except ClientClosed as exc:
                self._failure = exc
                self._connected.set()  # wake waiters: they raise the failure
                return
            self.reconnects += 1
            log.warning("session restored on %s", self.url)
            self._connected.set()

    async def wait_connected(self, timeout: float | None = None) -> Client:
        """The current connection, after waiting for a reconnection in progress."""

        async def connected() -> Client:
            while True:
                await self._connected.wait()
                if self._failure is not None:
                    raise self._failure
                if self._client is not None and not self._client.closed:
                    return self._client
                await asyncio.sleep(0.01)  # closed, and the supervisor has not noticed yet

        return await asyncio.wait_for(connected(), self.reconnect_s if timeout is None else timeout)

    async def close(self) -> None:
        self._closing = True
        if self._client is not None:
            await self._client.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    async def __aenter__(self) -> FailoverClient:
        return await self.connect()

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # ------------------------------------------------------------------ session state that survives

    async def call(self, method: str, /, **params: Any) -> Any:
        """``Client.call`` on the current connection (waiting for one if reconnecting)."""
        client = await self.wait_connected()
        return await client.call(method, **params)

    async def subscribe(self, channels: list[str]) -> Any:
        """Subscribe now and after every reconnection."""
        self.channels += [c for c in channels if c not in self.channels]
        client = await self.wait_connected()
        return await client.subscribe(channels)

    async def cancel_on_disconnect(self, enabled: bool = True) -> Any:
        """Set COD now and on every session after a reconnection."""
        self.cod = enabled
        client = await self.wait_connected()
        return await client.cancel_on_disconnect(enabled)

    def on_notification(self, callback: Callable[[Notification], None], channel_prefix: str = "") -> None:
        """Register a callback on this and every later connection."""
        self._callbacks.append((callback, channel_prefix))
        if self._client is not None and not self._client.closed:
            self._client.on_notification(callback, channel_prefix)
