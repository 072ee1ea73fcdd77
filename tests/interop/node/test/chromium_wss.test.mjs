// herald's echo example over wss:// (-tls-cert, -tls-key) against Chromium:
// a page from another local origin talks to the echo over TLS; the browser
// trusts the test's self-signed certificate by its public key
// (--ignore-certificate-errors-spki-list), nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startEcho, deflateAnswer } from '../lib/echo-server.mjs';
import { chromiumArgs } from '../lib/example-server.mjs';
import { makeCert, trustFlag } from '../lib/tls-cert.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const page = readFileSync(join(here, '..', 'page', 'echo.html'));
const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let echo;
let wssURL;
let web;
let webOrigin;
let context;
let profile;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  const tls = makeCert();
  echo = await startEcho(['-v', '-tls-cert', tls.certFile, '-tls-key', tls.keyFile]);
  wssURL = `wss://127.0.0.1:${echo.addr.split(':').pop()}/`;
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
    args: [...chromiumArgs, trustFlag(tls.cert)],
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

test('a page from another origin echoes text and binary over wss:// and closes with 1000', async (t) => {
  const p = await context.newPage();
  const consoleLines = [];
  p.on('console', (m) => consoleLines.push(m.text()));
  await p.goto(`${webOrigin}/echo.html?ws=${encodeURIComponent(wssURL)}`);
  await p.waitForFunction(() => window.interopResult !== undefined, null, { timeout: 60000 });
  const result = await p.evaluate(() => window.interopResult);
  t.diagnostic(`browser ${context.browser()?.version() ?? ''}; ${wssURL}; extensions ${JSON.stringify(result.extensions)}; ${result.steps.length} steps`);
  assert.equal(result.error, undefined, `page reported: ${result.error}; console: ${consoleLines.join(' | ')}`);
  assert.equal(result.received, result.expected, 'every message echoed');
  assert.equal(result.extensions, deflateAnswer, 'the page sees permessage-deflate negotiated');
  await echo.sawDeflate();
  assert.equal(result.closeCode, 1000, 'event.code on close');
  assert.equal(result.wasClean, true, 'event.wasClean on close');
  assert.equal(result.ok, true);
  await p.close();
});
