// Starts herald's echo example for a test file and parses its address.
//
// The binary is HERALD_ECHO_BIN, or one built here from ./examples/echo at the
// repository root when that variable is unset.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..', '..', '..');

let builtBin = null;

function echoBin() {
  if (process.env.HERALD_ECHO_BIN) return process.env.HERALD_ECHO_BIN;
  if (builtBin) return builtBin;
  const dir = mkdtempSync(join(tmpdir(), 'herald-interop-'));
  const bin = join(dir, 'echo');
  const r = spawnSync('go', ['build', '-o', bin, './examples/echo'], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`go build ./examples/echo failed in ${repoRoot}`);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  builtBin = bin;
  return bin;
}

/** herald's answer to every permessage-deflate offer the clients here make. */
export const deflateAnswer = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

/**
 * Starts an echo server on 127.0.0.1 with a free port (mounted on net/http
 * when HERALD_ECHO_MOUNT is 1), with args after its address (-v makes it log each connection's permessage-deflate
 * negotiation: see sawDeflate).
 * @returns {Promise<{addr: string, url: string, proc: import('node:child_process').ChildProcess,
 *   stderr: () => string, terminate: () => Promise<{code: number|null, signal: string|null}>}>}
 */
export async function startEcho(args = []) {
  // HERALD_ECHO_MOUNT=1 runs the echo mounted on net/http (-mount): the
  // same tests then cover the mounted path.
  const mount = process.env.HERALD_ECHO_MOUNT === '1' ? ['-mount'] : [];
  const proc = spawn(echoBin(), ['-addr', '127.0.0.1:0', ...mount, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const lines = createInterface({ input: proc.stdout });
  const first = new Promise((res) => lines.once('line', res));
  const timeout = new Promise((_, rej) => {
    const t = setTimeout(() => rej(new Error(`echo printed no address within 60s; stderr:\n${err}`)), 60000);
    t.unref();
  });
  const line = await Promise.race([
    first,
    exited.then((e) => { throw new Error(`echo exited before listening (${JSON.stringify(e)}); stderr:\n${err}`); }),
    timeout,
  ]);
  lines.on('line', () => {}); // keep draining stdout
  const prefix = 'herald echo listening on ';
  if (!line.startsWith(prefix)) throw new Error(`echo printed ${JSON.stringify(line)}, want "${prefix}<addr>"`);
  const fields = line.trim().split(/\s+/);
  const addr = fields[fields.length - 1];
  let done = false;
  exited.then(() => { done = true; });
  return {
    addr,
    url: `ws://${addr}/`,
    proc,
    stderr: () => err,
    /**
     * Resolves once the echo (started with -v) has logged a connection that
     * negotiated permessage-deflate: the server's side of the negotiation.
     * The log is written before the 101 but reaches us through a pipe.
     */
    async sawDeflate(ms = 60000) {
      const deadline = Date.now() + ms;
      while (!err.includes('deflate=true')) {
        if (Date.now() > deadline) throw new Error(`the echo logged no connection with deflate=true; stderr:\n${err}`);
        await new Promise((res) => setTimeout(res, 10));
      }
    },
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

const runes = ['a', 'Z', ' ', '~', 'é', 'ß', 'Ж', '€', '中', '\uFFFD', '😀', '𝄞', '\u{10FFFF}'];

/** A deterministic pseudo-random generator (xorshift32). */
function rng(seed) {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

/** Exactly n bytes of valid UTF-8 mixing 1- to 4-byte characters, as a Buffer. */
export function textPayload(n, seed) {
  const r = rng(seed + n);
  const buf = Buffer.alloc(n);
  let off = 0;
  while (off < n) {
    let c = runes[r() % runes.length];
    if (off + Buffer.byteLength(c) > n) c = 'x';
    off += buf.write(c, off);
  }
  return buf;
}

/** n pseudo-random bytes. */
export function binaryPayload(n, seed) {
  const r = rng(seed ^ (n + 0x9e37));
  const buf = Buffer.alloc(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) buf.writeUInt32LE(r(), i);
  for (; i < n; i++) buf[i] = r() & 0xff;
  return buf;
}

export const echoSizes = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 16 << 20];

/** n bytes of JSON-like text, which compresses well. */
export function compressible(n) {
  return Buffer.from('{"sym":"S1","px":101.25},'.repeat(Math.ceil(n / 25) + 1).slice(0, n));
}
