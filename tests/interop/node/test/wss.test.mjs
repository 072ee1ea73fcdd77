// herald's echo example over wss:// (-tls-cert, -tls-key) against the ws
// package: TLS on herald's event loops, with a self-signed certificate for
// localhost that the client is told to trust.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startEcho, textPayload, binaryPayload, echoSizes, compressible, deflateAnswer } from '../lib/echo-server.mjs';
import { makeCert } from '../lib/tls-cert.mjs';

let server;
let tls;
let url;

before(async () => {
  tls = makeCert();
  server = await startEcho(['-v', '-tls-cert', tls.certFile, '-tls-key', tls.keyFile]);
  url = `wss://localhost:${server.addr.split(':').pop()}/`;
});
after(async () => {
  const e = await server.terminate();
  assert.deepEqual(e, { code: 0, signal: null }, `echo did not exit cleanly on SIGTERM; stderr:\n${server.stderr()}`);
});

/** Opens a wss:// client that trusts the test certificate. */
async function open(options = {}) {
  const ws = new WebSocket(url, { ca: tls.cert, maxPayload: 64 << 20, ...options });
  ws.once('upgrade', (res) => {
    ws.answer = res.headers['sec-websocket-extensions'] ?? '';
    ws.alpn = res.socket.alpnProtocol;
    ws.tlsVersion = res.socket.getProtocol();
  });
  const events = [];
  let wake = null;
  const push = (ev) => { events.push(ev); if (wake) { wake(); wake = null; } };
  ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
  ws.on('pong', (data) => push({ type: 'pong', data }));
  ws.on('close', (code, reason) => push({ type: 'close', code, reason: reason.toString() }));
  ws.on('error', (err) => push({ type: 'error', err }));
  await new Promise((res, rej) => {
    ws.once('open', res);
    ws.once('error', rej);
  });
  /** Resolves with the next event; ms is a hang guard, not a speed limit. */
  ws.next = async (ms = 30000) => {
    const deadline = Date.now() + ms;
    while (events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${ms}ms`);
      await new Promise((res) => {
        wake = res;
        setTimeout(res, left).unref();
      });
    }
    return events.shift();
  };
  return ws;
}

function send(ws, data, binary) {
  return new Promise((res, rej) => ws.send(data, { binary }, (err) => (err ? rej(err) : res())));
}

async function expectEcho(ws, want, binary, what) {
  const ev = await ws.next();
  assert.equal(ev.type, 'message', `${what}: got ${ev.type} ${ev.code ?? ''} ${ev.err ?? ''}, want the echo`);
  assert.equal(ev.isBinary, binary, `${what}: opcode changed`);
  assert.equal(ev.data.length, want.length, `${what}: length`);
  assert.ok(Buffer.compare(ev.data, want) === 0, `${what}: content differs`);
}

async function closeClean(ws) {
  ws.close(1000);
  const ev = await ws.next();
  assert.equal(ev.type, 'close');
  assert.equal(ev.code, 1000);
}

for (const deflate of [false, true]) {
  test(`wss:// echo of text and binary, every size (permessage-deflate ${deflate ? 'negotiated' : 'off'})`, async (t) => {
    const ws = await open({ perMessageDeflate: deflate ? { threshold: 0 } : false });
    t.diagnostic(`TLS ${ws.tlsVersion}, ALPN ${ws.alpn}, extensions ${JSON.stringify(ws.answer)}`);
    assert.equal(ws.tlsVersion, 'TLSv1.3');
    if (deflate) {
      assert.equal(ws.answer, deflateAnswer);
      await server.sawDeflate();
    }
    // Up to 1 MiB (64 records and more): the 16 MiB echo over TLS is the
    // Go clients' (wss_test.go), and ws.test.mjs's over plain ws://.
    const sizes = echoSizes.filter((n) => n <= 1 << 20);
    for (const binary of [false, true]) {
      for (const n of sizes) {
        const want = binary ? binaryPayload(n, 23) : textPayload(n, 23);
        await send(ws, want, binary);
        await expectEcho(ws, want, binary, `${binary ? 'binary' : 'text'} ${n} bytes`);
      }
      const want = compressible(65536);
      await send(ws, want, binary);
      await expectEcho(ws, want, binary, 'compressible 64 KiB');
    }
    await closeClean(ws);
  });
}

test('wss:// many messages in flight, several connections', async () => {
  const conns = await Promise.all(Array.from({ length: 10 }, () => open({ perMessageDeflate: false })));
  await Promise.all(conns.map(async (ws, k) => {
    const count = 300;
    const msg = (i) => (i % 2 === 0 ? textPayload((i * 97 + k) % 20000, i) : binaryPayload((i * 97 + k) % 20000, i));
    for (let i = 0; i < count; i++) ws.send(msg(i), { binary: i % 2 === 1 });
    for (let i = 0; i < count; i++) await expectEcho(ws, msg(i), i % 2 === 1, `conn ${k} message ${i}`);
    await closeClean(ws);
  }));
});

test('wss:// ping, pong and the close handshake', async () => {
  const ws = await open();
  ws.ping('over tls');
  const ev = await ws.next();
  assert.equal(ev.type, 'pong');
  assert.equal(ev.data.toString(), 'over tls');
  ws.close(4001, 'reason over tls');
  const cl = await ws.next();
  assert.deepEqual([cl.type, cl.code, cl.reason], ['close', 4001, 'reason over tls']);
});

test('ws:// (plain) to the wss:// port is answered 400', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${server.addr.split(':').pop()}/`);
  const err = await new Promise((res) => ws.once('error', res));
  assert.match(String(err), /400/);
});

test('a client that does not trust the certificate is refused by itself', async () => {
  await assert.rejects(open({ ca: undefined }), /self.signed|certificate/i);
});
