// The client's screens and state: rooms, messages, typing and presence, fed by REST and the socket.
import { ApiError, Session, describe } from './api.js';
import { ChatSocket } from './socket.js';

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const TYPING_SHOWN_MS = 4000;
const TYPING_SENT_EVERY_MS = 2000;

let session;
let socket = null;
let me = null;
let current = null;
let lastTypingSent = 0;
/** room id → { room, messages: Map seq→message, loaded, hasOlder, online: Set, typing: Map, unread } */
const rooms = new Map();
/** client_msg_id → { room_id, text?, name? } of messages sent and not acked yet */
const pending = new Map();
/** file id → Promise of an object URL, so a re-render does not fetch an image again */
const images = new Map();

function banner(text) {
  $('banner').textContent = text;
  $('banner').hidden = !text;
}

function fail(err) {
  banner(describe(err));
}

async function config() {
  const resp = await fetch('/config.json');
  const cfg = resp.ok ? await resp.json() : {};
  const params = new URLSearchParams(location.search);
  const urls = cfg.socket_urls || [];
  // `?socket=N` picks one of the configured nodes (tests put two users on two nodes).
  const chosen = urls[Number(params.get('socket') || 0) % Math.max(urls.length, 1)] || urls[0];
  const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  return { socketUrl: chosen || wsBase, filesBase: cfg.files_url || '' };
}

async function start() {
  const cfg = await config();
  session = new Session(cfg.filesBase);
  session.onEnded = (why) => signedOut(why);
  wire(cfg);
  if (!session.signedIn) return signedOut('');
  try {
    await enter(cfg);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signedOut(describe(err));
    fail(err);
  }
}

function signedOut(why) {
  if (socket) socket.stop();
  socket = null;
  me = null;
  current = null;
  rooms.clear();
  pending.clear();
  images.forEach((url) => url.then(URL.revokeObjectURL, () => {}));
  images.clear();
  document.body.classList.remove('in-room');
  $('app').hidden = true;
  $('auth').hidden = false;
  $('auth-error').textContent = why;
  $('password').value = '';
}

async function enter(cfg) {
  me = await session.get('/users/me');
  $('me').textContent = me.username;
  $('auth').hidden = true;
  $('app').hidden = false;
  banner('');
  await loadRooms();
  socket = new ChatSocket(cfg.socketUrl, {
    token: () => session.token(),
    onFrame,
    onStatus,
    onEnded: (why) => {
      session.forget();
      signedOut(why);
    },
  });
  window.chat = { goOffline: () => socket.goOffline(), goOnline: () => socket.goOnline() };
  socket.connect();
}

// ---- rooms

async function loadRooms() {
  let cursor = null;
  do {
    const page = await session.get('/rooms?limit=100' + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''));
    page.items.forEach(addRoom);
    cursor = page.next_cursor;
  } while (cursor);
  renderRooms();
}

function addRoom(room) {
  const known = rooms.get(room.id);
  if (known) {
    known.room = room;
    return known;
  }
  const entry = { room, messages: new Map(), loaded: false, hasOlder: false, online: new Set(), typing: new Map(), unread: 0 };
  rooms.set(room.id, entry);
  return entry;
}

function renderRooms() {
  const list = $('rooms');
  list.replaceChildren();
  const sorted = [...rooms.values()].sort((a, b) => a.room.name.localeCompare(b.room.name));
  for (const entry of sorted) {
    const li = document.createElement('li');
    li.dataset.id = entry.room.id;
    li.classList.toggle('current', entry.room.id === current);
    const name = document.createElement('span');
    name.textContent = entry.room.name;
    li.append(name);
    if (entry.room.visibility === 'public') {
      const tag = document.createElement('small');
      tag.textContent = 'public';
      li.append(tag);
    }
    if (entry.unread) {
      const badge = document.createElement('span');
      badge.className = 'unread';
      badge.textContent = entry.unread;
      li.append(badge);
    }
    li.addEventListener('click', () => openRoom(entry.room.id));
    list.append(li);
  }
}

async function openRoom(id) {
  current = id;
  const entry = rooms.get(id);
  entry.unread = 0;
  document.body.classList.add('in-room');
  $('no-room').hidden = true;
  $('room').hidden = false;
  $('room-title').textContent = entry.room.name;
  $('typing').textContent = '';
  renderRooms();
  renderMembers();
  renderMessages({ bottom: true });
  try {
    const [page] = await Promise.all([
      entry.loaded ? null : session.get(`/rooms/${id}/messages?limit=${PAGE}`),
      loadPresence(id),
    ]);
    if (page) {
      page.items.forEach((m) => entry.messages.set(m.seq, m));
      entry.hasOlder = page.has_more;
      entry.loaded = true;
    }
    if (current === id) renderMessages({ bottom: true });
  } catch (err) {
    fail(err);
  }
}

async function loadOlder() {
  const entry = rooms.get(current);
  const oldest = Math.min(...entry.messages.keys());
  const page = await session.get(`/rooms/${current}/messages?limit=${PAGE}&before=${oldest}`);
  page.items.forEach((m) => entry.messages.set(m.seq, m));
  entry.hasOlder = page.has_more;
  renderMessages({ keepPosition: true });
}

function renderMembers() {
  const entry = rooms.get(current);
  if (!entry) return;
  const list = $('members');
  list.replaceChildren();
  for (const m of entry.room.members) {
    const li = document.createElement('li');
    li.textContent = m.username;
    li.dataset.user = m.username;
    li.classList.toggle('online', entry.online.has(m.user_id));
    list.append(li);
  }
}

/** Reads a room again after its members changed; a newcomer may have been online all along. */
async function refreshRoom(id) {
  const room = await session.get(`/rooms/${id}`);
  addRoom(room);
  renderRooms();
  if (id === current) await loadPresence(id);
}

async function loadPresence(id) {
  const presence = await session.get(`/rooms/${id}/presence`);
  const entry = rooms.get(id);
  if (!entry) return;
  entry.online = new Set(presence.online);
  if (id === current) renderMembers();
}

function dropRoom(id) {
  rooms.delete(id);
  if (current === id) {
    current = null;
    $('room').hidden = true;
    $('no-room').hidden = false;
    document.body.classList.remove('in-room');
  }
  renderRooms();
}

// ---- messages

let renderSoon = null;

/** Renders the open room once for a burst of frames (a sync brings up to 1000). */
function scheduleRender() {
  if (renderSoon) return;
  renderSoon = setTimeout(() => {
    renderSoon = null;
    renderMessages();
    renderTyping();
  }, 30);
}

/** Re-renders the open room; stays at the bottom when the reader was there, or when `bottom`. */
function renderMessages({ keepPosition = false, bottom = false } = {}) {
  const entry = rooms.get(current);
  if (!entry) return;
  const box = $('messages-box');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const list = $('messages');
  list.replaceChildren();
  const seqs = [...entry.messages.keys()].sort((a, b) => a - b);
  for (const seq of seqs) list.append(messageItem(entry.messages.get(seq)));
  for (const [id, p] of pending) {
    if (p.room_id !== current) continue;
    const li = messageItem({ sender: me, text: p.text ?? p.name, kind: 'text' });
    li.classList.add(p.failed ? 'failed' : 'pending');
    li.dataset.pending = id;
    list.append(li);
  }
  $('older').hidden = !entry.hasOlder;
  if (keepPosition) box.scrollTop = box.scrollHeight - fromBottom;
  else if (atBottom || bottom) box.scrollTop = box.scrollHeight;
}

function messageItem(m) {
  const li = document.createElement('li');
  if (m.seq) li.dataset.seq = m.seq;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = m.sender.username;
  li.append(who);
  if (m.sent_at) {
    const time = document.createElement('time');
    time.className = 'time';
    time.dateTime = m.sent_at;
    time.textContent = new Date(m.sent_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    li.append(time);
  }
  const body = document.createElement('div');
  body.className = 'text';
  if (m.kind === 'image' && m.file) {
    const img = document.createElement('img');
    img.alt = m.file.name;
    imageUrl(m.file).then((url) => { img.src = url; }, () => { body.textContent = `${m.file.name} (not available)`; });
    body.append(img);
  } else if (m.file) {
    body.append(downloadLink(m.file));
  } else if (m.deleted_at) {
    body.className = 'text deleted';
    body.textContent = 'message deleted';
  } else {
    body.textContent = m.text;
  }
  if (m.edited_at && !m.deleted_at) {
    const edited = document.createElement('span');
    edited.className = 'edited';
    edited.textContent = ' (edited)';
    body.append(edited);
  }
  li.append(body);
  if (m.reactions && m.reactions.length) {
    const reactions = document.createElement('div');
    reactions.className = 'reactions';
    reactions.textContent = m.reactions.map((r) => `${r.emoji} ${r.count}`).join('  ');
    li.append(reactions);
  }
  return li;
}

/** A `message_edited`, `message_deleted`, `reaction_added` or `reaction_removed` frame: the
 * change to the message `target_seq`, applied as history would show it. Replaying one again
 * (after a resume) changes nothing. */
function applyChange(frame) {
  const entry = rooms.get(frame.room_id);
  const m = entry && entry.messages.get(frame.target_seq);
  if (!m || m.deleted_at) return;
  if (frame.type === 'message_edited') {
    m.text = frame.text;
    m.edited_at = frame.at;
  } else if (frame.type === 'message_deleted') {
    delete m.text;
    delete m.file;
    delete m.reactions;
    m.deleted_at = frame.at;
  } else {
    const reactions = (m.reactions || []).map((r) => ({ ...r, users: [...r.users] }));
    let reaction = reactions.find((r) => r.emoji === frame.emoji);
    if (frame.type === 'reaction_added') {
      if (!reaction) {
        reaction = { emoji: frame.emoji, count: 0, users: [] };
        reactions.push(reaction);
      }
      if (!reaction.users.includes(frame.user.id)) reaction.users.push(frame.user.id);
    } else if (reaction) {
      reaction.users = reaction.users.filter((id) => id !== frame.user.id);
    }
    m.reactions = reactions.filter((r) => r.users.length).map((r) => ({ ...r, count: r.users.length }));
  }
  if (frame.room_id === current) scheduleRender();
}

function imageUrl(file) {
  if (!images.has(file.id)) images.set(file.id, session.fileBlob(file.url).then((blob) => URL.createObjectURL(blob)));
  return images.get(file.id);
}

function downloadLink(file) {
  const a = document.createElement('a');
  a.textContent = `${file.name} (${Math.ceil(file.size / 1024)} KiB)`;
  a.href = session.filesBase + file.url;
  a.download = file.name;
  // The token goes in only as the link is followed, so it is fresh and never shown.
  a.addEventListener('click', async (e) => {
    e.preventDefault();
    const url = new URL(session.filesBase + file.url, location.href);
    url.searchParams.set('access_token', await session.token());
    const go = document.createElement('a');
    go.href = url;
    go.download = file.name;
    go.click();
  });
  return a;
}

function newId() {
  return crypto.randomUUID();
}

function send(frame, shown) {
  pending.set(frame.client_msg_id, { ...shown, room_id: frame.room_id, frame });
  socket.send(frame);
  renderMessages({ bottom: true });
}

/** Sends again, with the same ids, what the server has not acked: a resend acks the original. */
function resendPending() {
  for (const p of pending.values()) if (!p.failed) socket.send(p.frame);
}

function sendText(text) {
  send({ type: 'send', room_id: current, client_msg_id: newId(), text }, { text });
}

async function sendFile(file) {
  const roomId = current;
  try {
    const uploaded = await session.upload(roomId, file);
    send({ type: 'send', room_id: roomId, client_msg_id: newId(), file_id: uploaded.id }, { name: file.name });
  } catch (err) {
    fail(err);
  }
}

function store(message) {
  const entry = rooms.get(message.room_id);
  if (!entry) return;
  const fresh = !entry.messages.has(message.seq);
  entry.messages.set(message.seq, message);
  entry.typing.delete(message.sender.id);
  if (message.room_id === current) {
    scheduleRender();
  } else if (fresh && message.sender.id !== me.id) {
    entry.unread += 1;
    renderRooms();
  }
}

// ---- socket

function onStatus(online, why) {
  const status = $('status');
  status.textContent = online ? 'online' : `offline: ${why}, reconnecting…`;
  status.classList.toggle('online', online);
}

function onFrame(frame) {
  switch (frame.type) {
    case 'ready':
      return recover();
    case 'ack':
      pending.delete(frame.client_msg_id);
      return store(frame.message);
    case 'message':
      return store(frame.message);
    case 'message_edited':
    case 'message_deleted':
    case 'reaction_added':
    case 'reaction_removed':
      return applyChange(frame);
    case 'synced':
      return;
    case 'typing':
      return typing(frame);
    case 'presence':
      return presence(frame);
    case 'member_joined':
      if (frame.user.id === me.id) return refreshRoom(frame.room_id).catch(fail);
      if (rooms.has(frame.room_id)) return refreshRoom(frame.room_id).catch(fail);
      return;
    case 'member_left':
      if (frame.user.id === me.id) return dropRoom(frame.room_id);
      if (rooms.has(frame.room_id)) return refreshRoom(frame.room_id).catch(fail);
      return;
    case 'room_deleted':
      return dropRoom(frame.room_id);
    case 'error':
      return socketError(frame);
    default:
      return undefined;
  }
}

/** After every (re)connect: what each open room missed (one `resume`, first, so the server
 * sends each message once and in order), who is online, and what is unacked. */
function recover() {
  const resumed = {};
  for (const [id, entry] of rooms) {
    if (entry.loaded) resumed[id] = Math.max(0, ...entry.messages.keys());
  }
  // Always sent, even empty: the socket was opened with ?resume, so messages wait for it.
  socket.send({ type: 'resume', rooms: resumed });
  resendPending();
  if (current) loadPresence(current).catch(fail);
}

function socketError(frame) {
  const why = {
    rate_limited: 'You are sending too fast: slow down.',
    too_large: 'That is too large to send.',
    quota_exceeded: 'You have used up your storage quota.',
  }[frame.code] || frame.message;
  if (frame.client_msg_id && pending.has(frame.client_msg_id)) {
    const p = pending.get(frame.client_msg_id);
    // Rate limited is worth a retry on the next reconnect; the rest would fail again.
    if (frame.code !== 'rate_limited' && frame.code !== 'internal') p.failed = true;
    renderMessages();
  }
  banner(why);
}

function typing(frame) {
  const entry = rooms.get(frame.room_id);
  if (!entry) return;
  clearTimeout(entry.typing.get(frame.user.id)?.timer);
  const timer = setTimeout(() => {
    entry.typing.delete(frame.user.id);
    if (frame.room_id === current) renderTyping();
  }, TYPING_SHOWN_MS);
  entry.typing.set(frame.user.id, { name: frame.user.username, timer });
  if (frame.room_id === current) renderTyping();
}

function renderTyping() {
  const entry = rooms.get(current);
  const names = entry ? [...entry.typing.values()].map((t) => t.name) : [];
  $('typing').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
}

function presence(frame) {
  const entry = rooms.get(frame.room_id);
  if (!entry) return;
  for (const id of frame.online) entry.online.add(id);
  for (const id of frame.offline) entry.online.delete(id);
  renderMembers();
}

// ---- forms

function wire(cfg) {
  const credentials = () => [$('username').value.trim(), $('password').value];
  const authenticate = async (register) => {
    $('auth-error').textContent = '';
    const [username, password] = credentials();
    if (!$('auth-form').reportValidity()) return;
    try {
      if (register) await session.register(username, password);
      await session.login(username, password);
      await enter(cfg);
    } catch (err) {
      $('auth-error').textContent = describe(err);
    }
  };
  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    authenticate(false);
  });
  $('register').addEventListener('click', () => authenticate(true));
  $('logout').addEventListener('click', () => session.logout().catch(() => {}).finally(() => signedOut('')));

  $('create-room').addEventListener('submit', async (e) => {
    e.preventDefault();
    const visibility = $('room-public').checked ? 'public' : 'private';
    try {
      const room = await session.post('/rooms', { name: $('room-name').value.trim(), visibility });
      $('room-name').value = '';
      addRoom(room);
      renderRooms();
      openRoom(room.id);
    } catch (err) {
      fail(err);
    }
  });

  $('browse').addEventListener('click', async () => {
    try {
      const page = await session.get('/rooms/public?limit=100');
      const list = $('public-rooms');
      list.replaceChildren();
      for (const room of page.items.filter((r) => !rooms.has(r.id))) {
        const li = document.createElement('li');
        li.textContent = room.name;
        const join = document.createElement('button');
        join.className = 'small';
        join.textContent = 'Join';
        join.addEventListener('click', async () => {
          try {
            addRoom(await session.post(`/rooms/${room.id}/join`));
            li.remove();
            renderRooms();
            openRoom(room.id);
          } catch (err) {
            fail(err);
          }
        });
        li.append(join);
        list.append(li);
      }
      if (!list.children.length) list.textContent = 'No other public rooms.';
    } catch (err) {
      fail(err);
    }
  });

  $('invite').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      addRoom(await session.post(`/rooms/${current}/members`, { username: $('invite-name').value.trim() }));
      $('invite-name').value = '';
      renderMembers();
    } catch (err) {
      fail(err);
    }
  });

  $('leave').addEventListener('click', async () => {
    try {
      await session.post(`/rooms/${current}/leave`);
      dropRoom(current);
    } catch (err) {
      fail(err);
    }
  });

  $('back').addEventListener('click', () => document.body.classList.remove('in-room'));
  $('older').addEventListener('click', () => loadOlder().catch(fail));

  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    $('text').value = '';
    sendText(text);
  });
  $('text').addEventListener('input', () => {
    const now = Date.now();
    if (!current || now - lastTypingSent < TYPING_SENT_EVERY_MS) return;
    lastTypingSent = now;
    socket?.send({ type: 'typing', room_id: current });
  });
  $('file').addEventListener('change', () => {
    const file = $('file').files[0];
    $('file').value = '';
    if (file) sendFile(file);
  });
  $('banner').addEventListener('click', () => banner(''));
  window.addEventListener('online', () => socket?.goOnline());
}

start().catch(fail);
