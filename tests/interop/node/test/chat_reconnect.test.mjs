// The chat example's page across a dropped connection, in Debian's Chromium
// driven by playwright-core: alice's page reaches the server through a TCP
// proxy that the test controls, bob's directly. The proxy cuts alice's
// connection the way a network drop does (her side sees the TCP connection
// end; the server's side stays open, so the server still counts her in the
// room) and holds every new connection for 10 s, while bob talks. When the
// proxy lets her through again, her page has reconnected by itself, taken
// the place of its dead connection (bob never sees her leave) and shows
// every message of the gap once, in order.
//
// The gap is a real 10 s; everything else waits on conditions, bounded
// only by hang guards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { chromium } from 'playwright-core';
import { startExample, chromiumArgs } from '../lib/example-server.mjs';

const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const hangGuard = 60000;
const gapMs = 10000;

/**
 * cutProxy forwards TCP connections to port. cut() ends the client side of
 * every connection without a word to the server side, and holds new
 * connections until restore().
 */
async function cutProxy(port) {
  const pairs = new Set();
  let held = null;
  let release = () => {};
  const server = net.createServer((down) => {
    down.on('error', () => {});
    const forward = () => {
      if (down.destroyed) return;
      const up = net.connect(port, '127.0.0.1');
      up.on('error', () => {});
      const pair = { down, up, cut: false };
      pairs.add(pair);
      down.pipe(up);
      up.pipe(down);
      down.on('close', () => { if (!pair.cut) up.destroy(); pairs.delete(pair); });
      up.on('close', () => { down.destroy(); pairs.delete(pair); });
    };
    if (held) held.then(forward); else forward();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    held: () => held !== null,
    cut() {
      held = new Promise((resolve) => { release = resolve; });
      for (const pair of [...pairs]) {
        pair.cut = true;
        pair.down.unpipe(pair.up);
        pair.up.unpipe(pair.down);
        pair.up.pause(); // the server's side stays open, unread
        pair.down.destroy();
      }
    },
    restore() {
      held = null;
      release();
    },
    close() {
      for (const pair of pairs) { pair.down.destroy(); pair.up.destroy(); }
      server.close();
    },
  };
}

let chat;
let browser;
let proxy;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: run tests/interop/setup.sh first`);
  }
  chat = await startExample('chat');
  proxy = await cutProxy(chat.port);
  browser = await chromium.launch({ executablePath, headless: true, args: chromiumArgs, timeout: hangGuard });
});

after(async () => {
  await browser?.close();
  proxy?.close();
  if (chat) {
    const e = await chat.terminate();
    assert.deepEqual(e, { code: 0, signal: null }, `chat did not exit cleanly on SIGTERM; stderr:\n${chat.stderr()}`);
  }
});

/** Opens the page at base in a browser context of its own and joins room as nick. */
async function joinAs(base, nick, room, problems) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${nick}: page error: ${e.message}`));
  await page.goto(`${base}?room=${room}&nick=${nick}`);
  await page.waitForSelector('#status[data-state="live"]', { timeout: hangGuard });
  return page;
}

const texts = (page) => page.$$eval('#log li.msg', (l) => l.map((li) =>
  `${li.querySelector('.nick').textContent}: ${li.querySelector('.text').textContent}`));

const seeMessage = (page, nick, text) => page.waitForFunction(([n, tx]) =>
  [...document.querySelectorAll('#log li.msg')].some((li) =>
    li.querySelector('.nick').textContent === n && li.querySelector('.text').textContent === tx),
[nick, text], { timeout: hangGuard });

async function say(page, nick, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await seeMessage(page, nick, text);
}

test('a page whose connection drops for 10 s shows every message of the gap once, in order', { timeout: 5 * hangGuard }, async (t) => {
  const problems = [];
  const room = 'reconnect-room';
  const alice = await joinAs(`http://127.0.0.1:${proxy.port}/`, 'alice', room, problems);
  const bob = await joinAs(chat.url, 'bob', room, problems);
  await alice.waitForFunction(() => document.getElementById('member-count').textContent === '2', null, { timeout: hangGuard });
  await say(bob, 'bob', 'before the drop');
  await seeMessage(alice, 'bob', 'before the drop');

  const aliceNotices = () => bob.$$eval('#log li[data-type="leave"], #log li[data-type="join"]', (l) =>
    l.filter((li) => /alice/.test(li.textContent)).map((li) => li.textContent));
  const noticesBefore = await aliceNotices(); // her join, in the history bob got

  // The drop: alice's page sees its connection end and tries again, into
  // the held proxy.
  proxy.cut();
  const cutAt = Date.now();
  await alice.waitForSelector('#status[data-state="reconnecting"]', { timeout: hangGuard });

  const gap = [];
  for (let i = 1; i <= 20; i++) {
    const text = `said while alice was away, ${i}`;
    gap.push(`bob: ${text}`);
    await say(bob, 'bob', text);
  }
  // The server still counts alice: it never saw her connection end.
  assert.equal(await bob.textContent('#member-count'), '2');

  // The rest of the 10 s gap is the scenario, not a wait for anything.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, gapMs - (Date.now() - cutAt))));
  assert.equal(await alice.getAttribute('#status', 'data-state'), 'reconnecting', 'alice stayed away for the whole gap');
  const away = Date.now() - cutAt;
  const restoredAt = Date.now();
  proxy.restore();
  await alice.waitForFunction((n) => window.heraldChat.live && window.heraldChat.recovered >= n, gap.length, { timeout: hangGuard });
  t.diagnostic(`alice was away ${away} ms; live again ${Date.now() - restoredAt} ms after the proxy let her through, with ${await alice.evaluate(() => window.heraldChat.recovered)} events recovered`);

  assert.deepEqual(await texts(alice), ['bob: before the drop', ...gap], 'every message of the gap once, in order');
  assert.deepEqual(await alice.evaluate(() => ({ reconnects: window.heraldChat.reconnects, resets: window.heraldChat.resets })),
    { reconnects: 1, resets: 0 });
  assert.equal(await alice.$$eval('#log li[data-type="system"]', (l) => l.some((li) => /Reconnected: 20 missed events recovered/.test(li.textContent))), true);

  // Live again, both ways; bob never saw alice leave or join again.
  await say(bob, 'bob', 'welcome back');
  await seeMessage(alice, 'bob', 'welcome back');
  await say(alice, 'alice', 'thanks, I saw everything');
  await seeMessage(bob, 'alice', 'thanks, I saw everything');
  assert.deepEqual(await texts(alice), ['bob: before the drop', ...gap, 'bob: welcome back', 'alice: thanks, I saw everything']);
  assert.deepEqual(await aliceNotices(), noticesBefore, 'the takeover of the dead connection is no leave and no join');
  assert.equal(await bob.textContent('#member-count'), '2');
  assert.deepEqual(problems, [], 'errors on the pages');
});
