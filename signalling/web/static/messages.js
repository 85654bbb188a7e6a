import { applyDynacast } from './dynacast.js';
import { e2eeLeft } from './e2ee.js';
import { onP2p, onP2pSignal } from './p2p.js';
import { B, call, hooks, setSig } from './state.js';
import { highlightSpeaker, onSubscriberOffer, refreshFlags } from './subscribe.js';
import { teardown } from './teardown.js';
import { badge, tileForTrack } from './tiles.js';
import { logEvent, showError } from './ui.js';

const MAX_EVENTS = 2000;

// ---------------------------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------------------------
export function onMessage(msg) {
  B.events.push(msg);
  if (B.events.length > MAX_EVENTS) B.events.splice(0, B.events.length - MAX_EVENTS);
  const s = call;
  if (!s) return;
  const who = (id) => (s.participants.get(id) || {}).name || (s.me && s.me.id === id ? 'you' : id);
  switch (msg.type) {
    case 'offer':
      if (msg.target === 'subscriber') onSubscriberOffer(msg);
      break;
    case 'p2p':
      onP2p(s, msg);
      break;
    case 'p2p_signal':
      onP2pSignal(s, msg);
      break;
    case 'participant_joined':
      s.participants.set(msg.participant.id, msg.participant);
      logEvent(`${msg.participant.name || msg.participant.id} joined`, 'join');
      break;
    case 'participant_left':
      logEvent(`${who(msg.participant)} left${msg.reason && msg.reason !== 'left' ? ` (${msg.reason})` : ''}`, 'leave');
      s.participants.delete(msg.participant);
      e2eeLeft(s, msg.participant);
      break;
    case 'presence': {
      // a large room's joins and leaves of the last second, together (docs/protocol.md): applied as
      // a set update, leaves first; it may name you, or someone `joined` already listed
      const left = msg.left || [];
      const joined = (msg.joined || []).filter((p) => !(s.me && s.me.id === p.id));
      if (left.length) logEvent(left.length === 1 ? `${who(left[0].participant)} left` : `${left.length} left`, 'leave');
      for (const e of left) e2eeLeft(s, e.participant);
      for (const e of left) s.participants.delete(e.participant);
      for (const p of joined) s.participants.set(p.id, p);
      if (joined.length) logEvent(joined.length === 1 ? `${joined[0].name || joined[0].id} joined` : `${joined.length} joined`, 'join');
      break;
    }
    case 'track_published':
      s.trackInfo.set(msg.track.track, msg.track);
      break;
    case 'track_unpublished':
      s.trackInfo.delete(msg.track);
      break;
    case 'track_muted': {
      const info = s.trackInfo.get(msg.track);
      if (info) info.muted = msg.muted;
      if (msg.participant !== (s.me && s.me.id)) {
        const kind = info ? info.kind : 'track';
        logEvent(`${who(msg.participant)} ${msg.muted ? 'muted' : 'unmuted'} ${kind === 'audio' ? 'mic' : kind === 'video' ? 'camera' : kind}`);
      }
      refreshFlags(s);
      break;
    }
    case 'active_speaker':
      s.speaker = msg.participant;
      B.activeSpeaker = msg.participant;
      highlightSpeaker(s);
      break;
    case 'subscription': {
      const tile = tileForTrack(s, msg.track);
      if (tile) {
        badge(tile.el, 'layer', msg.layer ? layerLabel(msg.layer) : null);
        badge(tile.el, 'paused', msg.paused ? 'paused' : null);
      }
      break;
    }
    case 'layer_changed': {
      const tile = tileForTrack(s, msg.track);
      // SVC: the spatial layer received (0 lowest), named like simulcast layers
      const label = Number.isInteger(msg.spatial) ? (['low', 'medium', 'high'][msg.spatial] || `spatial ${msg.spatial}`)
        : msg.layer ? layerLabel(msg.layer) : null;
      if (tile) badge(tile.el, 'layer', label);
      break;
    }
    case 'paused': {
      const tile = tileForTrack(s, msg.track);
      if (tile) badge(tile.el, 'paused', msg.paused ? `paused${msg.reason ? ` · ${msg.reason}` : ''}` : null);
      break;
    }
    case 'dynacast':
      applyDynacast(msg);
      break;
    case 'error':
      showError(`${msg.code}: ${msg.message}`);
      logEvent(`error ${msg.code}: ${msg.message}`, 'error');
      break;
    case 'removed':
      if (msg.rejoin && hooks.rejoin) {  // the server lost our media node or worker, or is restarting
        hooks.rejoin(msg.reason);
        break;
      }
      logEvent(`removed from the room: ${msg.reason}`, 'error');
      showError(`You were removed from the room: ${msg.reason}`);
      setSig(null); // the server closes the socket
      teardown('removed');
      break;
    case 'resumed':
      if (msg.ice_servers) s.iceServers = msg.ice_servers;   // for connections made from now on
      if (msg.resync) resync(s, msg.resync, who);
      break;
    case 'left':
      break;
    case 'transport_failed':
      // that connection is over for good (docs/protocol.md "A connection that ends"): say so
      logEvent(`${msg.target} connection ${msg.state}`, 'leave');
      showError(`Your ${msg.target === 'publisher' ? 'sending' : 'receiving'} connection ${msg.state}. ` +
        'Leave and join again to continue.');
      break;
    default:
      break;
  }
}

// The room as it is now, after a resume that lost messages (our signalling server died): it
// replaces what we knew of the others and their tracks; our own tracks stay as they are.
function resync(s, room, who) {
  const now = new Map(room.participants.map((p) => [p.id, p]));
  for (const id of [...s.participants.keys()]) {
    if (!now.has(id)) { logEvent(`${who(id)} left`, 'leave'); s.participants.delete(id); e2eeLeft(s, id); }
  }
  for (const [id, p] of now) {
    if (!s.participants.has(id)) logEvent(`${p.name || id} joined`, 'join');
    s.participants.set(id, p);
  }
  const mine = (info) => s.me && info.participant === s.me.id;
  for (const [id, info] of [...s.trackInfo]) if (!mine(info)) s.trackInfo.delete(id);
  for (const info of room.tracks) s.trackInfo.set(info.track, info);
  logEvent('reconnected through another server: the room was brought up to date');
  refreshFlags(s);
}

function layerLabel(rid) {
  return { q: 'low', h: 'medium', f: 'high' }[rid] || rid;
}
