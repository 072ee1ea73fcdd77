// herald chat page: plain JavaScript, no build step, no dependencies.
//
// The server speaks JSON text messages (see the chat example's package
// documentation): a "history" on joining, then "msg", "join" and "leave"
// events with a per-room id, and "error" for a refused message.
'use strict';

(() => {
  const MAX_TEXT_BYTES = 2000;
  const MAX_LOG = 500; // entries kept on screen
  const ROOMS_REFRESH_MS = 5000;
  // Reconnection after a lost connection: full-jitter exponential backoff,
  // reset by a connection that stays up for STABLE_MS.
  const BACKOFF_BASE_MS = 250;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_CAP_MS = 10000;
  const STABLE_MS = 5000;
  const ROOM_RE = /^[a-z0-9-]{1,32}$/;
  // The server's rule: printable characters (letters, marks, numbers,
  // punctuation, symbols, ASCII space), 1 to 24 of them, no space at either end.
  const NICK_RE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]+$/u;

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'), joinForm: $('join-form'), nick: $('nick'), room: $('room'),
    joinError: $('join-error'), rooms: $('rooms'), noRooms: $('no-rooms'),
    membersPanel: $('members-panel'), memberCount: $('member-count'), members: $('members'),
    roomTitle: $('room-title'), roomSub: $('room-sub'), leave: $('leave'), log: $('log'),
    composer: $('composer'), text: $('text'), count: $('count'), send: $('send'),
  };
  const encoder = new TextEncoder();

  // ---- session state --------------------------------------------------------

  let ws = null;
  let joined = null; // {room, nick} while the user wants to be in a room
  let opened = false; // the current socket reached open
  let liveOnce = false; // some socket of this join reached open
  let rejoining = false; // the next history follows a lost connection
  let lastId = 0; // latest room event shown
  let attempt = 0;
  let retryAt = 0;
  let retryTimer = 0;
  let stableTimer = 0;
  let countdown = 0;
  const members = new Map(); // lower-cased nick -> nick
  let memberTotal = 0;

  function validNick(nick) {
    return NICK_RE.test(nick) && nick.trim() === nick && [...nick].length <= 24;
  }

  function join(room, nick) {
    el.joinError.textContent = '';
    if (!validNick(nick)) {
      el.joinError.textContent = 'A nickname is 1 to 24 printable characters, without spaces at either end.';
      el.nick.focus();
      return;
    }
    if (!ROOM_RE.test(room)) {
      el.joinError.textContent = 'A room name is 1 to 32 characters: a–z, 0–9 or “-”.';
      el.room.focus();
      return;
    }
    try { localStorage.setItem('herald-chat-nick', nick); } catch { /* private mode */ }
    leave(false);
    joined = { room, nick };
    attempt = 0;
    liveOnce = false;
    rejoining = false;
    history.replaceState(null, '', '?room=' + encodeURIComponent(room));
    el.log.replaceChildren();
    lastId = 0;
    connect();
  }

  function connect() {
    clearTimeout(retryTimer);
    const { room, nick } = joined;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      '/ws?room=' + encodeURIComponent(room) + '&nick=' + encodeURIComponent(nick);
    setState('connecting', 'joining #' + room + '…');
    const sock = new WebSocket(url);
    ws = sock;
    opened = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      setState('live', 'live in #' + room + ' as ' + nick);
      stableTimer = setTimeout(() => { attempt = 0; }, STABLE_MS);
      showRoom();
      refreshRooms();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      onEvent(m);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      clearTimeout(stableTimer);
      onClosed(ev, opened);
    };
  }

  // What a close means: the server refused us (stay out, say why), or the
  // connection was lost (come back by ourselves).
  function onClosed(ev, wasOpen) {
    if (!joined) return;
    const why = ev.reason || { 1001: 'the server went away', 1006: 'connection lost', 1009: 'message too big' }[ev.code] || '';
    const refused = ev.code === 1008 || ev.code === 1003 || ev.code === 1009 || ev.code === 1002 || ev.code === 1007;
    if (refused || !liveOnce) {
      let text = refused ? `Closed by the server: ${why} (${ev.code}).`
        : `Could not join #${joined.room}: the server refused or is unreachable.`;
      if (ev.code === 1008 && /nick taken/.test(ev.reason)) {
        text = `“${joined.nick}” is taken in #${joined.room}: pick another nickname.`;
      }
      joined = null;
      showLobby();
      el.joinError.textContent = text;
      setState('closed', `closed ${ev.code}${why ? ' · ' + why : ''}`);
      return;
    }
    if (wasOpen) {
      notice('system', `Disconnected (${ev.code}${why ? ' ' + why : ''}). Reconnecting…`);
      rejoining = true;
    }
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * BACKOFF_FACTOR ** attempt);
    const delay = Math.random() * ceiling;
    attempt++;
    retryAt = performance.now() + delay;
    retryTimer = setTimeout(connect, delay);
    setState('reconnecting', '');
    tickCountdown();
  }

  function tickCountdown() {
    clearInterval(countdown);
    const paint = () => {
      if (el.status.dataset.state !== 'reconnecting') {
        clearInterval(countdown);
        return;
      }
      const s = Math.max(0, retryAt - performance.now()) / 1000;
      el.status.textContent = `reconnecting in ${s.toFixed(1)} s`;
    };
    paint();
    countdown = setInterval(paint, 200);
  }

  function leave(toLobby = true) {
    const sock = ws;
    ws = null;
    joined = null;
    clearTimeout(retryTimer);
    clearTimeout(stableTimer);
    if (sock) sock.close(1000, 'bye');
    if (toLobby) {
      showLobby();
      setState('idle', 'not connected');
      history.replaceState(null, '', location.pathname);
      refreshRooms();
    }
  }

  function setState(state, text) {
    el.status.dataset.state = state;
    if (text) el.status.textContent = text;
    if (state === 'live') liveOnce = true;
    const canSend = state === 'live';
    el.text.disabled = !canSend;
    updateCount();
  }

  // ---- events ---------------------------------------------------------------

  function onEvent(m) {
    switch (m.type) {
      case 'history': {
        el.log.replaceChildren();
        lastId = m.id || 0;
        members.clear();
        for (const n of m.nicks || []) members.set(n.toLowerCase(), n);
        memberTotal = m.members || members.size;
        paintMembers();
        const shown = (m.messages || []).length;
        const omitted = m.omitted || 0;
        // The server rations history bytes while it is busy: it sends the
        // newest messages that fit and counts the rest.
        if (omitted > 0) notice('system', `${omitted} earlier message${omitted === 1 ? '' : 's'} of #${m.room} not sent: the server is busy.`);
        for (const msg of m.messages || []) showMessage(msg, true);
        if (shown === 0 && omitted === 0) notice('system', `Welcome to #${m.room}. No messages yet.`);
        else if (shown > 0) notice('system', `Above: the last ${shown} message${shown === 1 ? '' : 's'} of #${m.room}.`);
        if (rejoining) notice('system', 'Reconnected.');
        rejoining = false;
        break;
      }
      case 'msg':
        if (!fresh(m)) return;
        showMessage(m, false);
        break;
      case 'join':
        if (!fresh(m)) return;
        members.set(m.nick.toLowerCase(), m.nick);
        memberTotal = m.members;
        paintMembers();
        notice('join', joined && m.nick === joined.nick ? `You joined #${m.room} as ${m.nick}.` : `${m.nick} joined.`);
        break;
      case 'leave':
        if (!fresh(m)) return;
        members.delete(m.nick.toLowerCase());
        memberTotal = m.members;
        paintMembers();
        notice('leave', `${m.nick} left.`);
        break;
      case 'error':
        notice('error', m.error);
        break;
    }
  }

  // Events up to the history's id were already accounted for by it.
  function fresh(m) {
    if (typeof m.id === 'number' && m.id <= lastId) return false;
    if (typeof m.id === 'number') lastId = m.id;
    return true;
  }

  // ---- rendering ------------------------------------------------------------

  function nearBottom() {
    return el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 80;
  }

  function append(li) {
    const stick = nearBottom();
    el.log.append(li);
    while (el.log.childElementCount > MAX_LOG) el.log.firstElementChild.remove();
    if (stick) el.log.scrollTop = el.log.scrollHeight;
  }

  function hue(s) {
    let h = 0;
    for (const ch of s.toLowerCase()) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 360;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

  function showMessage(m, old) {
    const li = document.createElement('li');
    li.className = 'msg' + (old ? ' old' : '') + (joined && m.nick === joined.nick ? ' mine' : '');
    li.dataset.type = 'msg';
    const time = document.createElement('time');
    const d = new Date(m.ts);
    time.dateTime = d.toISOString();
    time.textContent = timeFmt.format(d);
    const nick = document.createElement('span');
    nick.className = 'nick';
    nick.textContent = m.nick;
    nick.style.color = `hsl(${hue(m.nick)} 70% 70%)`;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(time, nick, text);
    append(li);
  }

  function notice(kind, text) {
    const li = document.createElement('li');
    li.className = 'notice ' + kind;
    li.dataset.type = kind;
    li.textContent = text;
    append(li);
  }

  function paintMembers() {
    el.memberCount.textContent = String(memberTotal);
    const names = [...members.values()].sort((a, b) => a.localeCompare(b));
    const items = names.map((n) => {
      const li = document.createElement('li');
      const dot = document.createElement('i');
      dot.style.background = `hsl(${hue(n)} 70% 62%)`;
      li.append(dot, n);
      if (joined && n === joined.nick) li.classList.add('me');
      return li;
    });
    if (memberTotal > names.length) {
      const li = document.createElement('li');
      li.className = 'more';
      li.textContent = `and ${memberTotal - names.length} more`;
      items.push(li);
    }
    el.members.replaceChildren(...items);
    const current = joined && el.rooms.querySelector(`button[data-room="${joined.room}"] small`);
    if (current) current.textContent = String(memberTotal);
    if (joined) el.roomSub.textContent = `${memberTotal} member${memberTotal === 1 ? '' : 's'} · you are ${joined.nick}`;
  }

  function showRoom() {
    el.roomTitle.textContent = '#' + joined.room;
    el.leave.hidden = false;
    el.membersPanel.hidden = false;
    el.text.disabled = false;
    el.text.focus();
  }

  function showLobby() {
    el.roomTitle.textContent = 'No room';
    el.roomSub.textContent = 'Pick a nickname and a room to start.';
    el.leave.hidden = true;
    el.membersPanel.hidden = true;
    el.text.disabled = true;
    members.clear();
    updateCount();
  }

  function updateCount() {
    const n = encoder.encode(el.text.value).length;
    el.count.textContent = n > MAX_TEXT_BYTES - 200 ? `${n} / ${MAX_TEXT_BYTES}` : '';
    el.count.classList.toggle('over', n > MAX_TEXT_BYTES);
    el.send.disabled = el.text.disabled || n === 0 || n > MAX_TEXT_BYTES || el.text.value.trim() === '';
  }

  // ---- rooms list -------------------------------------------------------------

  async function refreshRooms() {
    try {
      const r = await fetch('/rooms', { cache: 'no-store' });
      if (!r.ok) return;
      const list = await r.json();
      const items = list.map(({ name, members: n }) => {
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.room = name;
        const label = document.createElement('span');
        label.textContent = '#' + name;
        const count = document.createElement('small');
        count.textContent = String(n);
        b.append(label, count);
        if (joined && joined.room === name) b.classList.add('current');
        b.addEventListener('click', () => {
          el.room.value = name;
          if (el.nick.value) join(name, el.nick.value);
          else el.nick.focus();
        });
        li.append(b);
        return li;
      });
      el.rooms.replaceChildren(...items);
      el.noRooms.hidden = items.length > 0;
    } catch {
      // The server is away; the status says so.
    }
  }

  // ---- wiring -----------------------------------------------------------------

  el.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    join(el.room.value.trim().toLowerCase(), el.nick.value);
  });
  el.leave.addEventListener('click', () => leave(true));
  el.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = el.text.value;
    if (!ws || ws.readyState !== WebSocket.OPEN || el.send.disabled) return;
    ws.send(JSON.stringify({ type: 'msg', text }));
    el.text.value = '';
    updateCount();
  });
  el.text.addEventListener('input', updateCount);
  setInterval(refreshRooms, ROOMS_REFRESH_MS);

  const params = new URLSearchParams(location.search);
  let savedNick = '';
  try { savedNick = localStorage.getItem('herald-chat-nick') || ''; } catch { /* private mode */ }
  el.nick.value = params.get('nick') || savedNick;
  el.room.value = params.get('room') || 'lobby';
  refreshRooms();
  if (params.get('room') && params.get('nick')) join(el.room.value, el.nick.value);
  else (el.nick.value ? el.room : el.nick).focus();
})();
