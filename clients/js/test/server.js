// Helpers of the tests that run against a real herald server
// (testserver/main.go): starting it, and waiting on events with a hang
// guard. Every wait ends on an event; the guards only stop a hung run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const hangGuard = 60_000;
// Building the server may take a while on a cold build cache.
export const startGuard = 180_000;
export const root = fileURLToPath(new URL('../../..', import.meta.url));

/** guard rejects when promise has not settled after ms. */
export function guard(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * startServer runs the test server (on addr, if given) and returns its
 * address, a command function that resolves with the server's answer line,
 * and stop, which closes its stdin (its shutdown closes every connection
 * with 1001) and resolves when it has exited.
 */
export async function startServer(t, addr) {
  const args = ['run', './clients/js/testserver'];
  if (addr) args.push('-addr', addr);
  const proc = spawn(process.env.GO || 'go', args, {
    cwd: root, stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => {
    proc.stdin.end();
    setTimeout(() => proc.kill(), 10_000).unref();
  });
  const waiting = [];
  let exited = null;
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const w = waiting.shift();
    if (w) w.resolve(line);
  });
  const exit = new Promise((resolve) => {
    proc.on('exit', (code) => {
      exited = new Error(`test server exited (${code})`);
      for (const w of waiting.splice(0)) w.reject(exited);
      resolve(code);
    });
  });
  const nextLine = (ms, what) => guard(new Promise((resolve, reject) => {
    if (exited) reject(exited); else waiting.push({ resolve, reject });
  }), ms, what);
  const first = await nextLine(startGuard, 'the test server to listen');
  const m = /^listening (\S+)$/.exec(first);
  assert.ok(m, `test server said ${first}`);
  return {
    addr: m[1],
    command(line) {
      const answer = nextLine(hangGuard, `the answer to ${line}`);
      proc.stdin.write(line + '\n');
      return answer;
    },
    stop() {
      proc.stdin.end();
      return guard(exit, hangGuard, 'the test server to exit');
    },
  };
}

/** next resolves with the first event of emitter that pred accepts. */
export function next(emitter, event, pred = () => true) {
  return guard(new Promise((resolve) => {
    const fn = (ev) => {
      if (pred(ev)) {
        emitter.off(event, fn);
        resolve(ev);
      }
    };
    emitter.on(event, fn);
  }), hangGuard, `${event}`);
}

/** seeded is mulberry32: a seeded random source in [0, 1). */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
