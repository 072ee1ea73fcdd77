// herald ticker page: plain JavaScript, no build step. It speaks herald's
// subscribe protocol through herald's JavaScript client (herald-client.js,
// served by the ticker), which reconnects by itself with jittered backoff
// and resubscribes every symbol from the last tick it saw: after a
// reconnect the server sends what the page missed (recovered), or says it
// cannot (its history was lost, e.g. a restart), and the page then starts
// its sequences over (a resync) and says so.
//
// Each tick is a publication of topic ticks.S<k> whose data is
//   {"sym":"S3","seq":12,"ts":1700000000000000000,"px":101.2345,"pad":"xxx"}
// The handlers only update state and mark what changed; the screen is
// redrawn at most once per animation frame, touching only the rows that
// changed, so hundreds of updates a second cost a few DOM writes per frame.
//
// window.heraldStats keeps what a test reads: received, gaps, duplicates,
// reconnects, recovered (whether the last reconnect recovered everything:
// null before any), missed (ticks the page knows it never got), and
// recoveredMessages, resyncs, lastRecovery (the last reconnect's outcome).
import { Client } from './herald-client.js';

const SPARK_POINTS = 60; // prices kept per symbol for its sparkline
const LAT_WINDOW_MS = 5000; // latency percentiles cover this much time
const LAT_CAP = 1 << 14; // latency samples kept (power of two)
const RATE_WINDOW_MS = 2000; // messages per second over this much time
const SLOW_PAINT_MS = 250; // ages, metrics and the status line
const STALE_MS = 2000; // a symbol not updated for this long is greyed out
const SPARK_W = 120;
const SPARK_H = 28;
const SVG_NS = 'http://www.w3.org/2000/svg';
const TOPIC_PREFIX = 'ticks.'; // the protocol's topic of symbol S3 is ticks.S3
const SUBPROTOCOL = 'herald.json.v1';

const $ = (id) => document.getElementById(id);
const el = {
  status: $('status'), toggle: $('toggle'), server: $('server'),
  rows: $('rows'), empty: $('empty'), recovery: $('recovery'),
  p50: $('lat-p50'), p99: $('lat-p99'), last: $('lat-last'),
  rate: $('rate'), total: $('total'), nsym: $('nsym'),
  gaps: $('gaps'), missed: $('missed'), recovered: $('recovered'),
  duplicates: $('duplicates'), resyncs: $('resyncs'),
  uptime: $('uptime'), reconnects: $('reconnects'), lastclose: $('lastclose'),
};

// The feed: same host as the page, /ws, the symbols the page's own
// ?symbols= names, or all the server has.
const symbolsParam = new URLSearchParams(location.search).get('symbols');
const wsURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

// Wall-clock milliseconds with sub-millisecond resolution, comparable with
// the server's Unix timestamps.
const wallNow = () => performance.timeOrigin + performance.now();

// ---- per-symbol state -----------------------------------------------------

const collator = new Intl.Collator(undefined, { numeric: true });
const symbols = new Map(); // name -> Sym
const dirty = new Set(); // Syms changed since the last frame

class Sym {
  constructor(name) {
    this.name = name;
    this.px = NaN;
    this.first = NaN;
    this.seq = 0; // the last tick's sequence; 0: none yet, or just resynchronised
    this.position = null; // the last publication's {epoch, offset}
    this.recovering = false; // resubscribing: publications now are recovered ones
    this.resetReported = false; // onSubscribed handled the reset the client reports next
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

// ---- metrics ----------------------------------------------------------------

const latAt = new Float64Array(LAT_CAP);
const latVal = new Float64Array(LAT_CAP);
const latScratch = new Float64Array(LAT_CAP);
let latHead = 0;
let latLen = 0;
let lastLatency = NaN;
const rateSamples = []; // [performance.now(), received] every slow paint

const stats = {
  received: 0, // ticks shown (live and recovered)
  gaps: 0, // places where a symbol's sequence skipped ahead
  duplicates: 0, // ticks whose sequence was not above the last one's
  reconnects: 0, // connections after the first
  recovered: null, // the last reconnect: every symbol recovered (true), or not (false)
  missed: 0, // ticks the page never got: skipped sequences, or what a lost history held
  recoveredMessages: 0, // ticks the server sent again after reconnects
  resyncs: 0, // symbols whose sequence started over after a lost history
  lastRecovery: null, // {recovered, noHistory, messages, missed, resyncs, downMs, ms}: the last reconnect
};
window.heraldStats = stats;

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

// ---- ticks ------------------------------------------------------------------

function onPublication(sym, ev) {
  const m = ev.data;
  if (!m || typeof m.px !== 'number' || typeof m.seq !== 'number') return;
  stats.received++;
  if (typeof ev.offset === 'number') sym.position = { epoch: ev.epoch, offset: ev.offset };
  if (sym.recovering) {
    // Sent again after the reconnect: published while the page was away.
    recovery.messages++;
    stats.recoveredMessages++;
  } else if (typeof m.ts === 'number') {
    // ts is Unix ns: JSON rounds it to about 256 ns, well below a screen's
    // resolution.
    recordLatency(performance.now(), wallNow() - m.ts / 1e6);
  }
  if (sym.seq > 0) {
    if (m.seq > sym.seq + 1) {
      stats.gaps++;
      stats.missed += m.seq - sym.seq - 1;
      sym.missed += m.seq - sym.seq - 1;
    } else if (m.seq <= sym.seq) {
      stats.duplicates++;
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

// The server could not send what the page missed: the symbol's history is
// gone (the server restarted, or the page was away longer than it keeps).
// The page counts what it knows it missed and starts the symbol's sequence
// over: the next tick is its new baseline, not a gap.
function resync(sym, epoch, offset) {
  const had = sym.position;
  let lost = 0;
  if (had && had.epoch === epoch) lost = Math.max(0, offset - had.offset);
  else if (typeof offset === 'number') lost = offset; // the new history's ticks before this point
  stats.missed += lost;
  sym.missed += lost;
  stats.resyncs++;
  recovery.resyncs++;
  recovery.missed += lost;
  sym.seq = 0;
  sym.position = typeof offset === 'number' ? { epoch, offset } : null;
  dirty.add(sym);
}

// ---- the connection -----------------------------------------------------------

// The socket the client made last, to show what it negotiated: the client
// takes its WebSocket class as an option.
let socket = null;
class TrackedWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    socket = this;
  }
}

const client = new Client(wsURL, { WebSocket: TrackedWebSocket, protocols: [SUBPROTOCOL] });
let state = 'connecting';
let openedAt = 0;
let everOpened = false;
let stopped = false; // the user pressed Disconnect
let lastClose = null; // how the last attempt or connection ended
let lastDrop = null; // how the last connection that was open ended
let downAt = 0; // performance.now() when the connection was lost
// The reconnect in progress: what the resubscribes brought back.
let recovery = null;

function newRecovery() {
  return { recovered: true, noHistory: false, messages: 0, missed: 0, resyncs: 0, pending: 0, downMs: 0, ms: 0, at: 0 };
}

client.on('connected', () => {
  openedAt = performance.now();
  if (everOpened) {
    stats.reconnects++;
    recovery = newRecovery();
    recovery.at = openedAt;
    recovery.downMs = openedAt - downAt;
    recovery.pending = symbols.size;
    for (const sym of symbols.values()) sym.recovering = true;
  }
  everOpened = true;
  el.status.dataset.extensions = socket ? socket.extensions : '';
  setState('live');
  fetchStats();
});

client.on('disconnected', ({ code, reason, willReconnect }) => {
  lastClose = { code, reason };
  if (state === 'live') {
    lastDrop = lastClose;
    downAt = performance.now();
  }
  for (const sym of symbols.values()) sym.recovering = false;
  setState(willReconnect ? 'reconnecting' : 'closed');
});

client.on('connecting', () => {
  if (state !== 'live') setState(everOpened ? 'reconnecting' : 'connecting');
});

function onSubscribed(sym, ev) {
  const wasRecovering = sym.recovering;
  sym.recovering = false;
  if (ev.wasRecovering && !ev.recovered) {
    if (recovery) recovery.recovered = false;
    resync(sym, ev.epoch, ev.offset);
    sym.resetReported = true; // the client's reset event that follows is this one
  } else if (wasRecovering && !ev.wasRecovering) {
    // Back, but with no position to resume from: the server keeps no
    // history (a cluster without JetStream), so what was published
    // meanwhile is lost, and how much is unknown.
    if (recovery) {
      recovery.recovered = false;
      recovery.noHistory = true;
    }
    resync(sym, ev.epoch, ev.offset);
  }
  if (!wasRecovering || !recovery) return;
  if (--recovery.pending === 0) {
    // Every symbol is back: the reconnect's outcome.
    recovery.ms = performance.now() - recovery.at;
    recovery.downMs += recovery.ms;
    const { recovered, noHistory, messages, missed, resyncs, downMs, ms } = recovery;
    stats.lastRecovery = { recovered, noHistory, messages, missed, resyncs, downMs: Math.round(downMs), ms: Math.round(ms) };
    stats.recovered = recovered;
    paintRecovery();
  }
}

// The client's reset: after a subscribed reply that did not recover (seen
// already), or for a publication in another epoch, a history reset while
// the page was connected. That publication comes next, as the new
// baseline: what its history held before it is missed.
function onReset(sym, ev) {
  if (sym.resetReported) {
    sym.resetReported = false;
    return;
  }
  if (recovery && sym.recovering) recovery.recovered = false;
  resync(sym, ev.epoch, typeof ev.offset === 'number' ? ev.offset - 1 : undefined);
}

function subscribe(name) {
  if (symbols.has(name)) return;
  const sym = new Sym(name);
  symbols.set(name, sym);
  client.subscribe(TOPIC_PREFIX + name, {
    onPublication: (ev) => onPublication(sym, ev),
    onSubscribed: (ev) => onSubscribed(sym, ev),
    onReset: (ev) => onReset(sym, ev),
    onError: (ev) => { if (!ev.willRetry) showProblem(`${name}: ${ev.message || ev.code}`); },
  });
}

function showProblem(text) {
  el.recovery.hidden = false;
  el.recovery.dataset.recovered = 'false';
  el.recovery.textContent = text;
}

el.toggle.addEventListener('click', () => {
  if (state === 'live' || state === 'connecting' || state === 'reconnecting') {
    stopped = true;
    client.disconnect(1000, 'bye');
  } else {
    stopped = false;
    setState('connecting');
    client.connect();
  }
});

function setState(s) {
  state = s;
  el.status.dataset.state = s;
  el.toggle.textContent = s === 'closed' ? 'Connect' : 'Disconnect';
  paintStatus();
}

function describeClose(c) {
  if (!c) return '';
  const names = { 1000: 'normal', 1001: 'going away', 1006: 'connection lost', 1008: 'policy', 1011: 'server error', 1012: 'restart', 1013: 'try again later' };
  let s = String(c.code);
  if (c.reason) s += ' ' + c.reason;
  else if (names[c.code]) s += ' ' + names[c.code];
  return s;
}

// Server facts: the symbols to subscribe to, and the header's line.
async function serverStats() {
  const r = await fetch('/stats', { cache: 'no-store' });
  if (!r.ok) throw new Error(`/stats: ${r.status}`);
  return r.json();
}

async function fetchStats() {
  try {
    const s = await serverStats();
    // Active counts this very request's connection too.
    const active = s.server && typeof s.server.Active === 'number' ? Math.max(1, s.server.Active - 1) : null;
    const compressed = socket && socket.extensions && socket.extensions.startsWith('permessage-deflate');
    const kept = s.history && s.history.size > 0 ? ` · history of ${fmtInt(s.history.size)} ticks in ${s.history.kept}` : ' · no history';
    el.server.textContent = `${s.symbols} symbols every ${s.interval}` +
      (active === null ? '' : ` · ${active} connection${active === 1 ? '' : 's'} to this server`) +
      kept + (compressed ? ' · compressed (permessage-deflate)' : '');
  } catch {
    // The server is away; the status already says so.
  }
}
setInterval(() => { if (state === 'live') fetchStats(); }, 5000);

async function start() {
  let names = symbolsParam ? symbolsParam.split(',').filter((s) => s !== '') : null;
  for (let wait = 250; !names; wait = Math.min(wait * 2, 5000)) {
    try {
      const s = await serverStats();
      names = Array.from({ length: s.symbols }, (_, k) => 'S' + k);
    } catch {
      await new Promise((res) => setTimeout(res, wait));
    }
  }
  for (const name of names) subscribe(name);
  client.connect();
}

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
      text = 'connecting…';
      break;
    case 'live':
      text = 'live';
      break;
    case 'reconnecting':
      text = lastDrop ? `reconnecting… (${describeClose(lastDrop)})` : 'reconnecting…';
      break;
    default:
      text = stopped ? 'closed' : lastClose ? `closed · ${describeClose(lastClose)}` : 'closed';
  }
  if (el.status.textContent !== text) el.status.textContent = text;
}

// The outcome of the last reconnect, in words.
function paintRecovery() {
  const r = stats.lastRecovery;
  if (!r) return;
  const away = (r.downMs / 1000).toFixed(1);
  const n = (v, what) => `${fmtInt(v)} ${what}${v === 1 ? '' : 's'}`;
  el.recovery.hidden = false;
  el.recovery.dataset.recovered = String(r.recovered);
  const partly = r.messages > 0 ? `, ${n(r.messages, 'tick')} recovered` : '';
  if (r.recovered) {
    el.recovery.textContent = `Reconnected after ${away} s and recovered every missed tick: ` +
      `${n(r.messages, 'tick')} sent again, none lost (in ${fmtInt(r.ms)} ms).`;
  } else if (r.noHistory) {
    el.recovery.textContent = `Reconnected after ${away} s, but could not recover what the page missed: the server ` +
      `keeps no history (a cluster without JetStream), so ticks published meanwhile are lost${partly}; ` +
      `resynchronised ${n(r.resyncs, 'symbol')}.`;
  } else {
    el.recovery.textContent = `Reconnected after ${away} s, but the server could not recover what the page missed ` +
      `(its history is gone: a restart, or the page was away longer than it keeps): ` +
      `at least ${n(r.missed, 'tick')} missed${partly}; resynchronised ${n(r.resyncs, 'symbol')}.`;
  }
}

function paintSlow() {
  const t = performance.now();
  paintStatus();

  const lat = latencyPercentiles(t);
  el.p50.textContent = lat ? fmtMs(lat.p50) : '–';
  el.p99.textContent = lat ? fmtMs(lat.p99) : '–';
  el.last.textContent = Number.isNaN(lastLatency) ? '–' : fmtMs(lastLatency);

  const total = stats.received;
  rateSamples.push([t, total]);
  while (rateSamples.length > 2 && t - rateSamples[1][0] >= RATE_WINDOW_MS) rateSamples.shift();
  const [t0, n0] = rateSamples[0];
  el.rate.textContent = t > t0 ? fmtInt(Math.round(((total - n0) * 1000) / (t - t0))) : '0';
  el.total.textContent = fmtInt(total);
  el.nsym.textContent = fmtInt(symbols.size);

  el.gaps.textContent = fmtInt(stats.gaps);
  el.missed.textContent = fmtInt(stats.missed);
  el.recovered.textContent = fmtInt(stats.recoveredMessages);
  el.duplicates.textContent = fmtInt(stats.duplicates);
  el.resyncs.textContent = fmtInt(stats.resyncs);
  el.reconnects.textContent = fmtInt(stats.reconnects);
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

start();
