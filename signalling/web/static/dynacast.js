import { call } from './state.js';
import { logEvent } from './ui.js';

// Dynacast: the server tells us which simulcast layers anyone receives; stop encoding the others.
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
      for (const e of params.encodings) e.active = e.rid ? active.has(e.rid) : active.size > 0;
      try {
        await sender.setParameters(params);
        logEvent(`dynacast: sending ${[...active].join(', ') || 'no layers'}`);
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
