// The README's example, run as it is written there against a real herald
// server (testserver/main.go), so that it cannot rot: the test takes the
// first js block under "## Example", points its URL at the server, runs it
// in a Node process of its own (where '@herald/client' is this package),
// and follows what it prints through a publication, a restart (1012) with
// publications missed meanwhile, and a close that says not to reconnect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { guard, hangGuard, startGuard, startServer } from './server.js';

const here = fileURLToPath(new URL('..', import.meta.url));
const exampleURL = 'ws://127.0.0.1:8080/ws';

/** example returns the README's example: the first js block after "## Example". */
function example() {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const m = /^## Example\n+```js\n([\s\S]*?)^```$/m.exec(readme);
  assert.ok(m, 'README.md has a js block under "## Example"');
  return m[1];
}

test('the README example is at most 15 lines and names the URL the test replaces', () => {
  const code = example();
  assert.ok(code.trimEnd().split('\n').length <= 15, `the example has ${code.trimEnd().split('\n').length} lines`);
  assert.ok(code.includes(`'${exampleURL}'`), `the example connects to '${exampleURL}'`);
});

test('the README example runs: live, recovered after a restart, stops on 3500', { timeout: startGuard + 6 * hangGuard }, async (t) => {
  const server = await startServer(t);
  const code = example().replace(exampleURL, `ws://${server.addr}/ws`);
  // Node 20 has a WebSocket only with the flag this test runs with.
  const flags = process.execArgv.filter((f) => f === '--experimental-websocket');
  // Run where package.json is, so that '@herald/client' resolves to this
  // package (a package may import itself by name).
  const proc = spawn(process.execPath, [...flags, '--no-warnings', '--input-type=module', '-e', code], {
    cwd: here, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = [];
  const waiting = new Set();
  let status = null;
  const exited = new Promise((resolve) => proc.on('exit', (code) => {
    status = code;
    resolve(code);
    for (const w of waiting) w();
  }));
  t.after(() => proc.kill());
  createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of waiting) w();
  });
  // printed resolves once the example has printed a line equal to want.
  const printed = (want) => guard(new Promise((resolve, reject) => {
    const check = () => {
      if (lines.includes(want)) {
        waiting.delete(check);
        resolve();
      } else if (status !== null) {
        waiting.delete(check);
        reject(new Error(`the example exited (${status}) before printing ${JSON.stringify(want)}; it printed ${JSON.stringify(lines)}`));
      }
    };
    waiting.add(check);
    check();
  }), hangGuard, `the example to print ${JSON.stringify(want)}; it printed ${JSON.stringify(lines)}`);

  await printed('subscribed (fresh)');
  assert.equal(await server.command('pub news 2'), 'published news 2');
  await printed('news 2 {"n":2}');

  // A restart: the publications made while the example reconnects reach it
  // once each, in order, recovered or live (the reconnect's delay is random).
  assert.match(await server.command('kick 1012'), /^kicked 1$/);
  assert.equal(await server.command('pub news 2'), 'published news 4');
  await printed('disconnected 1012 (reconnecting)');
  await printed('subscribed recovered: true');
  await printed('news 4 {"n":4}');

  assert.match(await server.command('kick 3500'), /^kicked 1$/);
  await printed('disconnected 3500 (for good)');
  assert.equal(await guard(exited, hangGuard, 'the example to exit'), 0, 'nothing keeps the example running once it is disconnected for good');

  assert.deepEqual(lines.filter((l) => l.startsWith('news ')), [1, 2, 3, 4].map((n) => `news ${n} {"n":${n}}`));
  assert.deepEqual(lines.filter((l) => !l.startsWith('news ')), [
    'connected', 'subscribed (fresh)',
    'disconnected 1012 (reconnecting)', 'connected', 'subscribed recovered: true',
    'disconnected 3500 (for good)',
  ]);
});
