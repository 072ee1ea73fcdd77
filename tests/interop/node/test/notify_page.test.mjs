// The notify example's page in a real browser: Debian's Chromium, driven by
// playwright-core, logs in as alice (a session cookie the WebSocket upgrade
// carries), then the test posts notifications over plain HTTP as a backend
// would: the page shows alice's and the announcement, never bob's. When the
// service restarts (its sessions gone), the page's socket drops, its retries
// are refused with 401, and it asks for a login again; logged in anew, it is
// live again. Logging out in a second tab closes the first tab's socket too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startExample, chromiumArgs } from '../lib/example-server.mjs';

const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let notify;
let context;
let profile;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  notify = await startExample('notify');
  profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1100, height: 720 },
    timeout: 60000,
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (notify) {
    const e = await notify.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `notify did not exit cleanly on SIGTERM; stderr:\n${notify.stderr()}`);
  }
});

/** Posts {"text": text} to path as a backend would; returns the JSON answer. */
async function post(path, text) {
  const res = await fetch(new URL(path, notify.url), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ text }),
    signal: AbortSignal.timeout(60000),
  });
  const body = await res.json();
  assert.equal(res.status, 202, `${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const state = (page, s) => page.waitForSelector(`#status[data-state="${s}"]`, { timeout: 60000 });

/** The feed's entries, newest first: [type, text]. */
const feed = (page) => page.$$eval('#feed li', (l) => l.map((li) => [li.dataset.type, li.querySelector('.text').textContent]));

async function logIn(page, user) {
  await page.waitForSelector('#login-form:not([hidden])', { timeout: 60000 });
  await page.fill('#user', user);
  await page.click('#login');
  await state(page, 'live');
}

test('the page shows its user\'s notifications and the announcements, not another user\'s', async (t) => {
  const problems = [];
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The browser logs refused upgrades and the 401 of /me as errors: the
    // restart below causes them on purpose.
    if (m.type() === 'error' && !/401|WebSocket connection|ERR_CONNECTION_REFUSED/.test(m.text())) problems.push(m.text());
  });
  await page.goto(notify.url);
  await logIn(page, 'alice');
  assert.equal(await page.textContent('#who'), 'alice');

  // Subscriptions are in effect once the socket is open: publish now.
  assert.equal((await post('/notify?user=alice', 'for alice <b>only</b>')).connections, 1);
  assert.equal((await post('/notify?user=bob', 'for bob')).connections, 0);
  const a = await post('/announce', 'to everyone');
  assert.equal(a.delivered_to, 'announce');

  // The announcement was published last: once it shows, everything owed
  // to alice has arrived.
  await page.waitForFunction(() => [...document.querySelectorAll('#feed li[data-type="announce"] .text')]
    .some((e) => e.textContent === 'to everyone'), null, { timeout: 60000 });
  assert.deepEqual(await feed(page), [['announce', 'to everyone'], ['notify', 'for alice <b>only</b>']]);
  assert.equal(await page.$$eval('#feed b', (b) => b.length), 0, 'text must not become markup');
  assert.equal(await page.evaluate(() => window.notifyStats.received), 2);

  const dir = process.env.HERALD_INTEROP_SCREENSHOTS || mkdtempSync(join(tmpdir(), 'herald-notify-page-'));
  mkdirSync(dir, { recursive: true });
  const shot = join(dir, 'notify.png');
  await page.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);

  // The service restarts on the same port and forgets its sessions: the
  // page's socket drops (1001), its retry is refused (401), and /me tells
  // it the session is gone.
  const { port } = notify;
  const e = await notify.terminate();
  assert.deepEqual(e, { code: 0, signal: null }, `notify did not exit cleanly on SIGTERM; stderr:\n${notify.stderr()}`);
  notify = null;
  await state(page, 'reconnecting');
  notify = await startExample('notify', ['-addr', `127.0.0.1:${port}`]);
  await page.waitForSelector('#login-form:not([hidden])', { timeout: 60000 });
  assert.match(await page.textContent('#login-error'), /session has ended/);

  await logIn(page, 'alice');
  await post('/notify?user=alice', 'after the restart');
  await page.waitForFunction(() => document.querySelector('#feed li .text')?.textContent === 'after the restart',
    null, { timeout: 60000 });
  assert.equal(await page.evaluate(() => window.notifyStats.reconnects), 1);

  // A second tab shares the session cookie and is live at once; logging
  // out there closes both tabs' sockets (4001): the first shows its login
  // form too.
  const tab = await context.newPage();
  tab.on('pageerror', (e) => problems.push(`tab: page error: ${e.message}`));
  await tab.goto(notify.url);
  await state(tab, 'live');
  assert.equal(await tab.textContent('#who'), 'alice');
  await tab.click('#logout');
  await tab.waitForSelector('#login-form:not([hidden])', { timeout: 60000 });
  await page.waitForSelector('#login-form:not([hidden])', { timeout: 60000 });
  assert.match(await page.textContent('#login-error'), /logged out/);
  assert.deepEqual(problems, [], 'errors on the page');
  await tab.close();
  await page.close();
});
