// The uWebSockets.js peer of herald's benchmark harness (the native build in
// the npm package @trufflesuite/uws-js-unofficial 20.30.0-unofficial.0).
// One event loop; in ticker mode every connection subscribes to its symbols'
// topics and each tick is one app.publish per symbol: uWS frames the message
// once and corks all of a subscriber's frames into one write.
//
// -compression sets compression: uWS.SHARED_COMPRESSOR (one compressor for
// all sockets, no sliding window kept per socket) and passes compress=true
// to send and publish, as uWS's users do: publish then compresses a message
// once for all its subscribers.
//
//   node uws.mjs echo -addr 127.0.0.1:0 [-compression] [-tls-cert FILE -tls-key FILE]
//   node uws.mjs ticker -addr 127.0.0.1:0 -interval 100ms -symbols 20 -size 128 [-payload book] [-compression]

import { createRequire } from 'node:module';
import {
  Feed, MAX_MESSAGE, MiB, SHUTDOWN_GRACE_MS, onShutdown, parseArgs, ready, subscriptions,
} from './common.mjs';

const opts = parseArgs('uws', process.argv.slice(2));

// The package silently falls back to a JavaScript implementation when its
// native addon does not load; measuring that would not measure uWS.
if (/^(1|true)$/i.test(process.env.UWS_USE_FALLBACK ?? '')) {
  process.stderr.write('uws: UWS_USE_FALLBACK is set; refusing to run the JavaScript fallback\n');
  process.exit(1);
}
const uWS = createRequire(import.meta.url)('@trufflesuite/uws-js-unofficial');
if (!String(uWS.App).includes('[native code]')) {
  process.stderr.write('uws: the native uWebSockets.js addon did not load for this Node.js\n');
  process.exit(1);
}

// wss:// as uWebSockets.js serves it: its SSLApp (OpenSSL, in the addon).
const app = opts.tls
  ? uWS.SSLApp({ cert_file_name: opts.tls.cert, key_file_name: opts.tls.key })
  : uWS.App();
const sockets = new Set();
let timer;

const common = {
  compression: opts.compression ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
  idleTimeout: 0, // no idle timeout, like the other peers
  open: (ws) => sockets.add(ws),
  close: (ws) => sockets.delete(ws),
};

if (opts.mode === 'echo') {
  app.ws('/*', {
    ...common,
    maxPayloadLength: MAX_MESSAGE,
    // send() drops a message when more than this is already queued, so let
    // a client have a whole 64 MiB echo (and the next one) in flight.
    maxBackpressure: 2 * MAX_MESSAGE + MiB,
    message: (ws, message, isBinary) => {
      ws.send(message, isBinary, opts.compression);
    },
  });
} else {
  app.ws('/ws', {
    ...common,
    // publish() skips a subscriber with more than this queued until it
    // catches up (closeOnBackpressureLimit stays off).
    maxBackpressure: MiB,
    upgrade: (res, req, context) => {
      const subs = subscriptions(req.getQuery('symbols') ?? '', opts.symbols);
      res.upgrade(
        { subs },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      sockets.add(ws);
      ws.getUserData().subs.forEach((on, k) => {
        if (on) ws.subscribe(`S${k}`);
      });
    },
  });
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end('not found\n');
  });
  const feed = new Feed(opts.symbols, opts.size, opts.payload);
  timer = setInterval(() => {
    for (let k = 0; k < feed.length; k++) {
      app.publish(feed.syms[k], feed.next(k), false, opts.compression);
    }
  }, opts.intervalMs);
}

let listenSocket;
app.listen(opts.host, opts.port, (socket) => {
  if (!socket) {
    process.stderr.write(`uws: cannot listen on ${opts.host}:${opts.port}\n`);
    process.exit(1);
  }
  listenSocket = socket;
  ready(opts, opts.host, uWS.us_socket_local_port(socket));
});

// Stop: close the listen socket, send 1001 to every client and exit once
// they are gone (or after the grace period).
onShutdown(() => {
  clearInterval(timer);
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  const exit = () => process.exit(0);
  if (sockets.size === 0) exit();
  for (const ws of sockets) ws.end(1001);
  const check = setInterval(() => {
    if (sockets.size === 0) exit();
  }, 10);
  setTimeout(exit, SHUTDOWN_GRACE_MS).unref();
  check.unref();
});
