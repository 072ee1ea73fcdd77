// The ticker page's reconnect and resume in a real browser: Debian's
// Chromium, driven by playwright-core, on the ticker's own page, which
// speaks herald's subscribe protocol through herald-client.js.
//
// - Two nodes of the ticker's cluster build share one port (SO_REUSEPORT)
//   and a nats-server with JetStream, which keeps the ticks' history for
//   both: the node serving the page is killed, the page reconnects through
//   the port to the other one and recovers every tick it missed.
// - One node alone, history in memory, is restarted: the page reconnects,
//   says it could not recover, and starts its sequences over without
//   counting a gap.
//
// Every wait is on a condition (the page's window.heraldStats, the
// stream's sequence), bounded by a 60 s hang guard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';
import { startExample, chromiumArgs } from '../lib/example-server.mjs';
import { startNatsServer, streamLastSeq, tickerNatsBin } from '../lib/nats.mjs';

const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SYMBOLS = 5;
const tickerArgs = ['-interval', '50ms', '-symbols', String(SYMBOLS)];
const guard = { timeout: 60000 };

let browser;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  browser = await chromium.launch({ executablePath, headless: true, args: chromiumArgs, timeout: 60000 });
});

after(async () => {
  await browser?.close();
});

/** A loopback port nobody listens on: the nodes must share one, so 0 will not do. */
function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Waits until a condition over the stream's last sequence holds. */
async function waitForStream(monitor, pred, what) {
  const deadline = Date.now() + guard.timeout;
  for (;;) {
    const seq = await streamLastSeq(monitor);
    if (pred(seq)) return seq;
    if (Date.now() > deadline) throw new Error(`the stream never reached ${what} (at ${seq})`);
    await new Promise((res) => setTimeout(res, 20)); // polling a condition, under the guard
  }
}

async function openPage(url) {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket connection|ERR_CONNECTION_REFUSED|Failed to load resource/.test(m.text())) problems.push(m.text());
  });
  await page.goto(url);
  return { page, problems };
}

const stats = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.heraldStats)));

/** Waits until the page has received at least n more ticks than it had, and returns its stats then. */
async function waitForTicks(page, n) {
  const { received } = await stats(page);
  await page.waitForFunction((want) => window.heraldStats.received >= want, received + n, guard);
  return stats(page);
}

test('two nodes on one port, history in JetStream: the page\'s node is killed, and the page recovers every tick on the other', async (t) => {
  const ns = await startNatsServer();
  const port = await freePort();
  const node = ['-addr', `127.0.0.1:${port}`, '-reuseport', '-nats', ns.url, ...tickerArgs];
  const bin = tickerNatsBin();
  let a = null;
  let b = null;
  try {
    // B alone on the port: the page, and its WebSocket, reach B. It
    // publishes nothing: it delivers what the stream brings.
    b = await startExample('ticker', [...node, '-publish=false'], { bin });
    const { page, problems } = await openPage(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, guard);
    // A joins the port and publishes the ticks, into the stream.
    a = await startExample('ticker', node, { bin });
    await waitForTicks(page, 10 * SYMBOLS);

    // B stops: it sends the page nothing more, while A keeps publishing.
    // Every tick stored after this point is one the page misses.
    b.proc.kill('SIGSTOP');
    const stopped = await streamLastSeq(ns.monitor);
    const missedTicks = 10;
    await waitForStream(ns.monitor, (seq) => seq >= stopped + missedTicks * SYMBOLS, `${missedTicks} more ticks`);
    const atKill = await stats(page);
    b.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const e = await b.exited;
    assert.equal(e.signal, 'SIGKILL');
    b = null;

    // The page finds the port's other node by itself and resubscribes
    // from the last tick it saw.
    await page.waitForFunction(() => window.heraldStats.reconnects === 1 && window.heraldStats.lastRecovery !== null, null, guard);
    const sawRecovery = Date.now();
    const after = await waitForTicks(page, 10 * SYMBOLS);
    const r = after.lastRecovery;
    t.diagnostic(`killed the page's node after ${atKill.received} ticks; back ${sawRecovery - killedAt} ms later ` +
      `(the page measured ${r.downMs} ms away, the resubscribes took ${r.ms} ms); ` +
      `${r.messages} ticks recovered, ${after.received} received, ${after.gaps} gaps, ${after.duplicates} duplicates`);
    assert.equal(after.recovered, true, 'recovered');
    assert.equal(r.recovered, true);
    assert.ok(r.messages >= missedTicks * SYMBOLS, `recovered ${r.messages} ticks, want at least the ${missedTicks * SYMBOLS} stored while the node was stopped`);
    assert.equal(after.gaps, 0, 'gaps');
    assert.equal(after.duplicates, 0, 'duplicates');
    assert.equal(after.missed, 0, 'missed');
    assert.equal(after.resyncs, 0, 'resyncs');
    const banner = await page.$eval('#recovery', (p) => ({ recovered: p.dataset.recovered, text: p.textContent, hidden: p.hidden }));
    assert.equal(banner.hidden, false);
    assert.equal(banner.recovered, 'true');
    assert.match(banner.text, /recovered every missed tick/);
    assert.deepEqual(problems, [], 'errors on the page');
    await page.close();
  } finally {
    if (b) b.proc.kill('SIGKILL');
    if (a) {
      const e = await a.terminate();
      assert.deepEqual(e, { code: 0, signal: null }, `node A did not exit cleanly on SIGTERM; stderr:\n${a.stderr()}`);
    }
    await ns.stop();
  }
});

test('one node, history in memory, restarted: the page says it could not recover and resynchronises without a false gap', async (t) => {
  let tk = await startExample('ticker', tickerArgs);
  try {
    const { page, problems } = await openPage(tk.url);
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, guard);
    await waitForTicks(page, 10 * SYMBOLS);

    const { port } = tk;
    const e = await tk.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `ticker did not exit cleanly on SIGTERM; stderr:\n${tk.stderr()}`);
    tk = null;
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'reconnecting', null, guard);
    const away = await stats(page);

    // A new process on the same port: a new history, whose ticks count
    // from 1 again.
    tk = await startExample('ticker', ['-addr', `127.0.0.1:${port}`, ...tickerArgs]);
    await page.waitForFunction(() => window.heraldStats.reconnects === 1 && window.heraldStats.lastRecovery !== null, null, guard);
    const after = await waitForTicks(page, 10 * SYMBOLS);
    const r = after.lastRecovery;
    t.diagnostic(`restarted after ${away.received} ticks: away ${r.downMs} ms; recovered ${after.recovered}, ` +
      `${r.resyncs} symbols resynchronised, ${r.missed} ticks known missed; then ${after.received} received, ` +
      `${after.gaps} gaps, ${after.duplicates} duplicates`);
    assert.equal(after.recovered, false, 'recovered');
    assert.equal(r.recovered, false);
    assert.equal(r.resyncs, SYMBOLS, 'every symbol resynchronised');
    assert.equal(after.resyncs, SYMBOLS);
    assert.equal(r.messages, 0, 'nothing recovered');
    assert.ok(after.received >= away.received + 10 * SYMBOLS, 'ticks keep coming after the resync');
    assert.equal(after.gaps, 0, 'gaps: the new sequences are a new baseline');
    assert.equal(after.duplicates, 0, 'duplicates: the new sequences are a new baseline');
    const banner = await page.$eval('#recovery', (p) => ({ recovered: p.dataset.recovered, text: p.textContent, hidden: p.hidden }));
    assert.equal(banner.hidden, false);
    assert.equal(banner.recovered, 'false');
    assert.match(banner.text, /could not recover/);
    assert.match(banner.text, /resynchronised 5 symbols/);
    assert.equal(await page.$eval('#status', (s) => s.dataset.state), 'live');
    assert.deepEqual(problems, [], 'errors on the page');
    await page.close();
  } finally {
    if (tk) {
      const e = await tk.terminate();
      assert.deepEqual(e, { code: 0, signal: null }, `ticker did not exit cleanly on SIGTERM; stderr:\n${tk.stderr()}`);
    }
  }
});
