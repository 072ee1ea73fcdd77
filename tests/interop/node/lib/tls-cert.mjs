// A self-signed certificate for localhost and 127.0.0.1, made with Go's own
// generator (crypto/tls's generate_cert.go: Go is needed to build the echo
// anyway), for the wss:// tests.
import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Writes cert.pem and key.pem into a new temporary folder (removed at exit).
 * @returns {{certFile: string, keyFile: string, cert: Buffer}}
 */
export function makeCert() {
  const goroot = spawnSync('go', ['env', 'GOROOT'], { encoding: 'utf8' });
  if (goroot.status !== 0) throw new Error('go env GOROOT failed');
  const gen = join(goroot.stdout.trim(), 'src', 'crypto', 'tls', 'generate_cert.go');
  const dir = mkdtempSync(join(tmpdir(), 'herald-wss-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync('go', ['run', gen, '--host', 'localhost,127.0.0.1', '--ecdsa-curve', 'P256'], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error('generate_cert.go failed');
  const certFile = join(dir, 'cert.pem');
  return { certFile, keyFile: join(dir, 'key.pem'), cert: readFileSync(certFile) };
}

/**
 * The Chromium flag that trusts cert (PEM) by its public key alone, as the
 * browser tests over TLS need, and nothing else.
 * @param {Buffer} cert
 */
export function trustFlag(cert) {
  const spki = new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' });
  return `--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`;
}
