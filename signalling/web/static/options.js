// Page options from the query string: room, name, autojoin=1 (focus Join), codec=h264|vp9|av1, simulcast=0,
// svc=L3T3_KEY (codec=vp9 or av1: one stream with spatial and temporal layers instead of simulcast),
// video=WxH, audio=0, camera=0, relay=1 (media through TURN only), p2p=0 (never peer to peer),
// grant (read by wallet.js).

export const qs = new URLSearchParams(location.search);
export const OPTIONS = {
  room: qs.get('room') || '',
  name: qs.get('name') || '',
  autojoin: qs.get('autojoin') === '1',
  codec: ['h264', 'vp9', 'av1'].includes((qs.get('codec') || '').toLowerCase()) ? qs.get('codec').toLowerCase() : 'vp8',
  simulcast: !['0', 'false', 'off'].includes((qs.get('simulcast') || '1').toLowerCase()),
  svc: /^L[1-3]T[1-3](_KEY)?$/.test(qs.get('svc') || '') ? qs.get('svc') : '',
  video: parseSize(qs.get('video')) || { width: 1280, height: 720 },
  wantAudio: qs.get('audio') !== '0',
  wantVideo: qs.get('camera') !== '0',
  relay: qs.get('relay') === '1',
  p2p: qs.get('p2p') !== '0',
};

function parseSize(s) {
  const m = /^(\d{2,4})x(\d{2,4})$/.exec(s || '');
  return m ? { width: +m[1], height: +m[2] } : null;
}
