"""Asyncio client for the carbonx WebSocket protocol (JSON-RPC 2.0, PROTOCOL.md).

Brokers, the end-to-end tests and the load benchmark all speak to the gateway through this
module, so it is deliberately complete and strict:

* ``await c.call(method, **params)`` returns the ``result`` or raises :class:`RpcError`
  (``code``, ``message``, ``data``, ``reason``); every request has a timeout, so a silent
  server never hangs a caller forever. ``await c.call_batch([(method, params), ...])`` sends
  several calls in one frame (a JSON-RPC batch) and returns their results in order.
* Notifications land in a bounded queue (``async for n in c.notifications()``), in a bounded
  history that :meth:`Client.wait_for` searches first (a report can arrive before the reply
  that caused it), and in registered callbacks.
* ``c.books[symbol]`` is rebuilt from the ``book.<SYMBOL>`` channel: snapshot, then absolute
  level updates. A ``seq`` gap or a checksum mismatch means the local copy can no longer be
  trusted, so the client drops it and resubscribes for a fresh snapshot.

Prices travel as decimal strings; the client accepts ``str`` or :class:`~decimal.Decimal` for
prices and refuses floats, which cannot represent fen exactly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from carbonx.engine.units import format_fen, parse_fen
from carbonx.gateway.protocol.book import Level, checksum
from carbonx.gateway.protocol.names import MSGPACK_SUBPROTOCOL

log = logging.getLogger("carbonx.client")

MSGPACK: Final = MSGPACK_SUBPROTOCOL  # the subprotocol name, as ``Client(subprotocol=...)`` takes it

ChecksumFn = Callable[[list[Level], list[Level]], int]


class ClientError(Exception):
    """Base class for everything this client raises on its own account."""


class RpcError(ClientError):
    """A JSON-RPC error reply: shape errors (-32xxx) or business rejects (1000-1999)."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {message}" + (f" {data}" if data else ""))
        self.code = code
        self.message = message
        self.data: dict[str, Any] = data or {}

    @property
    def reason(self) -> str | None:
        """The stable reject code (``data.reason``), e.g. ``PRICE_OUT_OF_BAND``."""
        reason = self.data.get("reason")
        return reason if isinstance(reason, str) else None

    @property
    def field(self) -> str | None:
        """The offending request field, when the server names one."""
        name = self.data.get("field")
        return name if isinstance(name, str) else None


class RequestTimeout(ClientError, TimeoutError):
    """No reply within the request timeout; the request may or may not have been applied."""


class ClientClosed(ClientError, ConnectionError):
    """The connection is closed; ``code``/``reason`` are the WebSocket close frame's."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Notification:
    """A server -> client message without id: ``method`` is the channel kind."""

    method: str
    params: dict[str, Any]

    @property
    def channel(self) -> str:
        channel = self.params.get("channel", "")
        return channel if isinstance(channel, str) else ""


def default_checksum(bids: list[Level], asks: list[Level]) -> int:
    """CRC32 of the top 10 levels, exactly as docs/protocol.md defines it
    (``carbonx.gateway.protocol.book.checksum``, the very function the server uses)."""
    return checksum(bids, asks)


@dataclass
class Book:
    """A local copy of one instrument's order book, rebuilt from its channel.

    Levels are kept in dicts keyed by price in fen (updates are O(1)); ``bids``/``asks``
    give the sorted, best-first view with the prices as wire strings.
    """

    symbol: str
    channel: str
    seq: int = 0
    ts: int = 0
    synced: bool = False
    bid_levels: dict[int, int] = field(default_factory=dict)
    ask_levels: dict[int, int] = field(default_factory=dict)

    def levels(self) -> tuple[list[Level], list[Level]]:
        """All levels as ``(fen, tonnes)``, best price first on each side."""
        bids = sorted(self.bid_levels.items(), key=lambda lv: -lv[0])
        asks = sorted(self.ask_levels.items())
        return bids, asks

    @property
    def bids(self) -> list[tuple[str, int]]:
        """Bid levels best (highest) first: ``[("60.00", 10), ...]``."""
        return [(format_fen(p), q) for p, q in self.levels()[0]]

    @property
    def asks(self) -> list[tuple[str, int]]:
        """Ask levels best (lowest) first."""
        return [(format_fen(p), q) for p, q in self.levels()[1]]

    def best_bid(self) -> tuple[str, int] | None:
        if not self.bid_levels:
            return None
        price = max(self.bid_levels)
        return format_fen(price), self.bid_levels[price]

    def best_ask(self) -> tuple[str, int] | None:
        if not self.ask_levels:
            return None
        price = min(self.ask_levels)
        return format_fen(price), self.ask_levels[price]

    def load(self, params: dict[str, Any]) -> None:
        """Replace everything with a snapshot."""
        self.bid_levels = _levels(params.get("bids", []))
        self.ask_levels = _levels(params.get("asks", []))
        self.seq = int(params["seq"])
        self.ts = int(params.get("ts", 0))
        self.synced = True

    def update(self, params: dict[str, Any]) -> None:
        """Apply absolute level quantities; quantity 0 removes the level."""
        for side, book in ((params.get("bids", []), self.bid_levels), (params.get("asks", []), self.ask_levels)):
            for price, qty in _levels_list(side):
                if qty:
                    book[price] = qty
                else:
                    book.pop(price, None)
        self.seq = int(params["seq"])
        self.ts = int(params.get("ts", 0))


def _levels_list(raw: Iterable[Any]) -> list[Level]:
    return [(parse_fen(str(price)), int(qty)) for price, qty in raw]


def _levels(raw: Iterable[Any]) -> dict[int, int]:
    return {p: q for p, q in _levels_list(raw) if q}


def _price(value: str | Decimal) -> str:
    """Wire form of a price: strings pass unchanged (the server validates them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -2:
            raise ValueError(f"price {value} has more than 2 decimals")
        return format(value, "f")
    raise TypeError(f"price must be a decimal string or Decimal, not {type(value).__name__}")


def _params(**kw: Any) -> dict[str, Any]:
    """Drop unset optional parameters so the server applies its documented defaults."""
    return {k: v for k, v in kw.items() if v is not None}


_Waiter = tuple[Callable[[Notification], bool], "asyncio.Future[Notification]"]
_CLOSED = object()


class Client:
    """One WebSocket session with the gateway. Use ``async with Client(url) as c``."""

    def __init__(
        self,
        url: str,
        subprotocol: str | None = None,
        *,
        timeout: float = 10.0,
        queue_size: int = 10_000,
        history_size: int = 10_000,
        max_size: int | None = 4 << 20,
        checksum: ChecksumFn | None = default_checksum,
        resubscribe_on_gap: bool = True,
        open_timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        if subprotocol not in (None, MSGPACK):
            raise ValueError(f"unknown subprotocol {subprotocol!r}; only {MSGPACK!r} is defined")
        self.url = url
        self.subprotocol = subprotocol
        self.timeout = timeout
        self.max_size = max_size
        self.open_timeout = open_timeout
        self.ssl = ssl
        self.local_addr = local_addr  # source (host, port) to connect from; None: the OS picks
        self.checksum = checksum
        self.resubscribe_on_gap = resubscribe_on_gap
        self.books: dict[str, Book] = {}
        self.member: str | None = None
        self.accounts: list[str] = []
        self.scopes: list[str] = []
        self.session_id: str | None = None
        self.history: collections.deque[Notification] = collections.deque(maxlen=history_size)
        self.orphan_errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self.gaps = 0
        self.checksum_failures = 0
        self.dropped_notifications = 0
        self.resubscribes = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._queue: asyncio.Queue[Notification | object] = asyncio.Queue(maxsize=queue_size)
        self._reports: asyncio.Queue[dict[str, Any] | object] = asyncio.Queue(maxsize=queue_size)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._waiters: list[_Waiter] = []
        self._callbacks: list[tuple[str, Callable[[Notification], None]]] = []
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._binary = subprotocol == MSGPACK
        self._json_enc = msgspec.json.Encoder()
        self._mp_enc = msgspec.msgpack.Encoder()

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> Client:
        """Open the WebSocket (no proxy, no compression) and start the reader task.
        ``wss://`` URLs use the ``ssl`` context given (default: the system's trust store)."""
        subprotocols = [Subprotocol(self.subprotocol)] if self.subprotocol else None
        extra: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
        if self.local_addr is not None:
            extra["local_addr"] = self.local_addr
        self._ws = await connect(
            self.url,
            **extra,
            subprotocols=subprotocols,
            compression=None,
            proxy=None,
            max_size=self.max_size,
            open_timeout=self.open_timeout,
            close_timeout=2,
        )
        if self.subprotocol and self._ws.subprotocol != self.subprotocol:
            await self._ws.close()
            raise ClientError(f"server did not accept subprotocol {self.subprotocol!r}")
        self._reader = asyncio.create_task(self._read_loop(), name="carbonx-client-reader")
        return self

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and fail whatever is still waiting for a reply."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close(code, reason)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5)
        for task in list(self._tasks):
            task.cancel()
        self._finish(ClientClosed(self.close_code, self.close_reason))

    async def abort(self) -> None:
        """Drop the TCP connection without a close handshake (simulates a crashed client)."""
        if self._ws is not None:
            self._ws.transport.abort()
        await self.close()

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the server (or network) closes the connection."""
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    # -- requests ---------------------------------------------------------------------------

    async def call(self, method: str, /, **params: Any) -> Any:
        """Send one request and return its ``result``; raises :class:`RpcError` on an error reply."""
        return await self.request(method, params)

    async def request(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Like :meth:`call` with the params as a dict (any shape, for protocol tests)."""
        limit = self.timeout if timeout is None else timeout
        rid, future = await self._submit(method, params)
        try:
            return await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise RequestTimeout(f"no reply to {method} (id {rid}) within {limit}s") from None
        finally:
            self._pending.pop(rid, None)

    async def submit(self, method: str, params: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        """Pipelining: send a request and return the future of its reply without waiting.

        The future resolves to the ``result`` or fails with :class:`RpcError` /
        :class:`ClientClosed`. No timeout applies: the caller owns it (load generators
        measure latency from their own schedule and must not pay for a timer per request).
        """
        return (await self._submit(method, params))[1]

    async def _submit(self, method: str, params: dict[str, Any] | None) -> tuple[int, asyncio.Future[Any]]:
        if self._ws is None or self._closed:
            raise ClientClosed(self.close_code, self.close_reason or "not connected")
        rid = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self._send(message)
        except BaseException:
            self._pending.pop(rid, None)
            raise
        return rid, future

    async def call_batch(self, calls: Iterable[tuple[str, dict[str, Any] | None]], *, timeout: float | None = None) -> list[Any]:
        """Send ``calls`` (``(method, params)`` pairs) as one JSON-RPC batch (one frame) and return
        their results in the same order; a call that failed has its :class:`RpcError` in its
        place (not raised: the others still happened). The server runs the calls in order, so
        order-changing calls keep theirs; at most the server's ``limits.max_batch`` per batch.
        Raises :class:`RequestTimeout` if the replies are not all in within the timeout."""
        limit = self.timeout if timeout is None else timeout
        futures = await self.submit_batch(calls)
        try:
            async with asyncio.timeout(limit):
                await asyncio.wait(futures)
        except TimeoutError:
            for f in futures:
                f.cancel()
            raise RequestTimeout(f"no reply to a batch of {len(futures)} within {limit}s") from None
        return [f.exception() or f.result() for f in futures]

    async def submit_batch(self, calls: Iterable[tuple[str, dict[str, Any] | None]]) -> list[asyncio.Future[Any]]:
        """Pipelining of a batch: send ``calls`` as one frame and return one future per call
        (as :meth:`submit`: no timeout, the caller owns it). An empty ``calls`` is refused
        (``ValueError``): the protocol answers an empty batch with an error."""
        if self._ws is None or self._closed:
            raise ClientClosed(self.close_code, self.close_reason or "not connected")
        messages: list[dict[str, Any]] = []
        futures: list[asyncio.Future[Any]] = []
        loop = asyncio.get_running_loop()
        for method, params in calls:
            rid = next(self._ids)
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
            if params is not None:
                message["params"] = params
            messages.append(message)
            future: asyncio.Future[Any] = loop.create_future()
            self._pending[rid] = future
            futures.append(future)
        if not messages:
            raise ValueError("a batch holds at least one call")
        try:
            await self._send(messages)
        except BaseException:
            for m in messages:
                self._pending.pop(m["id"], None)
            raise
        return futures

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (text for ``str``, binary for ``bytes``): malformed-input tests."""
        if self._ws is None:
            raise ClientClosed(None, "not connected")
        await self._ws.send(data)

    async def _send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        assert self._ws is not None
        try:
            if self._binary:
                await self._ws.send(self._mp_enc.encode(message))
            else:
                await self._ws.send(self._json_enc.encode(message), text=True)
        except ConnectionClosed as exc:
            raise ClientClosed(self.close_code, self.close_reason or str(exc)) from None

    # -- session ----------------------------------------------------------------------------

    async def login(self, key_id: str, secret: str) -> dict[str, Any]:
        """Authenticate; remembers ``member``, ``accounts`` and ``session_id``."""
        result: dict[str, Any] = await self.call("session.login", key_id=key_id, secret=secret)
        self.member = result.get("member")
        self.accounts = list(result.get("accounts", []))
        self.scopes = list(result.get("scopes", []))  # the key's scopes (read, trade); [] for operators
        self.session_id = result.get("session_id")
        return result

    async def logout(self) -> Any:
        return await self.call("session.logout")

    async def cancel_on_disconnect(self, enabled: bool = True) -> Any:
        return await self.call("session.cancel_on_disconnect", enabled=enabled)

    async def ping(self) -> Any:
        return await self.call("ping")

    # -- trading ----------------------------------------------------------------------------

    async def place(
        self,
        account: str,
        instrument: str,
        side: str,
        quantity: int,
        price: str | Decimal | None = None,
        *,
        type: str | None = None,
        time_in_force: str | None = None,
        post_only: bool | None = None,
        stp: str | None = None,
        client_order_id: str | None = None,
    ) -> dict[str, Any]:
        """``order.place`` -> the execution report (``exec_type`` new, trade, ...)."""
        params = _params(
            account=account,
            instrument=instrument,
            side=side,
            type=type,
            price=None if price is None else _price(price),
            quantity=quantity,
            time_in_force=time_in_force,
            post_only=post_only,
            stp=stp,
            client_order_id=client_order_id,
        )
        result: dict[str, Any] = await self.request("order.place", params)
        return result

    async def amend(
        self,
        account: str,
        order_id: str | None = None,
        *,
        client_order_id: str | None = None,
        price: str | Decimal | None = None,
        quantity: int | None = None,
    ) -> dict[str, Any]:
        """``order.amend``: a new price or total quantity; reducing quantity keeps priority."""
        params = _params(
            account=account,
            order_id=order_id,
            client_order_id=client_order_id,
            price=None if price is None else _price(price),
            quantity=quantity,
        )
        result: dict[str, Any] = await self.request("order.amend", params)
        return result

    async def cancel(self, account: str, order_id: str | None = None, *, client_order_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "order.cancel", _params(account=account, order_id=order_id, client_order_id=client_order_id)
        )
        return result

    async def cancel_all(self, account: str | None = None, instrument: str | None = None, side: str | None = None) -> int:
        """``order.cancel_all`` -> how many orders were cancelled."""
        result = await self.request("order.cancel_all", _params(account=account, instrument=instrument, side=side))
        return int(result["cancelled"])

    async def get_order(self, account: str, order_id: str | None = None, *, client_order_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "order.get", _params(account=account, order_id=order_id, client_order_id=client_order_id)
        )
        return result

    async def list_orders(self, account: str, instrument: str | None = None, open_only: bool | None = None) -> list[dict[str, Any]]:
        result = await self.request("order.list", _params(account=account, instrument=instrument, open_only=open_only))
        return list(result["orders"])

    async def trades(self, account: str, instrument: str | None = None, since_ts: int | None = None) -> list[dict[str, Any]]:
        result = await self.request("trade.list", _params(account=account, instrument=instrument, since_ts=since_ts))
        return list(result["trades"])

    async def account(self, account: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("account.get", account=account)
        return result

    # -- retirement -------------------------------------------------------------------------

    async def retire(
        self,
        account: str,
        instrument: str,
        quantity: int,
        purpose: str,
        beneficiary: str,
        *,
        vintage: int | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Retire tonnes for good -> the certificate."""
        params = _params(
            account=account,
            instrument=instrument,
            quantity=quantity,
            purpose=purpose,
            beneficiary=beneficiary,
            vintage=vintage,
            event_id=event_id,
        )
        result: dict[str, Any] = await self.request("retire", params)
        return result

    async def certificate(self, certificate_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("retire.certificate", certificate_id=certificate_id)
        return result

    async def get_event(self, event_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("event.get", event_id=event_id)
        return result

    # -- block trades -----------------------------------------------------------------------

    async def block_propose(
        self,
        account: str,
        instrument: str,
        side: str,
        price: str | Decimal,
        quantity: int,
        counterparty_account: str,
        *,
        vintage: int | None = None,
    ) -> dict[str, Any]:
        params = _params(
            account=account,
            instrument=instrument,
            side=side,
            price=_price(price),
            quantity=quantity,
            counterparty_account=counterparty_account,
            vintage=vintage,
        )
        result: dict[str, Any] = await self.request("block.propose", params)
        return result

    async def block_accept(self, account: str, block_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("block.accept", account=account, block_id=block_id)
        return result

    async def block_decline(self, account: str, block_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("block.decline", account=account, block_id=block_id)
        return result

    async def block_cancel(self, account: str, block_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("block.cancel", account=account, block_id=block_id)
        return result

    async def block_get(self, account: str, block_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("block.get", account=account, block_id=block_id)
        return result

    # -- auctions ---------------------------------------------------------------------------

    async def auction_list(self) -> Any:
        return await self.call("auction.list")

    async def auction_get(self, auction_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("auction.get", auction_id=auction_id)
        return result

    async def auction_bid(
        self, auction_id: str, account: str, price: str | Decimal, quantity: int, *, client_bid_id: str | None = None
    ) -> dict[str, Any]:
        params = _params(auction_id=auction_id, account=account, price=_price(price), quantity=quantity, client_bid_id=client_bid_id)
        result: dict[str, Any] = await self.request("auction.bid", params)
        return result

    async def auction_amend_bid(
        self, auction_id: str, bid_id: str, *, price: str | Decimal | None = None, quantity: int | None = None
    ) -> dict[str, Any]:
        params = _params(auction_id=auction_id, bid_id=bid_id, price=None if price is None else _price(price), quantity=quantity)
        result: dict[str, Any] = await self.request("auction.amend_bid", params)
        return result

    async def auction_withdraw_bid(self, auction_id: str, bid_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("auction.withdraw_bid", auction_id=auction_id, bid_id=bid_id)
        return result

    async def auction_my_bids(self, auction_id: str, account: str) -> list[dict[str, Any]]:
        result = await self.call("auction.my_bids", auction_id=auction_id, account=account)
        return list(result["bids"])

    # -- market data ------------------------------------------------------------------------

    async def subscribe(self, channels: list[str]) -> Any:
        """Subscribe; book channels get a :class:`Book` in ``books`` once their snapshot arrives."""
        for channel in channels:
            self._track_book(channel)
        return await self.call("subscribe", channels=channels)

    async def unsubscribe(self, channels: list[str]) -> Any:
        result = await self.call("unsubscribe", channels=channels)
        for channel in channels:
            book = self._book_for(channel)
            if book is not None:
                book.synced = False
        return result

    def on_notification(self, callback: Callable[[Notification], None], channel_prefix: str = "") -> None:
        """Call ``callback`` (on the reader task; keep it short) for matching notifications."""
        self._callbacks.append((channel_prefix, callback))

    async def notifications(self) -> AsyncIterator[Notification]:
        """Every notification in arrival order until the connection closes."""
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)  # let other iterators finish too
                return
            assert isinstance(item, Notification)
            yield item

    async def execution_reports(self) -> AsyncIterator[dict[str, Any]]:
        """Execution reports from the private ``orders`` channel (subscribe to ``orders``
        first), in arrival order, until the connection closes. A queue of its own, so
        reading it does not compete with :meth:`notifications`."""
        while True:
            item = await self._reports.get()
            if item is _CLOSED:
                self._reports.put_nowait(_CLOSED)
                return
            assert isinstance(item, dict)
            yield item

    async def wait_for(self, predicate: Callable[[Notification], bool], timeout: float | None = None) -> Notification:
        """The first notification (already received, or future) that satisfies ``predicate``."""
        for note in self.history:
            if predicate(note):
                return note
        future: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
        waiter: _Waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, self.timeout if timeout is None else timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def wait_synced(self, symbol: str, timeout: float | None = None) -> Book:
        """Wait until ``books[symbol]`` holds a verified snapshot."""
        deadline = asyncio.get_running_loop().time() + (self.timeout if timeout is None else timeout)
        while True:
            book = self.books.get(symbol)
            if book is not None and book.synced:
                return book
            if asyncio.get_running_loop().time() > deadline:
                raise RequestTimeout(f"book {symbol} not synced")
            if self._closed:
                raise ClientClosed(self.close_code, self.close_reason)
            await asyncio.sleep(0.01)

    # -- reader -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._ws is not None
        decode: Callable[[Any], Any] = msgspec.msgpack.decode if self._binary else msgspec.json.decode
        try:
            async for frame in self._ws:
                try:
                    message = decode(frame)
                except msgspec.DecodeError:
                    log.error("undecodable frame from server: %r", frame[:200])
                    continue
                self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            self._finish(ClientClosed(self.close_code, self.close_reason))

    def _finish(self, exc: ClientClosed) -> None:
        if self._closed:
            return
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        for queue in (self._queue, self._reports):
            try:
                queue.put_nowait(_CLOSED)
            except asyncio.QueueFull:  # make room: the end-of-stream marker must get through
                queue.get_nowait()
                queue.put_nowait(_CLOSED)

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, list):  # the answers to a batch, each matched by its id
            for item in message:
                self._dispatch(item)
            return
        if not isinstance(message, dict):
            log.error("non-object message from server: %r", message)
            return
        if "id" in message and ("result" in message or "error" in message):
            self._reply(message)
        elif "method" in message:
            params = message.get("params")
            self._notify(Notification(str(message["method"]), params if isinstance(params, dict) else {}))
        else:
            log.error("unexpected message from server: %r", message)

    def _reply(self, message: dict[str, Any]) -> None:
        rid = message["id"]
        future = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if future is None:
            if "error" in message:
                self.orphan_errors.append(message["error"])  # e.g. parse errors carry id null
            return
        if future.done():
            return
        error = message.get("error")
        if error is not None:
            future.set_exception(RpcError(int(error.get("code", 0)), str(error.get("message", "")), error.get("data")))
        else:
            future.set_result(message.get("result"))

    def _notify(self, note: Notification) -> None:
        if note.method == "book":
            self._on_book(note)
        self.history.append(note)
        self._enqueue(self._queue, note)
        if note.method == "orders" and note.params.get("kind", "execution_report") == "execution_report":
            self._enqueue(self._reports, note.params)
        for prefix, callback in self._callbacks:
            if note.channel.startswith(prefix):
                try:
                    callback(note)
                except Exception:
                    log.exception("notification callback failed")
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(note):
                waiter.set_result(note)

    def _enqueue(self, queue: asyncio.Queue[Any], item: Any) -> None:
        """Bounded: a consumer that does not keep up loses the oldest items, counted."""
        if queue.full():
            queue.get_nowait()
            self.dropped_notifications += 1
        queue.put_nowait(item)

    # -- book rebuilding --------------------------------------------------------------------

    def _track_book(self, channel: str) -> None:
        parts = channel.split(".")
        if parts[0] == "book" and len(parts) >= 2:
            book = self.books.get(parts[1])
            if book is None or book.channel != channel:
                self.books[parts[1]] = Book(symbol=parts[1], channel=channel)

    def _book_for(self, channel: str) -> Book | None:
        parts = channel.split(".")
        book = self.books.get(parts[1]) if len(parts) >= 2 else None
        return book if book is not None and book.channel == channel else None

    def _on_book(self, note: Notification) -> None:
        book = self._book_for(note.channel)
        if book is None:
            return
        kind = note.params.get("type")
        if kind == "snapshot":
            book.load(note.params)
        elif not book.synced:
            return  # waiting for the snapshot of a (re)subscription
        elif note.params.get("seq") != book.seq + 1:
            self.gaps += 1
            log.warning("gap on %s: seq %s after %d; resubscribing", note.channel, note.params.get("seq"), book.seq)
            self._resync(book)
            return
        else:
            book.update(note.params)
        self._verify(book, note.params.get("checksum"))

    def _verify(self, book: Book, expected: Any) -> None:
        if self.checksum is None or expected is None:
            return
        bids, asks = book.levels()
        if self.checksum(bids, asks) != expected:
            self.checksum_failures += 1
            log.warning("checksum mismatch on %s at seq %d; resubscribing", book.channel, book.seq)
            self._resync(book)

    def _resync(self, book: Book) -> None:
        book.synced = False
        if not self.resubscribe_on_gap or self._closed:
            return
        self.resubscribes += 1
        task = asyncio.create_task(self._resubscribe(book.channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resubscribe(self, channel: str) -> None:
        try:
            await self.call("unsubscribe", channels=[channel])
            await self.call("subscribe", channels=[channel])
        except ClientError as exc:
            log.warning("resubscribe to %s failed: %s", channel, exc)
