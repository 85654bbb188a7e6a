import { directFor } from './p2p.js';
import { call, sig } from './state.js';
import { $ } from './ui.js';

const RESIZE_DEBOUNCE_MS = 300;

// ---------------------------------------------------------------------------------------------
// Tiles
// ---------------------------------------------------------------------------------------------
function tileSkeleton(name) {
  const el = document.createElement('div');
  el.className = 'tile';
  el.innerHTML = `
    <div class="avatar"><span></span></div>
    <video autoplay playsinline muted></video>
    <div class="badges"></div>
    <div class="label"><svg class="mic" viewBox="0 0 24 24" role="img" aria-label="microphone muted"><rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3M4 4l16 16"/></svg><span class="name"></span></div>`;
  el.querySelector('.name').textContent = name;
  el.querySelector('.avatar span').textContent = (name || '?').trim().charAt(0).toUpperCase() || '?';
  return el;
}

export function badge(el, cls, text) {
  const box = el.querySelector('.badges');
  let b = box.querySelector(`.${cls}`);
  if (text == null) { if (b) b.remove(); return; }
  if (!b) { b = document.createElement('span'); b.className = `badge ${cls}`; box.append(b); }
  b.textContent = text;
}

export function addLocalTile(s) {
  const el = tileSkeleton(`${s.me.name} (you)`);
  el.classList.add('local');
  el.dataset.participant = s.me.id;
  const video = el.querySelector('video');
  video.srcObject = s.stream;
  video.play().catch(() => {});
  if (!s.stream.getVideoTracks().length) el.classList.add('no-video');
  $('#grid').prepend(el);
  s.tiles.set('local', {
    el,
    participant: s.me.id,
    setFlags({ micMuted, camMuted }) {
      el.classList.toggle('mic-muted', !!micMuted);
      el.classList.toggle('cam-muted', !!camMuted);
    },
    destroy() { video.srcObject = null; el.remove(); },
  });
}

export class RemoteTile {
  constructor(s, key, spec) {
    this.s = s;
    this.key = key;
    this.participant = spec.participant;
    this.track = spec.video ? spec.video.track : null;
    this.receiverTrack = spec.video ? spec.video.receiver.track : null;  // the SFU's (p2p.js may show another)
    this.screen = !!(spec.video && spec.video.source === 'screen');
    this.quality = 'auto';
    this.pinned = false;
    this.visible = true;
    this.lastSent = null;
    this.timer = null;
    const el = (this.el = tileSkeleton(spec.name));
    el.classList.add('remote');
    el.dataset.participant = spec.participant;
    if (this.track) el.dataset.track = this.track;
    if (spec.video && spec.video.source === 'screen') {
      // a shared screen is what everyone looks at: the whole width of the grid, first, uncropped
      el.classList.add('screen');
      el.querySelector('.name').textContent = `${spec.name} (screen)`;
    }
    this.video = el.querySelector('video');
    if (spec.video) {
      const direct = this.screen ? null : directFor(s, spec.participant);
      const shown = direct && direct.stream.getVideoTracks()[0];
      this.video.srcObject = new MediaStream([shown || spec.video.receiver.track]);
      this.video.play().catch(() => {});
      const select = document.createElement('select');
      select.className = 'quality';
      select.title = 'Receive quality';
      for (const q of ['auto', 'low', 'medium', 'high', 'off']) select.add(new Option(q, q));
      select.onchange = () => { this.quality = select.value; this.lastSent = null; this.sendSubscription(); };
      el.append(select);
      // pinned: a bigger tile, and the SFU serves it before the other cameras from this downlink
      const pin = document.createElement('button');
      pin.className = 'pin';
      pin.type = 'button';
      pin.title = 'Pin';
      pin.textContent = 'pin';
      pin.setAttribute('aria-pressed', 'false');
      pin.onclick = () => {
        this.pinned = !this.pinned;
        el.classList.toggle('pinned', this.pinned);
        pin.setAttribute('aria-pressed', String(this.pinned));
        this.sendSubscription();
      };
      el.append(pin);
      this.resizeObs = new ResizeObserver(() => this.scheduleSubscription());
      this.resizeObs.observe(this.video);
      this.intersectObs = new IntersectionObserver((entries) => {
        for (const e of entries) this.visible = e.isIntersecting;
        this.scheduleSubscription();
      });
      this.intersectObs.observe(el);
    } else {
      el.classList.add('no-video');
    }
    $('#grid').append(el);
  }

  scheduleSubscription() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.sendSubscription(), RESIZE_DEBOUNCE_MS);
  }

  sendSubscription() {
    if (!this.track || !sig || this.s !== call) return;
    let msg;
    if (this.quality !== 'auto') {
      msg = { type: 'subscription', track: this.track, layer: this.quality };
    } else {
      const w = Math.round(this.video.clientWidth);
      const h = Math.round(this.video.clientHeight);
      const hidden = document.visibilityState === 'hidden' || !this.visible || w === 0 || h === 0;
      msg = hidden ? { type: 'subscription', track: this.track, layer: 'off' }
                   : { type: 'subscription', track: this.track, width: Math.min(w, 16384), height: Math.min(h, 16384) };
    }
    msg.pinned = this.pinned;
    const key = JSON.stringify(msg);
    if (key === this.lastSent) return;
    this.lastSent = key;
    sig.send(msg);
  }

  setFlags({ micMuted, camMuted }) {
    this.el.classList.toggle('mic-muted', !!micMuted);
    this.el.classList.toggle('cam-muted', !!camMuted);
  }

  destroy() {
    clearTimeout(this.timer);
    if (this.resizeObs) this.resizeObs.disconnect();
    if (this.intersectObs) this.intersectObs.disconnect();
    this.video.srcObject = null;
    this.el.remove();
  }
}

export function tileForTrack(s, trackId) {
  for (const t of s.tiles.values()) if (t.track === trackId) return t;
  return null;
}

// A hidden page receives nothing: every remote tile re-evaluates its subscription.
export function onVisibilityChange() {
  if (!call) return;
  for (const t of call.tiles.values()) if (t.scheduleSubscription) t.scheduleSubscription();
}
