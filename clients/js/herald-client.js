// herald's JavaScript client: the subscribe protocol (docs/PROTOCOL.md)
// over one WebSocket, with reconnect (exponential backoff, full jitter),
// resubscribe from the last position, and an application heartbeat.
// One ES module, no dependencies: it is its own browser bundle.

/** Defaults of the Client's options (milliseconds). */
export const defaults = Object.freeze({
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  stableAfter: 5000,
  ping: 25000,
  pong: 10000,
});

/**
 * reconnectAllowed reports whether a client reconnects after a close with
 * code (PROTOCOL.md, "Close codes"): 1001, 1006, 1011-1014, 3000-3499 and
 * 4000-4499 yes; anything else no.
 */
export function reconnectAllowed(code) {
  return code === 1001 || code === 1006 ||
    (code >= 1011 && code <= 1014) ||
    (code >= 3000 && code < 3500) ||
    (code >= 4000 && code < 4500);
}

/**
 * backoffDelay is the delay before reconnect attempt number attempt (0 for
 * the first): a random delay in [0, min(max, min * 2^attempt)).
 */
export function backoffDelay(attempt, min, max, random) {
  const cap = Math.min(max, min * Math.pow(2, Math.min(attempt, 30)));
  return Math.floor(random() * cap);
}

// Error codes of error replies that a retry may cure.
const retryable = new Set(['unavailable', 'internal']);

/** A tiny event emitter: on, off, once. */
class Emitter {
  constructor() { this._handlers = new Map(); }

  on(event, fn) {
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  off(event, fn) {
    const set = this._handlers.get(event);
    if (set) set.delete(fn);
    return this;
  }

  once(event, fn) {
    const wrap = (ev) => { this.off(event, wrap); fn(ev); };
    return this.on(event, wrap);
  }

  emit(event, ev) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(ev);
      } catch (err) {
        if (event !== 'error') this.emit('error', { type: 'handler', error: err });
      }
    }
  }
}

function decodeB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * A Subscription to one topic. It holds the topic's last position and
 * survives reconnects: the client resubscribes from that position.
 */
export class Subscription extends Emitter {
  constructor(client, topic, opts) {
    super();
    this.client = client;
    this.topic = topic;
    /** 'subscribing' | 'subscribed' | 'unsubscribed' | 'failed' */
    this.state = 'subscribing';
    /** The last position processed: {epoch, offset}, or null. */
    this.position = opts.since ? { epoch: String(opts.since.epoch), offset: Number(opts.since.offset) } : null;
    this._opts = opts;
    this._retries = 0;
    this._retryTimer = null;
    for (const [name, event] of [['onPublication', 'publication'], ['onSubscribed', 'subscribed'],
      ['onReset', 'reset'], ['onError', 'error'], ['onUnsubscribed', 'unsubscribed']]) {
      if (typeof opts[name] === 'function') this.on(event, opts[name]);
    }
  }

  /** Unsubscribe; publications of the topic still on their way are ignored. */
  unsubscribe() {
    if (this.state === 'unsubscribed') return;
    this.client._unsubscribe(this);
  }
}

/**
 * A Client holds one connection to a herald server and reconnects it.
 * Events: connecting, connected, disconnected, subscribed, publication,
 * reset, unsubscribed, message, error.
 */
export class Client extends Emitter {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...defaults, ...options };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('herald: no WebSocket: pass options.WebSocket');
    }
    this._random = options.random || Math.random;
    /** 'disconnected' | 'connecting' | 'connected' */
    this.state = 'disconnected';
    this._ws = null;
    this._attempt = 0;
    this._nextID = 1;
    this._subs = new Map(); // topic -> Subscription
    this._pending = new Map(); // request id -> Subscription
    this._ping = this.options.ping;
    this._pong = this.options.pong;
    this._reconnectTimer = null;
    this._stableTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._wanted = false;
    this._offline = false;
    this._window = null;
    this._onOnline = () => this._online();
    this._onOffline = () => this._goneOffline();
  }

  /** Open the connection (and keep it open until disconnect()). */
  connect() {
    if (this._wanted) return this;
    this._wanted = true;
    this._attempt = 0;
    if (typeof window !== 'undefined' && window && typeof window.addEventListener === 'function') {
      this._window = window;
      window.addEventListener('online', this._onOnline);
      window.addEventListener('offline', this._onOffline);
    }
    this._open();
    return this;
  }

  /** Close the connection for good; subscriptions keep their positions. */
  disconnect(code = 1000, reason = '') {
    this._wanted = false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._window) {
      this._window.removeEventListener('online', this._onOnline);
      this._window.removeEventListener('offline', this._onOffline);
      this._window = null;
    }
    const ws = this._ws;
    if (ws) {
      this._drop();
      try { ws.close(code, reason); } catch { /* already closed */ }
      this._disconnected(code, reason, false);
    } else if (this.state !== 'disconnected') {
      this.state = 'disconnected';
    }
    return this;
  }

  /**
   * Subscribe to topic. opts: onPublication, onSubscribed, onReset,
   * onError, onUnsubscribed callbacks, and since ({epoch, offset}) to start
   * from a position the application kept.
   */
  subscribe(topic, opts = {}) {
    if (this._subs.has(topic)) throw new Error(`herald: already subscribed to ${topic}`);
    const sub = new Subscription(this, topic, opts);
    this._subs.set(topic, sub);
    if (this.state === 'connected') this._sendSubscribe(sub);
    return sub;
  }

  /** The subscription to topic, if any. */
  getSubscription(topic) { return this._subs.get(topic); }

  /** Send an application message (a string, or bytes) on the connection. */
  send(data) {
    if (this.state !== 'connected') throw new Error('herald: not connected');
    this._send(data);
  }

  // --- connection -------------------------------------------------------

  _open() {
    this.state = 'connecting';
    this.emit('connecting', { attempt: this._attempt });
    let ws;
    try {
      ws = this.options.protocols ? new this._WebSocket(this.url, this.options.protocols) : new this._WebSocket(this.url);
    } catch (error) {
      this.emit('error', { type: 'transport', error });
      this._disconnected(1006, String(error && error.message || error), true);
      return;
    }
    this._ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this._opened();
    ws.onmessage = (ev) => this._message(ev.data);
    ws.onerror = (ev) => {
      this.emit('error', { type: 'transport', error: ev && ev.error || ev });
      // An error before the open is a failed connection: a close follows
      // in browsers, but Node 20's WebSocket never sends one after a
      // refused connection, which would leave the client connecting for
      // ever. So it gives up on the socket here, as the close would.
      if (this._ws === ws && this.state === 'connecting') {
        this._drop();
        try { ws.close(); } catch { /* not open */ }
        this._disconnected(1006, 'connection failed', undefined);
      }
    };
    ws.onclose = (ev) => {
      this._drop();
      this._disconnected(ev.code || 1006, ev.reason || '', undefined);
    };
  }

  _opened() {
    this.state = 'connected';
    this._ping = this.options.ping;
    this._pong = this.options.pong;
    this._stableTimer = setTimeout(() => { this._attempt = 0; }, this.options.stableAfter);
    this._armPing();
    this.emit('connected', { url: this.url });
    for (const sub of this._subs.values()) {
      if (sub.state === 'subscribing' || sub.state === 'subscribed') this._sendSubscribe(sub);
    }
  }

  // _drop detaches the socket and stops its timers.
  _drop() {
    const ws = this._ws;
    if (ws) ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    this._ws = null;
    clearTimeout(this._stableTimer);
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._stableTimer = this._pingTimer = this._pongTimer = null;
    this._pending.clear();
    for (const sub of this._subs.values()) {
      clearTimeout(sub._retryTimer);
      sub._retryTimer = null;
      if (sub.state === 'subscribed') sub.state = 'subscribing';
    }
  }

  // _disconnected reports a lost or closed connection and schedules the
  // reconnect; willReconnect undefined: decide by the code.
  _disconnected(code, reason, willReconnect) {
    if (willReconnect === undefined) willReconnect = reconnectAllowed(code);
    willReconnect = willReconnect && this._wanted;
    this.state = 'disconnected';
    this.emit('disconnected', { code, reason, willReconnect });
    if (!willReconnect) {
      this._wanted = false;
      return;
    }
    if (this._offline) return; // the online event reconnects
    this._schedule();
  }

  _schedule() {
    const delay = backoffDelay(this._attempt, this.options.minReconnectDelay, this.options.maxReconnectDelay, this._random);
    this._attempt++;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._wanted && !this._ws) this._open();
    }, delay);
    this._lastDelay = delay;
  }

  // _kill gives up on the socket without waiting for its close event (a
  // dead link may never deliver one) and reconnects.
  _kill(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._drop();
    try { ws.close(4000, reason); } catch { /* already closed */ }
    this._disconnected(1006, reason, true);
  }

  _online() {
    this._offline = false;
    if (this._wanted && !this._ws) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._attempt = 0;
      this._open();
    }
  }

  _goneOffline() {
    this._offline = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._kill('offline');
  }

  // --- heartbeat --------------------------------------------------------

  // _armPing (re)starts the idle timer: a ping after _ping ms without
  // sending.
  _armPing() {
    clearTimeout(this._pingTimer);
    if (!(this._ping > 0)) return;
    this._pingTimer = setTimeout(() => {
      this._pingTimer = null;
      this._sendJSON({ type: 'ping', id: this._nextID++ });
      if (!this._pongTimer && this._pong > 0) {
        this._pongTimer = setTimeout(() => this._kill('heartbeat timeout'), this._pong);
      }
    }, this._ping);
  }

  _send(data) {
    this._ws.send(data);
    this._armPing();
  }

  _sendJSON(msg) {
    if (this._ws) this._send(JSON.stringify(msg));
  }

  // --- messages ---------------------------------------------------------

  _message(data) {
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
    if (typeof data !== 'string') {
      this.emit('message', { data });
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      msg = null;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.type !== 'string') {
      this.emit('message', { data });
      return;
    }
    switch (msg.type) {
      case 'welcome':
        if (msg.ping > 0) this._ping = msg.ping;
        if (msg.pong > 0) this._pong = msg.pong;
        this._armPing();
        return;
      case 'subscribed': return this._subscribed(msg);
      case 'pub': return this._pub(msg);
      case 'unsubscribed': return;
      case 'pong': return;
      case 'error': return this._error(msg);
      default: this.emit('message', { data, json: msg });
    }
  }

  _sendSubscribe(sub) {
    const id = this._nextID++;
    const req = { type: 'subscribe', id, topic: sub.topic };
    if (sub.position) req.since = { epoch: sub.position.epoch, offset: sub.position.offset };
    sub.state = 'subscribing';
    sub._sinceSent = sub.position ? { ...sub.position } : null;
    this._pending.set(id, sub);
    this._sendJSON(req);
  }

  _subscribed(msg) {
    const sub = this._pending.get(msg.id);
    if (!sub) return;
    this._pending.delete(msg.id);
    if (this._subs.get(sub.topic) !== sub || sub.state !== 'subscribing') return;
    sub.state = 'subscribed';
    sub._retries = 0;
    const hadPosition = sub._sinceSent !== null;
    const hasHistory = typeof msg.epoch === 'string' && typeof msg.offset === 'number';
    let recovered = msg.recovered === true;
    if (hasHistory && recovered && sub.position && sub.position.epoch !== '' && sub.position.epoch !== msg.epoch) {
      recovered = false; // a recovery into another epoch is none
    }
    const ev = { topic: sub.topic, recovered, wasRecovering: hadPosition, epoch: msg.epoch, offset: msg.offset };
    if (hadPosition && !recovered) {
      // The history was lost: the application reloads the topic's state,
      // then continues from the reply's position.
      sub.position = hasHistory ? { epoch: msg.epoch, offset: msg.offset } : null;
      sub.emit('subscribed', ev);
      this.emit('subscribed', ev);
      const reset = { topic: sub.topic, epoch: msg.epoch, offset: msg.offset };
      sub.emit('reset', reset);
      this.emit('reset', reset);
      return;
    }
    if (Array.isArray(msg.pubs)) {
      for (const p of msg.pubs) this._deliver(sub, p);
    }
    if (hasHistory) {
      const own = sub.position;
      if (!own || own.epoch === '' || own.epoch !== msg.epoch) {
        sub.position = { epoch: msg.epoch, offset: msg.offset };
      } else if (msg.offset > own.offset) {
        own.offset = msg.offset;
      } // else a lagging node: keep the greater, our own
    }
    sub.emit('subscribed', ev);
    this.emit('subscribed', ev);
  }

  _pub(msg) {
    const sub = this._subs.get(msg.topic);
    if (!sub || sub.state !== 'subscribed') return;
    this._deliver(sub, msg);
  }

  // _deliver applies the ordering rules to one publication of sub.
  _deliver(sub, p) {
    const positioned = typeof p.epoch === 'string' && typeof p.offset === 'number';
    if (positioned) {
      const own = sub.position;
      if (own && own.epoch !== '' && own.epoch !== p.epoch) {
        const reset = { topic: sub.topic, epoch: p.epoch, offset: p.offset };
        sub.position = { epoch: p.epoch, offset: p.offset };
        sub.emit('reset', reset);
        this.emit('reset', reset);
      } else if (own && own.epoch === p.epoch && p.offset <= own.offset) {
        return; // seen already
      } else {
        sub.position = { epoch: p.epoch, offset: p.offset };
      }
    }
    const ev = { topic: sub.topic, data: p.data, offset: p.offset, epoch: p.epoch };
    if (typeof p.b64 === 'string') {
      ev.data = decodeB64(p.b64);
      ev.binary = true;
    }
    sub.emit('publication', ev);
    this.emit('publication', ev);
  }

  _error(msg) {
    const sub = msg.id !== undefined ? this._pending.get(msg.id) : undefined;
    const ev = { type: 'reply', code: msg.code, message: msg.message, topic: msg.topic, id: msg.id };
    if (!sub) {
      this.emit('error', ev);
      return;
    }
    this._pending.delete(msg.id);
    if (this._subs.get(sub.topic) !== sub) return;
    if (retryable.has(msg.code)) {
      ev.willRetry = true;
      const delay = backoffDelay(sub._retries++, this.options.minReconnectDelay, this.options.maxReconnectDelay, this._random);
      sub._retryTimer = setTimeout(() => {
        sub._retryTimer = null;
        if (this.state === 'connected' && this._subs.get(sub.topic) === sub) this._sendSubscribe(sub);
      }, delay);
    } else {
      ev.willRetry = false;
      sub.state = 'failed';
      this._subs.delete(sub.topic);
    }
    sub.emit('error', ev);
    this.emit('error', ev);
  }

  _unsubscribe(sub) {
    if (this._subs.get(sub.topic) === sub) this._subs.delete(sub.topic);
    clearTimeout(sub._retryTimer);
    sub._retryTimer = null;
    const wasActive = sub.state === 'subscribed' || sub.state === 'subscribing';
    sub.state = 'unsubscribed';
    if (wasActive && this.state === 'connected') {
      this._sendJSON({ type: 'unsubscribe', id: this._nextID++, topic: sub.topic });
    }
    const ev = { topic: sub.topic };
    sub.emit('unsubscribed', ev);
    this.emit('unsubscribed', ev);
  }
}

export default Client;
