// No reconnect storm: 1,000 clients of a real herald server
// (testserver/main.go) are all closed at once with 1012 (service restart);
// they come back spread over the backoff window instead of together, and
// each recovers exactly what was published while it was away.
//
// Nothing here depends on the machine's speed: each client's jitter comes
// from a seeded random source, so the delay it schedules is known, and a
// client can only come back at or after that delay (a timer never fires
// early; a busy machine makes it later). So "few in the window's first
// tenth" and "many in its second half" are checked against the scheduled
// delays, which a slow machine can only push further into the window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../herald-client.js';
import { guard, hangGuard, next, seeded, startGuard, startServer } from './server.js';

const clients = 1000;
// The backoff window of the first reconnect: a delay in [0, backoffWindow).
const backoffWindow = 5000;
// A timer may be reported up to a millisecond early by the clocks' rounding.
const clockSlack = 2;

test('1,000 clients closed with 1012 reconnect spread over the backoff window, and recover', { timeout: startGuard + 6 * hangGuard }, async (t) => {
  assert.equal(typeof WebSocket, 'function', 'run node with --experimental-websocket');
  const server = await startServer(t);
  const url = `ws://${server.addr}/`;

  const all = [];
  // Only what happens after the kick counts: a first connection that
  // failed (and was retried) on a busy machine is no part of the measure.
  let kicked = false;
  for (let i = 0; i < clients; i++) {
    const rnd = seeded(1000 + i);
    const c = {
      draws: [],
      drawsAtKick: 0,
      got: [],
      resets: 0,
      downAt: -1,
      upAt: -1,
      code: 0,
      willReconnect: false,
    };
    c.client = new Client(url, {
      minReconnectDelay: backoffWindow,
      maxReconnectDelay: backoffWindow,
      random: () => { const r = rnd(); c.draws.push(r); return r; },
    });
    c.client.on('disconnected', (ev) => {
      if (kicked && c.downAt < 0) {
        c.downAt = performance.now();
        c.code = ev.code;
        c.willReconnect = ev.willReconnect;
      }
    });
    c.client.on('connected', () => { if (kicked && c.downAt >= 0 && c.upAt < 0) c.upAt = performance.now(); });
    c.client.subscribe('news', {
      onPublication: (p) => c.got.push(p.data.n),
      onReset: () => { c.resets++; },
    });
    all.push(c);
  }
  t.after(() => { for (const c of all) c.client.disconnect(); });

  // All connected and subscribed, then one publication each as a check.
  await Promise.all(all.map((c) => {
    const s = next(c.client, 'subscribed');
    c.client.connect();
    return s;
  }));
  let received = all.map((c) => next(c.client, 'publication', (p) => p.data.n === 1));
  assert.equal(await server.command('pub news 1'), 'published news 1');
  await Promise.all(received);

  // The restart: every connection closed with 1012, three publications
  // while the clients are away (or coming back).
  const back = all.map((c) => next(c.client, 'subscribed'));
  for (const c of all) c.drawsAtKick = c.draws.length;
  kicked = true;
  assert.equal(await server.command('kick 1012'), `kicked ${clients}`);
  assert.equal(await server.command('pub news 3'), 'published news 4');
  const resubscribed = await guard(Promise.all(back), backoffWindow + hangGuard, 'every client to resubscribe');
  received = all.map((c) => (c.got.at(-1) === 4 ? null : next(c.client, 'publication', (p) => p.data.n === 4)));
  await Promise.all(received);

  const scheduled = [];
  const observed = [];
  for (const [i, c] of all.entries()) {
    assert.equal(c.code, 1012, `client ${i}: close code`);
    assert.equal(c.willReconnect, true, `client ${i}: will reconnect`);
    assert.equal(c.draws.length - c.drawsAtKick, 1, `client ${i}: one reconnect delay drawn`);
    assert.equal(resubscribed[i].recovered, true, `client ${i}: recovered`);
    assert.deepEqual(c.got, [1, 2, 3, 4], `client ${i}: every publication once, in order`);
    assert.equal(c.resets, 0, `client ${i}: no reset`);
    const delay = Math.floor(c.draws[c.drawsAtKick] * backoffWindow);
    const took = c.upAt - c.downAt;
    assert.ok(took >= delay - clockSlack, `client ${i}: back after ${took.toFixed(1)} ms, before its delay of ${delay} ms`);
    scheduled.push(delay);
    observed.push(took);
  }

  const below = (xs, ms) => xs.filter((x) => x < ms).length;
  // The seeded draws are spread (a property of the seeds, the same on every
  // run): at most 20% in the first tenth, at least 40% in the second half.
  assert.ok(below(scheduled, backoffWindow / 10) <= clients * 0.2, `${below(scheduled, backoffWindow / 10)} scheduled in the first tenth`);
  assert.ok(clients - below(scheduled, backoffWindow / 2) >= clients * 0.4, `${clients - below(scheduled, backoffWindow / 2)} scheduled in the second half`);
  // Observed returns are no earlier than scheduled: no more in the first
  // tenth, no fewer after the middle. A storm (everyone back at once, right
  // away) would put them all in the first tenth.
  const early = below(observed, backoffWindow / 10);
  const late = clients - below(observed, backoffWindow / 2);
  assert.ok(early <= below(scheduled, backoffWindow / 10), `${early} back in the first tenth of the window`);
  assert.ok(late >= clients - below(scheduled, backoffWindow / 2), `${late} back in the second half of the window`);

  // The histogram, for the record: returns per tenth of the window.
  const bins = new Array(11).fill(0);
  for (const ms of observed) bins[Math.min(10, Math.floor(ms / (backoffWindow / 10)))]++;
  t.diagnostic(`returns per ${backoffWindow / 10} ms of a ${backoffWindow} ms window: ${bins.slice(0, 10).join(' ')} (later: ${bins[10]})`);
  const sorted = [...observed].sort((a, b) => a - b);
  t.diagnostic(`back after: min ${sorted[0].toFixed(0)} ms, median ${sorted[clients >> 1].toFixed(0)} ms, max ${sorted.at(-1).toFixed(0)} ms`);
});
