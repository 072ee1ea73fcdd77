// Unit tests of the client against a fake WebSocket, on mock timers: no
// test depends on the machine's speed.
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Client, backoffDelay, reconnectAllowed, defaults } from '../herald-client.js';

// FakeWebSocket records what the client sends; the test plays the server.
class FakeWebSocket {
  static instances = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.closed = null;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    FakeWebSocket.instances.push(this);
  }

  send(data) {
    if (this.closed) throw new Error('send on a closed socket');
    this.sent.push(JSON.parse(data));
  }

  close(code, reason) { this.closed = { code, reason }; }

  // The server's side.
  open() { this.onopen && this.onopen({}); }
  receive(msg) { this.onmessage && this.onmessage({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) }); }
  serverClose(code, reason = '') {
    this.closed = { code, reason };
    this.onclose && this.onclose({ code, reason });
  }
  last(type) { return this.sent.filter((m) => m.type === type).at(-1); }
}

const latest = () => FakeWebSocket.instances.at(-1);

// mulberry32: a seeded random source, so that jitter tests are exact.
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function newClient(opts = {}) {
  return new Client('ws://herald.test/', { WebSocket: FakeWebSocket, random: seeded(1), ...opts });
}

// connected opens a client's socket and returns it.
function connected(client) {
  client.connect();
  const ws = latest();
  ws.open();
  return ws;
}

// subscribedReply answers the last subscribe of ws.
function reply(ws, extra) {
  const req = ws.last('subscribe');
  ws.receive({ type: 'subscribed', id: req.id, topic: req.topic, ...extra });
  return req;
}

beforeEach(() => {
  FakeWebSocket.instances = [];
  mock.timers.enable({ apis: ['setTimeout'] });
});

afterEach(() => {
  mock.timers.reset();
});

test('reconnectAllowed follows the close-code table', () => {
  for (const code of [1001, 1006, 1011, 1012, 1013, 1014, 3000, 3499, 4000, 4499]) {
    assert.equal(reconnectAllowed(code), true, `code ${code}`);
  }
  for (const code of [1000, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 1015, 3500, 3501, 3502, 3999, 4500, 4999]) {
    assert.equal(reconnectAllowed(code), false, `code ${code}`);
  }
});

test('close codes decide whether the client reconnects', () => {
  for (const [code, again] of [[1000, false], [1001, true], [1008, false], [1012, true], [1013, true], [3000, true], [3500, false], [4000, true], [4500, false]]) {
    FakeWebSocket.instances = [];
    const c = newClient();
    const events = [];
    c.on('disconnected', (ev) => events.push(ev));
    const ws = connected(c);
    ws.serverClose(code, 'bye');
    assert.deepEqual(events, [{ code, reason: 'bye', willReconnect: again }], `code ${code}`);
    mock.timers.tick(defaults.maxReconnectDelay);
    assert.equal(FakeWebSocket.instances.length, again ? 2 : 1, `code ${code}`);
    c.disconnect();
  }
});

test('backoff grows exponentially, is capped, and resets once the connection is stable', () => {
  // random() just under 1: each delay is its cap.
  const c = newClient({ random: () => 0.999999 });
  c.connect();
  const caps = [];
  for (let i = 0; i < 9; i++) {
    latest().serverClose(1006);
    caps.push(c._lastDelay);
    mock.timers.tick(c._lastDelay);
    assert.equal(FakeWebSocket.instances.length, i + 2, 'reconnected after its delay');
  }
  assert.deepEqual(caps, [499, 999, 1999, 3999, 7999, 15999, 19999, 19999, 19999]);
  // Open, but not for long: no reset.
  latest().open();
  mock.timers.tick(defaults.stableAfter - 1);
  latest().serverClose(1012);
  assert.equal(c._lastDelay, 19999);
  mock.timers.tick(c._lastDelay);
  // Open long enough: the next delay starts over.
  latest().open();
  mock.timers.tick(defaults.stableAfter);
  latest().serverClose(1012);
  assert.equal(c._lastDelay, 499);
  c.disconnect();
});

test('a delay is never sooner than scheduled', () => {
  const c = newClient({ random: () => 0.5 });
  connected(c).serverClose(1006);
  assert.equal(c._lastDelay, 250);
  mock.timers.tick(249);
  assert.equal(FakeWebSocket.instances.length, 1);
  mock.timers.tick(1);
  assert.equal(FakeWebSocket.instances.length, 2);
  c.disconnect();
});

test('1,000 clients dropped at once reconnect spread over the window, not all at once', () => {
  const random = seeded(12);
  const clients = [];
  for (let i = 0; i < 1000; i++) {
    const c = newClient({ random });
    connected(c);
    clients.push(c);
  }
  // The server restarts: every connection closes with 1012 at once.
  for (const ws of [...FakeWebSocket.instances]) ws.serverClose(1012, 'restart');
  const window = defaults.minReconnectDelay;
  const slices = new Array(10).fill(0);
  for (const c of clients) slices[Math.floor(c._lastDelay / (window / 10))]++;
  for (const n of slices) assert.ok(n <= 150, `a tenth of the window holds ${n} of 1,000 reconnects: ${slices}`);
  // And they do reconnect, each at its own time.
  const before = FakeWebSocket.instances.length;
  mock.timers.tick(window / 10);
  const first = FakeWebSocket.instances.length - before;
  assert.ok(first > 0 && first <= 150, `${first} reconnected in the first tenth`);
  mock.timers.tick(window);
  assert.equal(FakeWebSocket.instances.length - before, 1000);
  // The second reconnect, for those refused again, spreads over twice the window.
  assert.ok(backoffDelay(1, 500, 20000, () => 0.999) < 1000);
  for (const c of clients) c.disconnect();
});

test('subscribes on connect, then resubscribes with since after a reconnect', () => {
  const c = newClient();
  const seen = [];
  c.subscribe('news', { onPublication: (p) => seen.push(p.data.n) });
  const ws = connected(c);
  const req = reply(ws, { epoch: 'e1', offset: 4 });
  assert.equal(req.since, undefined);
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e1', offset: 5, data: { n: 5 } });
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e1', offset: 6, data: { n: 6 } });
  ws.serverClose(1012);
  mock.timers.tick(defaults.minReconnectDelay);
  const ws2 = latest();
  assert.notEqual(ws2, ws);
  ws2.open();
  const req2 = ws2.last('subscribe');
  assert.deepEqual(req2.since, { epoch: 'e1', offset: 6 });
  const events = [];
  c.on('subscribed', (ev) => events.push(ev));
  ws2.receive({
    type: 'subscribed', id: req2.id, topic: 'news', epoch: 'e1', offset: 8, recovered: true,
    pubs: [{ type: 'pub', topic: 'news', epoch: 'e1', offset: 7, data: { n: 7 } }, { type: 'pub', topic: 'news', epoch: 'e1', offset: 8, data: { n: 8 } }],
  });
  assert.deepEqual(seen, [5, 6, 7, 8]);
  assert.equal(events.length, 1);
  assert.equal(events[0].recovered, true);
  assert.equal(events[0].wasRecovering, true);
  assert.deepEqual(c.getSubscription('news').position, { epoch: 'e1', offset: 8 });
  c.disconnect();
});

test('publications at or below the last offset are dropped', () => {
  const c = newClient();
  const seen = [];
  c.on('publication', (p) => seen.push(p.offset));
  c.subscribe('news');
  const ws = connected(c);
  reply(ws, { epoch: 'e1', offset: 10 });
  // On their way when the subscription took effect: dropped.
  for (const o of [9, 10, 11, 11, 12, 10, 13]) ws.receive({ type: 'pub', topic: 'news', epoch: 'e1', offset: o, data: o });
  assert.deepEqual(seen, [11, 12, 13]);
  c.disconnect();
});

test('a lagging node: the client keeps its own, greater offset', () => {
  const c = newClient();
  const seen = [];
  c.subscribe('news', { since: { epoch: 'e1', offset: 20 }, onPublication: (p) => seen.push(p.offset) });
  const ws = connected(c);
  assert.deepEqual(ws.last('subscribe').since, { epoch: 'e1', offset: 20 });
  reply(ws, { epoch: 'e1', offset: 18, recovered: true, pubs: [] });
  assert.deepEqual(c.getSubscription('news').position, { epoch: 'e1', offset: 20 });
  for (const o of [19, 20, 21]) ws.receive({ type: 'pub', topic: 'news', epoch: 'e1', offset: o, data: o });
  assert.deepEqual(seen, [21]);
  c.disconnect();
});

test('recovered:false tells the application to reload, then continues from the reply', () => {
  const c = newClient();
  const resets = [];
  const subscribed = [];
  const seen = [];
  c.on('reset', (ev) => resets.push(ev));
  c.subscribe('news', {
    since: { epoch: 'old', offset: 3 },
    onSubscribed: (ev) => subscribed.push(ev),
    onPublication: (p) => seen.push(p.offset),
  });
  const ws = connected(c);
  reply(ws, { epoch: 'new', offset: 40, recovered: false });
  assert.deepEqual(resets, [{ topic: 'news', epoch: 'new', offset: 40 }]);
  assert.equal(subscribed[0].recovered, false);
  assert.equal(subscribed[0].wasRecovering, true);
  ws.receive({ type: 'pub', topic: 'news', epoch: 'new', offset: 40, data: 1 });
  ws.receive({ type: 'pub', topic: 'news', epoch: 'new', offset: 41, data: 1 });
  assert.deepEqual(seen, [41]);
  c.disconnect();
});

test('epochs: an empty epoch adopts the first publication\'s; another epoch is a reset', () => {
  const c = newClient();
  const resets = [];
  const seen = [];
  c.on('reset', (ev) => resets.push(ev));
  c.subscribe('news', { onPublication: (p) => seen.push(`${p.epoch}/${p.offset}`) });
  const ws = connected(c);
  reply(ws, { epoch: '', offset: 0 });
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e1', offset: 1, data: null });
  assert.deepEqual(resets, [], 'adopting the first epoch is no reset');
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e2', offset: 1, data: null });
  assert.deepEqual(resets, [{ topic: 'news', epoch: 'e2', offset: 1 }]);
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e2', offset: 1, data: null });
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e2', offset: 2, data: null });
  assert.deepEqual(seen, ['e1/1', 'e2/1', 'e2/2']);
  c.disconnect();
});

test('binary publications are decoded from b64', () => {
  const c = newClient();
  let got;
  c.subscribe('raw', { onPublication: (p) => { got = p; } });
  const ws = connected(c);
  reply(ws, { epoch: 'e', offset: 0 });
  ws.receive({ type: 'pub', topic: 'raw', epoch: 'e', offset: 1, b64: 'AAEC' });
  assert.equal(got.binary, true);
  assert.deepEqual([...got.data], [0, 1, 2]);
  c.disconnect();
});

test('unsubscribe sends unsubscribe, ignores late publications, and is not restored', () => {
  const c = newClient();
  const seen = [];
  const sub = c.subscribe('news', { onPublication: (p) => seen.push(p.offset) });
  const ws = connected(c);
  reply(ws, { epoch: 'e', offset: 0 });
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e', offset: 1, data: 1 });
  sub.unsubscribe();
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(ws.last('unsubscribe').topic, 'news');
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e', offset: 2, data: 2 });
  ws.receive({ type: 'unsubscribed', id: ws.last('unsubscribe').id, topic: 'news' });
  assert.deepEqual(seen, [1]);
  ws.serverClose(1012);
  mock.timers.tick(defaults.minReconnectDelay);
  latest().open();
  assert.equal(latest().last('subscribe'), undefined);
  // The topic can be subscribed to again.
  c.subscribe('news');
  assert.equal(latest().last('subscribe').topic, 'news');
  c.disconnect();
});

test('error replies: forbidden fails the subscription, unavailable retries it', () => {
  const c = newClient({ random: () => 0.5 });
  const errors = [];
  c.on('error', (ev) => errors.push(ev));
  const ws = connected(c);
  const a = c.subscribe('secret');
  const b = c.subscribe('busy');
  const [ra, rb] = ws.sent.filter((m) => m.type === 'subscribe');
  ws.receive({ type: 'error', id: ra.id, topic: 'secret', code: 'forbidden', message: 'no' });
  ws.receive({ type: 'error', id: rb.id, topic: 'busy', code: 'unavailable', message: 'later' });
  assert.equal(a.state, 'failed');
  assert.equal(c.getSubscription('secret'), undefined);
  assert.deepEqual(errors.map((e) => [e.code, e.willRetry]), [['forbidden', false], ['unavailable', true]]);
  const before = ws.sent.length;
  mock.timers.tick(250);
  assert.equal(ws.sent.length, before + 1);
  reply(ws, { epoch: 'e', offset: 0 });
  assert.equal(b.state, 'subscribed');
  c.disconnect();
});

test('heartbeat: a ping after idle, and a dead link after silence', () => {
  const c = newClient();
  const events = [];
  c.on('disconnected', (ev) => events.push(ev));
  const ws = connected(c);
  ws.receive({ type: 'welcome', v: 1, ping: 1000, pong: 400 });
  mock.timers.tick(999);
  assert.equal(ws.last('ping'), undefined);
  mock.timers.tick(1);
  const ping = ws.last('ping');
  assert.ok(ping && ping.id > 0);
  // The answer keeps the link alive.
  mock.timers.tick(300);
  ws.receive({ type: 'pong', id: ping.id });
  mock.timers.tick(700);
  assert.equal(ws.sent.filter((m) => m.type === 'ping').length, 2, 'pings again after idle');
  assert.equal(ws.closed, null);
  // Now the server goes silent.
  mock.timers.tick(399);
  assert.equal(ws.closed, null);
  mock.timers.tick(1);
  assert.ok(ws.closed, 'the client closed the dead socket');
  assert.deepEqual(events, [{ code: 1006, reason: 'heartbeat timeout', willReconnect: true }]);
  mock.timers.tick(defaults.minReconnectDelay);
  assert.equal(FakeWebSocket.instances.length, 2, 'and reconnected');
  c.disconnect();
});

test('heartbeat defaults without a welcome, and sending postpones the ping', () => {
  const c = newClient();
  const ws = connected(c);
  mock.timers.tick(defaults.ping - 1);
  c.send('{"type":"app"}');
  mock.timers.tick(defaults.ping - 1);
  assert.equal(ws.last('ping'), undefined);
  mock.timers.tick(1);
  assert.ok(ws.last('ping'));
  c.disconnect();
});

test('events: connected, disconnected, application messages; disconnect() does not reconnect', () => {
  const c = newClient();
  const log = [];
  c.on('connected', () => log.push('connected'));
  c.on('disconnected', (ev) => log.push(`disconnected ${ev.code} ${ev.willReconnect}`));
  c.on('message', (ev) => log.push(`message ${ev.data}`));
  const ws = connected(c);
  ws.receive('plain text');
  ws.receive({ type: 'chat', text: 'hi' });
  c.disconnect();
  assert.equal(ws.closed.code, 1000);
  mock.timers.tick(defaults.maxReconnectDelay * 2);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.deepEqual(log, ['connected', 'message plain text', 'message {"type":"chat","text":"hi"}', 'disconnected 1000 false']);
  assert.equal(c.state, 'disconnected');
});

test('browser offline and online events drop and restore the connection', () => {
  const listeners = {};
  globalThis.window = {
    addEventListener: (name, fn) => { listeners[name] = fn; },
    removeEventListener: (name) => { delete listeners[name]; },
  };
  try {
    const c = newClient();
    const ws = connected(c);
    listeners.offline();
    assert.ok(ws.closed);
    assert.equal(c.state, 'disconnected');
    mock.timers.tick(defaults.maxReconnectDelay * 2);
    assert.equal(FakeWebSocket.instances.length, 1, 'no reconnect while offline');
    listeners.online();
    assert.equal(FakeWebSocket.instances.length, 2, 'reconnects at once when online');
    c.disconnect();
    assert.deepEqual(Object.keys(listeners), []);
  } finally {
    delete globalThis.window;
  }
});

test('a subscription made while connecting is sent on open; publications before its reply are ignored', () => {
  const c = newClient();
  c.connect();
  const seen = [];
  c.subscribe('news', { onPublication: (p) => seen.push(p.offset) });
  const ws = latest();
  assert.equal(ws.sent.length, 0);
  ws.open();
  assert.equal(ws.last('subscribe').topic, 'news');
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e', offset: 1, data: 1 });
  reply(ws, { epoch: 'e', offset: 1 });
  ws.receive({ type: 'pub', topic: 'news', epoch: 'e', offset: 2, data: 2 });
  assert.deepEqual(seen, [2]);
  assert.throws(() => c.subscribe('news'), /already subscribed/);
  c.disconnect();
});

test('a WebSocket constructor that throws counts as a lost connection', () => {
  let fail = true;
  class Throwing extends FakeWebSocket {
    constructor(url) {
      if (fail) throw new Error('refused');
      super(url);
    }
  }
  const c = newClient({ WebSocket: Throwing, random: () => 0.5 });
  const events = [];
  c.on('disconnected', (ev) => events.push(ev));
  c.on('error', () => {});
  c.connect();
  assert.deepEqual(events, [{ code: 1006, reason: 'refused', willReconnect: true }]);
  fail = false;
  mock.timers.tick(250);
  latest().open();
  assert.equal(c.state, 'connected');
  c.disconnect();
});

test('an error before the open is a failed connection, with or without the close that follows', () => {
  for (const closeFollows of [false, true]) {
    FakeWebSocket.instances = [];
    const c = newClient({ random: () => 0.5 });
    const events = [];
    c.on('disconnected', (ev) => events.push(ev));
    c.on('error', () => {});
    c.connect();
    const ws = latest();
    ws.onerror && ws.onerror({});
    if (closeFollows && ws.onclose) ws.serverClose(1006);
    assert.deepEqual(events, [{ code: 1006, reason: 'connection failed', willReconnect: true }], `close follows: ${closeFollows}`);
    assert.equal(c.state, 'disconnected');
    mock.timers.tick(250);
    assert.equal(FakeWebSocket.instances.length, 2, `close follows: ${closeFollows}: one reconnect`);
    latest().open();
    assert.equal(c.state, 'connected');
    c.disconnect();
  }
});
