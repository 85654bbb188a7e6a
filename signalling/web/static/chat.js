// Chat over WebRTC data channels (docs/protocol.md "Data channels: chat and app data").
//
// Two in-band channels on the publish connection, made with it (publish.js `publisherConnection`)
// so they are in its first offer: `reliable` (ordered, reliable: chat) and `lossy` (unordered, no
// retransmissions). We send {"type":"data","topic":"chat","data":text,"id":n}; the server relays it
// to the room (never back to us: our own messages are echoed locally) and answers on the channel
// with `data` (others' messages, replayed history first), `data_lost` and `error` (about one of
// ours, which was not relayed). Everything shown is text: textContent / text nodes only.
//
// window.basement.chat (the test surface; `chat` below):
//   messages  the last MAX_MESSAGES chat messages, received and our own, oldest first:
//             {seq, from, name, identity, topic, data, at, to?, history?} as the server sent them;
//             ours: {own: true, id, from, name, identity, topic, data, at, to?, error?} (`error`:
//             the code the server refused it with)
//   notices   system lines shown in the panel (the last MAX_MESSAGES): {kind: 'error' | 'lost' |
//             'info', text, code? (a server error's), count (a run of the same error is one line)}
//   errors    every `error` the server sent about our messages (the last MAX_ERRORS), as sent
//   other     data messages of other topics (the last MAX_MESSAGES), not shown
//   lost      the total `data_lost` count; ready: the reliable channel is open; unread: messages
//             received while the panel was closed; isOpen: the panel is shown
//   send(text, {to, topic, lossy}) -> id (a number) or null when refused locally (empty, over
//             MAX_BYTES, not connected; the reason is a notice)
//   sendRaw(msg)  send an object (as JSON) or a string as it is, no local checks or echo (tests)
//   open(), close(), toggle()  the panel
import { call } from './state.js';
import { $ } from './ui.js';

export const MAX_MESSAGES = 200;
const MAX_ERRORS = 1000;
// the server's data_max_message_bytes: what goes on the wire (the JSON message), in UTF-8 bytes
export const MAX_BYTES = 16 * 1024;
const WALLET = /^0x[0-9a-fA-F]{40}$/;

export const chat = {
  messages: [],
  notices: [],
  errors: [],
  other: [],
  lost: 0,
  ready: false,
  unread: 0,
  isOpen: false,
  send: (text, opts) => sendChat(text, opts),
  sendRaw: (msg) => sendRaw(msg),
  open: () => setOpen(true),
  close: () => setOpen(false),
  toggle: () => setOpen(!chat.isOpen),
};

const rows = new WeakMap(); // our message entry -> its <li>, to mark it when refused

// e2ee.js: data messages of the e2ee/… topics go to `e2ee` (not to `other`), and `ready` is called
// when the reliable channel opens (its waiting key messages go then)
export const dataHooks = { e2ee: null, ready: null };

// ---------------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------------
// Called once per publish connection, before its first offer.
export function openChannels(s, pc) {
  s.data = {
    reliable: pc.createDataChannel('reliable'),
    lossy: pc.createDataChannel('lossy', { ordered: false, maxRetransmits: 0 }),
    nextId: 1,
  };
  for (const ch of [s.data.reliable, s.data.lossy]) {
    ch.onmessage = (e) => { if (call === s) onChannelMessage(s, e.data); };
  }
  const reliable = s.data.reliable;
  reliable.onopen = () => { if (call === s) setReady(true); };
  reliable.onclose = () => {
    if (call !== s || !chat.ready) return;
    setReady(false);
    notice('info', 'chat disconnected');
  };
}

// A new join: forget the last call's chat.
export function resetChat() {
  chat.messages = [];
  chat.notices = [];
  chat.errors = [];
  chat.other = [];
  chat.lost = 0;
  setReady(false);
  setOpen(false);
  const list = $('#chat-log');
  if (list) list.replaceChildren();
}

// The call ended (teardown.js): its channels closed with its connections.
export function endChat() {
  setReady(false);
}

function setReady(ready) {
  chat.ready = ready;
  if (ready && dataHooks.ready) dataHooks.ready();
  const input = $('#chat-input');
  if (!input) return;
  input.disabled = !ready;
  input.placeholder = ready ? 'Message' : 'Connecting…';
  $('#chat-send').disabled = !ready;
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------
function sendChat(text, { to, topic = 'chat', lossy = false } = {}) {
  const s = call;
  text = String(text ?? '');
  if (!text.trim()) return null;
  const ch = s && s.data && (lossy ? s.data.lossy : s.data.reliable);
  if (!ch || ch.readyState !== 'open') {
    notice('error', 'chat is not connected; message not sent');
    return null;
  }
  const id = s.data.nextId++;
  const msg = { type: 'data', topic, data: text, id };
  if (to && to.length) msg.to = [...to];
  const wire = JSON.stringify(msg);
  const bytes = new TextEncoder().encode(wire).length;
  if (bytes > MAX_BYTES) {
    notice('error', `message too long (${bytes} bytes; at most ${MAX_BYTES}); not sent`);
    return null;
  }
  try {
    ch.send(wire);
  } catch (e) {
    notice('error', `message not sent: ${e.message}`);
    return null;
  }
  if (topic === 'chat') {
    const me = s.me || {};
    const entry = { own: true, id, from: me.id, name: me.name, identity: me.identity, topic, data: text, at: Date.now() };
    if (msg.to) entry.to = msg.to;
    addMessage(entry);
  }
  return id;
}

// A data message {topic, text, to} that is not chat (e2ee.js); false when the channel is not open.
export function sendData({ topic, text, to }) {
  const s = call;
  const ch = s && s.data && s.data.reliable;
  if (!ch || ch.readyState !== 'open') return false;
  ch.send(JSON.stringify(to ? { type: 'data', topic, data: text, to } : { type: 'data', topic, data: text }));
  return true;
}

function sendRaw(msg) {
  const s = call;
  const ch = s && s.data && s.data.reliable;
  if (!ch || ch.readyState !== 'open') return false;
  ch.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Receiving
// ---------------------------------------------------------------------------------------------
function onChannelMessage(s, raw) {
  let msg;
  try { msg = JSON.parse(raw); } catch { return; }
  if (!msg || typeof msg !== 'object') return;
  switch (msg.type) {
    case 'data':
      if (typeof msg.data !== 'string') return;
      if (typeof msg.topic === 'string' && msg.topic.startsWith('e2ee/') && dataHooks.e2ee) { dataHooks.e2ee(msg); return; }
      if (msg.topic !== 'chat') { push(chat.other, msg, MAX_MESSAGES); return; }
      // a replayed message we already have (a channel opened again) is not shown twice
      if (msg.history && chat.messages.some((m) => !m.own && m.seq === msg.seq)) return;
      addMessage(msg);
      if (!chat.isOpen) setUnread(chat.unread + 1);
      break;
    case 'data_lost': {
      const count = Number(msg.count) || 0;
      chat.lost += count;
      notice('lost', `${count} message${count === 1 ? ' was' : 's were'} lost`);
      break;
    }
    case 'error':
      onError(msg);
      break;
    default:
      break;
  }
}

function onError(msg) {
  push(chat.errors, msg, MAX_ERRORS);
  const code = String(msg.code || 'error');
  if (msg.id !== undefined) {
    for (let i = chat.messages.length - 1; i >= 0; i--) {
      const m = chat.messages[i];
      if (m.own && m.id === msg.id) {
        m.error = code;
        const li = rows.get(m);
        if (li) { li.classList.add('failed'); li.title = `not delivered: ${code}`; }
        break;
      }
    }
  }
  // a flood is refused message by message: one line per run of the same error, with a count
  const last = chat.notices[chat.notices.length - 1];
  if (last && last.kind === 'error' && last.code === code && last.li === $('#chat-log').lastChild) {
    last.count += 1;
    last.li.querySelector('.chat-count').textContent = ` (×${last.count})`;
    return;
  }
  notice('error', `${code}: ${msg.message || 'message refused'}`, code);
}

function push(list, item, max) {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

// ---------------------------------------------------------------------------------------------
// The panel
// ---------------------------------------------------------------------------------------------
function addMessage(m) {
  push(chat.messages, m, MAX_MESSAGES);
  const li = document.createElement('li');
  li.className = 'chat-msg' + (m.own ? ' own' : '') + (m.history ? ' history' : '');
  if (m.from) li.dataset.from = String(m.from);
  if (typeof m.seq === 'number') li.dataset.seq = String(m.seq);
  const head = document.createElement('div');
  head.className = 'chat-head';
  const name = document.createElement('span');
  name.className = 'chat-name';
  name.textContent = (m.name ? String(m.name) : String(m.from || '?')) + (m.own ? ' (you)' : '');
  head.append(name);
  if (typeof m.identity === 'string' && WALLET.test(m.identity)) {
    const v = document.createElement('span');
    v.className = 'chat-verified';
    v.title = `signed in with wallet ${m.identity}`;
    v.textContent = '✓';
    head.append(v);
  }
  if (Array.isArray(m.to) && m.to.length) {
    const p = document.createElement('span');
    p.className = 'chat-private';
    p.textContent = 'private';
    head.append(p);
  }
  const time = document.createElement('time');
  const at = Number(m.at) || Date.now();
  time.dateTime = new Date(at).toISOString();
  time.textContent = new Date(at).toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit' });
  head.append(time);
  const text = document.createElement('div');
  text.className = 'chat-text';
  text.textContent = m.data;
  li.append(head, text);
  if (m.own) rows.set(m, li);
  append(li);
}

function notice(kind, text, code) {
  const n = { kind, text, count: 1 };
  if (code) n.code = code;
  const li = document.createElement('li');
  li.className = `chat-notice ${kind}`;
  const count = document.createElement('span');
  count.className = 'chat-count';
  li.append(document.createTextNode(text), count);
  // the DOM node stays off the exposed data (window.basement.chat.notices is read as JSON)
  Object.defineProperty(n, 'li', { value: li, enumerable: false });
  push(chat.notices, n, MAX_MESSAGES);
  append(li);
}

function append(li) {
  const list = $('#chat-log');
  if (!list) return;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  // the panel shows what `chat` holds: the last MAX_MESSAGES messages and notices
  const kind = li.classList.contains('chat-msg') ? 'chat-msg' : 'chat-notice';
  const same = list.getElementsByClassName(kind);
  while (same.length > MAX_MESSAGES) same[0].remove();
  if (atBottom || li.classList.contains('own')) list.scrollTop = list.scrollHeight;
}

function setUnread(n) {
  chat.unread = n;
  const badge = $('#chat-unread');
  if (!badge) return;
  badge.textContent = n > 99 ? '99+' : String(n);
  badge.hidden = n === 0;
  $('#toggle-chat').title = n ? `Show chat (${n} unread)` : (chat.isOpen ? 'Hide chat' : 'Show chat');
}

function setOpen(open) {
  chat.isOpen = open;
  const panel = $('#chat-panel');
  if (!panel) return;
  panel.hidden = !open;
  const btn = $('#toggle-chat');
  btn.setAttribute('aria-pressed', String(open));
  if (open) {
    setUnread(0);
    const list = $('#chat-log');
    list.scrollTop = list.scrollHeight;
    const input = $('#chat-input');
    if (!input.disabled) input.focus();
  }
  btn.title = open ? 'Hide chat' : 'Show chat';
}

// The form: Enter (submit) or Send.
export function wireChat() {
  $('#toggle-chat').addEventListener('click', () => chat.toggle());
  $('#chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('#chat-input');
    if (sendChat(input.value) !== null) input.value = '';
  });
  setReady(false);
}
