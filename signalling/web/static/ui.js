// UI plumbing: connection state, the room header, the event log, the error banner.
import { B } from './state.js';

export const $ = (sel) => document.querySelector(sel);

export function setState(state) {
  B.state = state;
  document.body.dataset.state = state;
  const reconnecting = $('#reconnecting');
  if (reconnecting) reconnecting.hidden = state !== 'reconnecting';
  updateStatusDot();
}

export function updateStatusDot() {
  const dot = $('#status-dot');
  if (!dot) return;
  const states = [B.publisherState, B.subscriberState].filter(Boolean);
  let cls = 'pending';
  if (B.state !== 'joined') cls = 'down';
  else if (states.includes('failed')) cls = 'down';
  else if (states.length && states.every((x) => x === 'connected')) cls = 'up';
  dot.className = `status-dot ${cls}`;
  dot.title = `signalling: ${B.state}; publisher: ${B.publisherState || '-'}; subscriber: ${B.subscriberState || '-'}`;
}

export function showRoom(room) {
  $('#join-view').hidden = true;
  $('#room-view').hidden = false;
  $('#controls').hidden = false;
  $('#room-info').hidden = false;
  $('#room-label').textContent = room;
  for (const [id, kind] of [['#toggle-mic', 'audio'], ['#toggle-camera', 'video']]) {
    const btn = $(id);
    btn.setAttribute('aria-pressed', 'false');
    btn.classList.remove('off');
    btn.querySelector('.ctl-text').textContent = kind === 'audio' ? 'Mic on' : 'Camera on';
  }
}

export function logEvent(text, kind = 'info') {
  B.log.push({ at: Date.now(), kind, text });
  const list = $('#event-log');
  if (!list) return;
  const li = document.createElement('li');
  li.className = `ev ${kind}`;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  li.append(time, document.createTextNode(' ' + text));
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

export function showError(text) {
  B.lastError = text;
  $('#error-text').textContent = text;
  $('#error-banner').hidden = false;
}

export function hideError() { $('#error-banner').hidden = true; }

export function withQuery(params) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(params)) q.set(k, v);
  q.delete('autojoin');
  return `${location.pathname}?${q}`;
}
