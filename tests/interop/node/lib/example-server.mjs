// Starts one of herald's example servers (ticker, chat, notify) for a test file and
// parses the address from its "herald <name> listening on HOST:PORT" line.
//
// The binary is HERALD_<NAME>_BIN (HERALD_TICKER_BIN, HERALD_CHAT_BIN,
// HERALD_NOTIFY_BIN), or one built here from ./examples/<name> when that
// variable is unset.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..', '..', '..');

const built = new Map();

function exampleBin(name) {
  const env = process.env[`HERALD_${name.toUpperCase()}_BIN`];
  if (env) return env;
  if (built.has(name)) return built.get(name);
  const dir = mkdtempSync(join(tmpdir(), 'herald-interop-'));
  const bin = join(dir, name);
  // An example with a go.mod of its own (notify) is built inside its module.
  const own = existsSync(join(repoRoot, 'examples', name, 'go.mod'));
  const cwd = own ? join(repoRoot, 'examples', name) : repoRoot;
  const r = spawnSync('go', ['build', '-o', bin, own ? '.' : `./examples/${name}`], {
    cwd,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`go build ./examples/${name} failed in ${cwd}`);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  built.set(name, bin);
  return bin;
}

/**
 * Starts herald's example `name` with args (add -addr to choose the address;
 * the default is 127.0.0.1 with a free port); opts.bin runs another build
 * of it (the ticker's cluster build, nats/cmd/ticker).
 * @returns {Promise<{addr: string, port: number, url: string,
 *   proc: import('node:child_process').ChildProcess, stderr: () => string,
 *   terminate: () => Promise<{code: number|null, signal: string|null}>}>}
 */
export async function startExample(name, args = [], opts = {}) {
  const argv = args.includes('-addr') ? args : ['-addr', '127.0.0.1:0', ...args];
  const proc = spawn(opts.bin || exampleBin(name), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const lines = createInterface({ input: proc.stdout });
  const first = new Promise((res) => lines.once('line', res));
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${name} printed no address within 60s; stderr:\n${err}`)), 60000);
    timer.unref();
  });
  let line;
  try {
    line = await Promise.race([
      first,
      exited.then((e) => { throw new Error(`${name} exited before listening (${JSON.stringify(e)}); stderr:\n${err}`); }),
      timeout,
    ]);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(timer);
  }
  lines.on('line', () => {}); // keep draining stdout
  const prefix = `herald ${name} listening on `;
  if (!line.startsWith(prefix)) {
    proc.kill('SIGKILL');
    throw new Error(`${name} printed ${JSON.stringify(line)}, want "${prefix}<addr>"`);
  }
  const fields = line.trim().split(/\s+/);
  const addr = fields[fields.length - 1];
  let done = false;
  exited.then(() => { done = true; });
  return {
    addr,
    port: Number(addr.slice(addr.lastIndexOf(':') + 1)),
    url: `http://${addr}/`,
    proc,
    stderr: () => err,
    /** Resolves with how the process ended. */
    exited,
    /** Sends SIGTERM and resolves with how the process ended (SIGKILL after 10s). */
    async terminate() {
      if (!done) proc.kill('SIGTERM');
      const kill = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const e = await exited;
      clearTimeout(kill);
      return e;
    },
  };
}

/** The Chromium launch options the browser tests share (Debian's Chromium, no downloads). */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
