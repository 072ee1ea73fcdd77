// The ticker example over TLS (-tls-cert, -tls-key) in Chromium, as a user
// would run it: the page comes over https from the ticker itself, opens its
// socket over wss:// on the same port, and shows live ticks. The browser
// trusts the test's self-signed certificate by its public key
// (--ignore-certificate-errors-spki-list), nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startExample, chromiumArgs } from '../lib/example-server.mjs';
import { makeCert, trustFlag } from '../lib/tls-cert.mjs';

const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let ticker;
let context;
let profile;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  const tls = makeCert();
  ticker = await startExample('ticker', ['-interval', '100ms', '-symbols', '3', '-tls-cert', tls.certFile, '-tls-key', tls.keyFile]);
  profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [...chromiumArgs, trustFlag(tls.cert)],
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

test('the page over https shows live ticks that came over wss://', async () => {
  const p = await context.newPage();
  const sockets = [];
  p.on('websocket', (ws) => sockets.push(ws.url()));
  const res = await p.goto(`https://127.0.0.1:${ticker.port}/`, { timeout: 60000 });
  assert.equal(res.status(), 200);
  assert.equal(new URL(p.url()).protocol, 'https:');
  // Live, every symbol on screen, and ticks counted without a gap.
  await p.waitForFunction(() => document.querySelector('#status')?.dataset.state === 'live' &&
    document.querySelectorAll('#rows tr').length === 3 &&
    window.heraldStats && window.heraldStats.received >= 30, null, { timeout: 60000 });
  const stats = await p.evaluate(() => ({ ...window.heraldStats }));
  assert.equal(stats.gaps, 0, JSON.stringify(stats));
  assert.equal(stats.duplicates, 0, JSON.stringify(stats));
  assert.ok(sockets.length >= 1 && sockets.every((u) => u.startsWith(`wss://127.0.0.1:${ticker.port}/`)), `sockets: ${sockets}`);
  await p.close();
});
