import { OPTIONS } from './options.js';
import { call } from './state.js';
import { logEvent } from './ui.js';

// Dynacast: the server tells us which simulcast layers anyone receives; stop encoding the others.
// With SVC (one encoding, OPTIONS.svc) it says how many spatial layers anyone needs (`spatial`): the
// encoding keeps that many, its top one at the size it had (L3T3_KEY asked for 2: L2T3_KEY at half
// the resolution, whose layers are the lower two of L3T3_KEY's).
// Also re-applied by p2p.js when our media stops or starts going through the SFU.
export async function applyDynacast(msg) {
  const s = call;
  if (!s) return;
  s.dynacast.set(msg.track, msg); // may come before our publish answer; replayed after it
  if (!s.videoTx || msg.track !== s.published.video) return;
  // One setParameters at a time, always with the latest wish: a second call while the first is
  // pending fails (its getParameters transaction is stale), and the server does not repeat
  // itself, so a lost update would leave a layer off for good.
  s.dynacastWanted = msg;
  if (s.dynacastBusy) return;
  s.dynacastBusy = true;
  try {
    while (s.dynacastWanted && call === s) {
      const want = s.dynacastWanted;
      s.dynacastWanted = null;
      const sender = s.videoTx.sender;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      // while our media goes peer to peer (p2p.js) no layer goes to the SFU: a sender without a
      // track still sends padding on an active encoding
      const active = new Set(Array.isArray(want.active) && !s.sfuIdle ? want.active : []);
      for (const e of params.encodings) {
        e.active = e.rid ? active.has(e.rid) : active.size > 0;
        if (e.active && !e.rid && Number.isInteger(want.spatial)) Object.assign(e, spatialMode(want.spatial));
      }
      try {
        await sender.setParameters(params);
        const svc = Number.isInteger(want.spatial) && active.size ? ` (${want.spatial} spatial)` : '';
        logEvent(`dynacast: sending ${[...active].join(', ') || 'no layers'}${svc}`);
      } catch (e) {
        want.tries = (want.tries || 0) + 1;
        logEvent(`dynacast failed (${e.message})${want.tries < 5 ? '; retrying' : ''}`, 'error');
        if (!s.dynacastWanted && want.tries < 5) s.dynacastWanted = want;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  } finally {
    s.dynacastBusy = false;
  }
}

// The SVC encoding's mode and scale for `spatial` of OPTIONS.svc's spatial layers (all of them when
// it names no SVC mode): L1 modes have no _KEY form.
export function spatialMode(spatial) {
  const m = /^L([1-3])T([1-3])(_KEY)?$/.exec(OPTIONS.svc || '');
  if (!m) return {};
  const full = Number(m[1]);
  const n = Math.max(1, Math.min(full, spatial));
  return {
    scalabilityMode: n > 1 ? `L${n}T${m[2]}${m[3] || ''}` : `L1T${m[2]}`,
    scaleResolutionDownBy: 2 ** (full - n),
  };
}
