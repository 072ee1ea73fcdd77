// The ticker example's own page in a real browser: Debian's Chromium, driven
// by playwright-core, loads it from the ticker, watches prices move, then
// sees the page reconnect by itself after the server restarts on the same
// port; and, with -compression, the page on compressed ticks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startExample, chromiumArgs } from '../lib/example-server.mjs';
import { deflateAnswer } from '../lib/echo-server.mjs';

const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const tickerArgs = ['-interval', '100ms', '-symbols', '5'];

let ticker;
let context;
let profile;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  ticker = await startExample('ticker', tickerArgs);
  profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1280, height: 720 },
    timeout: 60000,
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (ticker) {
    const e = await ticker.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `ticker did not exit cleanly on SIGTERM; stderr:\n${ticker.stderr()}`);
  }
});

/** The table as the user sees it: {sym: {px, seq}}. */
function readRows(page) {
  return page.$$eval('#rows tr', (rows) => Object.fromEntries(rows.map((r) => [
    r.dataset.sym,
    { px: r.querySelector('td.px').textContent, seq: Number(r.querySelector('td.seq').textContent.replace(/,/g, '')) },
  ])));
}

const state = (page) => page.$eval('#status', (s) => s.dataset.state);
const number = (page, sel) => page.$eval(sel, (e) => Number(e.textContent.replace(/,/g, '')));

/** Waits until every symbol's seq moved past before's, and returns the rows then. */
async function waitForProgress(page, before, timeout = 60000) {
  await page.waitForFunction((prev) => {
    const rows = [...document.querySelectorAll('#rows tr')];
    return rows.length === Object.keys(prev).length && rows.every((r) => {
      const seq = Number(r.querySelector('td.seq').textContent.replace(/,/g, ''));
      return seq !== prev[r.dataset.sym].seq;
    });
  }, before, { timeout });
  return readRows(page);
}

test('the ticker page shows live prices and latency, and reconnects after a restart', async (t) => {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/WebSocket connection|ERR_CONNECTION_REFUSED/.test(m.text())) problems.push(m.text()); });

  await page.goto(ticker.url);
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live' &&
    document.querySelectorAll('#rows tr').length === 5, null, { timeout: 60000 });
  const first = await readRows(page);
  assert.deepEqual(Object.keys(first), ['S0', 'S1', 'S2', 'S3', 'S4'], 'rows in symbol order');

  // Ticks flow: every seq moves by five or more, prices move. A condition
  // with a hang guard, not a fixed wait: a busy machine is slower, not wrong.
  let later = first;
  for (let i = 0; i < 5; i++) later = await waitForProgress(page, later);
  for (const [sym, row] of Object.entries(later)) {
    assert.ok(row.seq >= first[sym].seq + 5, `${sym}: seq ${first[sym].seq} -> ${row.seq}`);
    assert.match(row.px, /^\d+\.\d{2}$/, `${sym}: price ${row.px}`);
  }
  assert.ok(Object.keys(later).some((s) => later[s].px !== first[s].px), 'no price changed over five ticks');

  const latency = await number(page, '#lat-last');
  const p50 = await number(page, '#lat-p50');
  const p99 = await number(page, '#lat-p99');
  const rate = await number(page, '#rate');
  t.diagnostic(`publish to screen: last ${latency} ms, p50 ${p50} ms, p99 ${p99} ms; ${rate} msgs/s`);
  for (const [name, v] of [['last', latency], ['p50', p50], ['p99', p99]]) {
    // Plausible, not fast: speed is the benchmarks' business.
    assert.ok(Number.isFinite(v) && v > -50 && v < 60000, `latency ${name} reads ${v}`);
  }
  assert.ok(rate > 0, `rate ${rate}/s, want some`);
  assert.equal(await state(page), 'live');

  // The server goes away: the page says it is reconnecting, and why.
  const { port } = ticker;
  const e = await ticker.terminate();
  assert.deepEqual(e, { code: 0, signal: null }, `ticker did not exit cleanly on SIGTERM; stderr:\n${ticker.stderr()}`);
  ticker = null;
  // State and text are read in one evaluation: on a busy machine the retry
  // may fire between two reads, and the page is then connecting again.
  const reconnecting = await page.waitForFunction(() => {
    const el = document.getElementById('status');
    return el.dataset.state === 'reconnecting' && el.textContent;
  }, null, { timeout: 60000 });
  assert.match(await reconnecting.jsonValue(), /^reconnecting… \(1001 /);
  const beforeRestart = await readRows(page);

  // A new server on the same port: the page comes back by itself.
  ticker = await startExample('ticker', ['-addr', `127.0.0.1:${port}`, ...tickerArgs]);
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, { timeout: 60000 });
  const after = await waitForProgress(page, beforeRestart);
  await waitForProgress(page, after);
  // The metrics are repainted a few times a second.
  await page.waitForFunction(() => document.getElementById('reconnects').textContent === '1' &&
    document.getElementById('lastclose').textContent === '1001', null, { timeout: 60000 })
    .catch(async () => assert.fail(`reconnects ${await page.textContent('#reconnects')}, ` +
      `last drop ${await page.textContent('#lastclose')}: want 1 reconnect after the server's 1001`));
  await page.waitForTimeout(300); // one more repaint of the metrics
  const gaps = await number(page, '#gaps');
  const resyncs = await number(page, '#resyncs');
  t.diagnostic(`after the restart: ${resyncs} symbol(s) resynchronised, ${gaps} gap(s) in sequences`);

  const dir = process.env.HERALD_INTEROP_SCREENSHOTS || mkdtempSync(join(tmpdir(), 'herald-ticker-page-'));
  mkdirSync(dir, { recursive: true });
  const shot = join(dir, 'ticker.png');
  await page.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);
  assert.deepEqual(problems, [], 'errors on the page');
  await page.close();
});

test('with -compression the page negotiates permessage-deflate, as devtools shows, and works on compressed ticks', async (t) => {
  // Ticks of about 128 bytes; compressing from 64 bytes up makes every one
  // reach the page compressed.
  const z = await startExample('ticker', ['-compression', '-compression-min-size', '64', ...tickerArgs]);
  try {
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    // What devtools' Network panel shows of the WebSocket's handshake.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const handshakes = [];
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response));

    await page.goto(z.url);
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live' &&
      document.querySelectorAll('#rows tr').length === 5, null, { timeout: 60000 });
    let rows = await readRows(page);
    for (let i = 0; i < 3; i++) rows = await waitForProgress(page, rows);
    for (const [sym, row] of Object.entries(rows)) assert.match(row.px, /^\d+\.\d{2}$/, `${sym}: price ${row.px}`);

    assert.equal(handshakes.length, 1, 'one WebSocket handshake');
    const ext = Object.entries(handshakes[0].headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions')?.[1];
    t.diagnostic(`devtools: ${handshakes[0].status} ${handshakes[0].statusText}, Sec-WebSocket-Extensions: ${ext}`);
    assert.equal(ext, deflateAnswer, 'the handshake response as devtools shows it');
    assert.equal(await page.$eval('#status', (s) => s.dataset.extensions), deflateAnswer, 'the page\'s WebSocket.extensions');
    await page.waitForFunction(() => /compressed \(permessage-deflate\)/.test(document.getElementById('server').textContent),
      null, { timeout: 60000 });

    // The server's side: it negotiated, and compressed each tick once.
    const stats = await (await fetch(`http://${z.addr}/stats`)).json();
    t.diagnostic(`server: ${stats.server.DeflateNegotiated} negotiation(s); hub: ${stats.hub.Compressed} of ${stats.hub.Published} ticks compressed`);
    assert.ok(stats.server.DeflateNegotiated >= 1, 'the server saw no negotiation');
    assert.ok(stats.hub.Compressed > 0 && stats.hub.Compressed <= stats.hub.Published, 'ticks compressed once each');
    assert.deepEqual(problems, [], 'errors on the page');
    await page.close();
  } finally {
    const e = await z.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `ticker did not exit cleanly on SIGTERM; stderr:\n${z.stderr()}`);
  }
});
