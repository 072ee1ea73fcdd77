// No reconnect storm: 1,000 clients of a real herald server
// (testserver/main.go) are all closed at once, and come back spread over
// the backoff window instead of together. Twice: closed with 1012 by a
// server that stays up, each recovers exactly what was published while it
// was away; and by a real restart, the server process stopped (its
// shutdown closes every client with 1001) and a new one started on the
// same address once every client has seen the close. While it is down,
// reconnect attempts fail and draw further delays; the new process has no
// history, so every client is told its resubscribe did not recover (a
// reset), and then receives what is published after the restart.
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

// stormClients makes the clients, each with its own seeded jitter, all
// connected and subscribed to news, and the first publication received.
// kick marks the moment from which a close counts: a first connection that
// failed (and was retried) on a busy machine is no part of the measure.
async function stormClients(t, server) {
  const url = `ws://${server.addr}/`;
  const all = [];
  let kicked = false;
  for (let i = 0; i < clients; i++) {
    const rnd = seeded(1000 + i);
    const c = {
      draws: [],
      drawsAtKick: 0,
      got: [],
      gotAtKick: 0,
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
  const received = all.map((c) => next(c.client, 'publication', (p) => p.data.n === 1));
  assert.equal(await server.command('pub news 1'), 'published news 1');
  await Promise.all(received);

  return {
    all,
    kick() {
      for (const c of all) {
        c.drawsAtKick = c.draws.length;
        c.gotAtKick = c.got.length;
      }
      kicked = true;
    },
  };
}

// checkSpread checks that every client came back no sooner than the first
// delay it drew after the close, and that the returns are spread over the
// window, and records their histogram.
function checkSpread(t, all) {
  const scheduled = [];
  const observed = [];
  for (const [i, c] of all.entries()) {
    const delay = Math.floor(c.draws[c.drawsAtKick] * backoffWindow);
    const took = c.upAt - c.downAt;
    assert.ok(c.upAt >= 0, `client ${i}: back`);
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
}

test('1,000 clients closed with 1012 reconnect spread over the backoff window, and recover', { timeout: startGuard + 6 * hangGuard }, async (t) => {
  assert.equal(typeof WebSocket, 'function', 'run node with --experimental-websocket');
  const server = await startServer(t);
  const { all, kick } = await stormClients(t, server);

  // The restart: every connection closed with 1012, three publications
  // while the clients are away (or coming back).
  const back = all.map((c) => next(c.client, 'subscribed'));
  kick();
  assert.equal(await server.command('kick 1012'), `kicked ${clients}`);
  assert.equal(await server.command('pub news 3'), 'published news 4');
  const resubscribed = await guard(Promise.all(back), backoffWindow + hangGuard, 'every client to resubscribe');
  const received = all.map((c) => (c.got.at(-1) === 4 ? null : next(c.client, 'publication', (p) => p.data.n === 4)));
  await Promise.all(received);

  for (const [i, c] of all.entries()) {
    assert.equal(c.code, 1012, `client ${i}: close code`);
    assert.equal(c.willReconnect, true, `client ${i}: will reconnect`);
    assert.equal(c.draws.length - c.drawsAtKick, 1, `client ${i}: one reconnect delay drawn`);
    assert.equal(resubscribed[i].recovered, true, `client ${i}: recovered`);
    assert.deepEqual(c.got, [1, 2, 3, 4], `client ${i}: every publication once, in order`);
    assert.equal(c.resets, 0, `client ${i}: no reset`);
  }
  checkSpread(t, all);
});

test('1,000 clients reconnect spread over the backoff window after a server restart, and are reset', { timeout: 2 * startGuard + 8 * hangGuard }, async (t) => {
  assert.equal(typeof WebSocket, 'function', 'run node with --experimental-websocket');
  const server = await startServer(t);
  const { all, kick } = await stormClients(t, server);

  // The restart: the server stops (1001 to every client), and once every
  // client has seen the close and the process has exited, a new one starts
  // on the same address, with no history.
  const down = all.map((c) => next(c.client, 'disconnected'));
  const back = all.map((c) => next(c.client, 'subscribed'));
  kick();
  await guard(Promise.all([server.stop(), ...down]), hangGuard, 'the server to stop and every client to see the close');
  const restarted = await startServer(t, server.addr);
  const resubscribed = await guard(Promise.all(back), backoffWindow + hangGuard, 'every client to resubscribe');
  const received = all.map((c) => next(c.client, 'publication'));
  assert.equal(await restarted.command('pub news 1'), 'published news 1');
  await Promise.all(received);

  let retried = 0;
  for (const [i, c] of all.entries()) {
    assert.equal(c.code, 1001, `client ${i}: close code`);
    assert.equal(c.willReconnect, true, `client ${i}: will reconnect`);
    assert.ok(c.draws.length - c.drawsAtKick >= 1, `client ${i}: a reconnect delay drawn`);
    if (c.draws.length - c.drawsAtKick > 1) retried++;
    assert.equal(resubscribed[i].recovered, false, `client ${i}: not recovered`);
    assert.equal(c.resets, 1, `client ${i}: one reset`);
    assert.deepEqual(c.got.slice(c.gotAtKick), [1], `client ${i}: the publication after the restart`);
  }
  t.diagnostic(`${retried} clients tried while the server was down and drew a further delay`);
  checkSpread(t, all);
});
