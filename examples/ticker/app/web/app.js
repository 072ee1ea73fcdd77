// herald ticker page: plain JavaScript, no build step, no dependencies.
//
// Messages arrive as JSON text, one per symbol per tick:
//   {"sym":"S3","seq":12,"ts":1700000000000000000,"px":101.2345,"pad":"xxx"}
// The socket handler only updates state and marks what changed; the screen is
// redrawn at most once per animation frame, touching only the rows that
// changed, so hundreds of updates a second cost a few DOM writes per frame.
'use strict';

(() => {
  const SPARK_POINTS = 60; // prices kept per symbol for its sparkline
  const LAT_WINDOW_MS = 5000; // latency percentiles cover this much time
  const LAT_CAP = 1 << 14; // latency samples kept (power of two)
  const RATE_WINDOW_MS = 2000; // messages per second over this much time
  const SLOW_PAINT_MS = 250; // ages, metrics and the status countdown
  const STALE_MS = 2000; // a symbol not updated for this long is greyed out
  // Reconnection: full-jitter exponential backoff. The n-th retry waits a
  // random time in [0, min(cap, base * factor^n)); a connection that stays up
  // for STABLE_MS resets n.
  const BACKOFF_BASE_MS = 250;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_CAP_MS = 10000;
  const STABLE_MS = 5000;
  const SPARK_W = 120;
  const SPARK_H = 28;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'), toggle: $('toggle'), server: $('server'),
    rows: $('rows'), empty: $('empty'),
    p50: $('lat-p50'), p99: $('lat-p99'), last: $('lat-last'),
    rate: $('rate'), total: $('total'), nsym: $('nsym'),
    gaps: $('gaps'), missed: $('missed'), restarts: $('restarts'),
    uptime: $('uptime'), reconnects: $('reconnects'), lastclose: $('lastclose'),
  };

  // The feed: same host as the page, /ws, narrowed by the page's own
  // ?symbols= if it has one.
  const symbolsParam = new URLSearchParams(location.search).get('symbols');
  const wsURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' +
    (symbolsParam ? '?symbols=' + encodeURIComponent(symbolsParam) : '');

  // Wall-clock milliseconds with sub-millisecond resolution, comparable with
  // the server's Unix timestamps.
  const wallNow = () => performance.timeOrigin + performance.now();

  // ---- per-symbol state ---------------------------------------------------

  const collator = new Intl.Collator(undefined, { numeric: true });
  const symbols = new Map(); // name -> Sym
  const dirty = new Set(); // Syms changed since the last frame

  class Sym {
    constructor(name) {
      this.name = name;
      this.px = NaN;
      this.first = NaN;
      this.seq = 0;
      this.at = 0; // performance.now() of the last update
      this.dir = 0; // +1 up, -1 down, 0 unchanged since the last paint
      this.missed = 0;
      this.hist = new Float64Array(SPARK_POINTS);
      this.histLen = 0;
      this.histHead = 0;
      this.row = null;
      this.cells = null;
    }

    push(px) {
      this.hist[this.histHead] = px;
      this.histHead = (this.histHead + 1) % SPARK_POINTS;
      if (this.histLen < SPARK_POINTS) this.histLen++;
    }
  }

  // ---- metrics --------------------------------------------------------------

  const latAt = new Float64Array(LAT_CAP);
  const latVal = new Float64Array(LAT_CAP);
  const latScratch = new Float64Array(LAT_CAP);
  let latHead = 0;
  let latLen = 0;
  let lastLatency = NaN;
  let total = 0;
  const rateSamples = []; // [performance.now(), total] every slow paint
  let gaps = 0; // places where a symbol's sequence skipped ahead
  let missed = 0; // updates those skips left out
  let restarts = 0; // connections on which sequences started over
  let restartPending = false; // no restart counted yet on this connection

  function recordLatency(at, ms) {
    latAt[latHead] = at;
    latVal[latHead] = ms;
    latHead = (latHead + 1) & (LAT_CAP - 1);
    if (latLen < LAT_CAP) latLen++;
    lastLatency = ms;
  }

  // Percentiles of the latencies recorded in the last LAT_WINDOW_MS.
  function latencyPercentiles(at) {
    let n = 0;
    for (let i = 0, k = latHead; i < latLen; i++) {
      k = (k - 1) & (LAT_CAP - 1);
      if (at - latAt[k] > LAT_WINDOW_MS) break;
      latScratch[n++] = latVal[k];
    }
    if (n === 0) return null;
    const v = latScratch.subarray(0, n).sort();
    const q = (p) => v[Math.min(n - 1, Math.floor(p * n))];
    return { p50: q(0.5), p99: q(0.99) };
  }

  // ---- messages -------------------------------------------------------------

  // ts is Unix nanoseconds, more than 2^53: JSON.parse would round it to
  // about 256 ns, so read it from the text as milliseconds plus a fraction.
  const tsPattern = /"ts":(\d{7,})/;

  function onMessage(ev) {
    const arrived = wallNow();
    if (typeof ev.data !== 'string') return;
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (typeof m.sym !== 'string' || typeof m.px !== 'number' || typeof m.seq !== 'number') return;
    total++;
    const ts = tsPattern.exec(ev.data);
    if (ts) {
      const s = ts[1];
      recordLatency(performance.now(), arrived - (Number(s.slice(0, -6)) + Number(s.slice(-6)) / 1e6));
    }

    let sym = symbols.get(m.sym);
    if (!sym) {
      sym = new Sym(m.sym);
      symbols.set(m.sym, sym);
    }
    if (sym.seq > 0) {
      if (m.seq > sym.seq + 1) {
        gaps++;
        missed += m.seq - sym.seq - 1;
        sym.missed += m.seq - sym.seq - 1;
      } else if (m.seq <= sym.seq && restartPending) {
        restarts++; // a new server: sequences begin again
        restartPending = false;
      }
    }
    sym.seq = m.seq;
    if (Number.isNaN(sym.first)) sym.first = m.px;
    if (!Number.isNaN(sym.px) && m.px !== sym.px) sym.dir = m.px > sym.px ? 1 : -1;
    sym.px = m.px;
    sym.at = performance.now();
    sym.push(m.px);
    dirty.add(sym);
    schedule();
  }

  // ---- connection -----------------------------------------------------------

  let ws = null;
  let state = 'connecting';
  let attempt = 0;
  let retryAt = 0;
  let retryTimer = 0;
  let stableTimer = 0;
  let openedAt = 0;
  let everOpened = false;
  let reconnects = 0;
  let stopped = false; // the user pressed Disconnect
  let lastClose = null; // how the last attempt or connection ended
  let lastDrop = null; // how the last connection that was open ended

  // The ticker closes with 1008 a request it will never accept (an unknown
  // symbol, a wrong path): retrying would not help. The engine's own 1008
  // for a reader that fell too far behind names its buffer limit and is worth
  // a retry, like every other close.
  function permanent(code, reason) {
    if (code === 1002 || code === 1003 || code === 1007) return true;
    return code === 1008 && !/buffer|limit/i.test(reason);
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    stopped = false;
    setState('connecting');
    let sock;
    try {
      sock = new WebSocket(wsURL);
    } catch (e) {
      lastClose = { code: 0, reason: String(e.message || e) };
      retry();
      return;
    }
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      openedAt = performance.now();
      if (everOpened) reconnects++;
      everOpened = true;
      restartPending = true;
      // "permessage-deflate; ..." when the server compresses, "" if not.
      el.status.dataset.extensions = sock.extensions;
      setState('live');
      fetchStats();
      stableTimer = setTimeout(() => { attempt = 0; }, STABLE_MS);
    };
    sock.onmessage = (ev) => {
      if (ws === sock) onMessage(ev);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      clearTimeout(stableTimer);
      lastClose = { code: ev.code, reason: ev.reason };
      if (opened) lastDrop = lastClose;
      if (stopped || permanent(ev.code, ev.reason)) {
        setState('closed');
      } else {
        retry();
      }
    };
  }

  function retry() {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * BACKOFF_FACTOR ** attempt);
    const delay = Math.random() * ceiling;
    attempt++;
    retryAt = performance.now() + delay;
    setState('reconnecting');
    retryTimer = setTimeout(connect, delay);
  }

  function disconnect() {
    stopped = true;
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (ws) {
      ws.close(1000, 'bye');
    } else {
      setState('closed');
    }
  }

  el.toggle.addEventListener('click', () => {
    if (state === 'live' || state === 'connecting') {
      disconnect();
    } else {
      attempt = 0;
      connect();
    }
  });

  // Back online: no point waiting out the backoff.
  window.addEventListener('online', () => {
    if (state === 'reconnecting') connect();
  });

  function setState(s) {
    state = s;
    el.status.dataset.state = s;
    el.toggle.textContent = s === 'live' || s === 'connecting' ? 'Disconnect'
      : s === 'reconnecting' ? 'Retry now' : 'Connect';
    paintStatus();
  }

  function describeClose(c) {
    if (!c) return '';
    const names = { 1000: 'normal', 1001: 'going away', 1006: 'connection lost', 1008: 'policy', 1011: 'server error', 1013: 'try again later' };
    let s = String(c.code);
    if (c.reason) s += ' ' + c.reason;
    else if (names[c.code]) s += ' ' + names[c.code];
    return s;
  }

  // Server facts for the header, refreshed while live.
  async function fetchStats() {
    try {
      const r = await fetch('/stats', { cache: 'no-store' });
      if (!r.ok) return;
      const s = await r.json();
      // Active counts this very request's connection too.
      const active = s.server && typeof s.server.Active === 'number' ? Math.max(1, s.server.Active - 1) : null;
      const compressed = ws && ws.extensions && ws.extensions.startsWith('permessage-deflate');
      el.server.textContent = `${s.symbols} symbols every ${s.interval}` +
        (active === null ? '' : ` · ${active} connection${active === 1 ? '' : 's'} to this server`) +
        (compressed ? ' · compressed (permessage-deflate)' : '');
    } catch {
      // The server is away; the status already says so.
    }
  }
  setInterval(() => { if (state === 'live') fetchStats(); }, 5000);

  // ---- painting -------------------------------------------------------------

  let frameQueued = false;
  let slowDue = true;

  function schedule() {
    if (!frameQueued) {
      frameQueued = true;
      requestAnimationFrame(frame);
    }
  }

  setInterval(() => { slowDue = true; schedule(); }, SLOW_PAINT_MS);

  function frame() {
    frameQueued = false;
    for (const sym of dirty) paintRow(sym);
    dirty.clear();
    if (slowDue) {
      slowDue = false;
      paintSlow();
    }
  }

  const fmtPrice = (v) => v.toFixed(2);
  const fmtMs = (v) => (Math.abs(v) < 10 ? v.toFixed(2) : Math.abs(v) < 100 ? v.toFixed(1) : v.toFixed(0));
  const fmtInt = (v) => v.toLocaleString('en-US');

  function fmtAge(ms) {
    if (ms < 1000) return (ms / 1000).toFixed(1) + ' s';
    if (ms < 60000) return Math.floor(ms / 1000) + ' s';
    if (ms < 3600000) return Math.floor(ms / 60000) + ' min';
    return Math.floor(ms / 3600000) + ' h';
  }

  function td(cls) {
    const c = document.createElement('td');
    if (cls) c.className = cls;
    return c;
  }

  function makeRow(sym) {
    const tr = document.createElement('tr');
    tr.dataset.sym = sym.name;
    const name = td('sym l');
    name.textContent = sym.name;
    const price = td('px');
    const priceText = document.createElement('span');
    price.append(priceText);
    const chg = td('chg');
    const seq = td('seq');
    const age = td('age');
    const sparkCell = td('spark');
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', `0 0 ${SPARK_W} ${SPARK_H}`);
    svg.setAttribute('width', SPARK_W);
    svg.setAttribute('height', SPARK_H);
    svg.setAttribute('aria-hidden', 'true');
    const base = document.createElementNS(SVG_NS, 'line');
    base.setAttribute('class', 'base');
    base.setAttribute('x1', 0);
    base.setAttribute('x2', SPARK_W);
    const line = document.createElementNS(SVG_NS, 'polyline');
    const dot = document.createElementNS(SVG_NS, 'circle');
    dot.setAttribute('r', 2);
    svg.append(base, line, dot);
    sparkCell.append(svg);
    tr.append(name, price, chg, seq, age, sparkCell);
    sym.row = tr;
    sym.cells = { price: priceText, chg, seq, age, line, dot, base, shownDir: 0 };

    // Keep the rows in natural symbol order (S2 before S10).
    let before = null;
    for (const other of el.rows.children) {
      if (collator.compare(sym.name, other.dataset.sym) < 0) {
        before = other;
        break;
      }
    }
    el.rows.insertBefore(tr, before);
    el.empty.hidden = true;
  }

  function paintRow(sym) {
    if (!sym.row) makeRow(sym);
    const c = sym.cells;
    c.price.textContent = fmtPrice(sym.px);
    if (sym.dir !== 0) {
      if (sym.dir !== c.shownDir) {
        c.price.classList.toggle('up', sym.dir > 0);
        c.price.classList.toggle('down', sym.dir < 0);
        c.shownDir = sym.dir;
      }
      c.price.animate(
        [{ backgroundColor: sym.dir > 0 ? 'rgba(52, 211, 153, 0.22)' : 'rgba(248, 113, 113, 0.22)' },
          { backgroundColor: 'rgba(0, 0, 0, 0)' }],
        { duration: 450, easing: 'ease-out' });
      sym.dir = 0;
    }
    const d = sym.px - sym.first;
    const pct = sym.first ? (d / sym.first) * 100 : 0;
    c.chg.textContent = `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}  ${pct >= 0 ? '+' : '−'}${Math.abs(pct).toFixed(2)}%`;
    c.chg.className = 'chg ' + (d > 0 ? 'up' : d < 0 ? 'down' : '');
    c.seq.textContent = fmtInt(sym.seq);
    if (sym.missed > 0) {
      c.seq.classList.add('gap');
      c.seq.title = `${fmtInt(sym.missed)} update${sym.missed === 1 ? '' : 's'} missed`;
    }
    c.age.textContent = fmtAge(0);
    c.age.classList.remove('stale');
    paintSpark(sym);
  }

  function paintSpark(sym) {
    const c = sym.cells;
    const n = sym.histLen;
    const start = (sym.histHead - n + SPARK_POINTS) % SPARK_POINTS;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = sym.hist[(start + i) % SPARK_POINTS];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const pad = 3;
    const span = hi - lo || 1;
    const y = (v) => (hi === lo ? SPARK_H / 2 : pad + (1 - (v - lo) / span) * (SPARK_H - 2 * pad));
    const step = SPARK_W / (SPARK_POINTS - 1);
    const x0 = SPARK_W - (n - 1) * step; // the newest point is at the right edge
    let pts = '';
    let lastX = 0;
    let lastY = 0;
    for (let i = 0; i < n; i++) {
      lastX = x0 + i * step;
      lastY = y(sym.hist[(start + i) % SPARK_POINTS]);
      pts += `${lastX.toFixed(1)},${lastY.toFixed(1)} `;
    }
    c.line.setAttribute('points', pts);
    c.dot.setAttribute('cx', lastX.toFixed(1));
    c.dot.setAttribute('cy', lastY.toFixed(1));
    const yFirst = y(sym.first);
    const firstInView = sym.first >= lo && sym.first <= hi;
    c.base.setAttribute('y1', firstInView ? yFirst.toFixed(1) : -10);
    c.base.setAttribute('y2', firstInView ? yFirst.toFixed(1) : -10);
    const trend = sym.px >= sym.first ? 'up' : 'down';
    if (c.trend !== trend) {
      c.line.setAttribute('class', trend);
      c.dot.setAttribute('class', trend);
      c.trend = trend;
    }
  }

  function paintStatus() {
    let text;
    switch (state) {
      case 'connecting':
        text = everOpened ? 'reconnecting…' : 'connecting…';
        break;
      case 'live':
        text = 'live';
        break;
      case 'reconnecting': {
        const s = Math.max(0, retryAt - performance.now()) / 1000;
        text = `reconnecting in ${s.toFixed(1)} s`;
        break;
      }
      default:
        text = lastClose ? `closed · ${describeClose(lastClose)}` : 'closed';
    }
    if (el.status.textContent !== text) el.status.textContent = text;
  }

  function paintSlow() {
    const t = performance.now();
    paintStatus();

    const lat = latencyPercentiles(t);
    el.p50.textContent = lat ? fmtMs(lat.p50) : '–';
    el.p99.textContent = lat ? fmtMs(lat.p99) : '–';
    el.last.textContent = Number.isNaN(lastLatency) ? '–' : fmtMs(lastLatency);

    rateSamples.push([t, total]);
    while (rateSamples.length > 2 && t - rateSamples[1][0] >= RATE_WINDOW_MS) rateSamples.shift();
    const [t0, n0] = rateSamples[0];
    el.rate.textContent = t > t0 ? fmtInt(Math.round(((total - n0) * 1000) / (t - t0))) : '0';
    el.total.textContent = fmtInt(total);
    el.nsym.textContent = fmtInt(symbols.size);

    el.gaps.textContent = fmtInt(gaps);
    el.missed.textContent = fmtInt(missed);
    el.restarts.textContent = fmtInt(restarts);
    el.reconnects.textContent = fmtInt(reconnects);
    el.uptime.textContent = state === 'live' ? 'up ' + fmtAge(t - openedAt) : state;
    const drop = lastDrop ? String(lastDrop.code) : 'none';
    if (el.lastclose.textContent !== drop) {
      el.lastclose.textContent = drop;
      el.lastclose.parentElement.title = lastDrop ? 'The last connection ended with ' + describeClose(lastDrop) : '';
    }

    for (const sym of symbols.values()) {
      if (!sym.row) continue;
      const age = t - sym.at;
      sym.cells.age.textContent = fmtAge(age);
      sym.cells.age.classList.toggle('stale', age > STALE_MS);
    }
  }

  connect();
})();
