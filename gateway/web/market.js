// The live market page: plain JS over the public WebSocket protocol (docs/protocol.md).
//
// Flow: GET /config.json (where the trading listener is, the instruments) -> WebSocket to the
// trading listener -> subscribe book.SYM.10, trades.SYM, ticker.SYM, status.SYM, auctions,
// and auction.list -> GET /trades.json?instrument=SYM (the day's trades so far: the chart
// starts at the day's first trade, and a reconnect fills the trades it missed).
// Resync: a book update whose seq is not the last + 1, or whose checksum differs from the
// book we hold, resubscribes the channel (the server then sends a fresh snapshot), as the
// Python client does. A lost connection reconnects with a capped, jittered back-off.
// Every value from the wire reaches the document through textContent only (never HTML).
'use strict';

(() => {
  const LADDER_DEPTH = 10;
  const MAX_TAPE_ROWS = 200;
  const PING_EVERY_MS = 15000;
  const PING_TIMEOUT_MS = 10000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;

  const $ = (id) => document.getElementById(id);
  const st = {
    config: null,
    symbol: '',
    ws: null,
    nextId: 1,
    pending: new Map(), // request id -> {resolve, reject, timer}
    backoff: BACKOFF_MIN_MS,
    book: null,
    trades: [], // chronological: {id, ts, price (string), fen, qty, aggressor, block}
    tradeIds: new Set(),
    historyNote: '',
    auctions: new Map(),
    ticker: null,
    connectedOnce: false,
  };

  // ------------------------------------------------------------------ helpers

  function setText(el, value) {
    el.textContent = value === null || value === undefined || value === '' ? '—' : String(value);
  }

  function cell(tr, value, cls) {
    const td = document.createElement('td');
    setText(td, value);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  /** Decimal price string ("60.5", "60.00") -> integer fen, for ordering and the chart. */
  function fen(price) {
    const [whole, frac = ''] = String(price).split('.');
    return Number(whole) * 100 + Number((frac + '00').slice(0, 2));
  }

  function clock(tsNs) {
    if (!tsNs) return '';
    return new Date(Number(tsNs) / 1e6).toLocaleTimeString([], { hour12: false });
  }

  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();

  /** zlib.crc32 of the UTF-8 string (the book checksum of docs/protocol.md section 5). */
  function crc32(text) {
    const bytes = new TextEncoder().encode(text);
    let c = 0xffffffff;
    for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  // ------------------------------------------------------------------ connection

  function setConnection(state, label) {
    document.body.dataset.connection = state;
    setText($('connection'), label);
  }

  function tradingUrl(cfg) {
    if (cfg.trading_url) return cfg.trading_url;
    return `${cfg.trading_scheme}://${location.hostname}:${cfg.trading_port}${cfg.trading_path}`;
  }

  function rpc(method, params) {
    const ws = st.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    const id = st.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        st.pending.delete(id);
        reject(new Error(`${method}: no reply`));
      }, PING_TIMEOUT_MS);
      st.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params: params || {} }));
    });
  }

  function channelsOf(symbol) {
    return [`book.${symbol}.${LADDER_DEPTH}`, `trades.${symbol}`, `ticker.${symbol}`, `status.${symbol}`];
  }

  function connect() {
    setConnection('connecting', 'connecting…');
    let ws;
    try {
      ws = new WebSocket(tradingUrl(st.config));
    } catch (err) {
      retryLater(`cannot connect: ${err.message}`);
      return;
    }
    st.ws = ws;
    ws.onopen = () => {
      st.backoff = BACKOFF_MIN_MS;
      setConnection('open', 'live');
      const reconnected = st.connectedOnce;
      st.connectedOnce = true;
      if (reconnected) markGap(); // the trades kept are merged with the day's history below
      st.book = newBook();
      renderBook();
      rpc('subscribe', { channels: channelsOf(st.symbol) }).catch(showError);
      loadHistory(st.symbol);
      rpc('subscribe', { channels: ['auctions'] }).catch(showError);
      rpc('auction.list', {}).then((r) => {
        for (const a of r.auctions) st.auctions.set(a.auction_id, a);
        renderAuctions();
      }, showError);
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      handle(msg);
    };
    ws.onclose = (ev) => {
      if (st.ws !== ws) return;
      st.ws = null;
      for (const [, p] of st.pending) {
        clearTimeout(p.timer);
        p.reject(new Error('connection closed'));
      }
      st.pending.clear();
      retryLater(`disconnected (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`);
    };
  }

  /** Back off (jittered, doubling to BACKOFF_MAX_MS), re-read /config.json (the exchange may
   *  have come back on other ports), connect again. */
  function retryLater(why) {
    const wait = Math.min(st.backoff, BACKOFF_MAX_MS) * (0.75 + Math.random() / 2);
    st.backoff = Math.min(st.backoff * 2, BACKOFF_MAX_MS);
    setConnection('closed', `${why}, retrying in ${(wait / 1000).toFixed(1)} s`);
    setTimeout(async () => {
      try {
        const resp = await fetch('/config.json', { cache: 'no-store' });
        if (resp.ok) st.config = await resp.json();
      } catch {
        // the metrics port is down too: try the last known listener anyway
      }
      connect();
    }, wait);
  }

  function showError(err) {
    if (err && err.message && st.ws) setConnection('open', `live — ${err.message}`);
  }

  function handle(msg) {
    if (msg.id !== undefined && msg.id !== null) {
      const p = st.pending.get(msg.id);
      if (!p) return;
      st.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(msg.error.message || 'error'));
      else p.resolve(msg.result);
      return;
    }
    const params = msg.params || {};
    switch (msg.method) {
      case 'book': return onBook(params);
      case 'trades': return onTrade(params);
      case 'ticker': return onTicker(params);
      case 'status': return onStatus(params);
      case 'auctions': return onAuction(params);
      case 'heartbeat': return onHeartbeat(params);
      default: return undefined;
    }
  }

  function subscribeInstrument(symbol, previous) {
    resetInstrument();
    rpc('subscribe', { channels: channelsOf(symbol) })
      .then(() => (previous ? rpc('unsubscribe', { channels: channelsOf(previous) }) : null))
      .catch(showError);
    loadHistory(symbol);
  }

  function newBook() {
    return { channel: `book.${st.symbol}.${LADDER_DEPTH}`, seq: null, bids: new Map(), asks: new Map(), syncing: true };
  }

  function resetInstrument() {
    st.book = newBook();
    st.trades = [];
    st.tradeIds = new Set();
    st.ticker = null;
    st.historyNote = '';
    $('tape').tBodies[0].replaceChildren();
    renderBook();
    renderTicker();
    onStatus({ instrument: st.symbol, phase: '', halted: false });
    scheduleChart();
  }

  // ------------------------------------------------------------------ book

  function onBook(p) {
    const book = st.book;
    if (!book || p.channel !== book.channel) return;
    if (p.type === 'snapshot') {
      book.bids = new Map();
      book.asks = new Map();
    } else if (book.syncing || p.seq !== book.seq + 1) {
      if (!book.syncing) resync(book, `gap: seq ${p.seq} after ${book.seq}`);
      return;
    }
    for (const [price, qty] of p.bids) setLevel(book.bids, price, qty);
    for (const [price, qty] of p.asks) setLevel(book.asks, price, qty);
    book.seq = p.seq;
    book.syncing = false;
    if (checksum(book) !== p.checksum) {
      resync(book, 'checksum mismatch');
      return;
    }
    setText($('book-state'), `seq ${book.seq}`);
    renderBook();
  }

  function setLevel(side, price, qty) {
    if (qty === 0) side.delete(fen(price));
    else side.set(fen(price), [price, qty]);
  }

  function sorted(side, descending) {
    const keys = [...side.keys()].sort((a, b) => (descending ? b - a : a - b));
    return keys.map((k) => side.get(k));
  }

  function checksum(book) {
    const fmt = (levels) => levels.slice(0, 10).map(([p, q]) => `${p}:${q}`).join(',');
    return crc32(`${fmt(sorted(book.bids, true))}|${fmt(sorted(book.asks, false))}`);
  }

  function resync(book, why) {
    book.syncing = true;
    setText($('book-state'), `resyncing (${why})`);
    rpc('subscribe', { channels: [book.channel] }).catch(showError); // re-sends the snapshot
  }

  function renderBook() {
    const body = $('ladder').tBodies[0];
    const book = st.book;
    const bids = book ? sorted(book.bids, true).slice(0, LADDER_DEPTH) : [];
    const asks = book ? sorted(book.asks, false).slice(0, LADDER_DEPTH) : [];
    const biggest = Math.max(1, ...bids.map((l) => l[1]), ...asks.map((l) => l[1]));
    const rows = [];
    for (const [price, qty] of asks.slice().reverse()) rows.push(ladderRow('ask', price, qty, biggest));
    const spread = document.createElement('tr');
    spread.className = 'spread';
    const td = cell(spread, bids.length && asks.length ? `spread ${((fen(asks[0][0]) - fen(bids[0][0])) / 100).toFixed(2)}` : 'no spread');
    td.colSpan = 3;
    rows.push(spread);
    for (const [price, qty] of bids) rows.push(ladderRow('bid', price, qty, biggest));
    body.replaceChildren(...rows);
  }

  function ladderRow(side, price, qty, biggest) {
    const tr = document.createElement('tr');
    tr.className = side;
    tr.dataset.price = price;
    const bidCell = cell(tr, side === 'bid' ? qty : '', 'num bid qty');
    cell(tr, price, 'num price');
    const askCell = cell(tr, side === 'ask' ? qty : '', 'num ask qty');
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${Math.round((100 * qty) / biggest)}%`;
    (side === 'bid' ? bidCell : askCell).appendChild(bar);
    if (side === 'bid') askCell.textContent = '';
    else bidCell.textContent = '';
    return tr;
  }

  // ------------------------------------------------------------------ trades, history, chart

  function onTrade(p) {
    if (p.instrument !== st.symbol || st.tradeIds.has(p.trade_id)) return;
    const t = { id: p.trade_id, ts: p.ts, price: p.price, fen: fen(p.price), qty: p.quantity, aggressor: p.aggressor, block: !!p.block };
    st.trades.push(t);
    st.tradeIds.add(t.id);
    const body = $('tape').tBodies[0];
    const row = tapeRow(t);
    row.classList.add('fresh');
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_TAPE_ROWS) body.deleteRow(-1);
    scheduleChart();
  }

  function tapeRow(t) {
    const tr = document.createElement('tr');
    tr.className = t.aggressor;
    tr.dataset.tradeId = t.id;
    cell(tr, clock(t.ts), 'time');
    cell(tr, t.price, 'num price');
    cell(tr, t.qty, 'num qty');
    cell(tr, t.block ? `${t.aggressor} (block)` : t.aggressor, 'side');
    return tr;
  }

  function markGap() {
    const body = $('tape').tBodies[0];
    const tr = document.createElement('tr');
    tr.className = 'gap';
    cell(tr, `reconnected ${clock(Date.now() * 1e6)}: missed trades are filled in from the day's history`).colSpan = 4;
    body.insertBefore(tr, body.firstChild);
  }

  async function loadHistory(symbol) {
    let data;
    try {
      const resp = await fetch(`/trades.json?instrument=${encodeURIComponent(symbol)}`, { cache: 'no-store' });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      data = await resp.json();
    } catch (err) {
      st.historyNote = `day history unavailable (${err.message}): since page load`;
      setText($('chart-note'), st.historyNote);
      return;
    }
    if (symbol !== st.symbol) return;
    for (const [id, ts, price, qty, aggressor] of data.trades) {
      if (st.tradeIds.has(id)) continue;
      st.trades.push({ id, ts, price, fen: fen(price), qty, aggressor, block: false });
      st.tradeIds.add(id);
    }
    st.trades.sort((a, b) => a.ts - b.ts || a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const rows = st.trades.slice(-MAX_TAPE_ROWS).reverse().map(tapeRow);
    const gaps = [...$('tape').tBodies[0].querySelectorAll('tr.gap')];
    $('tape').tBodies[0].replaceChildren(...gaps, ...rows);
    st.historyNote = data.trading_date ? `trading day ${data.trading_date}${data.complete ? '' : ' (older trades beyond the retention window)'}` : 'day not open';
    setText($('chart-note'), st.historyNote);
    scheduleChart();
  }

  let chartPending = false;
  function scheduleChart() {
    if (chartPending) return;
    chartPending = true;
    requestAnimationFrame(() => {
      chartPending = false;
      drawChart();
    });
  }

  function drawChart() {
    const canvas = $('chart');
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 640;
    const h = canvas.clientHeight || 260;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = color('--dim');
    const trades = st.trades.filter((t) => !t.block);
    if (!trades.length) {
      g.fillText('no trades yet today', 12, h / 2);
      return;
    }
    const left = 52, right = w - 8, top = 8, priceBottom = h * 0.68, volTop = h * 0.74, bottom = h - 18;
    const t0 = Number(trades[0].ts), t1 = Math.max(Date.now() * 1e6, Number(trades[trades.length - 1].ts), t0 + 60e9);
    let lo = Math.min(...trades.map((t) => t.fen)), hi = Math.max(...trades.map((t) => t.fen));
    const vwap = st.ticker && st.ticker.vwap ? fen(st.ticker.vwap) : null;
    if (vwap !== null) { lo = Math.min(lo, vwap); hi = Math.max(hi, vwap); }
    if (hi === lo) { hi += 10; lo -= 10; }
    const x = (ts) => left + ((Number(ts) - t0) / (t1 - t0)) * (right - left);
    const y = (f) => priceBottom - ((f - lo) / (hi - lo)) * (priceBottom - top);
    // axes and labels
    g.strokeStyle = color('--line');
    g.beginPath();
    g.moveTo(left, top); g.lineTo(left, bottom); g.lineTo(right, bottom);
    g.stroke();
    g.fillText((hi / 100).toFixed(2), 4, top + 8);
    g.fillText((lo / 100).toFixed(2), 4, priceBottom);
    g.fillText(clock(t0), left, h - 4);
    const endLabel = clock(t1);
    g.fillText(endLabel, right - g.measureText(endLabel).width, h - 4);
    // volume: one bar per bucket of the time axis
    const buckets = Math.max(1, Math.floor((right - left) / 4));
    const vols = new Array(buckets).fill(0);
    for (const t of trades) vols[Math.min(buckets - 1, Math.floor(((Number(t.ts) - t0) / (t1 - t0)) * buckets))] += t.qty;
    const vmax = Math.max(...vols);
    g.fillStyle = color('--accent');
    g.globalAlpha = 0.5;
    const bw = (right - left) / buckets;
    vols.forEach((v, i) => {
      if (v) g.fillRect(left + i * bw, bottom - ((bottom - volTop) * v) / vmax, Math.max(1, bw - 1), ((bottom - volTop) * v) / vmax);
    });
    g.globalAlpha = 1;
    g.fillStyle = color('--dim');
    g.fillText(`vol ${vmax}`, 4, volTop + 8);
    // VWAP
    if (vwap !== null) {
      g.strokeStyle = color('--warn');
      g.setLineDash([4, 4]);
      g.beginPath(); g.moveTo(left, y(vwap)); g.lineTo(right, y(vwap)); g.stroke();
      g.setLineDash([]);
    }
    // price: a step line through every trade
    g.strokeStyle = color('--buy');
    g.lineWidth = 1.5;
    g.beginPath();
    trades.forEach((t, i) => {
      if (i === 0) g.moveTo(x(t.ts), y(t.fen));
      else { g.lineTo(x(t.ts), y(trades[i - 1].fen)); g.lineTo(x(t.ts), y(t.fen)); }
    });
    g.lineTo(right, y(trades[trades.length - 1].fen)); // the last price holds until now
    g.stroke();
    g.lineWidth = 1;
  }

  // ------------------------------------------------------------------ ticker, status, auctions

  function onTicker(p) {
    if (p.instrument !== st.symbol) return;
    st.ticker = p;
    renderTicker();
    onStatus(p);
    scheduleChart();
  }

  function renderTicker() {
    const t = st.ticker || {};
    setText($('ticker-last'), t.last);
    setText($('ticker-bid'), t.bid ? `${t.bid} × ${t.bid_qty}` : null);
    setText($('ticker-ask'), t.ask ? `${t.ask} × ${t.ask_qty}` : null);
    setText($('ticker-open'), t.open);
    setText($('ticker-high'), t.high);
    setText($('ticker-low'), t.low);
    setText($('ticker-vwap'), t.vwap);
    setText($('ticker-volume'), t.volume);
    setText($('ticker-reference'), t.reference);
    setText($('ticker-band'), t.lower ? `${t.lower} – ${t.upper}` : null);
  }

  function onStatus(p) {
    if (p.instrument !== st.symbol) return;
    const phase = $('phase');
    phase.dataset.phase = p.phase || '';
    setText(phase, p.phase ? `phase: ${p.phase}` : 'phase —');
    $('halted').hidden = !p.halted;
  }

  function onAuction(p) {
    st.auctions.set(p.auction_id, p);
    renderAuctions();
  }

  function renderAuctions() {
    const rows = [...st.auctions.values()]
      .sort((a, b) => b.auction_id.length - a.auction_id.length || (a.auction_id < b.auction_id ? 1 : -1))
      .map((a) => {
        const tr = document.createElement('tr');
        tr.dataset.auctionId = a.auction_id;
        tr.dataset.state = a.state;
        const r = a.results || {};
        cell(tr, a.auction_id);
        cell(tr, a.instrument);
        cell(tr, a.state, 'state');
        cell(tr, a.quantity, 'num');
        cell(tr, a.reserve_price, 'num');
        cell(tr, a.start_ts || a.end_ts ? `${clock(a.start_ts) || '…'} – ${clock(a.end_ts) || '…'}` : null);
        cell(tr, r.clearing_price, 'num clearing');
        cell(tr, r.quantity_sold, 'num');
        cell(tr, r.cover_ratio, 'num');
        return tr;
      });
    $('auctions').tBodies[0].replaceChildren(...rows);
  }

  function onHeartbeat(p) {
    setText($('seq'), `seq ${p.seq}`);
    setText($('server-time'), `server ${clock(p.ts)}`);
  }

  // ------------------------------------------------------------------ start

  function pingLoop() {
    setInterval(() => {
      const ws = st.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      rpc('ping', {}).catch(() => {
        if (st.ws === ws) ws.close(4000, 'no reply to ping'); // onclose reconnects
      });
    }, PING_EVERY_MS);
  }

  async function start() {
    let delay = BACKOFF_MIN_MS;
    for (;;) {
      try {
        const resp = await fetch('/config.json', { cache: 'no-store' });
        if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
        st.config = await resp.json();
        break;
      } catch (err) {
        setConnection('closed', `exchange not ready (${err.message}), retrying`);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
      }
    }
    const select = $('instrument');
    for (const sym of st.config.instruments) {
      const opt = document.createElement('option');
      opt.value = sym;
      opt.textContent = sym;
      select.appendChild(opt);
    }
    const wanted = new URLSearchParams(location.search).get('instrument');
    st.symbol = st.config.instruments.includes(wanted) ? wanted : st.config.instruments[0];
    select.value = st.symbol;
    select.addEventListener('change', () => {
      const previous = st.symbol;
      st.symbol = select.value;
      const url = new URL(location.href);
      url.searchParams.set('instrument', st.symbol);
      history.replaceState(null, '', url);
      if (st.ws && st.ws.readyState === WebSocket.OPEN) subscribeInstrument(st.symbol, previous);
      else resetInstrument();
    });
    window.addEventListener('resize', scheduleChart);
    setInterval(scheduleChart, 30000); // the time axis ends at now
    resetInstrument();
    connect();
    pingLoop();
  }

  // For diagnostics from the browser console and for the browser test: feed a message as if
  // it came from the exchange (e.g. a book update with a gap), read the book's seq.
  window.carbonxMarket = Object.freeze({ handle, bookSeq: () => (st.book ? st.book.seq : null) });
  start();
})();
