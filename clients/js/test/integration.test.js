// Integration test: the client against a real herald server
// (testserver/main.go: engine, broadcast hub, resume with in-memory
// history). Node 20 has a WebSocket only with --experimental-websocket
// (the Makefile's and package.json's test commands pass it). Every wait
// is on an event, with a hang guard; nothing depends on the machine's
// speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../herald-client.js';
import { hangGuard, next, startGuard, startServer } from './server.js';

// GatedWebSocket holds every new connection until the gate opens, so that
// the test decides when the client gets back in.
function gatedWebSocket() {
  let open = Promise.resolve();
  let release = () => {};
  class GatedWebSocket {
    constructor(url) {
      this.binaryType = 'arraybuffer';
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      this._closed = false;
      open.then(() => {
        if (this._closed) return;
        const ws = new WebSocket(url);
        ws.binaryType = this.binaryType;
        ws.onopen = (ev) => this.onopen && this.onopen(ev);
        ws.onmessage = (ev) => this.onmessage && this.onmessage(ev);
        ws.onerror = (ev) => this.onerror && this.onerror(ev);
        ws.onclose = (ev) => this.onclose && this.onclose(ev);
        this._ws = ws;
      });
    }
    send(data) { this._ws.send(data); }
    close(code, reason) {
      this._closed = true;
      if (this._ws) this._ws.close(code, reason);
    }
  }
  return {
    WebSocket: GatedWebSocket,
    hold() { open = new Promise((resolve) => { release = resolve; }); },
    release() { release(); },
  };
}

test('the client reconnects after the server closes the connection and recovers exactly what it missed', { timeout: startGuard + 4 * hangGuard }, async (t) => {
  assert.equal(typeof WebSocket, 'function', 'run node with --experimental-websocket');
  const server = await startServer(t);
  const gate = gatedWebSocket();
  const client = new Client(`ws://${server.addr}/`, { WebSocket: gate.WebSocket });
  t.after(() => client.disconnect());

  const got = [];
  const resets = [];
  client.subscribe('news', { onPublication: (p) => got.push(p.data.n), onReset: (ev) => resets.push(ev) });
  const first = next(client, 'subscribed');
  client.connect();
  assert.equal((await first).recovered, false);

  // Live.
  let received = next(client, 'publication', (p) => p.data.n === 5);
  assert.equal(await server.command('pub news 5'), 'published news 5');
  await received;
  assert.deepEqual(got, [1, 2, 3, 4, 5]);

  // The server restarts the connection; while the client is out, five more.
  gate.hold();
  const disconnected = next(client, 'disconnected');
  assert.match(await server.command('kick 1012'), /^kicked \d+$/);
  assert.deepEqual(await disconnected, { code: 1012, reason: 'kicked', willReconnect: true });
  assert.equal(await server.command('pub news 5'), 'published news 10');
  const resubscribed = next(client, 'subscribed');
  gate.release();
  const ev = await resubscribed;
  assert.equal(ev.recovered, true);
  assert.equal(ev.wasRecovering, true);
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'recovered exactly the missed ones, once each, in order');

  // Live again after the recovery, still exactly once.
  received = next(client, 'publication', (p) => p.data.n === 12);
  assert.equal(await server.command('pub news 2'), 'published news 12');
  await received;
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(resets, []);

  // Out for longer than the history holds (1,000): recovered false, a reset.
  gate.hold();
  const again = next(client, 'disconnected');
  assert.match(await server.command('kick 1013'), /^kicked \d+$/);
  await again;
  assert.equal(await server.command('pub news 1100'), 'published news 1112');
  const lost = next(client, 'subscribed');
  gate.release();
  assert.equal((await lost).recovered, false);
  assert.equal(resets.length, 1);
  assert.equal(resets[0].offset, 1112);
  received = next(client, 'publication', (p) => p.data.n === 1113);
  assert.equal(await server.command('pub news 1'), 'published news 1113');
  await received;
  assert.deepEqual(got.slice(12), [1113]);

  // A code that says do not reconnect.
  const final = next(client, 'disconnected');
  assert.match(await server.command('kick 3500'), /^kicked \d+$/);
  assert.deepEqual(await final, { code: 3500, reason: 'kicked', willReconnect: false });
  assert.equal(client.state, 'disconnected');
});
