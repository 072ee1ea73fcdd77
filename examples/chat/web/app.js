// herald chat page: plain JavaScript, no build step. It talks to the server
// through herald's JavaScript client (/herald-client.js), which reconnects
// with jittered backoff and resubscribes to the room from the last event it
// saw, so that a page whose connection dropped shows every event it missed,
// once, in order (see the chat example's package documentation).
//
// window.heraldChat keeps what a test needs: {messages, reconnects,
// recovered, resets, live}.
import { Client } from '/herald-client.js';

const MAX_TEXT_BYTES = 2000;
const MAX_LOG = 500; // entries kept on screen
const ROOMS_REFRESH_MS = 5000;
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
const stats = { messages: 0, reconnects: 0, recovered: 0, resets: 0, live: false };
window.heraldChat = stats;

// ---- session state --------------------------------------------------------

let client = null; // the connection to the room, reconnecting by itself
let sub = null; // the room's subscription
let joined = null; // {room, nick} while the user wants to be in a room
let liveOnce = false; // the room was live at least once for this join
let replying = false; // publications now are a subscribe's recovered ones
let replyCount = 0; // of them, how many so far
let reconnecting = false; // the next subscribe follows a lost connection
const members = new Map(); // lower-cased nick -> nick
let memberTotal = 0;

function validNick(nick) {
  return NICK_RE.test(nick) && nick.trim() === nick && [...nick].length <= 24;
}

// seatKey draws the secret that lets this page's reconnect take the place of
// its own dead connection, which the server may not have noticed yet.
function seatKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
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
  liveOnce = false;
  reconnecting = false;
  history.replaceState(null, '', '?room=' + encodeURIComponent(room));
  el.log.replaceChildren();
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
    '/ws?room=' + encodeURIComponent(room) + '&nick=' + encodeURIComponent(nick) + '&key=' + seatKey();
  setState('connecting', 'joining #' + room + '…');
  const c = new Client(url);
  client = c;
  c.on('connected', () => { if (client === c) showRoom(); });
  c.on('message', (ev) => { if (client === c && ev.json) onServerMessage(ev.json); });
  c.on('disconnected', (ev) => { if (client === c) onDisconnected(ev); });
  c.connect();
}

// onServerMessage takes the chat's own messages: the hello (the members, and
// where the room's kept history starts) and error replies.
function onServerMessage(m) {
  switch (m.type) {
    case 'hello':
      members.clear();
      for (const n of m.nicks || []) members.set(n.toLowerCase(), n);
      memberTotal = m.members || members.size;
      paintMembers();
      if (!sub) {
        // A fresh join: from the start of the kept history. Later
        // reconnects resubscribe from the last event seen by themselves.
        sub = client.subscribe(m.topic, {
          since: m.since,
          onPublication: (p) => onEvent(p.data, p.offset),
          onSubscribed: onSubscribed,
          onReset: () => { stats.resets++; },
        });
      }
      replying = true;
      replyCount = 0;
      break;
    case 'error':
      notice('error', m.error);
      break;
  }
}

function onSubscribed({ recovered, wasRecovering }) {
  const got = replyCount;
  replying = false;
  if (!reconnecting) {
    if (!recovered && wasRecovering) notice('system', `The history of #${joined.room} could not be sent: the server is busy.`);
    else if (got <= 1) notice('system', `Welcome to #${joined.room}. Nothing said here lately.`);
    else notice('system', `Above: the last ${got} events of #${joined.room}.`);
  } else if (recovered) {
    stats.recovered += got;
    notice('system', got === 0 ? 'Reconnected: nothing was missed.' : `Reconnected: ${got} missed event${got === 1 ? '' : 's'} recovered.`);
  } else {
    notice('system', 'Reconnected, but what was said meanwhile could not be recovered.');
  }
  reconnecting = false;
  liveOnce = true;
  setState('live', 'live in #' + joined.room + ' as ' + joined.nick);
  refreshRooms();
}

// What a close means: the server refused us (stay out, say why), or the
// connection was lost (the client comes back by itself).
function onDisconnected({ code, reason, willReconnect }) {
  if (!joined) return;
  const why = reason || { 1001: 'the server went away', 1006: 'connection lost', 1009: 'message too big' }[code] || '';
  if (!willReconnect || !liveOnce) {
    let text = liveOnce || willReconnect === false ? `Closed by the server: ${why} (${code}).`
      : `Could not join #${joined.room}: the server refused or is unreachable.`;
    if (code === 1008 && /nick taken/.test(reason)) {
      text = `“${joined.nick}” is taken in #${joined.room}: pick another nickname.`;
    } else if (code === 4501) {
      text = `“${joined.nick}” is now in #${joined.room} from another page.`;
    }
    const c = client;
    client = null;
    sub = null;
    joined = null;
    c.disconnect();
    showLobby();
    el.joinError.textContent = text;
    setState('closed', `closed ${code}${why ? ' · ' + why : ''}`);
    return;
  }
  if (!reconnecting) {
    notice('system', `Disconnected (${code}${why ? ' ' + why : ''}). Reconnecting…`);
    stats.reconnects++;
  }
  reconnecting = true;
  replying = false;
  setState('reconnecting', 'reconnecting…');
}

function leave(toLobby = true) {
  const c = client;
  client = null;
  sub = null;
  joined = null;
  if (c) c.disconnect(1000, 'bye');
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
  stats.live = state === 'live';
  el.text.disabled = state !== 'live';
  updateCount();
}

// ---- events ---------------------------------------------------------------

// onEvent shows one room event. The client drops repeats (by offset), so
// each arrives once, in order; the ones a fresh join recovers are the room's
// past, shown dimmed.
function onEvent(m, offset) {
  if (!m || typeof m !== 'object') return;
  const old = replying && !reconnecting;
  if (replying) replyCount++;
  switch (m.type) {
    case 'msg':
      stats.messages++;
      showMessage(m, old, offset);
      break;
    case 'join':
      members.set(m.nick.toLowerCase(), m.nick);
      memberTotal = m.members;
      paintMembers();
      notice('join', joined && m.nick === joined.nick && !reconnecting ? `You joined #${m.room} as ${m.nick}.` : `${m.nick} joined.`);
      break;
    case 'leave':
      members.delete(m.nick.toLowerCase());
      memberTotal = m.members;
      paintMembers();
      notice('leave', `${m.nick} left.`);
      break;
  }
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

function showMessage(m, old, offset) {
  const li = document.createElement('li');
  li.className = 'msg' + (old ? ' old' : '') + (joined && m.nick === joined.nick ? ' mine' : '');
  li.dataset.type = 'msg';
  if (offset !== undefined) li.dataset.offset = String(offset);
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
  if (!client || client.state !== 'connected' || el.send.disabled) return;
  client.send(JSON.stringify({ type: 'msg', text }));
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
