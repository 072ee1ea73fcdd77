// herald's echo example against a real browser: Debian's Chromium, driven by
// playwright-core, loads a page from another local origin that talks to the
// echo server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startEcho, deflateAnswer } from '../lib/echo-server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const page = readFileSync(join(here, '..', 'page', 'echo.html'));
const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let echo;
let web;
let webOrigin;
let context;
let profile;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  echo = await startEcho(['-v']);
  web = createServer((req, res) => {
    if (req.url.startsWith('/echo.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(page);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((res) => web.listen(0, '127.0.0.1', res));
  webOrigin = `http://127.0.0.1:${web.address().port}`;
  profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60000,
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await new Promise((res) => (web ? web.close(res) : res()));
  if (echo) {
    const e = await echo.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `echo did not exit cleanly on SIGTERM; stderr:\n${echo.stderr()}`);
  }
});

test('a page from another origin echoes text and binary and closes with 1000', async (t) => {
  const p = await context.newPage();
  const consoleLines = [];
  p.on('console', (m) => consoleLines.push(m.text()));
  const url = `${webOrigin}/echo.html?ws=${encodeURIComponent(echo.url)}`;
  assert.notEqual(new URL(webOrigin).port, new URL(echo.url).port, 'page and echo server must be different origins');
  await p.goto(url);
  await p.waitForFunction(() => window.interopResult !== undefined, null, { timeout: 60000 });
  const result = await p.evaluate(() => window.interopResult);
  t.diagnostic(`browser ${context.browser()?.version() ?? ''}; page origin ${result.origin}; ` +
    `extensions ${JSON.stringify(result.extensions)}; ${result.steps.length} steps`);
  assert.equal(result.origin, webOrigin);
  assert.equal(result.error, undefined, `page reported: ${result.error}; console: ${consoleLines.join(' | ')}`);
  assert.equal(result.received, result.expected, 'every message echoed');
  assert.equal(result.closeCode, 1000, 'event.code on close');
  // Chromium offers permessage-deflate on every connection, and compresses
  // what it sends: the echoes above went through the server's inflater,
  // and those of 512 bytes and more came back compressed.
  assert.equal(result.extensions, deflateAnswer, 'the page sees permessage-deflate negotiated');
  await echo.sawDeflate();
  assert.equal(result.wasClean, true, 'event.wasClean on close');
  assert.equal(result.ok, true);
  assert.equal(result.closeReason, 'done', 'event.reason on close: want the reason the page sent, echoed by the server');
  await p.close();
});
