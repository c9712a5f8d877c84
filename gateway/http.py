"""HTTP on the metrics port: ``/metrics``, ``/healthz``, ``/readyz``, ``/config.json`` and the
static pages of ``gateway/web/``, served through the websockets server's HTTP/1.1 parser.

No hand-written parser: ``websockets.asyncio.server.serve`` reads and bounds the request
(request line and each header line ≤ 8192 bytes, ≤ 128 headers, no request body, the whole
request within ``timeout`` seconds, else the connection is dropped) and calls
``process_request``, which always answers here: the metrics port never upgrades to a
WebSocket (the live page connects to the public trading listener, whose URL it reads from
``/config.json``). What the parser cannot read at all (garbage, a truncated request, a body)
gets no response, the connection is closed; an oversized request line gets 414, oversized
headers 431 (websockets' answers). Everything parsed is answered by ``HttpServer.answer``:

* only ``GET`` (anything else 405 with ``Allow: GET``); a target that is not an origin-form
  path (``/...``) or holds a control character, a backslash or a ``..`` segment is 400;
* ``/healthz`` 200 while the process runs; ``/readyz`` 200 once recovery is done and the
  listeners are up with usable storage, else 503 with the reason; ``/metrics`` the
  Prometheus text format (503 while recovering);
* ``/config.json``: what the page needs to connect (503 while recovering);
  ``/trades.json?instrument=SYM``: the trading day's durable listing trades so far, so
  the page draws the whole day and fills a gap after a reconnect (``day_trades``);
* ``/`` is ``index.html``; ``/NAME`` for any ``*.html``, ``*.js``, ``*.css`` directly in
  ``gateway/web/`` (read once at start: a file added later is served after a restart), with
  its content type, a strong ``ETag`` (``If-None-Match`` gives 304) and ``Cache-Control:
  no-cache`` (browsers revalidate, so a new release shows at once);
* anything else 404.

A new page (``disclosure.html``) needs nothing here: drop it into ``gateway/web/``.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from carbonx.engine.units import format_fen

if TYPE_CHECKING:
    from carbonx.engine.engine import Engine

# websockets logs two INFO lines per request (a Prometheus scrape every 5 s): kept at WARNING
# unless logging is configured for this logger explicitly.
wire_log = logging.getLogger("carbonx.http.requests")

WEB_DIR = Path(__file__).resolve().parent / "web"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.(?:html|js|css)")
# Origin-form request target: a path of printable ASCII without backslash, optional query.
_TARGET = re.compile(r"/[\x21-\x7e]*")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Every response: the page is not to be framed elsewhere, types are not sniffed, and the page
# loads scripts and styles only from this origin and connects only to WebSocket URLs.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer before it is put on the wire (what the tests look at)."""

    status: HTTPStatus
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static(folder: Path = WEB_DIR) -> dict[str, StaticFile]:
    """Every ``*.html|*.js|*.css`` directly in ``folder`` by URL path (``/index.html`` also as ``/``)."""
    files: dict[str, StaticFile] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and _STATIC_NAME.fullmatch(path.name):
                body = path.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                files["/" + path.name] = StaticFile(body, CONTENT_TYPES[path.suffix], etag)
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


def _text(status: HTTPStatus, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", text.encode() + b"\n", headers)


@dataclass
class HttpServer:
    """The metrics port. ``registry_fn``/``config_fn`` return None while recovering (503);
    ``ready_fn`` returns True (ready), False (recovering) or the reason it is not ready
    (e.g. the data directory is nearly full), which the 503 body of ``/readyz`` says.
    ``config_fn`` gives the JSON object of ``/config.json`` (see ``page_config``)."""

    registry_fn: Callable[[], CollectorRegistry | None]
    ready_fn: Callable[[], bool | str]
    config_fn: Callable[[], Mapping[str, Any] | None] = lambda: None
    # instrument -> /trades.json's object; None while recovering; LookupError: unknown instrument
    trades_fn: Callable[[str], Mapping[str, Any] | None] = lambda symbol: None
    timeout: float = 5.0  # seconds for the whole request (websockets' open_timeout)
    static: dict[str, StaticFile] = field(default_factory=load_static)
    server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the actual port (``port`` 0 picks a free one)."""
        if wire_log.level == logging.NOTSET:
            wire_log.setLevel(logging.WARNING)
        self.server = await serve(
            _never_called,
            host,
            port,
            process_request=self._process_request,
            open_timeout=self.timeout,
            compression=None,
            ping_interval=None,
            server_header="carbonx",
            logger=wire_log,
        )
        return int(next(iter(self.server.sockets)).getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response:
        reply = self.answer(request.method, request.path, request.headers)
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Content-Type", reply.content_type),
                ("Content-Length", str(len(reply.body))),
                ("Connection", "close"),
                *SECURITY_HEADERS,
                *reply.headers,
            ]
        )
        return Response(reply.status.value, reply.status.phrase, headers, reply.body)

    def answer(self, method: str, target: str, headers: Mapping[str, str] | Headers | None = None) -> Reply:
        """The reply to one parsed request (``target`` as sent: path and optional query)."""
        if method != "GET":
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method[:16]!r} not allowed: GET only", (("Allow", "GET"),))
        if not _TARGET.fullmatch(target) or "\\" in target:
            return _text(HTTPStatus.BAD_REQUEST, "bad request target: expected a path starting with '/' in printable ASCII")
        path = target.split("?", 1)[0]
        if "/../" in path + "/" or "/./" in path + "/" or "//" in path:
            return _text(HTTPStatus.BAD_REQUEST, "bad request target: '.', '..' and empty path segments are not allowed")
        if path == "/healthz":
            return _text(HTTPStatus.OK, "ok")
        if path == "/readyz":
            ready = self.ready_fn()
            if ready is True:
                return _text(HTTPStatus.OK, "ready")
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, ready or "recovering")
        if path == "/metrics":
            registry = self.registry_fn()
            if registry is None:
                return _text(HTTPStatus.SERVICE_UNAVAILABLE, "recovering")
            return Reply(HTTPStatus.OK, METRICS_TYPE, generate_latest(registry))
        if path == "/config.json":
            config = self.config_fn()
            if config is None:
                return _text(HTTPStatus.SERVICE_UNAVAILABLE, "recovering")
            return Reply(HTTPStatus.OK, "application/json", json.dumps(config).encode(), (("Cache-Control", "no-store"),))
        if path == "/trades.json":
            return self._trades(target.partition("?")[2])
        page = self.static.get(path)
        if page is None:
            return _text(HTTPStatus.NOT_FOUND, "not found")
        cache = (("ETag", page.etag), ("Cache-Control", "no-cache"))
        if headers is not None and page.etag in _etags(headers.get("If-None-Match")):
            return Reply(HTTPStatus.NOT_MODIFIED, page.content_type, b"", cache)
        return Reply(HTTPStatus.OK, page.content_type, page.body, cache)

    def _trades(self, query: str) -> Reply:
        try:
            values = urllib.parse.parse_qs(query, strict_parsing=True, max_num_fields=4) if query else {}
        except ValueError as exc:
            return _text(HTTPStatus.BAD_REQUEST, f"bad query string: {exc}")
        symbols = values.get("instrument", [])
        if len(symbols) != 1 or set(values) != {"instrument"}:
            return _text(HTTPStatus.BAD_REQUEST, "expected exactly one parameter: instrument=SYMBOL")
        try:
            trades = self.trades_fn(symbols[0])
        except LookupError:
            return _text(HTTPStatus.NOT_FOUND, f"unknown instrument {symbols[0][:16]!r}")
        if trades is None:
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, "recovering")
        return Reply(
            HTTPStatus.OK, "application/json", json.dumps(trades, separators=(",", ":")).encode(), (("Cache-Control", "no-store"),)
        )


def _etags(value: str | None) -> set[str]:
    if not value:
        return set()
    return {tag.strip().removeprefix("W/") for tag in value.split(",")}


def page_config(trading_url: str, public_url: str, instruments: list[str]) -> dict[str, Any]:
    """``/config.json``: how the page reaches the trading listener. ``trading_url`` is the
    listener's bound URL (``ws[s]://HOST:PORT/v1``); ``public_url`` (``[server] public_url``)
    when set is what browsers must use instead (a proxy, a DNS name), else the page connects
    to the port of ``trading_url`` on the host it was itself loaded from."""
    scheme, _, rest = trading_url.partition("://")
    hostport, _, path = rest.partition("/")
    port = int(hostport.rsplit(":", 1)[1])
    return {
        "trading_url": public_url or None,
        "trading_scheme": scheme,
        "trading_port": port,
        "trading_path": "/" + path,
        "instruments": instruments,
    }


MAX_DAY_TRADES = 5000
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def day_trades(engine: Engine, symbol: str, durable_seq: int) -> dict[str, Any]:
    """``/trades.json``: the current trading day's listing trades of ``symbol`` that are
    durable (``seq <= durable_seq``: never one a crash could take back), oldest first,
    as ``[trade_id, ts, price, quantity, aggressor]``, at most the last ``MAX_DAY_TRADES``.
    Block trades are left out (they are not listing prices). Only what the engine still
    holds (its ``retention.trades`` window) can be given: ``complete`` is false when the
    day may have begun before the window (or past the cap). Raises KeyError for an
    unknown instrument."""
    if symbol not in engine.specs:
        raise KeyError(symbol)
    day = engine.trading_date
    out: list[list[Any]] = []
    complete = False
    # the trading date's local midnight in ns: one integer comparison per trade
    days = datetime.date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL if day else 0
    start_ns = (days * 86400 - engine.config.calendar.utc_offset_s) * 1_000_000_000
    for t in reversed(engine.trades):
        if not day or t.ts < start_ns:
            complete = True
            break
        if t.seq > durable_seq or t.instrument != symbol or t.block:
            continue
        if len(out) == MAX_DAY_TRADES:
            break
        out.append([str(t.trade_id), t.ts, format_fen(t.price), t.quantity, t.aggressor])
    else:
        complete = len(engine.trades) < engine.retention.trades
    out.reverse()
    return {"instrument": symbol, "trading_date": day, "durable_seq": durable_seq, "complete": complete, "trades": out}


async def _never_called(connection: ServerConnection) -> None:  # pragma: no cover
    """process_request answers every request, so no WebSocket is ever opened here."""
    await connection.close(1008, "no WebSocket on the metrics port")
