// Shared by the Node peers: the command line of the bench contract and the
// ticker's messages, byte for byte the shape the Go peers build
// (peers/internal/tick):
//
//   {"sym":"S0","seq":1,"ts":1732500000000000000,"pad":"xxxx"}
//
// or with -payload book the order book of herald's examples/ticker/book
// (bookMessage below is its port).

export const MiB = 1024 * 1024;
export const MAX_MESSAGE = 64 * MiB;
export const SHUTDOWN_GRACE_MS = 1500;

const usage = (impl) =>
  `usage:\n  node ${impl}.mjs echo -addr HOST:PORT [-compression]\n` +
  `  node ${impl}.mjs ticker -addr HOST:PORT -interval D -symbols K -size B [-payload book] [-compression]\n`;

function fail(impl, msg) {
  if (msg) process.stderr.write(`${msg}\n`);
  process.stderr.write(usage(impl));
  process.exit(2);
}

const UNIT_MS = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };

// parseDuration reads a Go duration ("50ms", "1.5s", "1m30s") into
// milliseconds, or returns NaN.
export function parseDuration(text) {
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let m;
  if (text === '0') return 0;
  if (text === '') return NaN;
  re.lastIndex = 0;
  while (re.lastIndex < text.length) {
    const at = re.lastIndex;
    m = re.exec(text);
    if (!m || m.index !== at) return NaN;
    total += Number(m[1]) * UNIT_MS[m[2]];
  }
  return total;
}

// splitHostPort splits "HOST:PORT" ("[::1]:0", ":9001") like Go's
// net.SplitHostPort.
function splitHostPort(addr) {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) return null;
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

// joinHostPort formats an address the way Go prints one.
export function joinHostPort(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// parseArgs reads `<mode> -addr HOST:PORT [-interval D -symbols K -size B
// -payload P] [-compression] [-tls-cert FILE -tls-key FILE]`. Flags may be written -name value, -name=value
// or with two dashes; -compression, a boolean as in Go, alone or =true/false.
export function parseArgs(impl, argv) {
  const [mode, ...rest] = argv;
  if (mode !== 'echo' && mode !== 'ticker') fail(impl, mode ? `unknown mode ${mode}` : 'missing mode');
  const known = mode === 'echo' ? ['addr', 'compression', 'tls-cert', 'tls-key']
    : ['addr', 'interval', 'symbols', 'size', 'payload', 'compression', 'tls-cert', 'tls-key'];
  const raw = { addr: '127.0.0.1:9001', interval: '100ms', symbols: '1', size: '128', payload: 'pad', compression: 'false', 'tls-cert': '', 'tls-key': '' };
  for (let i = 0; i < rest.length; i++) {
    const m = /^--?([a-z][a-z-]*)(?:=(.*))?$/.exec(rest[i]);
    if (!m || !known.includes(m[1])) fail(impl, `unknown argument ${rest[i]}`);
    let value = m[2];
    if (value === undefined && m[1] === 'compression') value = 'true';
    if (value === undefined) {
      if (i + 1 >= rest.length) fail(impl, `flag needs an argument: -${m[1]}`);
      value = rest[++i];
    }
    raw[m[1]] = value;
  }
  const hp = splitHostPort(raw.addr);
  if (!hp || hp.port > 65535) fail(impl, `bad -addr ${raw.addr}`);
  if (raw.compression !== 'true' && raw.compression !== 'false') fail(impl, `bad -compression=${raw.compression}`);
  if (!raw['tls-cert'] !== !raw['tls-key']) fail(impl, '-tls-cert and -tls-key go together');
  const opts = { impl, mode, host: hp.host, port: hp.port, compression: raw.compression === 'true' };
  // tls: the PEM certificate (chain) and key files of wss://, or null (plaintext).
  opts.tls = raw['tls-cert'] ? { cert: raw['tls-cert'], key: raw['tls-key'] } : null;
  if (mode === 'ticker') {
    if (raw.payload !== 'pad' && raw.payload !== 'book') fail(impl, `-payload ${raw.payload}: want pad or book`);
    opts.payload = raw.payload;
    opts.intervalMs = parseDuration(raw.interval);
    opts.symbols = Number(raw.symbols);
    opts.size = Number(raw.size);
    if (!(opts.intervalMs > 0) || !Number.isInteger(opts.symbols) || opts.symbols <= 0 ||
        !Number.isInteger(opts.size) || opts.size < 0) {
      fail(impl, '-interval and -symbols must be positive, -size not negative');
    }
    if (opts.intervalMs < 1) {
      process.stderr.write(`${impl}: Node timers tick at most once a millisecond; -interval ${raw.interval} runs as 1ms\n`);
      opts.intervalMs = 1;
    }
  }
  return opts;
}

// ready prints the one line the harness waits for.
export function ready(opts, host, port) {
  process.stdout.write(`${opts.impl} ${opts.mode} listening on ${joinHostPort(host || '::', port)}\n`);
}

// onShutdown calls stop once on SIGINT or SIGTERM.
export function onShutdown(stop) {
  let called = false;
  const handler = () => {
    if (called) return;
    called = true;
    stop();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

export const symbol = (k) => `S${k}`;

// subscriptions returns which of the k symbols a connection wants, given its
// "symbols" query parameter: empty or missing means all of them.
export function subscriptions(param, k) {
  const subs = new Array(k).fill(!param);
  if (param) {
    for (const name of param.split(',')) {
      const m = /^S(0|[1-9]\d*)$/.exec(name.trim());
      if (m && Number(m[1]) < k) subs[Number(m[1])] = true;
    }
  }
  return subs;
}

// Wall-clock nanoseconds: the process's time origin (microseconds) plus the
// monotonic high-resolution time since then.
const originNs = BigInt(Math.round(performance.timeOrigin * 1000)) * 1000n;
export const nowNs = () => originNs + BigInt(Math.round(performance.now() * 1e6));

// Feed holds the per-symbol sequence numbers of a ticker; next(k) returns
// symbol k's next message as a string, stamped with the current time, of
// the payload 'pad' or 'book'.
export class Feed {
  constructor(k, size, payload = 'pad') {
    this.syms = Array.from({ length: k }, (_, i) => symbol(i));
    this.seq = new Array(k).fill(0);
    this.size = size;
    this.book = payload === 'book';
    this.pads = new Map();
  }

  get length() {
    return this.syms.length;
  }

  next(k) {
    const seq = ++this.seq[k];
    if (this.book) return bookMessage(k, seq, nowNs(), this.size);
    const head = `{"sym":"${this.syms[k]}","seq":${seq},"ts":${nowNs()},"pad":"`;
    const n = Math.max(0, this.size - head.length - 2);
    let pad = this.pads.get(n);
    if (pad === undefined) {
      pad = 'x'.repeat(n);
      this.pads.set(n, pad);
    }
    return `${head}${pad}"}`;
  }
}

// mulberry32's next value as an unsigned 32-bit integer; state is a
// one-element Uint32Array so that it wraps as Go's uint32 does.
function mulberry32(state) {
  state[0] += 0x6d2b79f5;
  let t = state[0];
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (t ^ (t >>> 14)) >>> 0;
}

// price formats p/10,000 with exactly four decimals.
function price(p) {
  return `${Math.floor(p / 10000)}.${String(p % 10000).padStart(4, '0')}`;
}

// bookMessage is the "book" payload of symbol k with sequence number seq
// and publish time ts (Unix ns, a BigInt or a string of digits), of about
// size bytes: the port of herald's examples/ticker/book (whose package
// comment specifies it), byte for byte.
export function bookMessage(k, seq, ts, size) {
  const state = new Uint32Array([(Math.imul(k, 0x9e3779b1) + Math.imul(seq >>> 0, 0x85ebca77)) >>> 0]);
  const mid = 1000000 + (k % 50) * 10000 + (mulberry32(state) % 20001) - 10000;
  let bid = mid - 1 - (mulberry32(state) % 5);
  let ask = mid + 1 + (mulberry32(state) % 5);
  let msg = `{"sym":"S${k}","seq":${seq},"ts":${ts},"mid":${price(mid)},"levels":[`;
  for (let i = 0; ; i++) {
    if (i > 0) msg += ',';
    const bidQty = 1 + (mulberry32(state) % 50000);
    msg += `[${price(bid)},${bidQty}`;
    bid -= 1 + (mulberry32(state) % 25);
    const askQty = 1 + (mulberry32(state) % 50000);
    msg += `,${price(ask)},${askQty}]`;
    ask += 1 + (mulberry32(state) % 25);
    // "]}" closes the message; the length counts bytes, and it is ASCII.
    if (msg.length + 2 >= size - 24) break;
  }
  return `${msg}]}`;
}
