// The chat example's page in a real browser: two pages of Debian's Chromium,
// driven by playwright-core, join the same room under two nicknames, see each
// other's join notices and messages, and a taken nickname is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startExample, chromiumArgs } from '../lib/example-server.mjs';

const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let chat;
let context;
let profile;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  chat = await startExample('chat');
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
  if (chat) {
    const e = await chat.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `chat did not exit cleanly on SIGTERM; stderr:\n${chat.stderr()}`);
  }
});

/** Opens the page and joins room as nick through the form. */
async function joinAs(nick, room, problems) {
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${nick}: page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${nick}: ${m.text()}`); });
  await page.goto(chat.url);
  await page.fill('#nick', nick);
  await page.fill('#room', room);
  await page.click('#join');
  return page;
}

const live = (page) => page.waitForSelector('#status[data-state="live"]', { timeout: 60000 });

/** Waits for a log entry of type with text in it. */
const seeEntry = (page, type, text) => page.waitForFunction(([ty, tx]) =>
  [...document.querySelectorAll(`#log li[data-type="${ty}"]`)].some((li) => li.textContent.includes(tx)),
[type, text], { timeout: 60000 });

/** Waits for a chat message from nick with exactly text. */
const seeMessage = (page, nick, text) => page.waitForFunction(([n, tx]) =>
  [...document.querySelectorAll('#log li.msg')].some((li) =>
    li.querySelector('.nick').textContent === n && li.querySelector('.text').textContent === tx),
[nick, text], { timeout: 60000 });

test('two pages in one room see each other join and talk', async (t) => {
  const problems = [];
  const room = 'interop-room';
  const alice = await joinAs('alice', room, problems);
  await live(alice);
  await seeEntry(alice, 'join', 'You joined');
  await alice.fill('#text', 'first, before bob');
  await alice.press('#text', 'Enter');
  await seeMessage(alice, 'alice', 'first, before bob');

  const bob = await joinAs('bob', room, problems);
  await live(bob);
  // Bob gets the history; Alice sees him arrive.
  await seeMessage(bob, 'alice', 'first, before bob');
  await seeEntry(alice, 'join', 'bob joined');
  await alice.waitForFunction(() => document.getElementById('member-count').textContent === '2');
  assert.deepEqual(await alice.$$eval('#members li', (l) => l.map((li) => li.textContent)), ['alice', 'bob']);

  await bob.fill('#text', 'hello from bob ✓ <b>not bold</b>');
  await bob.press('#text', 'Enter');
  await seeMessage(alice, 'bob', 'hello from bob ✓ <b>not bold</b>');
  assert.equal(await alice.$$eval('#log b', (b) => b.length), 0, 'message text must not become markup');
  await alice.fill('#text', 'hi bob');
  await alice.click('#send');
  await seeMessage(bob, 'alice', 'hi bob');

  // A taken nickname (case aside) is refused with the server's reason.
  const dup = await joinAs('Alice', room, problems);
  await dup.waitForSelector('#status[data-state="closed"]', { timeout: 60000 });
  assert.match(await dup.textContent('#join-error'), /taken/);
  await dup.close();

  const dir = process.env.HERALD_INTEROP_SCREENSHOTS || mkdtempSync(join(tmpdir(), 'herald-chat-page-'));
  mkdirSync(dir, { recursive: true });
  const shot = join(dir, 'chat.png');
  await alice.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);

  // Bob leaves: Alice sees it.
  await bob.click('#leave');
  await seeEntry(alice, 'leave', 'bob left');
  await alice.waitForFunction(() => document.getElementById('member-count').textContent === '1');

  // Each page counts one message from each side, once.
  const counts = await alice.$$eval('#log li.msg .nick', (n) => n.map((e) => e.textContent));
  assert.deepEqual(counts, ['alice', 'bob', 'alice']);
  assert.deepEqual(problems, [], 'errors on the pages');
  await alice.close();
  await bob.close();
});
