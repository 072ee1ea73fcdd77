// The ws (npm ws 8) peer of herald's benchmark harness: one event loop. In
// ticker mode each tick builds one string per symbol and sends that same
// string to every subscribed client in wss.clients, as ws's README
// broadcasts.
//
// -compression turns perMessageDeflate on with the options of ws's README
// example (zlib level 3, memLevel 7, no context takeover on either side,
// server window 2^10, at most 10 zlib jobs at once) and its threshold at
// 512 bytes, herald's default; ws compresses every send on its own, per
// client, in zlib's thread pool.
//
//   node ws.mjs echo -addr 127.0.0.1:0 [-compression] [-tls-cert FILE -tls-key FILE]
//   node ws.mjs ticker -addr 127.0.0.1:0 -interval 100ms -symbols 20 -size 128 [-payload book] [-compression]

import { readFileSync } from 'node:fs';
import https from 'node:https';
import { WebSocket, WebSocketServer } from 'ws';
import {
  Feed, MAX_MESSAGE, SHUTDOWN_GRACE_MS, onShutdown, parseArgs, ready, subscriptions,
} from './common.mjs';

const opts = parseArgs('ws', process.argv.slice(2));

// wss:// as ws's README serves it: on a Node https server (OpenSSL, in
// Node); without TLS, ws makes and listens on its own http server.
const server = opts.tls
  ? https.createServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) })
  : null;
const wss = new WebSocketServer({
  ...(server ? { server } : { host: opts.host || undefined, port: opts.port }),
  path: opts.mode === 'ticker' ? '/ws' : undefined, // echo: any path
  perMessageDeflate: opts.compression ? {
    zlibDeflateOptions: { chunkSize: 1024, memLevel: 7, level: 3 },
    zlibInflateOptions: { chunkSize: 10 * 1024 },
    clientNoContextTakeover: true,
    serverNoContextTakeover: true,
    serverMaxWindowBits: 10,
    concurrencyLimit: 10,
    threshold: 512,
  } : false,
  maxPayload: MAX_MESSAGE,
});

let timer;
if (opts.mode === 'echo') {
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
} else {
  wss.on('connection', (ws, req) => {
    const query = new URL(req.url, 'http://localhost').searchParams;
    ws.subs = subscriptions(query.get('symbols') ?? '', opts.symbols);
  });
  const feed = new Feed(opts.symbols, opts.size, opts.payload);
  timer = setInterval(() => {
    for (let k = 0; k < feed.length; k++) {
      const msg = feed.next(k);
      for (const ws of wss.clients) {
        if (ws.subs?.[k] && ws.readyState === WebSocket.OPEN) ws.send(msg);
      }
    }
  }, opts.intervalMs);
}

wss.on('listening', () => {
  const { address, port } = wss.address();
  ready(opts, address, port);
});
wss.on('error', (err) => {
  process.stderr.write(`ws: ${err.message}\n`);
  process.exit(1);
});
server?.listen(opts.port, opts.host || undefined);

// Stop: stop accepting, send 1001 to every client and exit once they are
// gone (or after the grace period).
onShutdown(() => {
  clearInterval(timer);
  const exit = () => process.exit(0);
  wss.close();
  server?.close(); // wss.close() leaves a server it was given open
  if (wss.clients.size === 0) exit();
  for (const ws of wss.clients) {
    ws.on('close', () => {
      if (wss.clients.size === 0) exit();
    });
    ws.close(1001);
  }
  setTimeout(exit, SHUTDOWN_GRACE_MS).unref();
});
