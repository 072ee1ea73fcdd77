// herald's echo example against the ws package, Node's most used client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startEcho, textPayload, binaryPayload, echoSizes, compressible, deflateAnswer } from '../lib/echo-server.mjs';

let server;

before(async () => { server = await startEcho(['-v']); });
after(async () => {
  const e = await server.terminate();
  assert.deepEqual(e, { code: 0, signal: null }, `echo did not exit cleanly on SIGTERM; stderr:\n${server.stderr()}`);
});

/** Opens a client and queues what it receives, so tests can await events in order. */
async function open(options = {}) {
  const ws = new WebSocket(server.url, { maxPayload: 64 << 20, ...options });
  // The server's Sec-WebSocket-Extensions answer (ws.extensions only names
  // the extensions).
  ws.once('upgrade', (res) => { ws.answer = res.headers['sec-websocket-extensions'] ?? ''; });
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
  test(`echo of text and binary, every size (permessage-deflate ${deflate ? 'negotiated' : 'off'})`, async (t) => {
    // threshold 0: ws compresses every message, even an empty one.
    const ws = await open({ perMessageDeflate: deflate ? { threshold: 0 } : false });
    t.diagnostic(`negotiated extensions: ${JSON.stringify(ws.extensions)}; answer ${JSON.stringify(ws.answer)}`);
    if (deflate) {
      assert.equal(ws.extensions, 'permessage-deflate', 'the client sees permessage-deflate negotiated');
      assert.equal(ws.answer, deflateAnswer);
      await server.sawDeflate();
    } else {
      assert.equal(ws.extensions, '', 'no offer, no extension');
    }
    const sizes = deflate ? echoSizes.filter((n) => n <= 1 << 20) : echoSizes;
    for (const binary of [false, true]) {
      for (const n of sizes) {
        const want = binary ? binaryPayload(n, 21) : textPayload(n, 21);
        // ws sends a Buffer as text when binary is false.
        await send(ws, want, binary);
        await expectEcho(ws, want, binary, `${binary ? 'binary' : 'text'} ${n} bytes`);
      }
      for (const n of [100, 600, 65536, 4 << 20]) {
        const want = compressible(n);
        await send(ws, want, binary);
        await expectEcho(ws, want, binary, `${binary ? 'binary' : 'text'} ${n} compressible bytes`);
      }
    }
    await closeClean(ws);
  });
}

test('many messages in flight', async () => {
  const ws = await open({ perMessageDeflate: false });
  const count = 3000;
  const size = (i) => (i % 100 === 99 ? 200 << 10 : i % 10 === 9 ? 4000 + i : i % 300);
  const msg = (i) => (i % 2 === 0 ? textPayload(size(i), i) : binaryPayload(size(i), i));
  for (let i = 0; i < count; i++) ws.send(msg(i), { binary: i % 2 === 1 });
  for (let i = 0; i < count; i++) await expectEcho(ws, msg(i), i % 2 === 1, `message ${i}`);
  await closeClean(ws);
});

test('ping is answered with a pong carrying the same payload', async () => {
  const ws = await open();
  const payloads = [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(125, 0x70), Buffer.from([0, 0xff, 0x80, 0x7f])];
  for (const p of payloads) {
    ws.ping(p);
    const ev = await ws.next();
    assert.equal(ev.type, 'pong', `got ${ev.type} for a ping of ${p.length} bytes`);
    assert.ok(Buffer.compare(ev.data, p) === 0, `pong payload ${ev.data.toString('hex')}, want ${p.toString('hex')}`);
  }
  // Pings between data messages keep their place.
  ws.send('one');
  ws.ping('mid');
  ws.send('two');
  const seq = [await ws.next(), await ws.next(), await ws.next()];
  assert.deepEqual(seq.map((e) => [e.type, e.data.toString()]), [['message', 'one'], ['pong', 'mid'], ['message', 'two']]);
  await closeClean(ws);
});

test('close handshake echoes code and reason', async () => {
  const cases = [
    [1000, ''],
    [1000, 'bye'],
    [1001, 'tab closed'],
    [3000, 'registered'],
    [4001, 'application reason'],
    [4999, 'r'.repeat(123)],
    [4000, 'ünïcödé €'],
  ];
  const wrongReasons = [];
  for (const [code, reason] of cases) {
    const ws = await open();
    await send(ws, 'x', false);
    await expectEcho(ws, Buffer.from('x'), false, 'before close');
    ws.close(code, reason);
    const ev = await ws.next();
    assert.equal(ev.type, 'close', `close ${code}: got ${ev.type}`);
    assert.equal(ev.code, code, `server answered close ${code} with ${ev.code}`);
    if (ev.reason !== reason) wrongReasons.push(`${code} ${JSON.stringify(reason)} answered with reason ${JSON.stringify(ev.reason)}`);
  }
  // No status code: the server answers with an empty close (1005 here) or 1000.
  const ws = await open();
  ws.close();
  const ev = await ws.next();
  assert.equal(ev.type, 'close');
  assert.ok(ev.code === 1005 || ev.code === 1000, `empty close answered with ${ev.code}`);
  assert.deepEqual(wrongReasons, [], 'the server must echo the reason with the code');
});

test('several connections at once', async () => {
  const conns = await Promise.all(Array.from({ length: 30 }, () => open()));
  await Promise.all(conns.map(async (ws, k) => {
    for (let i = 0; i < 100; i++) {
      const binary = (i + k) % 2 === 1;
      const want = binary ? binaryPayload((i * 41 + k) % 5000, k * 1000 + i) : textPayload((i * 41 + k) % 5000, k * 1000 + i);
      await send(ws, want, binary);
      await expectEcho(ws, want, binary, `conn ${k} message ${i}`);
    }
    await closeClean(ws);
  }));
});

test('SIGTERM closes every client with 1001', async () => {
  const own = await startEcho();
  const conns = await Promise.all(Array.from({ length: 3 }, () => new Promise((res, rej) => {
    const ws = new WebSocket(own.url);
    ws.once('open', () => res(ws));
    ws.once('error', rej);
  })));
  const closed = conns.map((ws) => new Promise((res) => ws.once('close', (code) => res(code))));
  const exit = await own.terminate();
  assert.deepEqual(exit, { code: 0, signal: null }, `stderr:\n${own.stderr()}`);
  assert.deepEqual(await Promise.all(closed), [1001, 1001, 1001]);
});
