// herald notify page: plain JavaScript, no build step, no dependencies.
//
// The page logs in (POST /login sets an HttpOnly session cookie), then opens
// the WebSocket at /ws, whose upgrade carries the cookie. The server sends
// JSON text messages:
//   {"type":"hello","user":"alice","ts":...}
//   {"type":"notify","id":7,"user":"alice","text":"hi","ts":...}
//   {"type":"announce","id":8,"text":"deploy at 5","ts":...}
// When the socket drops it reconnects with full-jitter exponential backoff. A
// socket that never opened may mean the session is gone (the upgrade got 401,
// which a browser does not show to the page): /me tells, and the page asks
// for a login again instead of retrying forever.
'use strict';

(() => {
  // The n-th retry waits a random time in [0, min(cap, base * 2^n)); a
  // connection that stays up for STABLE_MS resets n.
  const BACKOFF_BASE_MS = 250;
  const BACKOFF_CAP_MS = 10000;
  const STABLE_MS = 5000;
  const MAX_SHOWN = 200; // notifications kept on screen

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'), who: $('who'), logout: $('logout'),
    loginForm: $('login-form'), user: $('user'), loginError: $('login-error'),
    inbox: $('inbox'), feed: $('feed'), empty: $('empty'), count: $('count'),
    compose: $('compose'), to: $('to'), text: $('text'), sendResult: $('send-result'),
  };
  const wsURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

  // What a test (or a curious reader) may look at.
  const stats = { received: 0, reconnects: 0, user: '' };
  window.notifyStats = stats;

  let ws = null;
  let state = 'idle';
  let attempt = 0;
  let retryTimer = 0;
  let stableTimer = 0;
  let everOpened = false;
  let stopped = true; // logged out: no reconnecting

  function setState(s, text) {
    state = s;
    el.status.dataset.state = s;
    el.status.textContent = text || {
      idle: 'not logged in', connecting: 'connecting…', live: 'live',
      reconnecting: 'reconnecting…', closed: 'closed',
    }[s];
  }

  async function api(method, path, body, type) {
    const init = { method, credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      init.body = body;
      init.headers['Content-Type'] = type;
    }
    const res = await fetch(path, init);
    let data = {};
    try { data = await res.json(); } catch { /* not JSON: keep {} */ }
    return { status: res.status, data };
  }

  // ---- login --------------------------------------------------------------

  function showLogin(message) {
    stopped = true;
    stats.user = '';
    el.loginForm.hidden = false;
    el.inbox.hidden = true;
    el.logout.hidden = true;
    el.who.hidden = true;
    el.loginError.textContent = message || '';
    setState('idle');
    el.user.focus();
  }

  function loggedIn(user) {
    stats.user = user;
    el.loginForm.hidden = true;
    el.inbox.hidden = false;
    el.logout.hidden = false;
    el.who.hidden = false;
    el.who.textContent = user;
    for (const s of document.querySelectorAll('.me')) s.textContent = user;
    stopped = false;
    attempt = 0;
    connect();
  }

  el.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    el.loginError.textContent = '';
    try {
      const r = await api('POST', '/login', new URLSearchParams({ user: el.user.value.trim() }),
        'application/x-www-form-urlencoded');
      if (r.status === 200) loggedIn(r.data.user);
      else el.loginError.textContent = r.data.error || `login failed (${r.status})`;
    } catch (e) {
      el.loginError.textContent = 'the service is not reachable';
    }
  });

  el.logout.addEventListener('click', async () => {
    stopped = true;
    clearTimeout(retryTimer);
    if (ws) ws.close(1000, 'logged out');
    ws = null;
    try { await api('POST', '/logout'); } catch { /* the cookie stays; the page forgets it */ }
    showLogin();
  });

  // ---- the socket ---------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (stopped) return;
    setState(everOpened ? 'reconnecting' : 'connecting');
    const sock = new WebSocket(wsURL);
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      if (everOpened) stats.reconnects++;
      everOpened = true;
      setState('live');
      stableTimer = setTimeout(() => { attempt = 0; }, STABLE_MS);
    };
    sock.onmessage = (ev) => {
      if (ws === sock) onMessage(ev.data);
    };
    sock.onclose = async (ev) => {
      if (ws !== sock) return;
      ws = null;
      clearTimeout(stableTimer);
      if (stopped) return;
      // 4001: this session logged out (in another tab, say).
      if (ev.code === 4001) {
        showLogin('You were logged out.');
        return;
      }
      // 1008: the server will not take this socket (it only sends); do not
      // hammer it.
      if (opened && ev.code === 1008) {
        setState('closed', `closed: ${ev.reason || 'policy'}`);
        return;
      }
      if (!opened) {
        // Refused before the upgrade, or the server is away: ask which.
        try {
          const r = await api('GET', '/me');
          if (r.status === 401) {
            showLogin('Your session has ended: log in again.');
            return;
          }
        } catch { /* away: retry below */ }
        if (stopped) return;
      }
      retry();
    };
  }

  function retry() {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    const delay = Math.random() * ceiling;
    attempt++;
    setState('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    retryTimer = setTimeout(connect, delay);
  }

  // Back online: no point waiting out the backoff.
  window.addEventListener('online', () => {
    if (state === 'reconnecting' && !stopped) connect();
  });

  function onMessage(data) {
    let ev;
    try { ev = JSON.parse(data); } catch { return; }
    if (ev.type === 'hello') {
      el.who.textContent = ev.user;
      return;
    }
    if (ev.type !== 'notify' && ev.type !== 'announce') return;
    stats.received++;
    const li = document.createElement('li');
    li.dataset.type = ev.type;
    li.dataset.id = String(ev.id);
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = ev.type === 'announce' ? 'everyone' : 'you';
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = ev.text; // as text, never as markup
    const time = document.createElement('time');
    time.dateTime = new Date(ev.ts).toISOString();
    time.textContent = new Date(ev.ts).toLocaleTimeString();
    li.append(kind, text, time);
    el.feed.prepend(li);
    while (el.feed.children.length > MAX_SHOWN) el.feed.lastElementChild.remove();
    el.empty.hidden = true;
    el.count.textContent = String(stats.received);
  }

  // ---- sending (the same endpoints a backend would call) ------------------

  el.compose.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const to = el.to.value.trim();
    const path = to ? '/notify?user=' + encodeURIComponent(to) : '/announce';
    try {
      const r = await api('POST', path, JSON.stringify({ text: el.text.value }), 'application/json');
      el.sendResult.textContent = r.status === 202
        ? `sent to ${r.data.delivered_to} (${r.data.connections} connection${r.data.connections === 1 ? '' : 's'})`
        : (r.data.error || `failed (${r.status})`);
      if (r.status === 202) el.text.value = '';
    } catch {
      el.sendResult.textContent = 'the service is not reachable';
    }
  });

  // ---- start ----------------------------------------------------------------

  (async () => {
    try {
      const r = await api('GET', '/me');
      if (r.status === 200) loggedIn(r.data.user);
      else showLogin();
    } catch {
      showLogin('the service is not reachable');
    }
  })();
})();
