// What the ticker's cluster tests need from the nats module: the ticker's
// cluster build (nats/cmd/ticker) and nats-server, the version nats/go.mod
// pins, started with JetStream on free loopback ports.
//
// The binaries are HERALD_TICKER_NATS_BIN and HERALD_NATS_SERVER_BIN, or
// built here when those variables are unset.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const natsModule = resolve(here, '..', '..', '..', '..', 'nats');

let builtDir = null;

function natsBin(env, name, pkg) {
  if (process.env[env]) return process.env[env];
  if (!builtDir) {
    builtDir = mkdtempSync(join(tmpdir(), 'herald-interop-nats-'));
    process.on('exit', () => rmSync(builtDir, { recursive: true, force: true }));
  }
  const bin = join(builtDir, name);
  const r = spawnSync('go', ['build', '-o', bin, pkg], { cwd: natsModule, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`go build ${pkg} failed in ${natsModule}`);
  process.env[env] = bin;
  return bin;
}

/** The ticker's cluster build: -nats URL, and the history in JetStream. */
export const tickerNatsBin = () => natsBin('HERALD_TICKER_NATS_BIN', 'ticker-nats', './cmd/ticker');

/**
 * Starts nats-server with JetStream (its store in a new temporary folder)
 * on free loopback ports, with its monitoring endpoint.
 * @returns {Promise<{url: string, monitor: string, stop: () => Promise<void>}>}
 */
export async function startNatsServer() {
  const bin = natsBin('HERALD_NATS_SERVER_BIN', 'nats-server', 'github.com/nats-io/nats-server/v2');
  const store = mkdtempSync(join(tmpdir(), 'herald-jetstream-'));
  const proc = spawn(bin, ['-a', '127.0.0.1', '-p', '-1', '-m', '-1', '-js', '-sd', store], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  let client = null;
  let monitor = null;
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const ready = new Promise((res) => {
    createInterface({ input: proc.stderr }).on('line', (line) => {
      log += line + '\n';
      const c = /Listening for client connections on (\S+)/.exec(line);
      if (c) client = c[1];
      const m = /Starting http monitor on (\S+)/.exec(line);
      if (m) monitor = m[1];
      if (line.includes('Server is ready')) res();
    });
  });
  let timer;
  try {
    await Promise.race([
      ready,
      exited.then((e) => { throw new Error(`nats-server exited (${JSON.stringify(e)}):\n${log}`); }),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`nats-server not ready within 60s:\n${log}`)), 60000); }),
    ]);
  } catch (e) {
    proc.kill('SIGKILL');
    rmSync(store, { recursive: true, force: true });
    throw e;
  } finally {
    clearTimeout(timer);
  }
  if (!client || !monitor) throw new Error(`nats-server did not say where it listens:\n${log}`);
  return {
    url: `nats://${client}`,
    monitor: `http://${monitor}`,
    async stop() {
      proc.kill('SIGTERM');
      const kill = setTimeout(() => proc.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(kill);
      rmSync(store, { recursive: true, force: true });
    },
  };
}

/** The last sequence number of a JetStream stream, from the monitoring endpoint. */
export async function streamLastSeq(monitor, name = 'HERALD_HISTORY') {
  const r = await fetch(`${monitor}/jsz?streams=true`);
  const jsz = await r.json();
  for (const acc of jsz.account_details || []) {
    for (const st of acc.stream_detail || []) {
      if (st.name === name) return st.state.last_seq;
    }
  }
  return 0;
}
