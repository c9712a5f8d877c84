// The daily market report page: plain JS over the public WebSocket protocol (docs/disclosure.md).
//
// Flow: GET /config.json (where the trading listener is) -> WebSocket to the trading listener ->
// subscribe `disclosure` (a new report at each day close) and `disclosure.get` the date in
// ?date=YYYY-MM-DD, or the latest report. Charts are drawn by hand on <canvas>; every value
// from the wire reaches the document through textContent only (never HTML).
'use strict';

(() => {
  const TIMEOUT_MS = 10000;
  const RETRY_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const st = { config: null, ws: null, nextId: 1, pending: new Map(), pinned: '', report: null };

  function setText(el, value) {
    el.textContent = value === null || value === undefined || value === '' ? '—' : String(value);
  }

  function row(tbody, values, classes) {
    const tr = document.createElement('tr');
    values.forEach((v, i) => {
      const td = document.createElement('td');
      setText(td, v);
      if (classes && classes[i]) td.className = classes[i];
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    return tr;
  }

  function fill(tableId, rows, classesOf) {
    const tbody = $(tableId).querySelector('tbody');
    tbody.replaceChildren();
    for (const r of rows) row(tbody, r.values, classesOf ? classesOf(r) : null);
  }

  /** Decimal string ("60.45", "-0.30") -> number of fen (integer). */
  function fen(text) {
    const s = String(text);
    const neg = s.startsWith('-');
    const [whole, frac = ''] = (neg ? s.slice(1) : s).split('.');
    const v = Number(whole) * 100 + Number((frac + '00').slice(0, 2));
    return neg ? -v : v;
  }

  function showError(err) {
    const el = $('error');
    el.hidden = !err;
    setText(el, err ? (err.message || String(err)) : '');
  }

  function setConnection(state, label) {
    document.body.dataset.connection = state;
    setText($('connection'), label);
  }

  // ------------------------------------------------------------------ charts

  function axes(ctx, w, h, pad) {
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = '#9aa8a4';
    ctx.beginPath();
    ctx.moveTo(pad, 8);
    ctx.lineTo(pad, h - pad);
    ctx.lineTo(w - 8, h - pad);
    ctx.stroke();
    ctx.fillStyle = '#1b2a2f';
    ctx.font = '11px system-ui, sans-serif';
  }

  /** Each instrument's day against its own previous close (in %), so instruments priced
   * 20.00 and 80.00 share one axis: the low-high bar, open (left tick), close (right tick). */
  function drawRange(rows) {
    const canvas = $('range-chart');
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, pad = 48;
    axes(ctx, w, h, pad);
    if (!rows.length) return;
    const pct = (r, price) => (fen(price) - fen(r.previous_close)) * 100 / Math.max(1, fen(r.previous_close));
    const span = Math.max(1, ...rows.flatMap((r) => [Math.abs(pct(r, r.high)), Math.abs(pct(r, r.low))])) * 1.15;
    const y = (v) => 8 + (h - pad - 8) * (span - v) / (2 * span);
    const slot = (w - pad - 8) / rows.length;
    ctx.textAlign = 'right';
    for (const v of [span, 0, -span]) ctx.fillText(`${v > 0 ? '+' : ''}${v.toFixed(1)}%`, pad - 4, y(v) + 4);
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = '#888';
    ctx.beginPath();
    ctx.moveTo(pad, y(0));
    ctx.lineTo(w - 8, y(0));
    ctx.stroke();
    ctx.setLineDash([]);
    rows.forEach((r, i) => {
      const x = pad + slot * (i + 0.5);
      const up = fen(r.close) >= fen(r.previous_close);
      ctx.strokeStyle = up ? '#1f7a3a' : '#b02a2a';
      ctx.lineWidth = 6;
      ctx.beginPath();
      ctx.moveTo(x, y(pct(r, r.high)));
      ctx.lineTo(x, Math.max(y(pct(r, r.low)), y(pct(r, r.high)) + 2));
      ctx.stroke();
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x - 12, y(pct(r, r.open)));
      ctx.lineTo(x, y(pct(r, r.open)));
      ctx.moveTo(x, y(pct(r, r.close)));
      ctx.lineTo(x + 12, y(pct(r, r.close)));
      ctx.stroke();
      ctx.lineWidth = 1;
      ctx.fillStyle = '#1b2a2f';
      ctx.textAlign = 'center';
      ctx.fillText(r.instrument, x, h - pad + 16);
      ctx.fillText(`${r.close} (prev ${r.previous_close})`, x, h - pad + 30);
    });
  }

  function drawVolume(rows) {
    const canvas = $('volume-chart');
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, pad = 48;
    axes(ctx, w, h, pad);
    if (!rows.length) return;
    const max = Math.max(1, ...rows.map((r) => r.listing_volume + r.block_volume));
    const y = (t) => (h - pad) - (h - pad - 8) * t / max;
    const slot = (w - pad - 8) / rows.length;
    ctx.textAlign = 'right';
    ctx.fillText(String(max), pad - 4, 14);
    ctx.fillText('0', pad - 4, h - pad);
    rows.forEach((r, i) => {
      const x = pad + slot * (i + 0.2), bw = slot * 0.6;
      ctx.fillStyle = '#12443a';
      ctx.fillRect(x, y(r.listing_volume), bw, (h - pad) - y(r.listing_volume));
      ctx.fillStyle = '#8cc7b4';
      ctx.fillRect(x, y(r.listing_volume + r.block_volume), bw, y(r.listing_volume) - y(r.listing_volume + r.block_volume));
      ctx.fillStyle = '#1b2a2f';
      ctx.textAlign = 'center';
      ctx.fillText(r.instrument, x + bw / 2, h - pad + 16);
      ctx.fillText(String(r.listing_volume + r.block_volume), x + bw / 2, h - pad + 30);
    });
  }

  // ------------------------------------------------------------------ the report

  function render(report) {
    st.report = report;
    document.body.dataset.report = report.trading_date;
    setText($('report-date'), report.trading_date);
    $('date').value = report.trading_date;
    const instruments = report.instruments;
    fill('instruments', instruments.map((r) => ({
      values: [r.instrument, r.open, r.high, r.low, r.close, r.previous_close,
        `${r.change} (${(r.change_bp / 100).toFixed(2)}%)`, r.listing_volume, r.listing_amount,
        r.block_volume, r.block_amount, r.trades],
      up: r.change_bp > 0, down: r.change_bp < 0,
    })), (r) => ['', '', '', '', '', '', r.up ? 'up' : (r.down ? 'down' : '')]);
    $('instruments').querySelectorAll('tbody tr').forEach((tr, i) => { tr.dataset.instrument = instruments[i].instrument; });
    fill('auctions', report.auctions.map((a) => ({
      values: [a.auction_id, a.instrument, a.quantity_offered, a.valid_bid_quantity, a.bidders, a.winners,
        a.quantity_sold, a.clearing_price, a.total_amount, `${(a.cover_ratio_bp / 100).toFixed(2)}%`],
    })));
    fill('retirements', report.retirements.map((r) => ({ values: [r.instrument, r.purpose, r.certificates, r.quantity] })));
    fill('neutrality', report.neutrality.map((c) => ({
      values: [c.certificate_id, c.event_id, c.event_name, c.quantity, c.covers.join(', ')],
    })));
    setText($('threshold'), report.large_holder_threshold);
    fill('holders', report.large_holders.map((h) => ({ values: [h.instrument, h.holder, h.quantity] })));
    drawRange(instruments);
    drawVolume(instruments);
    showError(null);
  }

  function load() {
    const params = st.pinned ? { date: st.pinned } : {};
    rpc('disclosure.get', params).then(render, (err) => {
      document.body.dataset.report = 'none';
      showError(err);
    });
  }

  // ------------------------------------------------------------------ connection

  function tradingUrl(cfg) {
    if (cfg.trading_url) return cfg.trading_url;
    return `${cfg.trading_scheme}://${location.hostname}:${cfg.trading_port}${cfg.trading_path}`;
  }

  function rpc(method, params) {
    const ws = st.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    const id = st.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { st.pending.delete(id); reject(new Error(`${method}: no reply`)); }, TIMEOUT_MS);
      st.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  function handle(msg) {
    if (msg.id !== undefined && st.pending.has(msg.id)) {
      const p = st.pending.get(msg.id);
      st.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${msg.error.message}${msg.error.data && msg.error.data.reason ? ' (' + msg.error.data.reason + ')' : ''}`));
      else p.resolve(msg.result);
      return;
    }
    if (msg.method === 'disclosure' && msg.params && !st.pinned) render(msg.params);
  }

  function connect() {
    setConnection('connecting', 'connecting…');
    let ws;
    try {
      ws = new WebSocket(tradingUrl(st.config));
    } catch (err) {
      setConnection('closed', `cannot connect: ${err.message}`);
      return;
    }
    st.ws = ws;
    ws.onopen = () => {
      setConnection('open', 'live');
      rpc('subscribe', { channels: ['disclosure'] }).catch(showError);
      load();
    };
    ws.onmessage = (ev) => {
      try { handle(JSON.parse(ev.data)); } catch (err) { showError(err); }
    };
    ws.onclose = (ev) => {
      if (st.ws !== ws) return;
      st.ws = null;
      for (const [, p] of st.pending) { clearTimeout(p.timer); p.reject(new Error('connection closed')); }
      st.pending.clear();
      setConnection('closed', `disconnected (${ev.code}), retrying`);
      setTimeout(connect, RETRY_MS);
    };
  }

  async function start() {
    st.pinned = new URLSearchParams(location.search).get('date') || '';
    $('date').addEventListener('change', () => {
      st.pinned = $('date').value;
      const url = new URL(location.href);
      url.searchParams.set('date', st.pinned);
      history.replaceState(null, '', url);
      load();
    });
    $('latest').addEventListener('click', () => {
      st.pinned = '';
      const url = new URL(location.href);
      url.searchParams.delete('date');
      history.replaceState(null, '', url);
      load();
    });
    try {
      const resp = await fetch('/config.json', { cache: 'no-store' });
      st.config = await resp.json();
    } catch (err) {
      setConnection('closed', 'no /config.json');
      showError(err);
      return;
    }
    connect();
  }

  start();
})();
